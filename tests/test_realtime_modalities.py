"""Realtime response shaping: ``output_modalities``, ``max_output_tokens``, ``speed``,
``rate_limits.updated`` and ``semantic_vad``.

The token cap and the protocol's checks are tested without a server; the rest against the real
server with the default agent (the intent engine, Piper) and the official ``openai`` SDK, every
server event validated against the SDK's own model of its type.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from agent.realtime_shaping import SessionRateLimits, reply_shape, turn_config
from agent.reply import ReplyShape
from agent.reply_limit import TokenCap, count_tokens
from agent.turns import TurnConfig
from tests.server import RunningServer, running_server
from tests.transports.realtime_support import SERVER_MODELS, client, fresh, server
from transports.realtime_events import ResponseParams, SemanticVad

QUESTION = "What can you do?"

# -- without a server ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("Hello, world!", 4), ("It's 9:30.", 7), ("<speak>Hi <break/>there</speak>", 2)],
)
def test_a_token_is_a_word_or_a_punctuation_mark(text: str, tokens: int) -> None:
    assert count_tokens(text) == tokens


def test_the_token_cap_cuts_after_the_last_token_whole_or_streamed() -> None:
    whole = TokenCap(3)
    assert whole.feed("I can take a message.", final=True) == "I can take"
    assert whole.cut
    streamed = TokenCap(3)
    out = [streamed.feed(delta, final=False) for delta in ("I c", "an ta", "ke a message")]
    assert "".join(out) == "I can take"
    assert streamed.cut
    short = TokenCap(3)
    assert short.feed("Hi there", final=False) + short.feed("", final=True) == "Hi there"
    assert not short.cut


@pytest.mark.parametrize(
    ("event", "param"),
    [
        ({"type": "session.update", "session": {"type": "realtime", "max_output_tokens": 0}},
         "session.max_output_tokens"),
        ({"type": "session.update", "session": {"type": "realtime", "max_output_tokens": 4097}},
         "session.max_output_tokens"),
        ({"type": "response.create", "response": {"max_output_tokens": 0}},
         "response.max_output_tokens"),
        ({"type": "session.update",
          "session": {"type": "realtime", "audio": {"output": {"speed": 1.6}}}},
         "session.audio.output.speed"),
    ],
)  # fmt: skip
def test_an_out_of_range_value_is_an_error_naming_its_param(
    event: dict[str, Any], param: str
) -> None:
    protocol = fresh()
    client(protocol, event)
    [error] = server(protocol)
    assert (error["type"], error["error"]["param"]) == ("error", param)


def test_modalities_and_token_limits_shape_replies() -> None:
    protocol = fresh()
    config = protocol.config
    assert reply_shape(config) == ReplyShape("audio", None)
    text = ResponseParams(output_modalities=["text"], max_output_tokens=5)
    assert reply_shape(config, text) == ReplyShape("text", 5)
    limited = type(config)(output_modalities=("text",), max_output_tokens=7)
    assert reply_shape(limited, ResponseParams(output_modalities=["audio"])) == ReplyShape(
        "audio", 7
    )


def test_semantic_vad_eagerness_picks_the_end_of_turn_silence() -> None:
    base = TurnConfig()
    silences = [
        turn_config(base, SemanticVad(eagerness=e))[0].end_of_turn_silence_ms
        for e in ("high", "medium", "low")
    ]
    assert silences == sorted(set(silences))


def test_rate_limits_count_responses_against_max_turns_and_tokens_per_response() -> None:
    limits = SessionRateLimits(max_turns=10, llm_max_tokens=200)
    requests, tokens = limits("Hello there.", "inf")
    assert requests == {"name": "requests", "limit": 10, "remaining": 9}
    assert tokens == {"name": "tokens", "limit": 200, "remaining": 197, "reset_seconds": 0.0}
    assert limits("Hi", 50)[1]["limit"] == 50


# -- against the server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def voxline() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


class Events:
    """The server's events as they come, each validated against the SDK's model of its type."""

    def __init__(self, connection: AsyncRealtimeConnection) -> None:
        self.connection = connection
        self.seen: list[dict[str, Any]] = []

    async def until(self, kind: str) -> dict[str, Any]:
        while True:
            event: dict[str, Any] = json.loads(await self.connection.recv_bytes())
            SERVER_MODELS[event["type"]].model_validate(event)
            self.seen.append(event)
            if event["type"] == kind:
                return event

    def since(self, start: int) -> list[dict[str, Any]]:
        return self.seen[start:]


async def respond(events: Events, text: str | None, **response: Any) -> list[dict[str, Any]]:
    """Ask for a response (to ``text``, typed as a user item); its events through
    ``rate_limits.updated``."""
    connection = events.connection
    if text is not None:
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
        await connection.conversation.item.create(item=item)  # type: ignore[arg-type]
    start = len(events.seen)
    await connection.response.create(response=response)  # type: ignore[arg-type]
    await events.until("response.done")
    await events.until("rate_limits.updated")
    return events.since(start)


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def tts_work(voxline: RunningServer) -> dict[str, float]:
    """The TTS executor's completed requests and the TTS cache's lookups, from /metrics."""
    text = httpx.get(f"{voxline.http}/metrics", timeout=10).text
    families = r"voxline_(?:executor_requests|tts_cache_(?:hits|misses))_total"
    pattern = rf'^({families})\{{[^}}]*"(tts[^"]*)"\}} (\S+)'
    return {f"{m[1]}:{m[2]}": float(m[3]) for m in re.finditer(pattern, text, re.M)}


def audio_samples(events: list[dict[str, Any]]) -> int:
    deltas = [e["delta"] for e in events if e["type"] == "response.output_audio.delta"]
    return sum(len(base64.b64decode(d)) for d in deltas) // 2


def connect(voxline: RunningServer) -> Any:
    sdk = AsyncOpenAI(api_key="x", websocket_base_url=f"{voxline.ws}/v1")
    return sdk.realtime.connect(model="voxline")


@pytest.mark.anyio
async def test_a_text_response_is_never_synthesised_and_ends_with_its_text(
    voxline: RunningServer,
) -> None:
    with anyio.fail_after(60):
        async with connect(voxline) as connection:
            events = Events(connection)
            await events.until("session.created")
            await connection.session.update(
                session={"type": "realtime", "output_modalities": ["text"]}
            )
            await events.until("session.updated")
            before = tts_work(voxline)
            assert before  # the TTS executor's and cache's counters are there
            out = await respond(events, QUESTION)
            after = tts_work(voxline)
            names = kinds(out)
            assert not [n for n in names if "audio" in n]
            assert before == after  # no synthesis at all (not even from the cache)
            assert "response.output_text.delta" in names
            last_delta = max(i for i, n in enumerate(names) if n == "response.output_text.delta")
            tail = names[last_delta + 1 :]
            assert tail[0] == "response.output_text.done"
            assert tail.index("response.done") == len(tail) - 2  # then rate_limits.updated
            parts = [e["part"]["type"] for e in out if e["type"].startswith("response.content")]
            assert parts == ["text", "text"]
            done = out[names.index("response.done")]["response"]
            assert done["status"] == "completed"
            assert done["output_modalities"] == ["text"]
            full = done["output"][0]["content"][0]["text"]
            assert full

            # The same question with a limit of 3 tokens: cut there, and incomplete.
            cut = await respond(events, QUESTION, max_output_tokens=3)
            done = next(e for e in cut if e["type"] == "response.done")["response"]
            assert done["status"] == "incomplete"
            assert done["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
            assert done["max_output_tokens"] == 3
            short = done["output"][0]["content"][0]["text"]
            assert count_tokens(short) == 3
            assert full.startswith(short)
            limits = {r["name"]: r for r in cut[-1]["rate_limits"]}
            assert (limits["tokens"]["limit"], limits["tokens"]["remaining"]) == (3, 0)
            assert limits["requests"]["remaining"] == limits["requests"]["limit"] - 2


@pytest.mark.anyio
async def test_speed_changes_the_length_of_the_speech(voxline: RunningServer) -> None:
    with anyio.fail_after(90):
        async with connect(voxline) as connection:
            events = Events(connection)
            await events.until("session.created")
            samples = {}
            for speed in (1.0, 1.5):
                update = {"type": "realtime", "audio": {"output": {"speed": speed}}}
                await connection.session.update(session=update)
                updated = await events.until("session.updated")
                assert updated["session"]["audio"]["output"]["speed"] == speed
                out = await respond(events, QUESTION)
                assert kinds(out)[-2:] == ["response.done", "rate_limits.updated"]
                samples[speed] = audio_samples(out)
            assert 0 < samples[1.5] < 0.85 * samples[1.0], samples


@pytest.mark.anyio
async def test_semantic_vad_and_bad_values_over_the_sdk(voxline: RunningServer) -> None:
    with anyio.fail_after(30):
        async with connect(voxline) as connection:
            events = Events(connection)
            await events.until("session.created")
            detection = {"type": "semantic_vad", "eagerness": "high"}
            await connection.session.update(
                session={"type": "realtime", "audio": {"input": {"turn_detection": detection}}}
            )
            updated = await events.until("session.updated")
            shown = updated["session"]["audio"]["input"]["turn_detection"]
            assert (shown["type"], shown["eagerness"]) == ("semantic_vad", "high")
            await connection.session.update(
                session={"type": "realtime", "audio": {"output": {"speed": 2.0}}}
            )
            error = await events.until("error")
            assert error["error"]["param"] == "session.audio.output.speed"
            await connection.response.create(response={"max_output_tokens": 5000})
            error = await events.until("error")
            assert error["error"]["param"] == "response.max_output_tokens"
