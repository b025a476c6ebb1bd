"""An idle ``/v1/realtime`` session ends (agent/realtime_shaping.py ``turn_config``): after the
agent's ``turns.idle_timeout_ms`` of silence its idle prompt comes as a response, up to
``turns.idle_prompts`` times, then the agent hangs up and the socket is closed ``1000`` with
the reason ``idle`` (docs/protocol.md). A client's ``server_vad`` ``idle_timeout_ms`` replaces
the agent's timeout; push-to-talk (no turn detection) and transcription sessions have no idle
end.

Against the real server with the official ``openai`` SDK as the client, which connects and
then sends nothing; the agent file's idle timeout is short, so nothing waits long. The mapping
itself: plain tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import yaml  # type: ignore[import-untyped]  # no stubs installed
from openai import AsyncOpenAI
from websockets.exceptions import ConnectionClosed

from agent.realtime_shaping import turn_config
from agent.realtime_transcription import TranscriptionSink
from agent.turns import TurnConfig
from tests.server import ROOT, RunningServer, running_server
from transports.realtime_events import SemanticVad, ServerVad, TurnDetection
from transports.realtime_transcription import TranscriptionProtocol

PROMPT = "Are you still there?"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    config["turns"] = {"idle_timeout_ms": 300, "idle_prompts": 1, "idle_prompt": PROMPT}
    path = tmp_path_factory.mktemp("realtime-idle") / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    with running_server(str(path)) as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.mark.anyio
async def test_a_client_that_sends_nothing_is_prompted_once_then_hung_up_on(
    server: RunningServer,
) -> None:
    client = AsyncOpenAI(api_key="x", websocket_base_url=f"{server.ws}/v1")
    seen: list[Any] = []
    with anyio.fail_after(60):
        async with client.realtime.connect(model="voxline") as connection:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    seen.append(await connection.recv())
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1000, "idle")
    kinds = [event.type for event in seen]
    assert kinds[0] == "session.created"
    assert kinds.count("response.created") == 1  # one idle prompt, then the hang-up
    assert kinds[-2:] == ["response.done", "rate_limits.updated"]
    [done] = [event for event in seen if event.type == "response.done"]
    assert done.response.status == "completed"
    transcripts = [e for e in seen if e.type == "response.output_audio_transcript.done"]
    assert [t.transcript for t in transcripts] == [PROMPT]


AGENT = TurnConfig(idle_timeout_ms=8000, idle_prompts=2)


@pytest.mark.parametrize(
    ("detection", "idle_timeout_ms"),
    [
        (ServerVad(), 8000),  # the agent's
        (ServerVad(idle_timeout_ms=5000), 5000),  # the client's, as the API's
        (SemanticVad(eagerness="high"), 8000),
        (None, 0),  # push-to-talk: the client drives every turn
    ],
)
def test_the_idle_timeout_is_the_clients_or_the_agents_and_its_prompts_the_agents(
    detection: TurnDetection | None, idle_timeout_ms: int
) -> None:
    config, _ = turn_config(AGENT, detection)
    assert config.idle_timeout_ms == idle_timeout_ms
    assert config.idle_prompts == 2  # then the agent hangs up


@pytest.mark.anyio
async def test_a_transcription_session_has_no_idle_end() -> None:
    """Nothing is ever said in one, and captions go on through any silence."""
    send, receive = anyio.create_memory_object_stream[str | bytes](10)
    with send, receive:
        sink = TranscriptionSink(TranscriptionProtocol(id_seed="t"), send, AGENT)
        config, answered = sink.realtime.turns
    assert (config.idle_timeout_ms, answered) == (0, False)
