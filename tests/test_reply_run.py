"""A reply as an object: its SSML marks reported as playout reaches them, and the unheard rest
of an interrupted reply said again with its SSML prosody and emotion.

Real Piper synthesis; the playout runs on a fake clock, so frames go out as the test says.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Literal

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from agent.dialogue.decision import Say
from agent.reply import ReplyPart, ReplyVoice
from agent.reply_run import Replies
from agent.session_events import Interrupted, MarkReached, SessionEvent
from agent.session_outbox import SessionOutbox
from pipeline.clock import FakeClock
from pipeline.events import AudioFrame
from pipeline.playout import Heard, Playout
from pipeline.runtime import SessionRuntime
from voices.engine import Prosody, SpeechChunk, SpeechPlan
from voices.piper_engine import PiperEngine

pytestmark = pytest.mark.anyio

SSML = (
    '<speak><prosody rate="slow">Your table is booked <mark name="booked"/> for eight '
    'people,</prosody> <express-as style="happy">and we look forward <mark name="end"/> to '
    "seeing you all tomorrow evening.</express-as></speak>"
)


class Recording:
    """The real engine; keeps every plan it was asked to say, and lets the test wait for its
    next chunk (:meth:`Call.play` never runs the clock ahead of synthesis)."""

    def __init__(self, engine: PiperEngine) -> None:
        self.engine = engine
        self.plans: list[SpeechPlan] = []
        self.running = 0
        self.changed = anyio.Event()

    @property
    def sample_rate(self) -> int:
        return self.engine.sample_rate

    async def synthesize(
        self, text: str | SpeechPlan, prosody: Prosody | None = None
    ) -> AsyncGenerator[SpeechChunk, None]:
        assert isinstance(text, SpeechPlan)
        self.plans.append(text)
        self.running += 1
        try:
            async with aclosing(self.engine.synthesize(text, prosody)) as chunks:
                async for chunk in chunks:
                    yield chunk
                    self._changed()
        finally:
            self.running -= 1
            self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


class Said:
    """A responder that says one SSML reply."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, str, bool]] = []

    async def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        yield Say(SSML, ssml=True)

    async def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        yield Say("Hello.")

    async def transfer_failed(self, target: str, reason: str) -> AsyncGenerator[ReplyPart, None]:
        yield Say("Sorry.")

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        self.reports.append((generation, text, interrupted))


class Sink:
    output_rate = 16000

    def __init__(self) -> None:
        self.events: list[SessionEvent] = []

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        pass

    async def end_audio(self, generation: int) -> None:
        pass

    async def clear_audio(self, generation: int) -> None:
        return None

    async def send_event(self, event: SessionEvent) -> None:
        self.events.append(event)


class Call:
    def __init__(self, engine: PiperEngine) -> None:
        self.clock = FakeClock()
        self.tts = Recording(engine)
        self.sink = Sink()
        self.responder = Said()
        self.playout = Playout("s", 16000, self.clock, lead=0.0, on_heard=self._heard)
        self.outbox = SessionOutbox(self.sink, lambda: None)
        self.replies = Replies(self.tts, self.playout, self.clock, self.responder, self.outbox)

    async def _heard(self, report: Heard) -> None:
        await self.replies.finished(report)  # as the session's control loop does

    async def send(self, frame: AudioFrame) -> None:
        run = self.replies.live.get(frame.generation or 0)
        if run is not None:
            await self.replies.sent(run, frame.num_samples)

    async def play(self, seconds: float) -> None:
        """Let ``seconds`` of reply audio play, 100 ms at a time (the playout sends the frames
        each step makes due at once), waiting for synthesis when none is ready."""
        for _ in range(round(seconds / 0.1)):
            await wait_all_tasks_blocked()
            while not self.playout.buffer.buffered_samples and self.tts.running:
                await self.tts.changed.wait()
                await wait_all_tasks_blocked()
            self.clock.advance(0.1)
        await wait_all_tasks_blocked()


@pytest.fixture
async def call(tts_engine: PiperEngine) -> AsyncIterator[Call]:
    call = Call(tts_engine)
    async with SessionRuntime("s") as runtime:
        call.replies.runtime = runtime
        runtime.start_task("outbox", call.outbox.opened())
        runtime.start_task("playout", lambda: call.playout.run(call.send))
        yield call
        runtime.cancel()


def marks(events: list[SessionEvent]) -> list[MarkReached]:
    return [e for e in events if isinstance(e, MarkReached)]


async def test_marks_are_reported_when_playout_reaches_them_with_their_time(call: Call) -> None:
    with anyio.fail_after(60):
        await marks_in_a_reply(call)


async def marks_in_a_reply(call: Call) -> None:
    run = call.replies.start(ReplyVoice(), text="Book it")
    await call.play(1.0)
    early = [m.name for m in marks(call.sink.events)]
    played = call.playout.buffer.played_samples(run.generation)
    while call.replies.live:
        await call.play(0.5)
    spoken = run.spoken
    positions = {name: sample for sample, name in spoken.marks}
    assert set(positions) == {"booked", "end"}
    assert early == [n for n in ("booked", "end") if positions[n] < played]  # none early
    reached = marks(call.sink.events)
    assert [m.name for m in reached] == ["booked", "end"]
    assert all(m.generation == run.generation for m in reached)
    assert [m.at_ms for m in reached] == [round(positions[n] / 16, 1) for n in ("booked", "end")]
    assert 0 < reached[0].at_ms < reached[1].at_ms < 1000 * spoken.samples / 16000


async def test_an_interrupted_reply_resumes_with_its_prosody_and_emotion(call: Call) -> None:
    with anyio.fail_after(60):
        await resumed_reply(call)


async def resumed_reply(call: Call) -> None:
    run = call.replies.start(ReplyVoice(), text="Book it")
    await call.play(1.2)
    await call.replies.interrupt(run.generation, "B1")
    await wait_all_tasks_blocked()  # the outbox hands it on
    [stopped] = [e for e in call.sink.events if isinstance(e, Interrupted)]
    assert (stopped.generation, stopped.rule) == (run.generation, "B1")
    assert 0 < len(stopped.heard_text) < len(run.spoken.text)
    rest = call.replies.unheard[run.generation]
    said = "".join(plan.text for plan in rest)
    assert said.strip()
    assert run.spoken.text.endswith(said.strip())
    assert stopped.heard_text.split()[-1] not in said.split()[:1]  # not said twice
    original = call.tts.plans[0]
    by_text = {segment.text.strip(): segment for segment in original.segments}
    for plan in rest:
        for segment in plan.segments:
            whole = next(s for t, s in by_text.items() if segment.text.strip() in t)
            assert (segment.prosody, segment.style) == (whole.prosody, whole.style)
    assert any(s.style is not None and s.style.emotion == "happy" for p in rest for s in p.segments)
    again = call.replies.start(ReplyVoice(), plans=rest)
    assert again.kind == "resume"
    while call.replies.live:
        await call.play(0.5)
    assert call.tts.plans[1:] == rest  # said as it was meant, not as plain text
    assert call.responder.reports[-1] == (again.generation, said.strip(), False)
