"""A call: the one place that opens a task group and wires the stages.

::

    transport ─► inbound ─► VAD ─► ASR ─► control ─► TurnTaking (sans-I/O)
                                              ▲            │ EndOfTurn / Interrupt / ...
                  playout, client ────────────┘            ▼
    transport ◄─ Playout ◄─ TTS ◄─ clauses ◄─ ReplyRun     (one generation per reply)
    transport ◄─ outbox ◄─ every event, in order

A transport feeds caller audio to :meth:`Session.push_audio` (16 kHz PCM16), makes its requests
with the methods of :class:`~agent.session_control.CallControls`, and implements
:class:`CallSink`. Every input that changes the call comes on one control channel (the ASR's
transcripts and VAD events, and typed :class:`~agent.session_control.Signal` controls from the
client, the playout and the echo detector); one control loop dispatches them with ``match`` and
acts on turn-taking's decisions. Each reply is a :class:`~agent.reply_run.ReplyRun`; every event
for the client goes through one outbox; timestamps come from the injected clock.

Echo: every frame sent is the echo detector's reference (:mod:`pipeline.echo`); every caller
frame is compared with it as it arrives (before the VAD, which lags) and a changed verdict goes
to turn-taking ahead of the VAD events of the same audio. When the echo is over, a
:class:`~pipeline.events.Flush` without commit splits the caller's utterance there.

Channel policies: caller audio COALESCE (the network reader never blocks, nothing is lost); VAD
-> ASR, ASR -> control and the outbox BLOCK (the models, the control loop and the client pace
them); playout is bounded in seconds ahead. No task is started per event: a call's tasks are its
stages, playout, control loop, outbox, early-match previews, the transfer deadline
(:mod:`agent.session_transfer`), the end-of-turn model's questions (:mod:`agent.turn_asker`:
one waiting at most, the newest) and the transport's own. Turn-taking's ``EndSpeech`` goes to
the VAD in order with the audio (never waiting: if the inbound is full, its silence ends it).

Call actions: a reply's hang-up or transfer is carried out once the reply has played (the
caller hears "let me put you through" first). A transfer goes to the sink as
``TransferRequested``; the transport answers with :meth:`CallControls.transfer_result` (ok:
the call ends ``"transferred"``); no answer within ``transfer_timeout`` fails it
(``"timeout"``). A failed transfer is a ``Notice("transfer_failed", reason)`` and a reply (the
responder's ``transfer_failed``): the caller is never left in silence, and the call goes on.
A reply's digits (``SendDigits``) are checked and go to the sink as ``DigitsRequested`` once it
has played, before its hang-up or transfer (to a sink that keys digits, ``DigitSink``);
digits that are not valid, a sink that cannot key them (``unsupported``), or a transport's
failure (:meth:`CallControls.dtmf_failed`) are a ``Notice("dtmf_failed", reason)``.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import anyio

from agent import session_events as out
from agent import turn_types as turn
from agent.dialogue.decision import EndCall, Say, SendDigits, Transfer
from agent.digits import (
    DigitCollector,
    KeyedTurn,
    Keypad,
    KeypadAware,
    check_digits,
    keypad_rule,
)
from agent.reply import ReplyShape, Responder
from agent.reply_run import Replies, ReplyRun
from agent.session_control import (
    CallControls,
    Control,
    DigitsFailed,
    EndNow,
    Farewell,
    InterruptReply,
    Keypress,
    Models,
    NewTurnConfig,
    Previewing,
    Previews,
    ReplyHeard,
    SessionSettings,
    Signal,
    TransferExpired,
    TransferResult,
    TruncateReply,
    TypedTurn,
    Wake,
)
from agent.session_events import CallSink, SessionEvent
from agent.session_outbox import SessionOutbox
from agent.session_transfer import PendingTransfer, TransferWait
from agent.session_turns import echo_detector, new_turns
from agent.translator import TranscriptAware
from agent.turn_asker import TurnAsker
from agent.turns import TurnAction, TurnTaking, UserState
from pipeline.asr.events import Transcript, TranscriptDropped, TranscriptProgress
from pipeline.asr.stage import AsrStage
from pipeline.channels import Channel, Policy
from pipeline.clock import InputClock, MonotonicClock, WallClock
from pipeline.events import PIPELINE_RATE, AudioFrame, Event, Flush
from pipeline.playout import Heard, Playout
from pipeline.runtime import SessionRuntime
from pipeline.vad.events import EndSpeechAt, SpeechPaused, SpeechStarted, SpeechStopped
from pipeline.vad.stage import VadStage

__all__ = ["CallSink", "InputClock", "Models", "Session", "SessionEvent", "SessionSettings"]

log = logging.getLogger("voxline.session")

Task = tuple[str, Callable[[], Awaitable[object]]]


class Session(CallControls):
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
        self.models, self.responder, self.sink = models, responder, sink
        self.settings = settings = settings or SessionSettings()
        self.clock = clock or MonotonicClock()
        self.input = InputClock(self.clock)
        # Real-time audio from the network never blocks: coalesce when the VAD lags.
        self.inbound = Channel("transport->vad", 32, Policy.COALESCE)
        self.turns = TurnTaking(settings.turns)
        self.echo = echo_detector(settings.turns)
        self.playout = Playout(
            self.id,
            sink.output_rate,
            self.clock,
            max_ahead=settings.max_ahead,
            lead=settings.lead,
            on_heard=self._on_heard,
        )
        self.outbox = SessionOutbox(sink, self._stop)
        self.replies = Replies(
            models.tts,
            self.playout,
            self.clock,
            responder,
            self.outbox,
            max_chars=settings.max_reply_chars,
            on_decided=lambda run: self._wake() if run is self._keyed_run else None,
        )
        self.answer_turns, self.voice = settings.answer_turns, settings.voice  # see set_voice
        #: set once :meth:`run` has started the call (the methods below work from then on)
        self.started = anyio.Event()
        self.ended: str | None = None
        self._control: Channel | None = None
        self._unanswered: str | None = None  # the last turn left unanswered (answer_turns off)
        self._marks: dict[str, float] = {}  # wall times of the turn under way
        self._spoke_since_commit = False  # a commit then is not an empty turn
        self._unannounced: deque[ReplyRun] = deque()  # replies turn-taking has not heard of
        self._previews = Previews(responder) if isinstance(responder, Previewing) else None
        self.keys = DigitCollector()  # keypad digits on their way to a turn (agent.digits)
        self._keyed_run: ReplyRun | None = None  # the reply to the last keyed turn
        #: keys pressed while that reply's decision was under way, with their positions
        self._held_keys: deque[tuple[str, int]] = deque()
        self.transfers = TransferWait(
            self.clock, settings.transfer_timeout, lambda n: self._signal(TransferExpired(n))
        )
        eot = models.end_of_turn
        self.turn_asker = None if eot is None else TurnAsker(eot, self._signal)  # rule M1
        #: told of each caller frame as it arrives (the call recording,
        #: :mod:`agent.records.recording`): each returns at once and never raises
        self.input_taps: list[Callable[[bytes], None]] = []

    # -- transport side -----------------------------------------------------------------------

    async def push_audio(self, pcm: bytes) -> None:
        """Caller audio: mono PCM16 at 16 kHz, any length (even). After :meth:`end_input` it is
        dropped: a transport's clock may tick once more between the hang-up and the session's
        cancellation reaching it (anyio does not cancel a task about to resume), and that tick
        must not fail the call (SIP's media clock after a BYE)."""
        if not pcm or self.inbound.closed:
            return
        for tap in self.input_taps:
            tap(pcm)
        pts = self.input.advance(len(pcm) // 2)
        if self.turn_asker is not None:
            self.turn_asker.push(pcm, pts)
        split = False
        for verdict in self.echo.push_input(pcm, pts) if self.echo is not None else ():
            split = split or verdict.ended
            await self._signal(turn.EchoEstimate(verdict.likely, verdict.sample))
        frame = AudioFrame(session_id=self.id, sample_rate=PIPELINE_RATE, pcm=pcm, pts=pts)
        await self.inbound.send(frame)
        if split:  # the echo of the bot's reply is over: what follows is the caller's
            await self.inbound.send(Flush(session_id=self.id, commit=False))
        if (due := self.keys.deadline) is not None and pts >= due:
            self._wake()  # the keys' timeout counts caller audio, which may come faster

    def end_input(self) -> None:
        """The caller's audio has ended (hang-up): finish the call."""
        self.inbound.close()
        self._stop()

    def respond_now(
        self, text: str | None = None, *, shape: ReplyShape | None = None
    ) -> int | None:
        """Start a reply to ``text``, else to the last turn left unanswered, else the greeting,
        shaped by ``shape`` (``None``: as :meth:`shape_replies` said); its generation (``None``
        before :attr:`started`). Never waits: a sink may call it."""
        if self.replies.runtime is None or self._control is None:
            return None
        if text is None:
            text, self._unanswered = self._unanswered, None
        run = self.replies.start(self.voice, text=text, shape=shape)
        self._unannounced.append(run)
        self._wake()
        return run.generation

    def shape_replies(self, shape: ReplyShape) -> None:
        """Replies started from now on come out as ``shape`` says (text only, token limit)."""
        self.replies.shape = shape

    def _wake(self) -> None:
        """Make the control loop look at the session now (never waits)."""
        if self._control is not None:
            with contextlib.suppress(anyio.WouldBlock):  # else the loop has inputs: it wakes
                self._control.send_nowait(Signal(session_id=self.id, value=Wake()))

    # -- the call -----------------------------------------------------------------------------

    async def run(self, *, tasks: Sequence[Task] = ()) -> None:
        """Run the call until it ends, with ``tasks`` (a transport's) in its one task group:
        the first to fail ends the call, and :class:`~pipeline.errors.StageFailed` says so."""
        settings = self.settings
        try:
            async with SessionRuntime(self.id) as runtime:
                self.replies.runtime = runtime
                speech = runtime.channel("vad->asr", 64, Policy.BLOCK)
                self._control = control = runtime.channel("asr->control", 256, Policy.BLOCK)
                vad = VadStage(self.models.vad, settings.vad)
                runtime.start_stage("vad", vad, self.inbound, speech)
                asr = AsrStage(
                    self.models.asr,
                    settings.asr,
                    settings.utterance,
                    translation=settings.translation,
                )
                runtime.start_stage("asr", asr, speech, control)
                runtime.start_task("playout", lambda: self.playout.run(self._send_frame))
                runtime.start_task("control", lambda: self._control_loop(control))
                runtime.start_task("outbox", self.outbox.opened())
                runtime.start_task("transfer", self.transfers.run)
                if self._previews is not None:
                    runtime.start_task("preview", self._previews.run)
                if self.turn_asker is not None:
                    runtime.start_task("end-of-turn", self.turn_asker.run)
                for name, task in tasks:
                    runtime.start_task(name, task)
                if settings.greeting:
                    self.respond_now()
                self.started.set()
        finally:
            self._let_go()

    def _let_go(self) -> None:
        """The call is over: its parts let go of the session. Each callback below is a
        reference cycle through the session, which would keep the whole call (its echo
        detector's ring, its replies, its channels) until the garbage collector's next full
        collection instead of freeing it when the call ends (tests/test_call_freed.py)."""
        self.replies.runtime = None  # Replies -> SessionRuntime -> a failure's frames -> Session
        self.playout.on_heard = None  # Session -> Playout -> Session._on_heard
        self.replies.on_decided = _undecided  # Session -> Replies -> lambda over self
        self.outbox.on_ended = _nothing  # Session -> SessionOutbox -> Session._stop
        self.transfers.expire = _no_expiry  # Session -> TransferWait -> lambda over self
        self.turn_asker = None  # Session -> TurnAsker -> Session._signal

    def _stop(self) -> None:
        if (runtime := self.replies.runtime) is not None:
            runtime.cancel()

    async def _control_loop(self, control: Channel) -> None:
        while True:
            due = [d for d in (self.turns.next_deadline(), self.keys.deadline) if d is not None]
            deadline = min(due, default=None)
            event: Event | None = None
            wait = None if deadline is None else max(0, deadline - self.input.now()) / PIPELINE_RATE
            with anyio.move_on_after(wait):
                try:
                    event = await control.receive()
                except anyio.EndOfStream:
                    return
            now = self.input.now()
            actions: deque[TurnAction] = deque()
            while self._unannounced:  # replies started since: before what came after them
                actions.extend(self._started(self._unannounced.popleft(), now))
            actions.extend(self.turns.advance(now) if event is None else await self._on(event, now))
            if (keyed := self.keys.expire(now)) is not None:  # digits timed out: a turn
                actions.extend(await self._keyed(keyed, now))
            actions.extend(await self._release_keys(now))
            while actions:
                action = actions.popleft()
                actions.extend(await self._act(action, now, actions[0] if actions else None))

    async def _on(self, event: Event, now: int) -> list[TurnAction]:
        """One input from the control channel: what the client hears of it, then turn-taking."""
        match event:
            case Signal(value=value):
                return await self._on_control(value, now)
            case SpeechStarted(sample=sample):
                self._spoke_since_commit = True
                await self.outbox.emit(out.UserSpeech(started=True, sample=sample))
                return self.turns.feed(event, now)
            case SpeechStopped(sample=sample):
                self._marks = {"speech_end": self.input.wall_time_of(sample)}
                await self.outbox.emit(out.UserSpeech(started=False, sample=sample))
                return self.turns.feed(event, now)
            case Transcript():
                await self._transcript(event)
                return self.turns.feed(event, now)
            case TranscriptDropped() | TranscriptProgress() | SpeechPaused():
                return self.turns.feed(event, now)
            case Flush(discard=True):  # the client cleared its input (discard_turn)
                self._spoke_since_commit = False
                return self.turns.feed(turn.DiscardTurn(), now)
            case Flush(commit=True):
                return await self._commit(now)
        return []

    async def _on_control(self, value: Control, now: int) -> list[TurnAction]:
        match value:
            case InterruptReply(generation=generation):
                return await self._interrupt_now(now, generation)
            case TypedTurn(text=text):
                actions = await self._interrupt_now(now)
                return actions + self._started(self.replies.start(self.voice, text=text), now)
            case TruncateReply(generation=generation, played=played):
                heard = self.replies.truncated(generation, played)
                if heard is not None:
                    await self.outbox.emit(out.ReplyTruncated(generation, heard))
                return []
            case NewTurnConfig(config=config):
                live, buffer = self.replies.live, self.playout.buffer
                self.turns, self.echo, actions = new_turns(config, now, self.echo, live, buffer)
                return actions
            case ReplyHeard(report=report):
                return await self._finished(report, now)
            case TransferResult(ok=ok, reason=reason):
                return await self._transferred(self.transfers.settle(), ok, reason, now)
            case TransferExpired(number=number):
                expired = self.transfers.settle(number)
                return await self._transferred(expired, False, "timeout", now)
            case Keypress(digit=digit):
                return await self._keypress(digit, now)
            case DigitsFailed(reason=reason):
                await self._keys_failed(reason)
                return []
            case EndNow(reason=reason):
                await self._end(reason)
                return []
            case Farewell(text=text, reason=reason):
                actions = await self._interrupt_now(now)
                said = (Say(text), EndCall(reason))
                return actions + self._started(self.replies.start(self.voice, said=said), now)
            case Wake():
                return []
        return self.turns.feed(value, now)

    async def _keypress(self, digit: str, now: int) -> list[TurnAction]:
        """A key: it stops the reply being spoken (unless the dialogue says not to) and is
        collected; a digit string it completes is the caller's turn. While the dialogue is
        still deciding the last keyed turn, keys wait for it: the rule that reads them is the
        one that turn leaves ("2" for accounts, then the account number's digits)."""
        if self._held_keys or self._deciding_keys():
            self._held_keys.append((digit, now))
            return []
        return await self._press(digit, now, now)

    def _deciding_keys(self) -> bool:
        run = self._keyed_run
        return run is not None and not run.decided and isinstance(self.responder, KeypadAware)

    async def _release_keys(self, now: int) -> list[TurnAction]:
        """The keys held while a keyed turn was decided, once it is (in the order pressed)."""
        actions: list[TurnAction] = []
        while self._held_keys and not self._deciding_keys():
            digit, pressed = self._held_keys.popleft()
            actions.extend(await self._press(digit, pressed, now))
        return actions

    async def _press(self, digit: str, pressed: int, now: int) -> list[TurnAction]:
        rule = keypad_rule(self.responder)
        actions = await self._interrupt_now(now) if rule.interrupts else []
        keyed = self.keys.press(digit, pressed, rule)
        return actions + (await self._keyed(keyed, now) if keyed is not None else [])

    async def _keyed(self, keyed: KeyedTurn, now: int) -> list[TurnAction]:
        """A complete digit string: a user turn, answered as a spoken one is."""
        turn_ended = out.UserTurn(keyed.digits, keyed.start, keyed.end, keyed.rule, keypad=True)
        await self.outbox.emit(turn_ended)
        text = Keypad(keyed.digits)
        if not self.answer_turns:
            self._unanswered = text
            return []
        self._keyed_run = run = self.replies.start(self.voice, text=text)
        return self._started(run, now)

    async def _transcript(self, event: Transcript) -> None:
        if event.is_final:
            self._marks["asr_final"] = self.clock.now()
            if isinstance(self.responder, TranscriptAware):  # before the turn it ends
                self.responder.transcribed(event)
        if self._previews is not None:  # a caller's turn only, never speech over the bot
            partial = not event.is_final and self.turns.user is UserState.TURN
            self._previews.offer(event.text) if partial else self._previews.drop()
        await self.outbox.emit(
            out.UserTranscript(
                event.text,
                event.is_final,
                event.utterance,
                event.stable,
                event.unstable,
                language=event.language,
            )
        )
        if event.is_final and event.cut:  # turn-taking ends the turn here (its rule T7)
            seconds = self.settings.utterance.max_utterance / PIPELINE_RATE
            await self.outbox.emit(out.Notice("utterance_cut", f"speech cut after {seconds:g} s"))

    async def _commit(self, now: int) -> list[TurnAction]:
        """A client's commit, after every transcript of the audio before it: end the turn."""
        spoke, self._spoke_since_commit = self._spoke_since_commit, False
        if self.turns.user is UserState.SILENT:
            if not spoke:  # nothing was said: an empty turn (else it has ended already)
                await self.outbox.emit(out.Notice(code="ignored.no_words", message=""))
            return []
        return self.turns.feed(turn.CommitTurn(), now)

    async def _act(
        self, action: TurnAction, now: int, then: TurnAction | None = None
    ) -> list[TurnAction]:
        """Carry out one turn-taking decision (``then``: the one after it); returns what
        turn-taking says to that."""
        log.debug("%s: %s by rule %s", self.id, type(action).__name__, action.rule)
        voice = self.voice
        match action:
            case turn.StartOfTurn(start=start):  # a barge-in is StartOfTurn, Interrupt
                cut = then.generation if isinstance(then, turn.Interrupt) else None
                await self.outbox.emit(out.UserTurnStarted(start, interrupts=cut))
            case turn.EndOfTurn(text=text, start=start, end=end, rule=rule):
                await self.outbox.emit(out.UserTurn(text, start, end, rule=rule))
                if not self.answer_turns:
                    self._unanswered = text
                    return []
                answers, self._marks = self._marks | {"end_of_turn": self.clock.now()}, {}
                return self._started(self.replies.start(voice, text=text, answers=answers), now)
            case turn.Interrupt(generation=generation, rule=rule):
                await self.replies.interrupt(generation, rule)
            case turn.ResumeBot(generation=generation):
                rest = self.replies.unheard.pop(generation, [])
                return self._started(self.replies.start(voice, plans=rest), now) if rest else []
            case turn.ReAnswer(text=text):
                return self._started(self.replies.start(voice, text=text), now)
            case turn.IdlePrompt(count=count):
                return self._started(self.replies.start(voice, prompt=count), now)
            case turn.HangUp(reason=reason):
                await self._end(reason)
            case turn.UtteranceIgnored(text=text, reason=reason, rule=rule):
                await self.outbox.emit(out.Notice(f"ignored.{reason}", text, rule=rule))
            case turn.AskEndOfTurn() if self.turn_asker is not None:
                self.turn_asker.ask(action)
            case turn.EndSpeech(pause=pause, until=until):  # never waits: else the VAD ends it
                with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                    ask = EndSpeechAt(session_id=self.id, sample=pause, until=until)
                    self.inbound.send_nowait(ask)
        return []

    def _started(self, run: ReplyRun, now: int) -> list[TurnAction]:
        return self.turns.feed(turn.ReplyStarted(run.generation, run.kind), now)

    async def _interrupt_now(self, now: int, generation: int | None = None) -> list[TurnAction]:
        if generation is None:
            generation = self.playout.buffer.playing
        if generation is None:
            return []
        played = self.playout.buffer.played_samples(generation)
        await self.replies.interrupt(generation)
        return self.turns.feed(turn.PlayoutFinished(generation, played), now)

    async def _finished(self, report: Heard, now: int) -> list[TurnAction]:
        actions = self.turns.feed(
            turn.PlayoutFinished(report.generation, report.samples_played), now
        )
        for then in await self.replies.finished(report):
            match then:
                case SendDigits(digits=digits):
                    await self._key(digits)
                case EndCall(reason=reason):
                    await self._end(reason)
                case Transfer(target=target):
                    if not target.strip():
                        actions += await self._failed(target, "no_target", now)
                    elif self.transfers.start(target) is not None:
                        await self.outbox.emit(out.TransferRequested(target=target))
                    else:
                        log.info("%s: a transfer is under way already", self.id)
        return actions

    async def _key(self, digits: str) -> None:
        """A reply's digits, checked, to the transport to key."""
        try:
            keys = check_digits(digits)
        except ValueError as error:
            await self._keys_failed(str(error))
            return
        if not (isinstance(self.sink, out.DigitSink) and self.sink.keys_digits):
            await self._keys_failed("unsupported")  # /v1/realtime, Twilio media streams
            return
        await self.outbox.emit(out.DigitsRequested(digits=keys))

    async def _keys_failed(self, reason: str) -> None:
        log.info("%s: digits not sent: %s", self.id, reason)
        await self.outbox.emit(out.Notice("dtmf_failed", reason))

    async def _transferred(
        self, transfer: PendingTransfer | None, ok: bool, reason: str, now: int
    ) -> list[TurnAction]:
        """A transfer's outcome: the call ends (``"transferred"``), or the agent says it could
        not and the call goes on. ``None``: no transfer waited (a stale outcome): nothing."""
        if transfer is None or self.ended is not None:
            return []
        if ok:
            await self._end("transferred")
            return []
        return await self._failed(transfer.target, reason, now)

    async def _failed(self, target: str, reason: str, now: int) -> list[TurnAction]:
        """A transfer did not happen: the client is told, and the agent says so in words."""
        log.info("%s: transfer failed: %s", self.id, reason)
        await self.outbox.emit(out.Notice("transfer_failed", reason))
        failed = Transfer(target=target)
        return self._started(self.replies.start(self.voice, failed=failed, reason=reason), now)

    # -- the playout's side -------------------------------------------------------------------

    async def _send_frame(self, frame: AudioFrame) -> None:
        generation = frame.generation
        assert generation is not None
        run = self.replies.live.get(generation)
        if self.echo is not None:
            restart = run is None or run.frames == 0
            at = self.input.now()
            self.echo.push_reference(frame.pcm, frame.sample_rate, at, restart=restart)
        await self.outbox.audio(generation, frame.pcm)
        if run is None:
            return
        played = await self.replies.sent(run, frame.num_samples)
        if run.frames == 1:
            await self._signal(turn.PlayoutStarted(generation))
        elif run.frames % 10 == 1:
            await self._signal(turn.PlayoutProgress(generation, played, run.spoken.played(played)))

    async def _on_heard(self, report: Heard) -> None:
        """The playout's report that a reply played to its end (in the playout's task)."""
        await self._signal(ReplyHeard(report))

    async def _end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            await self.outbox.emit(out.CallEnded(reason=reason))


def _undecided(run: ReplyRun) -> None:
    """A finished call's replies: nobody to wake (:meth:`Session._let_go`)."""


def _nothing() -> None:
    """A finished call's outbox: nothing left to stop (:meth:`Session._let_go`)."""


async def _no_expiry(number: int) -> None:
    """A finished call's transfer: nobody to tell (:meth:`Session._let_go`)."""
