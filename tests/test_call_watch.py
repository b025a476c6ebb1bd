"""The sink that watches a call (agent/call_watch.py): it forwards, tells, never breaks a call."""

from __future__ import annotations

import logging

import anyio
import pytest

from agent.call_watch import WatchingSink, transport_of, transport_sink
from agent.session_events import AgentText, CallSink, Notice, SessionEvent

log = logging.getLogger("voxline.test_call_watch")


class PhoneSink:
    """A transport's sink that keeps what it is told, in order; a clear says 320 played."""

    output_rate = 8000

    def __init__(self) -> None:
        self.got: list[tuple[object, ...]] = []

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        self.got.append(("audio", generation, pcm))

    async def end_audio(self, generation: int) -> None:
        self.got.append(("end", generation))

    async def clear_audio(self, generation: int) -> int | None:
        self.got.append(("clear", generation))
        return 320

    async def send_event(self, event: SessionEvent) -> None:
        self.got.append(("event", event))


class Listener:
    """Keeps what it is told; raises from its ``fail_at``-th call on (counting from 1)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.told: list[tuple[object, ...]] = []
        self._fail_at = fail_at

    def event(self, event: SessionEvent, at: float) -> None:
        self._tell("event", event, at)

    def audio_started(self, generation: int, at: float) -> None:
        self._tell("started", generation, at)

    def audio_ended(self, generation: int, at: float) -> None:
        self._tell("ended", generation, at)

    def audio_cleared(self, generation: int, played: int | None, at: float) -> None:
        self._tell("cleared", generation, played, at)

    def _tell(self, *what: object) -> None:
        if self._fail_at is not None and len(self.told) + 1 >= self._fail_at:
            raise RuntimeError("a broken watcher")
        self.told.append(what)


class Ticks:
    """A clock that says 1.0, 2.0, ... each time it is read."""

    def __init__(self) -> None:
        self.reads = 0

    def now(self) -> float:
        self.reads += 1
        return float(self.reads)


TEXT = AgentText(generation=1, delta="Hello")
NOTICE = Notice(code="x", message="y")


async def speak(sink: WatchingSink) -> int | None:
    """A reply with an end, then one cleared by a barge-in, then an event."""
    await sink.send_event(TEXT)
    await sink.send_audio(1, b"a")
    await sink.send_audio(1, b"b")
    await sink.end_audio(1)
    await sink.send_audio(2, b"c")
    played = await sink.clear_audio(2)
    await sink.send_audio(2, b"d")  # audio after a clear starts again
    await sink.send_event(NOTICE)
    return played


SENT = [
    ("event", TEXT),
    ("audio", 1, b"a"),
    ("audio", 1, b"b"),
    ("end", 1),
    ("audio", 2, b"c"),
    ("clear", 2),
    ("audio", 2, b"d"),
    ("event", NOTICE),
]


def watching(transport: CallSink, listener: Listener) -> WatchingSink:
    return WatchingSink(transport, listener, Ticks().now, call_id="c1", what="testing", log=log)


@pytest.mark.anyio
async def test_the_transport_gets_every_call_and_the_listener_hears_each_at_its_time() -> None:
    transport, listener = PhoneSink(), Listener()
    sink = watching(transport, listener)
    with anyio.fail_after(10):
        played = await speak(sink)
    assert played == 320
    assert sink.output_rate == 8000
    assert transport.got == SENT
    assert listener.told == [
        ("event", TEXT, 1.0),
        ("started", 1, 2.0),  # the first audio of generation 1 only
        ("ended", 1, 3.0),
        ("started", 2, 4.0),
        ("cleared", 2, 320, 5.0),  # with what the transport said was played
        ("started", 2, 6.0),
        ("event", NOTICE, 7.0),
    ]


@pytest.mark.anyio
async def test_a_listener_that_fails_is_logged_once_told_nothing_more_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport, listener = PhoneSink(), Listener(fail_at=3)
    sink = watching(transport, listener)
    with caplog.at_level(logging.ERROR, logger=log.name), anyio.fail_after(10):
        played = await speak(sink)
    assert (played, transport.got) == (320, SENT)
    assert [told[0] for told in listener.told] == ["event", "started"]
    failures = [r for r in caplog.records if r.name == log.name]
    assert [r.getMessage() for r in failures] == ["call c1: testing failed (the call goes on)"]
    assert failures[0].exc_info is not None


class BrokenLine(PhoneSink):
    async def end_audio(self, generation: int) -> None:
        raise ConnectionResetError("the peer left")


@pytest.mark.anyio
async def test_the_transports_own_errors_reach_the_call_and_the_listener_is_not_told() -> None:
    listener = Listener()
    sink = watching(BrokenLine(), listener)
    with anyio.fail_after(10), pytest.raises(ConnectionResetError):
        await sink.end_audio(1)
    assert listener.told == []


def test_the_transport_is_seen_through_the_watchers_sinks() -> None:
    transport = PhoneSink()
    outer = watching(watching(transport, Listener()), Listener())  # two watchers, one inside
    assert transport_sink(outer) is transport
    assert transport_of(outer) == transport_of(transport) == "phone"
