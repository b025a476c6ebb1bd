"""A dialogue's transfer through the session: carried out once the reply announcing it has
played, then the transport's outcome: the call ends ``transferred``, or the agent says it could
not and the call goes on. No outcome in time is a failure (``timeout``), on the injected clock.

The dialogue is a scripted responder; the VAD, ASR and TTS are the real embedded models.
Transports' own tests (tests/test_transfer_endpoints.py) drive the real dialogue end to end.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import anyio
import pytest

from agent.dialogue.decision import Say, Transfer
from agent.reply import ReplyPart
from agent.session import Models, Session, SessionEvent, SessionSettings
from agent.session_events import AgentText, CallEnded, Notice, TransferRequested
from agent.session_transfer import TransferWait
from agent.turns import TurnConfig
from pipeline.clock import FakeClock
from tests.test_session import Recorder

pytestmark = pytest.mark.anyio


@dataclass
class Desk:
    """Puts the caller through when asked for the operator; says so when it fails."""

    announce: str = "Let me put you through."
    target: str = "operator"
    failures: list[tuple[str, str]] = field(default_factory=list)

    async def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        if "operator" in text.lower():
            if self.announce:
                yield Say(self.announce)
            yield Transfer(self.target)
        else:
            yield Say("Hello again.")

    async def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        if kind == "idle":
            yield Say("Still there?")

    async def transfer_failed(self, target: str, reason: str) -> AsyncGenerator[ReplyPart, None]:
        self.failures.append((target, reason))
        yield Say("Sorry, nobody is free.")

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        pass


class Exchange(Recorder):
    """A sink whose transport answers each transfer with ``answer`` (``None``: never)."""

    def __init__(self, answer: tuple[bool, str] | None) -> None:
        super().__init__()
        self.answer = answer
        self.session: Session | None = None

    async def send_event(self, event: SessionEvent) -> None:
        await super().send_event(event)
        if isinstance(event, TransferRequested) and self.answer is not None:
            assert self.session is not None
            await self.session.transfer_result(*self.answer)

    def texts(self) -> list[str]:
        return [e.delta for e in self.events(AgentText) if isinstance(e, AgentText)]


def settings() -> SessionSettings:
    return SessionSettings(turns=TurnConfig(idle_timeout_ms=0), greeting=False)


async def call(
    models: Models,
    desk: Desk,
    sink: Exchange,
    steps: Callable[[Session], Awaitable[None]],
    *,
    config: SessionSettings | None = None,
    clock: FakeClock | None = None,
) -> Session:
    session = sink.session = Session(models, desk, sink, config or settings(), clock=clock)
    with sink.deadline(60, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await session.started.wait()
            await steps(session)
            session.end_input()
    return session


async def test_a_refused_transfer_is_said_after_the_announcement_and_the_call_goes_on(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    desk, sink = Desk(), Exchange((False, "busy"))

    async def steps(session: Session) -> None:
        await session.user_text("The operator, please.")
        await sink.wait_for(lambda: ("end", 2) in sink.log)  # the failure, said
        await session.user_text("Hi.")
        await sink.wait_for(lambda: ("end", 3) in sink.log)  # and a next turn answered

    models = Models(vad_runner, asr_runner, tts_engine)  # type: ignore[arg-type]
    session = await call(models, desk, sink, steps)
    assert session.ended is None
    assert desk.failures == [("operator", "busy")]
    assert sink.texts() == ["Let me put you through.", "Sorry, nobody is free.", "Hello again."]
    log = [(k, v) for k, v in sink.log if k != "audio"]
    asked = log.index(("event", TransferRequested("operator")))
    assert log.index(("end", 1)) < asked  # "let me put you through" was heard first
    assert ("event", Notice("transfer_failed", "busy")) in log[asked:]
    assert all(len(sink.audio[g]) > 16000 for g in (1, 2, 3))  # each reply was spoken


async def test_an_accepted_transfer_ends_the_call_as_transferred(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    desk, sink = Desk(), Exchange((True, ""))

    async def steps(session: Session) -> None:
        await session.user_text("Operator.")
        await sink.wait_for(lambda: bool(sink.events(CallEnded)))

    models = Models(vad_runner, asr_runner, tts_engine)  # type: ignore[arg-type]
    session = await call(models, desk, sink, steps)
    assert session.ended == "transferred"
    assert sink.events(CallEnded) == [CallEnded("transferred")]
    assert desk.failures == []


async def test_a_transfer_with_no_target_fails_at_once_without_asking_the_transport(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    desk, sink = Desk(announce="", target=" "), Exchange((True, ""))

    async def steps(session: Session) -> None:
        await session.user_text("Operator.")
        await sink.wait_for(lambda: ("end", 2) in sink.log)

    models = Models(vad_runner, asr_runner, tts_engine)  # type: ignore[arg-type]
    session = await call(models, desk, sink, steps)
    assert session.ended is None
    assert desk.failures == [(" ", "no_target")]
    assert sink.events(TransferRequested) == []


async def test_a_transfer_without_an_outcome_fails_at_its_deadline_on_the_sessions_clock(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    """The announcement is silent here, so nothing waits on the fake clock but the deadline."""
    clock, desk, sink = FakeClock(), Desk(announce=""), Exchange(None)
    config = SessionSettings(
        turns=TurnConfig(idle_timeout_ms=0), greeting=False, transfer_timeout=15.0
    )

    async def steps(session: Session) -> None:
        await session.user_text("Operator.")
        await sink.wait_for(lambda: bool(sink.events(TransferRequested)))
        await anyio.wait_all_tasks_blocked()
        clock.advance(14.9)
        await anyio.wait_all_tasks_blocked()
        assert desk.failures == []  # not yet
        clock.advance(0.1)
        await sink.wait_for(lambda: "Sorry, nobody is free." in sink.texts())

    models = Models(vad_runner, asr_runner, tts_engine)  # type: ignore[arg-type]
    session = await call(models, desk, sink, steps, config=config, clock=clock)
    assert session.ended is None
    assert desk.failures == [("operator", "timeout")]
    assert Notice("transfer_failed", "timeout") in sink.events(Notice)


async def test_the_deadline_waits_for_the_transfer_it_was_set_for() -> None:
    """An outcome before the deadline cancels it; a late expiry of an old transfer is stale."""
    clock = FakeClock()
    expired: list[int] = []

    async def expire(number: int) -> None:
        expired.append(number)
        assert wait.settle(number) is not None

    wait = TransferWait(clock, 10.0, expire)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait.run)
            first = wait.start("desk")
            assert first is not None
            assert wait.start("other") is None  # one at a time
            await anyio.wait_all_tasks_blocked()
            clock.advance(5)
            assert wait.settle() == first  # the transport answered in time
            await anyio.wait_all_tasks_blocked()
            clock.advance(10)
            await anyio.wait_all_tasks_blocked()
            assert expired == []
            second = wait.start("desk")
            assert second is not None
            assert second.number == 2
            await anyio.wait_all_tasks_blocked()
            clock.advance(10)
            await anyio.wait_all_tasks_blocked()
            assert expired == [2]
            assert wait.pending is None
            assert wait.settle(1) is None
            tg.cancel_scope.cancel()
