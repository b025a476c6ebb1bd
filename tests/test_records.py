"""Call records (agent/records/): a real server's call recorded and served over REST; the store,
the writer, retention and the queue against SQLite and a real PostgreSQL server.

The PostgreSQL server is Debian's (``postgresql``, in the Makefile's apt packages), started for
this module in a temporary directory, listening on a Unix socket only; its tests are skipped,
saying why, when its binaries are not installed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import numpy as np
import pytest
import websockets
import yaml  # type: ignore[import-untyped]  # no stubs installed

from agent.config import parse_config
from agent.config.runtime import llm_config
from agent.config.schema import RecordsConfig
from agent.dialogue.llm import LLMEngine, make_backend
from agent.dialogue.llm_tools import ToolCall, ToolResult
from agent.metrics import METRICS
from agent.records import CallQuery, CallRecord, CallStore, Line, Note, Recorder, ToolUse
from agent.records.call_log import CallLog
from agent.records.model import decode_cursor
from agent.records.recorder import record_call
from agent.records.store import default_url
from agent.responders import LLMResponder
from agent.server_process import ROOT, free_port
from agent.session import Models, Session
from agent.session_events import AgentText, CallEnded, Interrupted, TurnLatency, UserTurn
from pipeline.clock import FakeClock
from tests.audio import espeak, silence
from tests.server import running_server
from tests.test_server import RATE, Call
from tests.test_session import Recorder as KeptSink

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def record(
    call_id: str,
    started: dt.datetime = NOW,
    *,
    agent: str = "default",
    transport: str = "native",
) -> CallRecord:
    return CallRecord(
        id=call_id,
        agent=agent,
        transport=transport,
        started_at=started,
        ended_at=started + dt.timedelta(seconds=42),
        end_reason="hangup",
        lines=[
            Line(
                speaker="agent", text="Hi, this is Voxline.", start_s=0.1, end_s=2.0, generation=1
            ),
            Line(speaker="caller", text="What can you do?", start_s=3.0, end_s=4.2, rule="T1"),
            Line(
                speaker="agent",
                text="I can take a message, or put you through.",
                start_s=4.6,
                end_s=5.1,
                generation=2,
                interrupted=True,
                heard="I can take",
                played_ms=480.0,
                interrupted_by="B1",
                latency_ms={"total": 412.5},
            ),
        ],
        tools=[
            ToolUse(id="c1", name="current_datetime", arguments="{}", result="Monday", at_s=4.5)
        ],
        notes=[Note(kind="transfer", detail="operator", at_s=6.0)],
    )


# -- the databases -------------------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server for this module: its URL (the ``postgres`` database)."""
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (apt install postgresql): its tests are skipped")
    base = Path(tempfile.mkdtemp(prefix="voxline-pg-"))
    data, sockets = base / "data", base / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    initdb = [str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "voxline"]
    subprocess.run(
        ["timeout", "120", *_as_postgres([*initdb, "--no-sync", "-E", "UTF8"])],
        check=True,
        capture_output=True,
    )
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-w"]
    options = f"-p {port} -k {sockets} -c listen_addresses='' -c fsync=off"
    log = base / "server.log"
    subprocess.run(
        ["timeout", "60", *_as_postgres([*pg_ctl, "-o", options, "-l", str(log), "start"])],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://voxline@/postgres?host={sockets}&port={port}"
    finally:
        subprocess.run(
            ["timeout", "60", *_as_postgres([*pg_ctl, "-m", "fast", "stop"])], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/calls.db"
    server: str = request.getfixturevalue("postgres")
    import psycopg

    name = f"calls_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return server.replace("/postgres?", f"/{name}?")


@pytest.fixture
def store(store_url: str) -> Iterator[CallStore]:
    store = CallStore(store_url)
    store.migrate()
    yield store
    store.close()


# -- the store ----------------------------------------------------------------------------------


def test_migrations_apply_once_and_a_second_start_changes_nothing(store_url: str) -> None:
    first = CallStore(store_url)
    assert first.migrate() == 1
    first.write([record("a")])
    assert first.migrate() == 1  # again, on the same connection
    first.close()
    second = CallStore(store_url)  # another server starting on the same database
    assert second.migrate() == 1
    assert second.get("a") == record("a")
    second.close()


def test_a_record_is_read_back_whole(store: CallStore) -> None:
    store.write([record("a")])
    store.write([record("a", NOW + DAY)])  # the same call again: the first stays
    assert store.get("a") == record("a")
    assert store.get("missing") is None


def test_calls_are_listed_newest_first_page_by_page(store: CallStore) -> None:
    # two calls start in the same second: the id breaks the tie, and no page repeats one
    starts = [NOW - DAY * n for n in range(6)] + [NOW]
    store.write([record(f"c{n}", start) for n, start in enumerate(starts)])
    seen: list[str] = []
    after = None
    for _ in range(4):
        page = store.search(CallQuery(limit=3, after=after))
        seen += [call.id for call in page.data]
        if page.next_cursor is None:
            assert not page.has_more
            break
        assert page.has_more
        after = decode_cursor(page.next_cursor)
    assert seen == ["c6", "c0", "c1", "c2", "c3", "c4", "c5"]


def test_calls_are_filtered_by_agent_transport_and_time(store: CallStore) -> None:
    store.write(
        [
            record("old", NOW - DAY * 3),
            record("sip", NOW - DAY, transport="sip"),
            record("other", NOW - DAY, agent="receptionist"),
            record("new", NOW),
        ]
    )

    def ids(query: CallQuery) -> list[str]:
        return [call.id for call in store.search(query).data]

    assert ids(CallQuery(transport="sip")) == ["sip"]
    assert ids(CallQuery(agent="receptionist")) == ["other"]
    assert ids(CallQuery(agent="default", transport="native")) == ["new", "old"]
    since, until = (NOW - DAY * 2).timestamp(), NOW.timestamp()
    assert sorted(ids(CallQuery(since=since))) == ["new", "other", "sip"]
    # until is exclusive
    assert sorted(ids(CallQuery(since=since, until=until))) == ["other", "sip"]
    assert ids(CallQuery(agent="nobody")) == []


def test_retention_deletes_only_calls_older_than_the_limit(store: CallStore) -> None:
    store.write([record("old", NOW - DAY * 31), record("recent", NOW - DAY * 29)])
    assert store.delete_before((NOW - DAY * 30).timestamp()) == 1
    assert [call.id for call in store.search(CallQuery()).data] == ["recent"]


# -- the writer ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_writer_stores_what_calls_submit_and_applies_retention(store_url: str) -> None:
    setup = CallStore(store_url)
    setup.migrate()
    setup.write([record("expired", NOW - DAY * 31)])
    setup.close()
    config = RecordsConfig(url=store_url, retention_days=30, queue=10)
    recorder = Recorder(config, "default", clock=NOW.timestamp)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(recorder.run)
            for n in range(3):
                assert recorder.submit(record(f"c{n}", NOW + dt.timedelta(seconds=n)))
            await recorder.aclose()  # the writer writes what is queued, then stops
    reader = CallStore(store_url)
    try:
        listed = reader.search(CallQuery())
    finally:
        reader.close()
    assert [call.id for call in listed.data] == ["c2", "c1", "c0"]  # "expired" is gone
    assert recorder.dropped == 0


@pytest.mark.anyio
async def test_a_full_queue_drops_the_record_and_counts_it(tmp_path: Path) -> None:
    def dropped() -> float:
        for line in METRICS.exposition().decode().splitlines():
            if line.startswith('voxline_records_dropped_total{reason="queue_full"}'):
                return float(line.split()[-1])
        return 0.0

    before = dropped()
    config = RecordsConfig(url=f"sqlite:///{tmp_path}/calls.db", queue=2)
    recorder = Recorder(config, "default")  # its writer is not running: nothing is taken
    assert recorder.submit(record("a"))
    assert recorder.submit(record("b"))
    assert not recorder.submit(record("c"))
    assert recorder.dropped == 1
    assert dropped() == before + 1
    with anyio.fail_after(30):
        await recorder.aclose()


@pytest.mark.anyio
async def test_records_go_to_the_xdg_data_directory_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    recorder = Recorder(RecordsConfig(), "default")
    with anyio.fail_after(30):
        await recorder.aclose()
    recorder.store.migrate()
    recorder.store.close()
    assert (tmp_path / "voxline" / "calls.db").is_file()
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_url() == "sqlite:///~/.local/share/voxline/calls.db"


# -- one call's record (sans-I/O) ---------------------------------------------------------------


def test_a_barge_in_is_recorded_with_what_the_caller_heard() -> None:
    log = CallLog("id", "default", "native", NOW, caller_time=lambda sample: sample / 16000)
    log.event(AgentText(1, "Hello, how can I "), at=0.2)
    log.event(AgentText(1, "help you today?"), at=0.3)
    log.audio(1, at=0.5)
    log.event(UserTurn("I want a person", start=16000, end=40000, rule="T1"), at=2.6)
    log.event(Interrupted(1, heard_text="Hello, how", played_ms=700.0, rule="B2"), at=1.2)
    log.event(AgentText(2, "One moment."), at=3.0)
    log.event(TurnLatency(2, {"total": 321.04}), at=3.1)
    log.audio_ended(2, at=4.0)
    log.tool("t1", "transfer", '{"target": "operator"}', None, at=3.5)
    log.tool("t1", "transfer", '{"target": "operator"}', "done", at=4.5)
    log.event(CallEnded("transferred"), at=4.6)
    result = log.record(NOW + DAY, "hangup")
    assert result.end_reason == "transferred"
    assert [(line.speaker, line.start_s) for line in result.lines] == [
        ("agent", 0.5),  # from its first audio
        ("caller", 1.0),
        ("agent", 3.0),
    ]
    greeting, caller, answer = result.lines
    assert greeting.text == "Hello, how can I help you today?"
    assert (greeting.interrupted, greeting.heard, greeting.played_ms) == (True, "Hello, how", 700)
    assert (greeting.end_s, greeting.interrupted_by) == (1.2, "B2")
    assert (caller.text, caller.end_s, caller.rule) == ("I want a person", 2.5, "T1")
    assert (answer.latency_ms, answer.end_s, answer.interrupted) == ({"total": 321.0}, 4.0, False)
    assert result.tools == [
        ToolUse(
            id="t1", name="transfer", arguments='{"target": "operator"}', result="done", at_s=3.5
        )
    ]


LLM_AGENT = b"""
name: llm-test
greeting: {text: Hello.}
profile:
  llm: {base_url: "http://127.0.0.1:9/v1", model: qwen}
dialogue:
  engine: llm
  llm: {system_prompt: You are a receptionist.}
"""


@pytest.mark.anyio
async def test_a_call_is_recorded_through_its_sink_with_the_tool_calls_of_its_llm(
    vad_runner: Any, asr_runner: Any, tts_engine: Any
) -> None:
    config = parse_config(LLM_AGENT, ".yaml")
    settings = llm_config(config)
    backend = make_backend(settings)  # never asked: the history is written here
    responder = LLMResponder(LLMEngine(settings, backend), config)
    transport, clock = KeptSink(), FakeClock(100.0)
    models = Models(vad_runner, asr_runner, tts_engine)
    session = Session(models, responder, transport, session_id="c1", clock=clock)
    recording = record_call(session, "llm-test", NOW)
    sink = session.outbox.sink
    transfer = ToolCall(id="t1", name="transfer", arguments='{"target": "operator"}')
    try:
        with anyio.fail_after(30):
            responder.history.add_assistant("", [transfer])
            clock.advance(0.5)
            await sink.send_event(AgentText(generation=1, delta="One moment."))
            await sink.send_audio(1, bytes(640))
            clock.advance(1.5)
            await sink.end_audio(1)  # the reply is over: the tool call is seen
            responder.history.add_tool_result(transfer, ToolResult(content="done"))
            clock.advance(1.0)
    finally:
        await backend.aclose()
    result = recording.record(NOW + DAY, None)
    assert transport.log == [("event", AgentText(1, "One moment.")), ("audio", 1), ("end", 1)]
    assert (result.id, result.agent, result.transport) == ("c1", "llm-test", "recorder")
    assert (result.end_reason, result.started_at) == ("hangup", NOW)
    assert [(line.text, line.start_s, line.end_s) for line in result.lines] == [
        ("One moment.", 0.5, 2.0)
    ]
    assert result.tools == [  # seen at the reply's end, its result at the call's
        ToolUse(id="t1", name="transfer", arguments=transfer.arguments, result="done", at_s=2.0)
    ]


# -- a real server -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_spoken_call_is_recorded_and_served(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    config["server"]["records"] = {"url": f"sqlite:///{tmp_path}/calls.db"}
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    with running_server(str(path)) as server, anyio.fail_after(120):
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
            listed = (await http.get("/v1/calls")).json()
            one = (await http.get(f"/v1/calls/{call_id}")).json()
            sip = (await http.get("/v1/calls", params={"transport": "sip"})).json()
            unknown = await http.get("/v1/calls/no-such-call")
            bad = await http.get("/v1/calls", params={"limit": "500"})
    assert [c["id"] for c in listed["data"]] == [call_id]
    assert listed["has_more"] is False
    assert one == listed["data"][0]
    assert (one["transport"], one["agent"], one["end_reason"]) == ("native", "default", "hangup")
    lines = one["lines"]
    assert [line["speaker"] for line in lines] == ["agent", "caller", "agent"]
    greeting, caller, answer = lines
    assert greeting["text"].startswith("Hi, this is Voxline")
    assert "what can you do" in caller["text"].lower()
    assert "take a message" in answer["text"]
    assert 0 <= greeting["start_s"] < caller["start_s"] < caller["end_s"] < answer["start_s"]
    assert answer["end_s"] > answer["start_s"]
    assert answer["latency_ms"]["total"] == pytest.approx(latency["latency_ms"]["total"], abs=0.1)
    started_at = dt.datetime.fromisoformat(one["started_at"])
    assert started_at < dt.datetime.fromisoformat(one["ended_at"])
    assert sip["data"] == []
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "call_not_found"
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "limit"
