"""Traces (agent/tracing.py, agent/tracing_spans.py) and the call id on log lines
(agent/tracing_logs.py): one call's spans built from its events (sans-I/O), the settings, and a
real server's spoken call exported over OTLP/HTTP to a real receiver
(:class:`agent.tracing_receiver.OtlpReceiver`, the protobuf decoded with opentelemetry-proto).
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import numpy as np
import pytest
import websockets
import yaml  # type: ignore[import-untyped]  # no stubs installed

from agent.config import load_config
from agent.config.schema import TracingConfig
from agent.server_process import ROOT
from agent.session_events import AgentText, CallEnded, Interrupted, TurnLatency, UserTurn
from agent.tracing import headers_from, traces_url
from agent.tracing_logs import CALL_ID, LOG_FORMAT, TRACE_ID, CallFields
from agent.tracing_receiver import OtlpReceiver, ReceivedSpan
from agent.tracing_spans import CallEvent, CallSpans, TurnSpan
from pipeline.errors import ConfigError
from tests.audio import espeak, silence
from tests.server import running_server
from tests.test_server import RATE, Call

LATENCY = {
    "speech_end->asr_final": 250.0,
    "asr_final->end_of_turn": 50.0,
    "end_of_turn->first_text": 100.0,
    "first_text->first_audio": 80.0,
    "first_audio->audio_out": 20.0,
    "total": 500.0,
}


def spans() -> CallSpans:
    return CallSpans(caller_time=lambda sample: sample / 16000)


def turns_of(done: list[TurnSpan | CallEvent]) -> list[TurnSpan]:
    return [item for item in done if isinstance(item, TurnSpan)]


# -- one call's spans (sans-I/O) ------------------------------------------------------------------


def test_a_turns_stages_are_spans_of_time_ending_at_its_answers_first_audio() -> None:
    call = spans()
    call.event(AgentText(1, "Hi, this is Voxline."), at=0.1)  # the greeting: no turn
    call.audio(1, at=0.2)
    call.audio_ended(1, at=2.0)
    call.event(UserTurn("What can you do?", start=48000, end=64000, rule="T1"), at=4.3)
    call.event(AgentText(2, "I can take a message."), at=4.4)
    call.audio(2, at=4.5)
    call.event(TurnLatency(2, LATENCY), at=4.52)  # after the first frame went out
    assert call.take() == []  # the answer is still playing
    call.audio_ended(2, at=6.0)
    [turn] = turns_of(call.take())
    assert (turn.number, turn.generation, turn.rule, turn.interrupted) == (1, 2, "T1", False)
    assert (turn.start, turn.end) == (3.0, 6.0)  # the caller's speech start, the answer's end
    assert turn.latency_ms == LATENCY
    assert [stage.name for stage in turn.stages] == [s for s in LATENCY if "->" in s]
    starts = [4.0, 4.25, 4.3, 4.4, 4.48]  # from the speech's end (4.0) to the first audio
    assert [stage.start for stage in turn.stages] == pytest.approx(starts)
    assert [stage.end for stage in turn.stages] == pytest.approx([*starts[1:], 4.5])
    assert turn.attributes()["voxline.latency_ms.total"] == 500.0
    assert call.close(at=7.0) == []


def test_a_barge_in_is_an_event_of_the_call_and_ends_the_turn_it_cut() -> None:
    call = spans()
    call.event(UserTurn("What can you do?", start=16000, end=32000, rule="T1"), at=2.3)
    call.event(AgentText(3, "I can take a message, or"), at=2.5)
    call.audio(3, at=2.6)
    call.event(Interrupted(3, heard_text="I can", played_ms=400.0, rule="B2"), at=3.0)
    call.audio_ended(3, at=3.01)  # the clear, after the event: nothing more
    done = call.take()
    [turn] = turns_of(done)
    assert (turn.interrupted, turn.end) == (True, 3.0)
    [event] = [item for item in done if isinstance(item, CallEvent)]
    assert event == CallEvent(
        "barge_in", 3.0, {"voxline.generation": 3, "voxline.played_ms": 400.0, "voxline.rule": "B2"}
    )
    assert call.take() == []


def test_an_older_replys_late_events_answer_no_turn_and_an_unanswered_turn_ends_at_the_next() -> (
    None
):
    call = spans()
    call.event(AgentText(1, "Hello."), at=0.1)
    call.event(UserTurn("um", start=16000, end=20000, rule="T1"), at=1.5)
    call.event(AgentText(1, " there"), at=1.6)  # the greeting's text, late: not the answer
    call.event(UserTurn("hello", start=32000, end=40000, rule="T1"), at=2.8)
    [first] = turns_of(call.take())
    assert (first.number, first.generation, first.end) == (1, None, 2.8)
    call.event(AgentText(2, "Hi!"), at=3.0)
    call.event(CallEnded("caller said goodbye"), at=3.5)
    [second] = turns_of(call.close(at=4.0))
    assert (second.number, second.generation, second.end) == (2, 2, 4.0)
    assert (call.turns, call.reason) == (2, "caller said goodbye")


# -- the settings -------------------------------------------------------------------------------


def test_spans_go_to_the_endpoints_v1_traces() -> None:
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("https://otel.example.com/") == "https://otel.example.com/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_the_collectors_headers_come_from_the_variable_named_and_never_show_in_errors() -> None:
    config = TracingConfig(otlp_endpoint="http://c:4318", headers_env="OTLP_HEADERS")
    environ = {"OTLP_HEADERS": "X-Api-Key=s3cret%20one, x-team = voice ,"}
    assert headers_from(config, environ) == {"x-api-key": "s3cret one", "x-team": "voice"}
    assert headers_from(TracingConfig(otlp_endpoint="http://c"), {}) == {}
    with pytest.raises(ConfigError, match="OTLP_HEADERS is not set") as unset:
        headers_from(config, {})
    assert unset.value.path == "$.server.tracing.headers_env"
    with pytest.raises(ConfigError, match="pair 2 of OTLP_HEADERS") as malformed:
        headers_from(config, {"OTLP_HEADERS": "a=1,s3cret"})
    assert "s3cret" not in str(malformed.value).replace("pair 2 of OTLP_HEADERS", "")


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"otlp_endpoint": "http://c:4318", "sample_ratio": 1.5}, "$.server.tracing.sample_ratio"),
        ({"otlp_endpoint": "grpc://c:4317"}, "$.server.tracing.otlp_endpoint"),
        ({"service_name": "voxline"}, "$.server.tracing.otlp_endpoint"),  # missing
        ({"otlp_endpoint": "http://c", "headers_env": "A-B"}, "$.server.tracing.headers_env"),
        ({"otlp_endpoint": "http://c", "queue": 0}, "$.server.tracing.queue"),
        ({"otlp_endpoint": "http://c", "sampel_ratio": 1}, "$.server.tracing.sampel_ratio"),
    ],
)
def test_a_broken_tracing_section_names_its_key(
    tmp_path: Path, section: dict[str, Any], key: str
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "server": {"tracing": section}}))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.path == key


def test_a_server_whose_collector_headers_are_unset_does_not_start(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    config["server"]["tracing"] = {
        "otlp_endpoint": "http://127.0.0.1:9",
        "headers_env": "VOXLINE_TEST_UNSET_HEADERS",
    }
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    serve = [sys.executable, "-m", "agent.cli", "serve", "--config", str(path), "--port", "0"]
    result = subprocess.run(
        ["timeout", "120", *serve], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2, result.stderr
    assert (
        "$.server.tracing.headers_env: the environment variable VOXLINE_TEST_UNSET_HEADERS "
        "is not set" in result.stderr
    )


def test_log_lines_in_a_call_carry_its_id_and_its_trace_id() -> None:
    formatter = logging.Formatter(LOG_FORMAT)
    fields = CallFields()

    def line() -> str:
        record = logging.LogRecord("voxline.x", logging.INFO, __file__, 1, "hello", (), None)
        fields.filter(record)
        return formatter.format(record).split(" ", 2)[2]  # without the time

    def in_call(trace: str) -> str:
        CALL_ID.set("c1")
        TRACE_ID.set(trace)
        return line()

    assert contextvars.copy_context().run(in_call, "") == "INFO voxline.x [call=c1] hello"
    traced = contextvars.copy_context().run(in_call, "ab" * 16)
    assert traced == f"INFO voxline.x [call=c1 trace={'ab' * 16}] hello"
    assert line() == "INFO voxline.x hello"  # outside a call


# -- a real server ---------------------------------------------------------------------------------


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    found = [s for s in spans if s.parent_id == parent.span_id and s.trace_id == parent.trace_id]
    return sorted(found, key=lambda s: s.start_ns)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True})], ids=["uvloop"])
async def test_a_spoken_call_is_traced_and_its_log_lines_carry_its_ids(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    config["server"]["records"] = {"url": f"sqlite:///{tmp_path}/calls.db"}
    with OtlpReceiver() as receiver:
        config["server"]["tracing"] = {
            "otlp_endpoint": receiver.url,
            "service_name": "voxline-test",
            "headers_env": "VOXLINE_TEST_OTLP_HEADERS",
        }
        path = tmp_path / "agent.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {"VOXLINE_TEST_OTLP_HEADERS": "x-api-key=secret%20one"}
        with running_server(str(path), env=env) as server, anyio.fail_after(120):
            async with websockets.connect(f"{server.ws}/v1/stream") as ws:
                call = Call(ws)
                await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
                started = await call.receive_until(lambda e: e["type"] == "session.started")
                await call.receive_until(lambda e: e["type"] == "audio.end")  # the greeting
                async with anyio.create_task_group() as tg:
                    speech = np.concatenate([espeak("What can you do?"), silence(1.5)])
                    tg.start_soon(call.stream, speech)
                    latency = await call.receive_until(lambda e: e["type"] == "turn.latency")
                    await call.receive_until(lambda e: e["type"] == "audio.end")
                await ws.send(json.dumps({"type": "bye"}))
            call_id = started["session_id"]
            await anyio.to_thread.run_sync(server.wait_for_log, f"call {call_id} recorded", 30)
            async with httpx.AsyncClient(base_url=server.http) as http:
                record = (await http.get(f"/v1/calls/{call_id}")).json()
            assert await anyio.to_thread.run_sync(server.stop) == 0  # the lifespan flushes
            log = list(server.log)

        def complete(got: list[ReceivedSpan]) -> bool:
            return any(s.name == "call" for s in got) and any(s.name == "turn" for s in got)

        assert await anyio.to_thread.run_sync(receiver.wait_for, complete, 30)
        received = list(receiver.spans)
        headers = receiver.headers

    [root] = [s for s in received if s.name == "call"]
    assert root.parent_id == ""
    assert root.resource["service.name"] == "voxline-test"
    assert root.attributes == {
        "voxline.call.id": call_id,
        "voxline.call.transport": "native",
        "voxline.agent": "default",
        "voxline.call.end_reason": "hangup",
        "voxline.call.turns": 1,
    }
    assert root.start_ns < root.end_ns
    [turn] = children(received, root)
    assert turn.name == "turn"
    assert turn.attributes["voxline.call.id"] == call_id
    assert turn.attributes["voxline.turn.number"] == 1
    assert turn.attributes["voxline.reply.interrupted"] is False
    measured = latency["latency_ms"]
    for stage, ms in measured.items():
        assert turn.attributes[f"voxline.latency_ms.{stage}"] == pytest.approx(ms, abs=0.1)
    stages = children(received, turn)
    assert [s.name for s in stages] == [name for name in measured if "->" in name]
    assert root.start_ns <= turn.start_ns <= stages[0].start_ns
    assert stages[-1].end_ns <= turn.end_ns <= root.end_ns
    for stage in stages:
        assert stage.attributes == {"voxline.call.id": call_id}
        assert (stage.end_ns - stage.start_ns) / 1e6 == pytest.approx(
            abs(measured[stage.name]), abs=0.01
        )
    for before, after in itertools.pairwise(stages):  # one chain, no gap
        assert abs(after.start_ns - before.end_ns) < 1000  # nanoseconds of rounding
    assert {h.get("x-api-key") for h in headers} == {"secret one"}
    assert record["transport"] == "native"  # the record's sink sits around the trace's
    ids = f"[call={call_id} trace={root.trace_id}]"
    mine = [line for line in log if ids in line]
    assert any("call started (native)" in line for line in mine), "".join(log)
    assert any("call ended (hangup)" in line for line in mine), "".join(log)


OFF = """
import sys
import msgspec
from agent.config import load_config
from agent.config.schema import TracingConfig
from agent.server import create_app

def sdk():
    names = ("opentelemetry.sdk", "opentelemetry.exporter")
    return sorted(m for m in sys.modules if m.startswith(names))

config = load_config("configs/default.yaml")
server = msgspec.structs.replace(config.server, records=None)
config = msgspec.structs.replace(config, server=server)
create_app(config, keys=frozenset())
off = sdk()
tracing = TracingConfig(otlp_endpoint="http://127.0.0.1:9")
server = msgspec.structs.replace(config.server, tracing=tracing)
create_app(msgspec.structs.replace(config, server=server), keys=frozenset())
print(off, bool(sdk()))
"""


def test_without_tracing_the_sdk_is_never_imported() -> None:
    result = subprocess.run(
        ["timeout", "120", sys.executable, "-c", OFF],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "[] True"  # off: none; on: the SDK
