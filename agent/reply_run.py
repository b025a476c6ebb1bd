"""One bot reply as an object, from its start to what the caller heard of it.

A :class:`ReplyRun` owns a reply's :class:`~agent.reply.Speaker` (and so the text it spoke, with
word and mark timings, and the speech plans it spoke them with), the frames sent of it, the
latency marks of the turn it answers, and how it must end (cut at the length limit, or a hang-up
or a transfer once it has played: the caller hears "let me put you through" first), and whether
it failed (a speech engine failed, or its model did and the agent said its fallback: either
way the client is told ``reply_failed`` once what was said of it has played, before the end of
its audio). Its steps
are the reply's life as the session sees it: :meth:`sent` after each frame goes out (the SSML
marks it reached), :meth:`latency` at its first frame,
:meth:`heard` and :meth:`rest` when it stops (what was heard, and the unheard rest as plans
that keep their SSML prosody and emotion, for a resume).

:class:`Replies` holds the session's runs by generation: those under way, the text of the last
few (a client may truncate one after it ended), and the unheard rest of interrupted ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

from agent.dialogue.decision import CallAction, EndCall, Say, SendDigits, Transfer
from agent.metrics import METRICS
from agent.reply import ReplyPart, ReplyShape, ReplyVoice, Responder, Speaker, SpokenText
from agent.reply_limit import ReplyCap, TokenCap, capped
from agent.session_events import AgentText, Interrupted, MarkReached, Notice, TurnLatency
from agent.session_outbox import AudioDone, SessionOutbox
from agent.turn_types import ReplyKind
from pipeline.clock import WallClock
from pipeline.errors import ClientError, ServerError
from pipeline.playout import Heard, Playout, text_end
from pipeline.runtime import SessionRuntime
from voices.engine import SpeechPlan, TTSEngine

log = logging.getLogger("voxline.session")

#: replies whose text is kept after they end, for a client's late truncate
RECENT_REPLIES = 8


@dataclass
class ReplyRun:
    """One reply (a generation) while the session tracks it."""

    generation: int
    kind: ReplyKind
    speaker: Speaker
    #: wall times (the session's clock) of the turn it answers: ``speech_end``, ``asr_final``,
    #: ``end_of_turn``; empty for a reply that answers no turn
    answers: dict[str, float] = field(default_factory=dict)
    #: frames sent to the transport
    frames: int = 0
    #: what to do once it has played: hang up, or transfer the call (the dialogue's first
    #: ``EndCall`` or ``Transfer`` in it; an interrupted reply does neither)
    then: EndCall | Transfer | None = None
    #: digits to key once it has played, before ``then`` (its ``SendDigits``, in order)
    keys: list[SendDigits] = field(default_factory=list)
    #: the responder has decided what to say (its first part came, or it ended): a keyed
    #: turn's digits after this one are read by the rule the decision left (agent.session)
    decided: bool = False
    #: why its model failed, when the agent said its fallback instead (``""``: it did not)
    fallback: str = ""
    #: why it could not be made (a speech engine failed): what is safe to tell the client
    failure: str = ""
    #: how many of the spoken text's marks have been reported
    _marks: int = 0
    #: the idle prompt it is (from 1; 0: it is no idle prompt)
    idle: int = 0

    @property
    def spoken(self) -> SpokenText:
        return self.speaker.spoken

    @property
    def cut(self) -> bool:
        """Cut at a length limit: the dialogue hears of it as interrupted."""
        return self.spoken.cut

    def sent(self, played: int) -> list[MarkReached]:
        """A frame went out; ``played`` samples of the reply have now been sent. Returns the
        SSML marks reached (a mark fires when playout reaches its sample)."""
        self.frames += 1
        return self._marks_before(played, inclusive=False)

    def finished(self, report: Heard) -> list[MarkReached]:
        """The reply played to its end: the marks at its very end fire too."""
        return self._marks_before(report.samples_played, inclusive=True)

    def _marks_before(self, played: int, *, inclusive: bool) -> list[MarkReached]:
        marks = self.spoken.marks
        reached = []
        rate = self.speaker.playout.buffer.sample_rate
        while self._marks < len(marks):
            sample, name = marks[self._marks]
            if sample > played or (sample == played and not inclusive):
                break
            reached.append(MarkReached(self.generation, name, round(1000 * sample / rate, 1)))
            self._marks += 1
        return reached

    def latency(self, out: float) -> dict[str, float]:
        """Milliseconds between the marks of the turn it answers and its first audio out (at
        ``out``): ``speech_end->asr_final``, ..., ``first_audio->audio_out`` and ``total``.
        Empty for a reply that answers no turn."""
        if not self.answers:
            return {}
        times = self.speaker.times
        points = [
            ("speech_end", self.answers.get("speech_end")),
            ("asr_final", self.answers.get("asr_final")),
            ("end_of_turn", self.answers.get("end_of_turn")),
            ("first_text", times.first_text),
            ("first_audio", times.first_audio),
            ("audio_out", out),
        ]
        known = [(name, at) for name, at in points if at is not None]
        stages = {
            f"{a}->{b}": round(1000 * (tb - ta), 1)
            for (a, ta), (b, tb) in itertools.pairwise(known)
        }
        stages["total"] = round(1000 * (out - known[0][1]), 1)
        return stages

    def played_to(self, report: Heard, played: int) -> Heard:
        """``report`` with the far side's count of samples played, when that is fewer."""
        if played >= report.samples_played:
            return report
        end = text_end(self.spoken.words, played)
        return dataclasses.replace(report, samples_played=played, text_end=end)

    def heard(self, report: Heard) -> str:
        if self.speaker.mode == "text":
            return self.spoken.text.strip()  # nothing played: all of it was shown
        return self.spoken.heard(report.text_end)

    def rest(self, report: Heard) -> list[SpeechPlan]:
        return self.spoken.rest(report.text_end)


class Replies:
    """A call's replies: it starts them as generations of the call's runtime, tracks those
    under way by generation, and ends them (played out, or interrupted), telling the
    dialogue what was heard and the client what happened through the outbox. It keeps the
    text of the last few (a client may truncate one after it ended) and the unheard rest of
    interrupted ones (for a resume)."""

    def __init__(
        self,
        tts: TTSEngine,
        playout: Playout,
        clock: WallClock,
        responder: Responder,
        outbox: SessionOutbox,
        *,
        max_chars: int | None = None,
        on_decided: Callable[[ReplyRun], None] = lambda run: None,
    ) -> None:
        self.tts, self.playout, self.clock = tts, playout, clock
        self.responder, self.outbox, self.max_chars = responder, outbox, max_chars
        #: called once per reply, when :attr:`ReplyRun.decided` becomes true (never waits)
        self.on_decided = on_decided
        #: the call's runtime, while it runs
        self.runtime: SessionRuntime | None = None
        self.live: dict[int, ReplyRun] = {}
        self._recent: dict[int, SpokenText] = {}
        #: what interrupted replies had left to say, for a resume
        self.unheard: dict[int, list[SpeechPlan]] = {}
        #: how replies come out unless :meth:`start` is told otherwise
        self.shape = ReplyShape()

    def start(
        self,
        voice: ReplyVoice,
        *,
        text: str | None = None,
        prompt: int = 0,
        plans: list[SpeechPlan] | None = None,
        answers: dict[str, float] | None = None,
        failed: Transfer | None = None,
        reason: str = "",
        said: tuple[ReplyPart, ...] = (),
        shape: ReplyShape | None = None,
    ) -> ReplyRun:
        """A reply to ``text``, or idle prompt ``prompt`` (from 1), or ``plans`` said again, or
        what to say about transfer ``failed`` (for ``reason``), or the parts ``said`` as they
        are (the server's goodbye: :class:`~agent.session_control.Farewell`), else the
        greeting, spoken with ``voice``; ``answers``: the turn's latency marks; ``shape``: how it
        comes out (``None``: :attr:`shape`)."""
        runtime = self.runtime
        assert runtime is not None
        generation = runtime.generations.latest + 1  # the id start_generation allocates
        kind: ReplyKind = "answer" if text is not None else "prompt" if prompt else "greeting"
        if failed is not None or said:
            kind = "prompt"
        emit = self.outbox.emit
        shape = self.shape if shape is None else shape
        speaker = Speaker(
            generation,
            self.tts,
            self.playout,
            clock=self.clock,
            voice=voice,
            mode=shape.mode,
            on_text=lambda delta: emit(AgentText(generation=generation, delta=delta)),
            on_action=lambda action: self._action(run, action),
            on_warning=lambda message: emit(Notice(code="ssml_warning", message=message)),
        )
        run = ReplyRun(generation, "resume" if plans else kind, speaker, answers or {})
        run.idle = 0 if plans or said or failed is not None or text is not None else prompt
        self.live[generation] = run
        self._recent[generation] = run.spoken
        for kept in (self._recent, self.unheard):
            while len(kept) > RECENT_REPLIES:
                del kept[min(kept)]

        async def speak(gen: int) -> None:
            try:
                if plans:
                    self._decided(run)
                    await speaker.say_plans(plans)
                else:
                    parts = (
                        _given(said)
                        if said
                        else self._parts(run, text, prompt, failed, reason, shape.max_tokens)
                    )
                    await speaker.speak(self._deciding(run, parts))
            except (ServerError, ClientError) as error:
                log.warning("reply %d failed: %s", gen, type(error).__name__)
                public = str(error) if isinstance(error, ClientError) else "no reply was made"
                run.failure = public  # told when what was said of it has played
                self.playout.finish(gen)
            finally:  # failed or cancelled before deciding: nothing more will be decided
                self._decided(run)
                speaker.on_action = None  # ReplyRun -> Speaker -> on_action over run: a cycle

        assert runtime.start_generation(speak, name=run.kind) == generation
        return run

    async def _deciding(
        self, run: ReplyRun, parts: AsyncGenerator[ReplyPart, None]
    ) -> AsyncGenerator[ReplyPart, None]:
        """``parts``, marking ``run`` decided at the first."""
        async with aclosing(parts) as stream:
            async for part in stream:
                self._decided(run)
                yield part

    def _decided(self, run: ReplyRun) -> None:
        if not run.decided:
            run.decided = True
            self.on_decided(run)

    async def sent(self, run: ReplyRun, samples: int) -> int:
        """A frame of ``samples`` of ``run`` went out; returns how many of its samples are out."""
        played = self.playout.buffer.played_samples(run.generation) + samples
        for mark in run.sent(played):
            await self.outbox.emit(mark)
        if run.frames == 1 and (stages := run.latency(self.clock.now())):
            METRICS.observe_turn(stages)
            await self.outbox.emit(TurnLatency(generation=run.generation, stages=stages))
        return played

    async def interrupt(self, generation: int, rule: str = "") -> None:
        """Barge-in: cancel ``generation``, clear its audio down to the client, keep what was
        heard (the far side's count of samples played, where it has one)."""
        assert self.runtime is not None
        self.runtime.cancel_generation(generation)
        reports = self.playout.clear(generation)
        far = await self.outbox.clear_audio(generation)
        for report in reports:
            run = self.live.pop(report.generation, None)
            heard = ""
            if run is not None:
                if far is not None and report.generation == generation:
                    report = run.played_to(report, far)
                heard = run.heard(report)
                self.unheard[report.generation] = run.rest(report)
                self.responder.heard(report.generation, heard, interrupted=True)
            METRICS.interrupted()
            played_ms = 1000 * report.samples_played / self.playout.buffer.sample_rate
            await self.outbox.emit(Interrupted(report.generation, heard, played_ms, rule=rule))

    async def finished(self, report: Heard) -> list[CallAction]:
        """A reply played to its end: the dialogue hears what was said (a reply cut at the
        length limit as interrupted), the sink that its audio is complete. Returns what to
        carry out now, in order: the digits it keys, then its hang-up or transfer."""
        run = self.live.pop(report.generation, None)
        if run is not None:
            for mark in run.finished(report):
                await self.outbox.emit(mark)
            self.responder.heard(report.generation, run.heard(report), interrupted=run.cut)
            if run.failure or run.fallback:  # before its audio.end: a Realtime response fails
                model = f"the language model failed ({run.fallback}): the fallback was said"
                message = run.failure or model
                await self.outbox.emit(Notice(code="reply_failed", message=message))
        spoken = run is None or run.speaker.mode == "audio"
        await self.outbox.emit(AudioDone(report.generation, spoken=spoken))
        if run is None:
            return []
        return [*run.keys, *([run.then] if run.then is not None else [])]

    def said(self, generation: int) -> SpokenText | None:
        """What recent reply ``generation`` said (``None``: not a recent reply)."""
        return self._recent.get(generation)

    def truncated(self, generation: int, played: int) -> str | None:
        """The client played ``generation`` to sample ``played``: the dialogue hears the rest
        was not heard. Returns the text heard (``None``: not a recent reply)."""
        spoken = self._recent.get(generation)
        if spoken is None:
            return None
        heard = spoken.heard(text_end(spoken.words, played))
        self.responder.heard(generation, heard, interrupted=True)
        return heard

    def _parts(
        self,
        run: ReplyRun,
        text: str | None,
        prompt: int,
        failed: Transfer | None,
        reason: str,
        max_tokens: int | None,
    ) -> AsyncGenerator[ReplyPart, None]:
        if text is not None:
            parts = _noting_fallback(run, self.responder.respond(text, generation=run.generation))
        elif failed is not None:
            parts = self.responder.transfer_failed(failed.target, reason)
        else:
            parts = self.responder.prompt("idle" if prompt else "greeting", prompt)
        limit = self.max_chars
        if limit is not None:
            parts = capped(parts, ReplyCap(limit), lambda: self._cut(run, f"{limit} characters"))
        if max_tokens is not None:
            parts = capped(
                parts, TokenCap(max_tokens), lambda: self._cut(run, f"{max_tokens} tokens")
            )
        return parts

    async def _cut(self, run: ReplyRun, limit: str) -> None:
        run.spoken.cut = True
        await self.outbox.emit(Notice(code="reply_cut", message=f"reply cut at {limit}"))

    async def _action(self, run: ReplyRun, action: CallAction) -> None:
        if isinstance(action, SendDigits):
            if run.then is None:  # none after a hang-up or transfer: the call is over
                run.keys.append(action)
        elif run.then is None:
            run.then = action


async def _noting_fallback(
    run: ReplyRun, parts: AsyncGenerator[ReplyPart, None]
) -> AsyncGenerator[ReplyPart, None]:
    """``parts``; a fallback among them (the model failed) is noted in ``run``."""
    async with aclosing(parts) as stream:
        async for part in stream:
            if isinstance(part, Say) and part.fallback:
                run.fallback = part.fallback
            yield part


async def _given(parts: tuple[ReplyPart, ...]) -> AsyncGenerator[ReplyPart, None]:
    for part in parts:
        yield part
