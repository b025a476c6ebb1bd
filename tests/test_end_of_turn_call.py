"""The end-of-turn model through the real server (issue 19): ``turns.end_of_turn_detector:
model`` in an agent file, a real ``voxline serve`` and a ``websockets`` client on /v1/stream.

A caller who hesitates ("I would like to, um,"), is silent for 700 ms and goes on ("book a
table for two") makes one turn: the model hears the hesitation as not done (0.005 on this
espeak-ng speech) and the turn waits ``not_done_silence_ms`` instead of the 600 ms silence
rule. Like the client of tests/test_server.py, this one sends no audio while the greeting
plays: that pins the input clock (:class:`pipeline.clock.InputClock`), whose positions once
lagged ``now`` by the greeting's length, so every silence rule and the model's wait fired the
moment the speech stopped. The silence detector ends a turn at that pause, but not
deterministically under load (its end waits for the final transcript, which a busy machine
delivers late), so no test asserts on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
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
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder: Path = tmp_path_factory.mktemp("end-of-turn")
    config = msgspec.yaml.decode((ROOT / "configs" / "default.yaml").read_bytes())
    config["turns"] = {"end_of_turn_detector": "model", "idle_timeout_ms": 0}
    path = folder / "agent.yaml"
    path.write_bytes(msgspec.yaml.encode(config))
    with running_server(str(path)) as running:
        yield running


@pytest.mark.anyio
async def test_a_hesitation_with_a_pause_in_it_is_one_turn(server: RunningServer) -> None:
    speech = np.concatenate(
        [
            silence(0.5),
            espeak("I would like to, um,"),
            silence(0.7),
            espeak("book a table for two"),
            silence(3.0),  # not_done_silence_ms (2 s) if the model hears this as not done too
        ]
    )
    with anyio.fail_after(120):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = Call(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            await call.receive_until(lambda e: e["type"] == "audio.end")  # the greeting
            async with anyio.create_task_group() as tg:
                tg.start_soon(call.stream, speech)
                turn = await call.receive_until(lambda e: e["type"] == "turn.ended")
                await call.receive_until(lambda e: e["type"] == "audio.end")  # its answer
            await ws.send(json.dumps({"type": "bye"}))
    text = turn["text"].lower()
    assert "like to" in text
    assert "table for two" in text  # one turn: the words after the hesitation too
    assert [e["type"] for e in call.events].count("turn.ended") == 1
