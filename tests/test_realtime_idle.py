"""An idle ``/v1/realtime`` session ends (agent/realtime_idle.py, agent/realtime_shaping.py
``turn_config``; docs/protocol.md): the idle timeout (the client's ``server_vad``
``idle_timeout_ms``, else the agent's ``turns.idle_timeout_ms``) counts from the end of the
client's playback; when it passes the server sends ``input_audio_buffer.timeout_triggered``,
commits the silence as an empty user item and says the agent's idle prompt as a response, up
to ``turns.idle_prompts`` times; then it hangs up: close ``1000``, reason ``idle``.
Push-to-talk (no turn detection) and transcription sessions have no idle end.

Against the real server with the official ``openai`` SDK as the client, which sends no audio;
the agent file's idle timeout is short, so nothing waits long. The mapping and the playback
estimate: plain tables.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import yaml  # type: ignore[import-untyped]  # no stubs installed
from openai import AsyncOpenAI
from websockets.exceptions import ConnectionClosed

from agent.realtime_idle import Playback
from agent.realtime_shaping import turn_config
from agent.realtime_transcription import TranscriptionSink
from agent.session_turns import new_turns
from agent.turns import HangUp, TurnConfig
from pipeline.events import PIPELINE_RATE
from pipeline.playout import PlayoutBuffer
from tests.server import ROOT, RunningServer, running_server
from transports.realtime_events import SemanticVad, ServerVad, TurnDetection
from transports.realtime_transcription import TranscriptionProtocol

PROMPT = "Are you still there?"
#: the agent file's idle timeout (ms): longer than a client's own below, and than any delay of
#: the first audio delta on a loaded machine (the playback test compares the two)
AGENT_IDLE_MS = 1500
CLIENT_IDLE_MS = 600
RATE = 24000  # the output audio's (audio/pcm)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    config["turns"] = {"idle_timeout_ms": AGENT_IDLE_MS, "idle_prompts": 1, "idle_prompt": PROMPT}
    path = tmp_path_factory.mktemp("realtime-idle") / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    with running_server(str(path)) as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The server runs its own loop; the client's loop does not matter: run once."""
    return ("asyncio", {})


async def until_closed(connection: Any, seen: list[tuple[float, Any]]) -> tuple[int, str]:
    """Every event (with its arrival time) until the server closes; the close code and reason."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            event = await connection.recv()
            seen.append((time.perf_counter(), event))
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


@pytest.mark.anyio
async def test_a_silent_client_gets_the_timeout_and_one_prompt_then_is_hung_up_on(
    server: RunningServer,
) -> None:
    """Its own ``idle_timeout_ms`` (shorter than the agent's) times the prompt and the end."""
    client = AsyncOpenAI(api_key="x", websocket_base_url=f"{server.ws}/v1")
    seen: list[tuple[float, Any]] = []
    with anyio.fail_after(60):
        async with client.realtime.connect(model="voxline") as connection:
            await connection.session.update(
                session={
                    "type": "realtime",
                    "audio": {
                        "input": {
                            "turn_detection": {
                                "type": "server_vad",
                                "idle_timeout_ms": CLIENT_IDLE_MS,
                            }
                        }
                    },
                }
            )
            close = await until_closed(connection, seen)
    assert close == (1000, "idle")
    events = [event for _, event in seen]
    kinds = [event.type for event in events]
    assert kinds[:2] == ["session.created", "session.updated"]
    assert kinds.count("input_audio_buffer.timeout_triggered") == 1
    assert kinds.count("response.created") == 1  # one idle prompt, then the hang-up
    # as the API: the timeout, the silence committed as an (empty) user item, the response
    timeout = kinds.index("input_audio_buffer.timeout_triggered")
    assert kinds[timeout + 1] == "input_audio_buffer.committed"
    assert timeout < kinds.index("response.created")
    [triggered] = [e for e in events if e.type == "input_audio_buffer.timeout_triggered"]
    [committed] = [e for e in events if e.type == "input_audio_buffer.committed"]
    assert committed.item_id == triggered.item_id
    [heard] = [
        e for e in events if e.type == "conversation.item.input_audio_transcription.completed"
    ]
    assert (heard.item_id, heard.transcript) == (triggered.item_id, "")
    # the silent span is the client's timeout (positions rounded to the millisecond)
    assert abs(triggered.audio_end_ms - triggered.audio_start_ms - CLIENT_IDLE_MS) <= 1
    assert kinds[-2:] == ["response.done", "rate_limits.updated"]
    [done] = [event for event in events if event.type == "response.done"]
    assert done.response.status == "completed"
    transcripts = [e for e in events if e.type == "response.output_audio_transcript.done"]
    assert [t.transcript for t in transcripts] == [PROMPT]


@pytest.mark.anyio
async def test_the_timeout_counts_from_the_end_of_the_clients_playback(
    server: RunningServer,
) -> None:
    """The greeting plays first: no timeout while the client still plays it (its first delta's
    arrival plus its duration, on the client's clock), and the silent span starts no earlier
    than where its playback can have ended."""
    client = AsyncOpenAI(api_key="x", websocket_base_url=f"{server.ws}/v1")
    seen: list[tuple[float, Any]] = []
    with anyio.fail_after(60):
        async with client.realtime.connect(model="voxline") as connection:
            await connection.response.create()
            close = await until_closed(connection, seen)
    assert close == (1000, "idle")
    kinds = [event.type for _, event in seen]
    assert kinds.count("response.created") == 2  # the greeting, then one idle prompt
    done = kinds.index("response.done")
    greeting = [(t, e) for t, e in seen[:done] if e.type == "response.output_audio.delta"]
    first_delta = greeting[0][0]
    played_s = sum(len(base64.b64decode(e.delta)) // 2 for _, e in greeting) / RATE
    [(arrived, triggered)] = [
        (t, e) for t, e in seen if e.type == "input_audio_buffer.timeout_triggered"
    ]
    assert arrived > first_delta + played_s  # never while the client still plays
    # the silent span starts where the playback ended, which is no earlier than its duration
    # (the first delta went out after the session began); the timer ran from the last delta,
    # which goes out within the playout's lead (and a frame) of that end: the span is the
    # timeout, give or take that
    assert triggered.audio_start_ms >= 1000 * played_s
    assert triggered.audio_end_ms > triggered.audio_start_ms


AGENT = TurnConfig(idle_timeout_ms=8000, idle_prompts=2, max_call_ms=60_000)


@pytest.mark.parametrize(
    ("detection", "idle_timeout_ms"),
    [
        (ServerVad(), 8000),  # the agent's
        (ServerVad(idle_timeout_ms=5000), 5000),  # the client's, as the API's
        (ServerVad(idle_timeout_ms=0), 8000),  # 0 does not turn the idle end off
        (SemanticVad(eagerness="high"), 8000),
    ],
)
def test_the_idle_timeout_is_the_clients_or_the_agents_and_its_prompts_the_agents(
    detection: TurnDetection, idle_timeout_ms: int
) -> None:
    config, _ = turn_config(AGENT, detection)
    assert config.idle_timeout_ms == idle_timeout_ms
    assert config.idle_prompts == 2  # then the agent hangs up
    assert config.max_call_ms == 60_000


def test_push_to_talk_has_no_idle_end_but_keeps_the_calls_length() -> None:
    """The client drives every turn (commit, response.create): silence is not idleness."""
    config, answered = turn_config(AGENT, None)
    assert (config.idle_timeout_ms, answered) == (0, False)
    assert config.max_call_ms == 60_000


def test_a_turn_detection_change_mid_call_times_the_idle_end_from_then() -> None:
    """``session.update`` makes a new turn machine (agent/session_turns.py): its idle timer
    counts from the change, its length from the call's start. Counted from the start, a change
    two idle timeouts in was an idle prompt and the hang-up at once."""
    second = PIPELINE_RATE
    config, _ = turn_config(AGENT, ServerVad(idle_timeout_ms=5000))
    turns, _, actions = new_turns(config, 20 * second, None, {}, PlayoutBuffer(24000))
    assert (actions, turns.closed) == ([], False)
    assert turns.next_deadline() == 25 * second  # then the idle prompt
    _, _, actions = new_turns(config, 61 * second, None, {}, PlayoutBuffer(24000))
    assert actions == [HangUp("max_duration", 60 * second, rule="Q2")]  # the call's length


@pytest.mark.anyio
async def test_a_transcription_session_has_no_idle_end() -> None:
    """Nothing is ever said in one, and captions go on through any silence."""
    send, receive = anyio.create_memory_object_stream[str | bytes](10)
    with send, receive:
        sink = TranscriptionSink(TranscriptionProtocol(id_seed="t"), send, AGENT)
        config, answered = sink.realtime.turns
    assert (config.idle_timeout_ms, answered) == (0, False)


# -- the playback estimate (input samples at 16 kHz; audio sent at 24 kHz) ----------------------


def test_playback_ends_its_duration_after_the_first_delta_went_out() -> None:
    playback = Playback()
    assert playback.ends is None  # nothing played yet
    playback.sent(1, 2400, 24000, now=16000)  # 0.1 s at 1 s
    playback.sent(1, 24000, 24000, now=16100)  # 1 s more, whenever it goes out
    assert playback.ends == 16000 + 17600


def test_a_truncate_or_a_cancel_ends_it_where_the_client_stopped() -> None:
    playback = Playback()
    playback.sent(1, 48000, 24000, now=1000)  # 2 s
    playback.truncated(1, 500)
    assert playback.ends == 1000 + 8000
    playback.truncated(2, 100)  # not the last response: nothing to say about it
    assert playback.ends == 1000 + 8000
    playback.sent(2, 48000, 24000, now=50000)
    playback.cancelled(2, now=56000)  # at speech_started the client stops
    assert playback.ends == 56000
    playback.sent(1, 480, 24000, now=56100)  # a late frame of an older response
    assert playback.ends == 56000
