"""Keypad digits through a whole session with the real models: a key stops the bot, digits
become a turn (by length, terminator or pause), and the turn is answered.

The dialogue is a scripted responder that says how its digits are collected (the session's
collaborator, faked for this unit); the VAD, ASR and TTS are the real embedded models. The
pause that ends a string is counted on the caller's audio, so the test sends silence (as fast
as it goes) instead of waiting.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Literal

import anyio
import pytest

from agent.dialogue.decision import Say
from agent.digits import Keypad, KeypadRule
from agent.reply import ReplyPart
from agent.session import Models, Session
from agent.session_events import AgentText, Interrupted, UserTurn
from pipeline.errors import ProtocolError
from tests.audio import silence
from tests.test_session import Recorder, settings

pytestmark = pytest.mark.anyio

GREETING = (
    "Welcome to the help line. For sales, press 1. For support, press 2. "
    "For anything else, stay on the line and an operator will be with you shortly."
)


@dataclass
class Menu:
    """Answers a keyed turn with its digits; collects digits by ``rule``."""

    rule: KeypadRule
    turns: list[str] = field(default_factory=list)

    async def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        self.turns.append(text)
        yield Say(f"You keyed {text.digits}." if isinstance(text, Keypad) else "Pardon?")

    async def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        if kind == "greeting":
            yield Say(GREETING)

    async def transfer_failed(self, target: str, reason: str) -> AsyncGenerator[ReplyPart, None]:
        yield Say("No transfer.")

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        pass

    def keypad(self) -> KeypadRule:
        return self.rule


def call(models: Models, menu: Menu, sink: Recorder) -> Session:
    return Session(models, menu, sink, settings())


async def test_a_key_stops_the_greeting_and_a_menu_choice_is_answered_at_once(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    menu, sink = Menu(KeypadRule(max_length=1)), Recorder()
    session = call(Models(vad_runner, asr_runner, tts_engine), menu, sink)  # type: ignore[arg-type]
    with sink.deadline(60, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await sink.wait_for(lambda: len(sink.audio.get(1, b"")) > 16000)  # half a second
            await session.dtmf("2")
            await sink.wait_for(lambda: ("end", 2) in sink.log)
            session.end_input()
    [interrupted] = sink.events(Interrupted)
    assert isinstance(interrupted, Interrupted)
    assert interrupted.generation == 1
    assert 0 < len(interrupted.heard_text) < len(GREETING)
    [turn] = sink.events(UserTurn)
    assert isinstance(turn, UserTurn)
    assert (turn.text, turn.rule, turn.keypad) == ("2", "K3", True)
    assert menu.turns == ["[keypad] 2"]
    texts = [e.delta for e in sink.events(AgentText) if isinstance(e, AgentText)]
    assert texts[-1] == "You keyed 2."
    cleared = sink.log.index(("clear", 1))
    assert ("audio", 1) not in sink.log[cleared:]


async def test_digits_end_on_the_terminator_or_after_a_pause_in_the_callers_audio(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    menu, sink = Menu(KeypadRule(timeout_ms=500)), Recorder()
    session = call(Models(vad_runner, asr_runner, tts_engine), menu, sink)  # type: ignore[arg-type]
    pause = silence(1.0).tobytes()
    with sink.deadline(60, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await sink.wait_for(lambda: ("end", 1) in sink.log)
            for key in "0042#":
                await session.dtmf(key)
            await sink.wait_for(lambda: ("end", 2) in sink.log)
            await session.dtmf("7")
            await session.dtmf("*")
            for start in range(0, len(pause), 640):  # 20 ms frames, as fast as they go
                await session.push_audio(pause[start : start + 640])
            await sink.wait_for(lambda: ("end", 3) in sink.log)
            session.end_input()
    first, second = [e for e in sink.events(UserTurn) if isinstance(e, UserTurn)]
    assert (first.text, first.rule, first.keypad) == ("0042", "K1", True)
    assert (second.text, second.rule, second.keypad) == ("7*", "K4", True)
    # the pause after the last key, in the caller's samples (the keys' own positions are as
    # far apart as the moments they were taken, on the clock that the caller's audio keeps)
    assert second.end - second.start >= 500 * 16
    assert menu.turns == ["[keypad] 0042", "[keypad] 7*"]
    assert not sink.events(Interrupted)  # nothing was playing when the keys came


async def test_with_interrupts_off_a_key_lets_the_bot_finish_and_is_answered_after(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    menu, sink = Menu(KeypadRule(max_length=1, interrupts=False)), Recorder()
    session = call(Models(vad_runner, asr_runner, tts_engine), menu, sink)  # type: ignore[arg-type]
    with sink.deadline(60, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await sink.wait_for(lambda: len(sink.audio.get(1, b"")) > 16000)
            await session.dtmf("1")
            await sink.wait_for(lambda: ("end", 2) in sink.log)
            session.end_input()
    assert not sink.events(Interrupted)
    assert sink.log.index(("end", 1)) < sink.log.index(("audio", 2))
    assert menu.turns == ["[keypad] 1"]


@dataclass
class SlowMenu(Menu):
    """A menu whose choice "2" asks for a 6-digit code; it decides only once :attr:`go` is set,
    and hears (its :meth:`heard`) in the control loop's order."""

    go: anyio.Event = field(default_factory=anyio.Event)
    deciding: anyio.Event = field(default_factory=anyio.Event)
    heard_one: anyio.Event = field(default_factory=anyio.Event)

    async def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        if text == Keypad("2"):
            self.deciding.set()
            await self.go.wait()
            self.rule = KeypadRule(max_length=6)
        async for part in super().respond(text, generation=generation):
            yield part

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        self.heard_one.set()


async def test_keys_pressed_while_a_keyed_turn_is_decided_are_read_by_the_rule_it_leaves(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    menu, sink = SlowMenu(KeypadRule(max_length=1)), Recorder()
    session = call(Models(vad_runner, asr_runner, tts_engine), menu, sink)  # type: ignore[arg-type]
    with sink.deadline(60, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await sink.wait_for(lambda: ("end", 1) in sink.log)
            await session.dtmf("2")
            await menu.deciding.wait()
            for key in "004213":  # keyed ahead, while "2" is being decided
                await session.dtmf(key)
            await session.truncate(1, 0)  # the control loop has taken the keys once it hears
            await menu.heard_one.wait()
            menu.go.set()
            await sink.wait_for(lambda: ("end", 3) in sink.log)
            session.end_input()
    turns = [(e.text, e.rule) for e in sink.events(UserTurn) if isinstance(e, UserTurn)]
    assert turns == [("2", "K3"), ("004213", "K3")]
    assert menu.turns == ["[keypad] 2", "[keypad] 004213"]


async def test_a_key_that_is_not_a_dtmf_digit_is_refused_before_it_reaches_the_call(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    session = call(Models(vad_runner, asr_runner, tts_engine), Menu(KeypadRule()), Recorder())  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="not a DTMF digit"):
        await session.dtmf("x")
