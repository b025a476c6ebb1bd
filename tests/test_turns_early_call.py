"""The early end at a pause (rule P1 of agent/turns.py) through the real server: the default
agent (configs/default.yaml), a real ``voxline serve`` and a ``websockets`` client on /v1/stream.

The caller says a complete sentence, then 316 ms of silence, then goes quiet (no more audio,
as a client that only sends while its caller talks). The VAD (silero, 32 ms frames) hears the
silence begin 28 ms after the last loud sample and scores 288 ms of it (4608 samples, measured
with this espeak-ng clip; the framing starts with the call's first frame, so it is the same
every run): past turn-taking's early end (250 ms heard, ``EndSpeechAt.until``), short of the
VAD's own ``min_silence_ms`` (300: 320 in frames), which it can never confirm alone. Turn-taking
ends the speech: the ASR's speculative final at the VAD's 100 ms pause reads as a finished
sentence, so it asks the VAD to end the speech at the pause once 250 ms of silence is heard, and
the turn ends on the final. Without the rule no ``speech.stopped`` ever comes and the call waits
until ``fail_after`` fails the test. No timing is asserted: only that the stop and the turn
came, in that order and at one sample.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import msgspec
import numpy as np
import pytest
import websockets

from tests.audio import espeak, silence
from tests.server import ROOT, RunningServer, running_server
from tests.test_server import RATE, Call


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})  # one server, one call: the backends are covered elsewhere


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:  # the default agent, unchanged
        yield running


def vad_min_silence_ms() -> int:
    config = msgspec.yaml.decode((ROOT / "configs" / "default.yaml").read_bytes())
    value = config["profile"]["vad"]["min_silence_ms"]
    assert isinstance(value, int)
    return value


def trimmed(pcm: np.ndarray[Any, Any], level: int = 300) -> np.ndarray[Any, Any]:
    """``pcm`` without its trailing near-silence (espeak-ng ends a clip with some)."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > level)
    return pcm[: int(loud[-1]) + 1]


@pytest.mark.anyio
async def test_a_complete_sentence_ends_the_turn_before_the_vad_could_confirm_the_stop(
    server: RunningServer,
) -> None:
    tail_ms = 316  # the VAD scores 288 ms of silence: 250 <= 288 < min_silence_ms
    assert vad_min_silence_ms() == 300  # the measurement above is for this setting
    speech = [silence(0.5), trimmed(espeak("What can you do?")), silence(tail_ms / 1000)]
    with anyio.fail_after(60):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = Call(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            await call.receive_until(lambda e: e["type"] == "audio.end")  # the greeting
            await call.stream(np.concatenate(speech))  # and then nothing more
            turn = await call.receive_until(lambda e: e["type"] == "turn.ended")
            await call.receive_until(lambda e: e["type"] == "audio.end")  # its answer
            await ws.send(json.dumps({"type": "bye"}))
    types = [e["type"] for e in call.events]
    stops = [e for e in call.events if e["type"] == "speech.stopped"]
    assert len(stops) == 1
    assert types.index("speech.stopped") < types.index("turn.ended")
    assert stops[0]["at_ms"] == turn["end_ms"]  # the VAD, the ASR and turn-taking agree
    assert "what can you do" in turn["text"].lower()
