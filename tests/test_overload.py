"""Admission by measured load: while utterances' finals wait for the shared Whisper model longer
than ``server.max_asr_wait_ms`` (their median over the last 10 s), a new call is refused as
``overloaded`` (1013), ``/health/ready`` answers 503 (a load balancer sends the next call to
another replica) and ``/metrics`` shows the wait; the calls already open go on.

A real server with the default agent and ``max_asr_wait_ms: 1``; two real callers
(:func:`agent.caller.call`) say the same sentence at the same moment, so their finals reach the
one Whisper worker together and one waits for the other's decode (at least a hundred
milliseconds on any machine): that wait is the load.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.admission import REFUSALS
from agent.caller import CallRefused, Listener, Utterance, call
from tests.audio import espeak
from tests.server import RunningServer, running_server
from tests.test_auth import agent_file

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder: Path = tmp_path_factory.mktemp("overload")
    with running_server(str(agent_file(folder, {"max_asr_wait_ms": 1}))) as running:
        yield running


def _final_heard(heard: anyio.Event) -> Listener:
    def listener(event: dict[str, Any]) -> None:
        if event["type"] == "transcript.final":
            heard.set()

    return listener


def _answered(events: list[dict[str, Any]]) -> bool:
    """An agent's text came after the caller's final."""
    kinds = [event["type"] for event in events]
    return "agent.text" in kinds[kinds.index("transcript.final") :]


def _asr_wait(metrics: str) -> float:
    for family in text_string_to_metric_families(metrics):
        if family.name == "voxline_asr_final_wait_seconds":
            return float(family.samples[0].value)
    raise AssertionError("no voxline_asr_final_wait_seconds in /metrics")


async def test_finals_waiting_past_the_limit_refuse_new_calls_and_the_open_ones_go_on(
    server: RunningServer,
) -> None:
    speech = Utterance.of("What can you do?", espeak("What can you do?"))
    heard = [anyio.Event(), anyio.Event()]
    with anyio.fail_after(120):
        async with (
            httpx.AsyncClient() as client,
            call(server.ws, listener=_final_heard(heard[0])) as first,
            call(server.ws, listener=_final_heard(heard[1])) as second,
        ):
            ready = await client.get(f"{server.http}/health/ready")
            assert ready.status_code == 200  # no final has waited yet
            assert ready.json()["asr_wait_ms"] == 0
            first.speak(speech)
            second.speak(speech)
            for event in heard:
                await event.wait()

            with pytest.raises(CallRefused) as refused:  # closed with 1013, try again later
                async with call(server.ws):
                    pass
            assert refused.value.reason == REFUSALS["overloaded"]
            ready = await client.get(f"{server.http}/health/ready")
            assert ready.status_code == 503
            body = ready.json()
            assert body["overloaded"] is True
            assert body["asr_wait_ms"] >= 1
            assert _asr_wait((await client.get(f"{server.http}/metrics")).text) > 0.001

            # the calls already open are answered
            assert await first.wait(lambda: _answered(first.events), 60)
            assert await second.wait(lambda: _answered(second.events), 60)
