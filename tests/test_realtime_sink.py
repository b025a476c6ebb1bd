"""The ``/v1/realtime`` adapter (:class:`agent.realtime_call.RealtimeSink`): what the session's
events become on the wire, unit by unit. Every server event is validated against the openai
SDK's own model of its type (:mod:`tests.transports.realtime_support`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from agent.realtime_call import RealtimeSink
from agent.session_events import (
    AgentText,
    Interrupted,
    Notice,
    ReplyTruncated,
    SessionEvent,
    UserSpeech,
    UserTurnStarted,
)
from agent.turns import TurnConfig
from tests.transports.realtime_support import SERVER_MODELS, client, fresh, tone, types


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


class Wire:
    """A sink over a fresh protocol, and everything it sent (validated)."""

    def __init__(self, sink: RealtimeSink, receive: MemoryObjectReceiveStream[str | bytes]) -> None:
        self.sink = sink
        self._receive = receive

    def sent(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while True:
            try:
                message = self._receive.receive_nowait()
            except anyio.WouldBlock:
                return events
            event = json.loads(message)
            SERVER_MODELS[event["type"]].model_validate(event)
            events.append(event)

    async def say(self, *events: SessionEvent) -> list[dict[str, Any]]:
        for event in events:
            await self.sink.send_event(event)
        return self.sent()

    async def speak(self, generation: int, text: str = "Hello there.") -> list[dict[str, Any]]:
        """Reply ``generation`` says ``text`` with half a second of audio."""
        await self.sink.send_event(AgentText(generation, text))
        await self.sink.send_audio(generation, tone(0.5, 24000))
        return self.sent()


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    send, receive = anyio.create_memory_object_stream[str | bytes](1000)
    with send, receive, anyio.fail_after(10):
        yield Wire(RealtimeSink(fresh(), send, TurnConfig()), receive)


# -- errors: only the client's mistakes are `error` events ------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "code", ["ssml_warning", "utterance_cut", "reply_cut", "transfer_failed", "incomplete"]
)
async def test_a_notice_that_is_no_client_error_sends_no_error_event(wire: Wire, code: str) -> None:
    """Clients take `error` as fatal (Pipecat stops reading): what the session goes on from is
    not one."""
    await wire.speak(1)
    events = await wire.say(Notice(code, "something the client need not act on"))
    assert "error" not in types(events)
    await wire.sink.send_audio(1, tone(0.2, 24000))  # the reply goes on
    assert types(wire.sent()) == ["response.output_audio.delta"]


@pytest.mark.anyio
async def test_a_failed_reply_is_a_failed_response_not_an_error(wire: Wire) -> None:
    await wire.speak(1)
    events = await wire.say(Notice("reply_failed", "no reply was made"))
    assert "error" not in types(events)
    [done] = [e for e in events if e["type"] == "response.done"]
    assert done["response"]["status"] == "failed"
    assert done["response"]["status_details"] == {
        "type": "failed",
        "reason": None,
        "error": {"type": "server_error", "code": "reply_failed", "message": "no reply was made"},
    }
    await wire.sink.end_audio(1)  # the playout's end of it changes nothing more
    assert wire.sent() == []


# -- speech_started: only for the caller's turn ----------------------------------------------


@pytest.mark.anyio
async def test_speech_that_turn_taking_does_not_take_sends_no_speech_started(wire: Wire) -> None:
    """The bot's echo (or a cough) over a reply: the VAD hears speech, turn-taking ignores it;
    the client must not cut its playback."""
    await wire.speak(1)
    events = await wire.say(
        UserSpeech(started=True, sample=16000),
        UserSpeech(started=False, sample=24000),
        Notice("ignored.echo", "hello there", rule="B4"),
    )
    assert events == []


@pytest.mark.anyio
async def test_a_turn_sends_speech_started_at_the_speech_and_its_pauses(wire: Wire) -> None:
    events = await wire.say(
        UserSpeech(started=True, sample=16000),
        UserTurnStarted(16000),
        UserSpeech(started=False, sample=32000),
        UserSpeech(started=True, sample=40000),  # the caller goes on: the same turn
        UserSpeech(started=False, sample=48000),
    )
    assert types(events) == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
    ]
    assert [e.get("audio_start_ms", e.get("audio_end_ms")) for e in events] == [
        1000,
        2000,
        2500,
        3000,
    ]
    assert len({e["item_id"] for e in events}) == 1


@pytest.mark.anyio
async def test_a_barge_in_stops_the_reply_with_speech_started(wire: Wire) -> None:
    """speech_started at the speech's start, the reply cancelled with it, and nothing of that
    reply after it (frames already on their way when it was cancelled are dropped)."""
    await wire.speak(1)
    await wire.say(UserSpeech(started=True, sample=16000))
    await wire.sink.send_audio(1, tone(0.3, 24000))  # turn-taking is still deciding
    assert types(wire.sent()) == ["response.output_audio.delta"]
    events = await wire.say(UserTurnStarted(16000, interrupts=1))
    assert types(events)[0] == "input_audio_buffer.speech_started"
    assert events[0]["audio_start_ms"] == 1000
    done = events[-1]
    assert done["type"] == "response.done"
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "turn_detected"
    await wire.sink.send_audio(1, tone(0.04, 24000))  # the playout had this in flight
    await wire.sink.send_event(AgentText(1, " and more"))
    assert await wire.say(Interrupted(1, "Hello", 500.0, rule="B1")) == []


# -- truncation -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_truncated_item_keeps_only_the_transcript_heard(wire: Wire) -> None:
    events = await wire.speak(1, "Hello there. How are you today?")
    item_id = next(e["item"]["id"] for e in events if e["type"] == "conversation.item.added")
    await wire.say(UserTurnStarted(16000, interrupts=1))
    truncate = {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": 300,
    }
    client(wire.sink.protocol, truncate)
    [truncated] = await wire.say(ReplyTruncated(1, "Hello there."))
    assert truncated["type"] == "conversation.item.truncated"
    client(wire.sink.protocol, {"type": "conversation.item.retrieve", "item_id": item_id})
    await wire.sink.flush()
    [retrieved] = wire.sent()
    assert retrieved["item"]["content"][0]["transcript"] == "Hello there."
