"""A reply's digits through the session: checked, and handed to the transport
(``DigitsRequested``) once the reply that carries them has played, before its hang-up; bad
digits, and digits the transport cannot key (``dtmf_failed``), are a ``dtmf_failed`` notice
and the call goes on.

The dialogue is a scripted responder; the VAD, ASR and TTS are the real embedded models.
The transports' own tests (tests/test_send_dtmf_calls.py) drive the real dialogue end to end.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal

import anyio
import pytest

from agent.dialogue.decision import EndCall, Say, SendDigits
from agent.reply import ReplyPart
from agent.session import Models, Session, SessionEvent, SessionSettings
from agent.session_events import CallEnded, DigitsRequested, Notice
from agent.turns import TurnConfig
from tests.test_session import Recorder

pytestmark = pytest.mark.anyio


@dataclass
class Dialler:
    """Keys what the caller types after ``key``; ``bye`` keys 9 and hangs up."""

    async def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        if text.startswith("key "):
            yield Say("Keying it now.")
            for digits in text.removeprefix("key ").split():
                yield SendDigits(digits)
        elif text == "bye":
            yield Say("Goodbye.")
            yield SendDigits("9")
            yield EndCall("done")
            yield SendDigits("0")  # after the hang-up: never keyed
        else:
            yield Say("Hello again.")

    async def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        if kind == "greeting":
            yield Say("Hi.")

    async def transfer_failed(self, target: str, reason: str) -> AsyncGenerator[ReplyPart, None]:
        yield Say("No.")

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        pass


class Keypad(Recorder):
    """A sink whose transport keys digits (``keys``; else it is no ``DigitSink``, as the
    Realtime and Twilio sinks are not), but cannot key ``refuse`` (it says so, as SIP without
    telephone-event does)."""

    def __init__(self, refuse: str = "", *, keys: bool = True) -> None:
        super().__init__()
        self.refuse = refuse
        self.session: Session | None = None
        if keys:
            self.keys_digits = True

    async def send_event(self, event: SessionEvent) -> None:
        await super().send_event(event)
        if isinstance(event, DigitsRequested) and event.digits == self.refuse:
            assert self.session is not None
            await self.session.dtmf_failed("no telephone-event")

    def after(self, item: tuple[str, object]) -> list[tuple[str, object]]:
        log = [(k, v) for k, v in self.log if k != "audio"]
        return log[log.index(item) + 1 :]


def acted(sink: Keypad) -> int:
    """Digits keyed (asked for and not refused) and notices, so far."""
    keyed = [e for e in sink.events(DigitsRequested) if e != DigitsRequested(sink.refuse)]
    return len(keyed) + len(sink.events(Notice))


async def call(
    models: Models, sink: Keypad, *texts: str, ends: int, hangs_up: bool = False
) -> Session:
    """Type ``texts`` one by one, each once the reply before has played; until reply ``ends``
    has played (the greeting is 1), and the agent has hung up if it ``hangs_up``."""
    settings = SessionSettings(turns=TurnConfig(idle_timeout_ms=0))
    session = sink.session = Session(models, Dialler(), sink, settings)
    with sink.deadline(60, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await session.started.wait()
            await sink.wait_for(lambda: ("end", 1) in sink.log)
            for text in texts:  # each "key" string, and "bye"'s 9, is keyed or fails
                want = acted(sink) + max(1, len(text.split()) - 1)
                await session.user_text(text)
                await sink.wait_for(lambda: acted(sink) >= want)  # noqa: B023 (awaited here)
            await sink.wait_for(lambda: ("end", ends) in sink.log)
            await sink.wait_for(lambda: bool(sink.events(CallEnded)) or not hangs_up)
            session.end_input()
    return session


async def test_digits_go_to_the_transport_once_their_reply_has_played_in_order(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    sink = Keypad()
    models = Models(vad_runner, asr_runner, tts_engine)  # type: ignore[arg-type]
    session = await call(models, sink, "key 12# a*", ends=2)
    assert session.ended is None
    keyed = sink.after(("end", 2))  # "keying it now" was played first
    assert keyed[:2] == [
        ("event", DigitsRequested("12#")),
        ("event", DigitsRequested("A*")),  # checked: upper-cased
    ]


async def test_bad_digits_and_digits_the_transport_cannot_key_are_notices(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    sink = Keypad(refuse="55")
    models = Models(vad_runner, asr_runner, tts_engine)  # type: ignore[arg-type]
    session = await call(models, sink, "key 12x", "key 55", ends=3)
    assert session.ended is None  # the call goes on
    assert not [e for e in sink.events(DigitsRequested) if e != DigitsRequested("55")]
    notices = [e for e in sink.events(Notice) if isinstance(e, Notice)]
    assert [n.code for n in notices] == ["dtmf_failed", "dtmf_failed"]
    assert "not DTMF digits" in notices[0].message
    assert notices[1].message == "no telephone-event"


async def test_a_sink_that_keys_no_digits_gets_none_and_they_fail_as_unsupported(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    sink = Keypad(keys=False)
    models = Models(vad_runner, asr_runner, tts_engine)  # type: ignore[arg-type]
    session = await call(models, sink, "key 12#", ends=2)
    assert session.ended is None
    assert sink.events(DigitsRequested) == []
    assert sink.events(Notice) == [Notice("dtmf_failed", "unsupported")]


async def test_digits_before_a_hang_up_are_keyed_first_and_none_after_it(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    sink = Keypad()
    models = Models(vad_runner, asr_runner, tts_engine)  # type: ignore[arg-type]
    session = await call(models, sink, "bye", ends=2, hangs_up=True)
    assert session.ended == "done"
    assert sink.after(("end", 2))[:2] == [
        ("event", DigitsRequested("9")),
        ("event", CallEnded("done")),
    ]
    assert sink.events(DigitsRequested) == [DigitsRequested("9")]
