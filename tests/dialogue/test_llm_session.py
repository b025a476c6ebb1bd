"""An LLM agent in a real session: the real llama.cpp server, VAD, Whisper and Piper.

The reply streams into speech; a barge-in aborts it and leaves in the history exactly what
the caller heard, marked as interrupted, and the next turn is answered from there.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent.config import parse_config
from agent.config.runtime import llm_config
from agent.dialogue.llm import LLMEngine, make_backend
from agent.dialogue.llm_local import LlamaServer
from agent.responders import LLMResponder
from agent.session import Models, Session, SessionSettings
from agent.session_events import Interrupted
from agent.turns import TurnConfig
from tests.test_session import Recorder


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"use_uvloop": True})  # the model's time dominates: one loop is enough


def agent_file(base_url: str) -> bytes:
    return f"""
name: llm-test
greeting: {{text: Hello.}}
profile:
  llm: {{base_url: "{base_url}", model: qwen, first_token_timeout_s: 60, stall_timeout_s: 60}}
dialogue:
  engine: llm
  llm:
    system_prompt: You are a restaurant receptionist on a phone call. Answer in full sentences.
    temperature: 0
    max_tokens: 120
""".encode()


@pytest.mark.anyio
async def test_an_llm_reply_is_spoken_and_a_barge_in_keeps_only_the_heard_words(
    llama: LlamaServer, vad_runner: Any, asr_runner: Any, tts_engine: Any
) -> None:
    config = parse_config(agent_file(llama.base_url), ".yaml")
    settings = llm_config(config)
    backend = make_backend(settings)
    responder = LLMResponder(LLMEngine(settings, backend), config)
    sink = Recorder()
    session = Session(
        Models(vad_runner, asr_runner, tts_engine),
        responder,
        sink,
        SessionSettings(turns=TurnConfig(idle_timeout_ms=0)),
    )
    try:
        with sink.deadline(240, session):
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.run)
                await sink.wait_for(lambda: ("end", 1) in sink.log)
                await session.user_text(
                    "Describe your three most popular dishes in detail, please."
                )
                # once a little of the answer has been sent, the caller cuts in
                await sink.wait_for(lambda: len(sink.audio.get(2, b"")) > 16000)
                await session.interrupt()
                await sink.wait_for(lambda: bool(sink.events(Interrupted)))
                await session.user_text("Sorry, are you open tonight?")
                await sink.wait_for(lambda: ("end", 3) in sink.log)
                session.end_input()
    finally:
        await backend.aclose()
    [interrupted] = sink.events(Interrupted)
    assert isinstance(interrupted, Interrupted)
    messages = responder.history.messages
    roles = [m.role for m in messages]
    assert roles == ["assistant", "user", "assistant", "user", "assistant"]
    cut = messages[2]
    assert cut.interrupted
    assert cut.content == interrupted.heard_text
    assert len(sink.audio[3]) > 16000  # the next question was answered aloud
    assert not messages[4].interrupted
