"""A ``/v1/realtime`` call on a speakerphone without echo cancellation, end to end: the real
server and a caller (:func:`agent.caller.call`, realtime) that plays each response and sends it
back 150 ms later, 12 dB quieter, mixed with its own speech; and that stops playing on
``input_audio_buffer.speech_started``, as Realtime clients do.

The bot's own voice is not the caller's turn: it must bring no ``speech_started`` (the client
would cut the reply: the bot interrupts itself) and cancel no response.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from agent.caller import Utterance, call
from agent.caller_wires import REALTIME_RATE
from tests.audio import espeak
from tests.server import RunningServer, running_server

ECHO = (150.0, -12.0)


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The server runs its own loop; the client's loop does not matter: run once."""
    return ("asyncio", {})


@pytest.mark.anyio
async def test_the_bots_echo_brings_no_speech_started_and_cancels_no_response(
    server: RunningServer,
) -> None:
    question = Utterance.of("What can you do?", espeak("What can you do?", REALTIME_RATE))
    with anyio.fail_after(120):
        async with call(server.ws, ECHO, realtime=True) as caller:
            for _ in range(2):
                assert await caller.wait(lambda: not caller.echoing, 10)
                seen = caller.latest()
                caller.speak(question)

                def answered(seen: int = seen) -> bool:
                    replies = [r for g, r in caller.replies.items() if g > seen]
                    return any(r.ended for r in replies)

                assert await caller.wait(answered, 40), "the question was not answered"
                assert await caller.wait(lambda: not caller.echoing, 20)  # all its echo came back
    kinds = [e["type"] for e in caller.events]
    assert "error" not in kinds, caller.errors()
    cancelled = [r.interruption for r in caller.replies.values() if r.interrupted is not None]
    assert not cancelled, cancelled
    assert kinds.count("input_audio_buffer.speech_started") == 2, kinds  # the two questions
    heard = [
        e["transcript"].lower()
        for e in caller.events
        if e["type"] == "conversation.item.input_audio_transcription.completed"
    ]
    assert sum("what can you do" in h for h in heard) == 2, heard
