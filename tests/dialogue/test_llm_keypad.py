"""Keypad digits to an LLM agent, in a real session (VAD, Whisper, Piper) with a scripted
OpenAI-compatible server: the model is shown a keyed turn as "[keypad] 1234"."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent.session import Models, Session
from agent.session_events import UserTurn
from tests.dialogue.test_llm_limits import agent_file, llm_call, spoken
from tests.llm_server import reply, scripted_server
from tests.test_session import Recorder


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"use_uvloop": True})  # the models' time dominates: one loop is enough


@pytest.mark.anyio
async def test_the_llm_is_shown_keyed_digits_as_keypad_text(
    vad_runner: Any, asr_runner: Any, tts_engine: Any
) -> None:
    sink = Recorder()
    async with scripted_server([reply("Thanks, code one two three.")]) as server:
        source = agent_file(server.base_url, "{max_turns: 10}")

        async def key_in(session: Session) -> None:
            for key in "123#":
                await session.dtmf(key)
            await sink.wait_for(lambda: ("end", 2) in sink.log)
            session.end_input()

        with anyio.fail_after(120):
            await llm_call(source, sink, Models(vad_runner, asr_runner, tts_engine), key_in)
        [request] = server.requests
    assert request["messages"][-1] == {"role": "user", "content": "[keypad] 123"}
    [turn] = sink.events(UserTurn)
    assert isinstance(turn, UserTurn)
    assert (turn.text, turn.keypad, turn.rule) == ("123", True, "K1")
    assert spoken(sink, 2) == "Thanks, code one two three."
