"""A call: the one place that opens a task group and wires the stages.

::

    transport ─► inbound ─► VAD ─► ASR ─► control ─► TurnTaking (sans-I/O)
                                              ▲            │ EndOfTurn / Interrupt / ...
                  playout signals ────────────┘            ▼
    transport ◄─ Playout ◄─ TTS ◄─ clauses ◄─ Responder   (one generation per reply)

The transport adapter feeds caller audio with :meth:`Session.push_audio` (16 kHz PCM16) and
implements :class:`CallSink` for what goes back. Everything the turn machine must know arrives on
one control channel (transcripts and VAD events from the ASR stage, and the session's own
:class:`Signal` events about replies and playout), so turn-taking runs in one task, in order.

Echo: every frame sent is also the echo detector's reference (:mod:`pipeline.echo`), stamped
with the input position when it went out (a reply's frames are placed back to back, as the client
plays them, the first at its stamp); every caller frame is compared with it as it arrives
(before the VAD, which lags), and a changed verdict goes to turn-taking as an
:class:`~agent.turns.EchoEstimate` signal, so it is in before the VAD events of the same audio.
When the verdict turns because the echo is over (the reply's audio ended its delay before), a
:class:`~pipeline.events.Flush` without commit splits the caller's utterance there: a caller who
answers right after the bot is not glued to its echo (the VAD would hear one stretch of speech).

Channel policies: caller audio COALESCE (the network reader never blocks, nothing is lost);
VAD -> ASR and ASR -> control BLOCK (paced by the models); playout is bounded in seconds ahead.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec

from agent.dialogue.decision import EndCall, Say, Transfer
from agent.metrics import METRICS
from agent.reply import (
    ReplyPart,
    ReplyVoice,
    Responder,
    Speaker,
    SpokenText,
)
from agent.reply_limit import capped
from agent.session_events import (
    AgentText,
    CallEnded,
    CallSink,
    Interrupted,
    Notice,
    SessionEvent,
    TransferRequested,
    TurnLatency,
    UserSpeech,
    UserTranscript,
    UserTurn,
)
from agent.turns import (
    CommitTurn,
    DiscardTurn,
    EchoEstimate,
    EndOfTurn,
    HangUp,
    IdlePrompt,
    Interrupt,
    PlayoutFinished,
    PlayoutProgress,
    PlayoutStarted,
    ReAnswer,
    ReplyKind,
    ReplyStarted,
    ResumeBot,
    StartOfTurn,
    TurnAction,
    TurnConfig,
    TurnInput,
    TurnTaking,
    UserState,
    UtteranceIgnored,
)
from pipeline.asr.decoder import DecodeOptions
from pipeline.asr.events import Transcript, TranscriptDropped, TranscriptProgress
from pipeline.asr.stage import AsrRunner, AsrStage
from pipeline.asr.utterance import TrackerConfig
from pipeline.channels import Channel, Policy
from pipeline.clock import InputClock, MonotonicClock, WallClock
from pipeline.echo import EchoConfig, EchoDetector
from pipeline.errors import ClientError, ServerError
from pipeline.events import PIPELINE_RATE, AudioFrame, Event, Flush
from pipeline.playout import Heard, Playout, text_end
from pipeline.runtime import SessionRuntime
from pipeline.vad.detector import DetectorConfig
from pipeline.vad.events import SpeechStarted, SpeechStopped
from pipeline.vad.stage import VadRunner, VadStage
from voices.engine import TTSEngine

__all__ = [
    "AgentText",
    "CallEnded",
    "CallSink",
    "InputClock",
    "Interrupted",
    "Models",
    "Notice",
    "Session",
    "SessionEvent",
    "SessionSettings",
    "Signal",
    "TransferRequested",
    "TurnLatency",
    "UserSpeech",
    "UserTranscript",
    "UserTurn",
]

log = logging.getLogger("voxline.session")


class TypedTurn(msgspec.Struct, frozen=True):
    text: str


class CancelReply(msgspec.Struct, frozen=True):
    generation: int


class TruncateReply(msgspec.Struct, frozen=True):
    generation: int
    played: int


class NewTurnConfig(msgspec.Struct, frozen=True):
    config: TurnConfig


class Signal(Event, frozen=True, kw_only=True, tag="signal"):
    """A turn-taking input made by the session itself, sent through the control channel."""

    value: Any


@dataclass
class Models:
    """The shared model executors a session uses."""

    vad: VadRunner
    asr: AsrRunner
    tts: TTSEngine


@dataclass
class SessionSettings:
    turns: TurnConfig = field(default_factory=TurnConfig)
    vad: DetectorConfig = field(
        default_factory=lambda: DetectorConfig.from_seconds(min_silence=0.3)
    )
    asr: DecodeOptions = field(default_factory=DecodeOptions)
    #: which audio the ASR decodes: ``max_utterance`` is the longest utterance (longer speech
    #: is cut into turns, with ``Notice("utterance_cut")``)
    utterance: TrackerConfig = field(default_factory=TrackerConfig)
    #: the longest reply text (:mod:`agent.reply_limit`; ``None``: unbounded); a cut reply
    #: sends ``Notice("reply_cut")``
    max_reply_chars: int | None = None
    #: seconds of reply audio synthesised ahead of playout
    max_ahead: float = 1.5
    #: reply audio sent ahead of real time (the far side's jitter buffer)
    lead: float = 0.06
    #: say the greeting when the call starts
    greeting: bool = True
    #: answer each turn (off: turns end with :class:`UserTurn` and wait for
    #: :meth:`Session.respond_now`)
    answer_turns: bool = True
    #: how replies speak (the agent file's voice: :func:`agent.models.reply_voice`) until
    #: :meth:`Session.set_voice`; the default is the engine's own voice as it is
    voice: ReplyVoice = field(default_factory=ReplyVoice)


class Session:
    """One call, from :meth:`run` until hang-up or the transport closes the input."""

    def __init__(
        self,
        models: Models,
        responder: Responder,
        sink: CallSink,
        settings: SessionSettings | None = None,
        *,
        session_id: str | None = None,
        clock: WallClock | None = None,
    ) -> None:
        self.id = session_id or uuid.uuid4().hex
        self.models = models
        self.responder = responder
        self.sink = sink
        self.settings = settings or SessionSettings()
        self.clock = clock or MonotonicClock()
        self.input = InputClock(self.clock)
        # Real-time audio from the network never blocks: coalesce when the VAD lags.
        self.inbound = Channel("transport->vad", 32, Policy.COALESCE)
        self.turns = TurnTaking(self.settings.turns)
        self.echo = _echo_detector(self.settings.turns)
        self.playout = Playout(
            self.id,
            sink.output_rate,
            self.clock,
            max_ahead=self.settings.max_ahead,
            lead=self.settings.lead,
            on_heard=self._on_heard,
        )
        self._runtime: SessionRuntime | None = None
        self._control: Channel | None = None
        self._speakers: dict[int, Speaker] = {}
        #: what recent replies said, for :meth:`truncate`
        self._spoken: dict[int, SpokenText] = {}
        self.answer_turns = self.settings.answer_turns
        #: the last turn left unanswered (``answer_turns`` off), for :meth:`respond_now`
        self._unanswered: str | None = None
        #: set once :meth:`run` has started the call (the methods below work from then on)
        self.started = anyio.Event()
        self._answer_marks: dict[int, dict[str, float]] = {}
        self._sent_frames: dict[int, int] = {}
        #: the reply to hang up after, and why (:class:`~agent.reply.EndCall`'s reason)
        self._hangup_after: tuple[int, str] | None = None
        #: replies cut at ``max_reply_chars`` still playing: the dialogue hears of them as
        #: interrupted (an LLM's history keeps only what was said, marked as cut short)
        self._cut_replies: set[int] = set()
        #: what an interrupted reply had left to say (for a resume)
        self._unheard: dict[int, str] = {}
        #: the generation whose audio the sink is receiving
        self._audio_open: int | None = None
        self._speech_end_wall: float | None = None
        self._final_wall: float | None = None
        self.ended: str | None = None
        #: the caller has spoken since the last commit (a commit then is not an empty turn)
        self._spoke_since_commit = False
        #: the voice replies speak with; see :meth:`set_voice`
        self.voice = self.settings.voice

    # -- transport side -----------------------------------------------------------------------

    async def push_audio(self, pcm: bytes) -> None:
        """Caller audio: mono PCM16 at 16 kHz, any length (even)."""
        if not pcm:
            return
        pts = self.input.advance(len(pcm) // 2)
        split = False
        if self.echo is not None:
            for verdict in self.echo.push_input(pcm, pts):
                split = split or verdict.ended
                if self._control is not None:
                    self._signal(EchoEstimate(verdict.likely, verdict.sample))
        await self.inbound.send(
            AudioFrame(session_id=self.id, sample_rate=PIPELINE_RATE, pcm=pcm, pts=pts)
        )
        if split:  # the echo of the bot's reply is over: what follows is the caller's
            await self.inbound.send(Flush(session_id=self.id, commit=False))

    def end_input(self) -> None:
        """The caller's audio has ended (hang-up): finish the call."""
        self.inbound.close()
        if self._runtime is not None:
            self._runtime.cancel()

    def user_text(self, text: str) -> None:
        """A whole user turn typed instead of spoken: stop the bot and answer it."""
        if self._control is not None:
            self._signal(TypedTurn(text))

    def interrupt(self, generation: int | None = None) -> None:
        """The client asked to stop the current reply, or ``generation`` (a button, a DTMF
        key, a cancelled response...)."""
        if self._control is not None:
            self._signal("interrupt" if generation is None else CancelReply(generation))

    async def commit_turn(self) -> None:
        """The client ends the caller's turn at this point of its audio (push-to-talk).

        A :class:`~pipeline.events.Flush` goes into the inbound audio, behind what was pushed
        before it: the VAD closes the open speech there and the ASR finalises it at once, so
        the turn ends with the audio sent so far, without waiting for silence or more audio.
        When the flush reaches the control loop (after that final) the turn is committed; with
        no speech in it, the sink hears of an empty turn (``Notice("ignored.no_words")``).
        """
        if self._control is not None and not self.inbound.closed:
            await self.inbound.send(Flush(session_id=self.id))

    def discard_turn(self) -> None:
        """The client dropped the caller's open turn."""
        if self._control is not None:
            self._signal(DiscardTurn())

    def respond_now(self, text: str | None = None) -> int | None:
        """Start a reply now (a client's request) to ``text``, else to the last turn left
        unanswered, else the greeting. Returns its generation (``None`` before :attr:`started`).
        """
        if self._runtime is None:
            return None
        if text is None:
            text = self._unanswered
        self._unanswered = None
        if text is None:
            return self._start_reply("greeting", lambda g: self.responder.prompt("greeting"))
        typed = text
        return self._start_reply("answer", lambda g: self.responder.respond(typed, generation=g))

    def truncate(self, generation: int, played: int) -> None:
        """The client played ``generation`` up to sample ``played`` (at the output rate) and no
        further: the responder hears of the text up to there."""
        if self._control is not None:
            self._signal(TruncateReply(generation, played))

    def set_voice(self, voice: ReplyVoice) -> None:
        """Replies started from now on speak with ``voice`` (one in progress keeps its own)."""
        self.voice = voice

    def set_turns(self, config: TurnConfig) -> None:
        """New turn-taking settings mid-call (an open user turn is dropped)."""
        if self._control is None:
            self.turns = TurnTaking(config)
        else:
            self._signal(NewTurnConfig(config))

    def _signal(self, value: object) -> None:
        """Queue a turn-taking input for the control loop (in order with transcripts)."""
        assert self._control is not None
        signal = Signal(session_id=self.id, value=value)
        try:
            self._control.send_nowait(signal)
        except anyio.WouldBlock:  # the control loop lags: queue it behind the rest
            self._runtime_task(self._control.send(signal))

    # -- the call -----------------------------------------------------------------------------

    async def run(
        self, *, tasks: Sequence[tuple[str, Callable[[], Awaitable[object]]]] = ()
    ) -> None:
        """Run the call until it ends. ``tasks`` (a transport's reader and writer) run in the
        call's one task group, under its failure rule: the first to fail ends the call, and
        :class:`~pipeline.errors.StageFailed` comes out of here from it."""
        async with SessionRuntime(self.id) as runtime:
            self._runtime = runtime
            speech = runtime.channel("vad->asr", 64, Policy.BLOCK)
            self._control = control = runtime.channel("asr->control", 256, Policy.BLOCK)
            runtime.start_stage(
                "vad", VadStage(self.models.vad, self.settings.vad), self.inbound, speech
            )
            runtime.start_stage(
                "asr",
                AsrStage(self.models.asr, self.settings.asr, self.settings.utterance),
                speech,
                control,
            )
            runtime.start_task("playout", lambda: self.playout.run(self._send_frame))
            runtime.start_task("control", lambda: self._control_loop(control))
            for name, task in tasks:
                runtime.start_task(name, task)
            if self.settings.greeting:
                self._start_reply("greeting", lambda gen: self.responder.prompt("greeting"))
            self.started.set()
        self._runtime = None

    async def _control_loop(self, control: Channel) -> None:
        while True:
            deadline = self.turns.next_deadline()
            event: Event | None = None
            timeout = (
                None
                if deadline is None
                else max(0.0, (deadline - self.input.now()) / PIPELINE_RATE)
            )
            with anyio.move_on_after(timeout):
                try:
                    event = await control.receive()
                except anyio.EndOfStream:
                    return
            now = self.input.now()
            if event is None:
                actions = self.turns.advance(now)
            else:
                actions = await self._observe(event, now)
            for action in actions:
                await self._act(action)
            if self.ended is not None:
                assert self._runtime is not None
                self._runtime.cancel()
                return

    async def _observe(self, event: Event, now: int) -> list[TurnAction]:
        """Tell the client what happened and feed turn-taking."""
        turn_input: TurnInput | None = None
        if isinstance(event, Signal):
            if event.value == "interrupt":
                return await self._interrupt_now(now)
            if isinstance(event.value, CancelReply):
                return await self._interrupt_now(now, event.value.generation)
            if isinstance(event.value, TruncateReply):
                self._truncate(event.value.generation, event.value.played)
                return []
            if isinstance(event.value, NewTurnConfig):
                return self._new_turns(event.value.config, now)
            if isinstance(event.value, TypedTurn):
                actions = await self._interrupt_now(now)
                typed = event.value.text
                self._start_reply("answer", lambda g: self.responder.respond(typed, generation=g))
                return actions
            turn_input = event.value
        elif isinstance(event, SpeechStarted):
            self._spoke_since_commit = True
            await self.sink.send_event(UserSpeech(started=True, sample=event.sample))
            turn_input = event
        elif isinstance(event, SpeechStopped):
            self._speech_end_wall = self.input.wall_time_of(event.sample)
            await self.sink.send_event(UserSpeech(started=False, sample=event.sample))
            turn_input = event
        elif isinstance(event, Transcript):
            if event.is_final:
                self._final_wall = time.perf_counter()
            await self.sink.send_event(
                UserTranscript(
                    text=event.text,
                    final=event.is_final,
                    utterance=event.utterance,
                    stable=event.stable,
                    unstable=event.unstable,
                )
            )
            if event.is_final and event.cut:  # turn-taking ends the turn here (its rule T7)
                seconds = self.settings.utterance.max_utterance / PIPELINE_RATE
                cut = Notice(code="utterance_cut", message=f"speech cut after {seconds:g} s")
                await self.sink.send_event(cut)
            turn_input = event
        elif isinstance(event, TranscriptDropped | TranscriptProgress):
            turn_input = event
        elif isinstance(event, Flush):
            return await self._commit(now) if event.commit else []
        if turn_input is None:
            return []
        return self.turns.feed(turn_input, now)

    async def _commit(self, now: int) -> list[TurnAction]:
        """A client's commit, after every transcript of the audio before it: end the turn."""
        spoke, self._spoke_since_commit = self._spoke_since_commit, False
        if self.turns.user is UserState.SILENT:
            if not spoke:  # nothing was said: an empty turn (else it has ended already)
                await self.sink.send_event(Notice(code="ignored.no_words", message=""))
            return []
        return self.turns.feed(CommitTurn(), now)

    async def _interrupt_now(self, now: int, generation: int | None = None) -> list[TurnAction]:
        if generation is None:
            generation = self.playout.buffer.playing
        if generation is None:
            return []
        played = self.playout.buffer.played_samples(generation)
        await self._barge_in(generation)
        return self.turns.feed(PlayoutFinished(generation, played), now)

    async def _barge_in(self, generation: int) -> None:
        """Cancel ``generation``, clear its audio down to the client, keep what was heard."""
        assert self._runtime is not None
        self._runtime.cancel_generation(generation)
        reports = self.playout.clear(generation)
        if self._audio_open == generation:
            self._audio_open = None
        far = await self.sink.clear_audio(generation)
        if far is not None:
            reports = [
                self._played_to(r, far) if r.generation == generation else r for r in reports
            ]
        self._finish_interrupted(reports)
        for report in reports:
            speaker = self._speakers.pop(report.generation, None)
            self._sent_frames.pop(report.generation, None)
            heard = speaker.spoken.heard(report.text_end) if speaker else ""
            METRICS.interrupted()
            await self.sink.send_event(
                Interrupted(
                    generation=report.generation,
                    heard_text=heard,
                    played_ms=1000 * report.samples_played / self.sink.output_rate,
                )
            )

    def _played_to(self, report: Heard, played: int) -> Heard:
        """``report`` with the far side's count of samples played, when that is fewer."""
        speaker = self._speakers.get(report.generation)
        if speaker is None or played >= report.samples_played:
            return report
        end = text_end(speaker.spoken.words, played)
        return dataclasses.replace(report, samples_played=played, text_end=end)

    def _truncate(self, generation: int, played: int) -> None:
        spoken = self._spoken.get(generation)
        if spoken is not None:
            heard = spoken.heard(text_end(spoken.words, played))
            self.responder.heard(generation, heard, interrupted=True)

    def _new_turns(self, config: TurnConfig, now: int) -> list[TurnAction]:
        """A new turn machine (its timers count from the call's start, so transcripts of
        audio already sent still count), told about the reply in progress (if any)."""
        self.turns = TurnTaking(config)
        actions = self.turns.advance(now)
        echo = self.echo
        if echo is None or echo.config.max_delay_ms != config.echo_max_delay_ms:
            self.echo = _echo_detector(config)
        elif not config.echo_detection:
            self.echo = None
        elif echo.likely:
            actions += self.turns.feed(EchoEstimate(True, echo.verdict.sample), now)
        live = [g for g in self._speakers if self.playout.buffer.active(g)]
        if not live:
            return actions
        generation = max(live)
        actions += self.turns.feed(ReplyStarted(generation), now)
        if self._sent_frames.get(generation):
            actions += self.turns.feed(PlayoutStarted(generation), now)
        return actions

    async def _act(self, action: TurnAction) -> None:
        match action:
            case EndOfTurn(text=text, start=start, end=end):
                if not self.answer_turns:
                    self._unanswered = text
                await self.sink.send_event(UserTurn(text=text, start=start, end=end))
                if not self.answer_turns:
                    return
                marks = {"turn": time.perf_counter()}
                if self._speech_end_wall is not None:
                    marks["speech_end"] = self._speech_end_wall
                if self._final_wall is not None:
                    marks["final"] = self._final_wall
                gen = self._start_reply(
                    "answer", lambda g: self.responder.respond(text, generation=g)
                )
                self._answer_marks[gen] = marks
            case Interrupt(generation=generation):
                await self._barge_in(generation)
            case ResumeBot(generation=generation):
                rest = self._unheard.pop(generation, "")
                if rest:
                    self._start_reply("resume", lambda g: _say(rest))
            case ReAnswer(text=text):
                self._start_reply("answer", lambda g: self.responder.respond(text, generation=g))
            case IdlePrompt(count=count):
                self._start_reply("prompt", lambda g: self.responder.prompt("idle", count))
            case HangUp(reason=reason):
                await self._end(reason)
            case UtteranceIgnored(text=text, reason=reason):
                await self.sink.send_event(Notice(code=f"ignored.{reason}", message=text))
            case StartOfTurn():
                pass

    def _finish_interrupted(self, reports: list[Heard]) -> None:
        for report in reports:
            self._cut_replies.discard(report.generation)
            speaker = self._speakers.get(report.generation)
            if speaker is None:
                continue
            heard = speaker.spoken.heard(report.text_end)
            self._unheard[report.generation] = speaker.spoken.text[report.text_end :].strip()
            self.responder.heard(report.generation, heard, interrupted=True)

    def _start_reply(
        self,
        kind: ReplyKind,
        parts: Callable[[int], AsyncGenerator[ReplyPart, None]],
    ) -> int:
        assert self._runtime is not None
        generation = self._runtime.generations.latest + 1  # the id start_generation allocates
        self._signal(ReplyStarted(generation, kind))
        voice = self.voice  # the voice when the reply was asked for

        async def reply(gen: int) -> None:
            speaker = Speaker(
                gen,
                self.models.tts,
                self.playout,
                voice=voice,
                on_text=lambda delta: self._agent_text(gen, delta),
                on_action=lambda action: self._on_action(gen, action),
                on_warning=lambda text: self._runtime_task(
                    self.sink.send_event(Notice(code="ssml_warning", message=text))
                ),
            )
            self._speakers[gen] = speaker
            self._spoken[gen] = speaker.spoken
            while len(self._spoken) > 8:
                del self._spoken[min(self._spoken)]
            source = parts(gen)
            limit = self.settings.max_reply_chars
            if limit is not None:
                source = capped(source, limit, lambda: self._notify_cut(gen, limit))
            try:
                await speaker.speak(source)
            except (ServerError, ClientError) as error:
                log.warning("reply %d failed: %s", gen, type(error).__name__)
                self.playout.finish(gen)
                await self.sink.send_event(Notice(code="reply_failed", message=_public(error)))

        started = self._runtime.start_generation(reply, name=kind)
        assert started == generation
        return generation

    def _notify_cut(self, generation: int, limit: int) -> None:
        self._cut_replies.add(generation)
        notice = Notice(code="reply_cut", message=f"reply cut at {limit} characters")
        self._runtime_task(self.sink.send_event(notice))

    def _agent_text(self, generation: int, delta: str) -> None:
        self._runtime_task(self.sink.send_event(AgentText(generation=generation, delta=delta)))

    def _on_action(self, generation: int, action: EndCall | Transfer) -> None:
        if isinstance(action, EndCall):
            self._hangup_after = (generation, action.reason)
        else:
            self._runtime_task(self.sink.send_event(TransferRequested(target=action.target)))

    def _runtime_task(self, work: Any) -> None:
        assert self._runtime is not None

        async def run() -> None:
            await work

        self._runtime.start_task("notify", run)

    async def _send_frame(self, frame: AudioFrame) -> None:
        generation = frame.generation
        if self._audio_open not in (None, generation):
            await self._close_audio(self._audio_open)
        self._audio_open = generation
        sent = self._sent_frames.get(generation, 0)
        self._sent_frames[generation] = sent + 1
        if self.echo is not None:
            at = self.input.now()
            self.echo.push_reference(frame.pcm, frame.sample_rate, at, restart=sent == 0)
        await self.sink.send_audio(generation, frame.pcm)
        if sent == 0:
            self._signal(PlayoutStarted(generation))
            self._report_latency(generation)
        elif sent % 10 == 0:
            speaker = self._speakers.get(generation)
            played = self.playout.buffer.played_samples(generation)
            text = speaker.spoken.played(played) if speaker else ""
            self._signal(PlayoutProgress(generation, played, text))

    def _on_heard(self, report: Heard) -> None:
        """A reply played to its end."""
        speaker = self._speakers.pop(report.generation, None)
        self._sent_frames.pop(report.generation, None)
        cut = report.generation in self._cut_replies  # the dialogue keeps what was said
        self._cut_replies.discard(report.generation)
        if speaker is not None:
            heard = speaker.spoken.heard(report.text_end)
            self.responder.heard(report.generation, heard, interrupted=cut)
        self._signal(PlayoutFinished(report.generation, report.samples_played))
        self._runtime_task(self._close_audio(report.generation))
        if self._hangup_after is not None and self._hangup_after[0] == report.generation:
            self._runtime_task(self._end(self._hangup_after[1]))

    async def _close_audio(self, generation: int) -> None:
        """Tell the transport ``generation``'s audio is complete (once)."""
        if self._audio_open == generation:
            self._audio_open = None
            await self.sink.end_audio(generation)

    def _report_latency(self, generation: int) -> None:
        marks = self._answer_marks.pop(generation, None)
        speaker = self._speakers.get(generation)
        if marks is None or speaker is None:
            return
        out = time.perf_counter()
        points = [
            ("speech_end", marks.get("speech_end")),
            ("asr_final", marks.get("final")),
            ("end_of_turn", marks.get("turn")),
            ("first_text", speaker.times.first_text),
            ("first_audio", speaker.times.first_audio),
            ("audio_out", out),
        ]
        known = [(name, at) for name, at in points if at is not None]
        stages = {
            f"{a}->{b}": round(1000 * (tb - ta), 1)
            for (a, ta), (b, tb) in itertools.pairwise(known)
        }
        if known:
            stages["total"] = round(1000 * (out - known[0][1]), 1)
        METRICS.observe_turn(stages)
        self._runtime_task(self.sink.send_event(TurnLatency(generation=generation, stages=stages)))

    async def _end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            await self.sink.send_event(CallEnded(reason=reason))
            if self._runtime is not None:
                self._runtime.cancel()


def _echo_detector(config: TurnConfig) -> EchoDetector | None:
    """The call's echo detector (none when the guard does not depend on it)."""
    if not config.echo_detection:
        return None
    return EchoDetector(
        EchoConfig(max_delay_ms=config.echo_max_delay_ms), sample_rate=PIPELINE_RATE
    )


async def _say(text: str) -> AsyncGenerator[ReplyPart, None]:
    yield Say(text)


def _public(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error)
    return "the reply could not be produced"
