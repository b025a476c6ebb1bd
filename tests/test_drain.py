"""Graceful drain (agent/drain.py): a real ``voxline serve`` gets SIGTERM with a call in flight.

The call is a real `websockets` client speaking espeak-ng audio over /v1/stream. After the
signal the server refuses new calls (readiness, WebSocket) but the call in flight goes on; it
exits 0 once the call ends, or, at the drain deadline, after the call has heard the goodbye.
Below them: the drain's steps against the server's real state, and a session's farewell with
the real models.
"""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
import httpx
import msgspec
import numpy as np
import pytest
import websockets

from agent.config import AgentConfig, ServerConfig
from agent.dialogue.decision import Say
from agent.drain import REASON, drain
from agent.reply import ReplyPart
from agent.server import ServerState
from agent.session import Models, Session
from agent.session_events import AgentText, CallEnded, Interrupted
from tests.audio import espeak, silence
from tests.server import ROOT, RunningServer, running_server
from tests.test_server import RATE, Call
from tests.test_session import LONG_REPLY, Recorder, Script, settings

#: the server's log line once it has started to drain (agent/drain.py)
DRAINING = "SIGTERM: draining"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The server runs its own loop (uvloop); the client's loop does not matter: run once."""
    return ("asyncio", {})


def agent_file(folder: Path, **server: object) -> str:
    """The default agent with ``server`` settings added."""
    config = msgspec.yaml.decode((ROOT / "configs" / "default.yaml").read_bytes())
    config.setdefault("server", {}).update(server)
    path = folder / "drain-agent.yaml"
    path.write_bytes(msgspec.yaml.encode(config))
    return str(path)


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture
def quick_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server whose calls may go on 2 s after SIGTERM."""
    with running_server(agent_file(tmp_path, drain_timeout_s=2)) as running:
        yield running


async def start_call(ws: websockets.ClientConnection) -> Call:
    """Say hello and wait for the greeting to end."""
    call = Call(ws)
    await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
    await call.receive_until(lambda e: e["type"] == "audio.end")
    return call


async def sigterm(server: RunningServer) -> None:
    """Send SIGTERM; return once the server says it is draining."""
    server.process.send_signal(signal.SIGTERM)
    await anyio.to_thread.run_sync(server.wait_for_log, DRAINING, 30)


async def exit_code(server: RunningServer) -> int | None:
    return await anyio.to_thread.run_sync(server.process.wait, 60)


def agent_said(call: Call) -> str:
    return "".join(e["delta"] for e in call.events if e["type"] == "agent.text")


@pytest.mark.anyio
async def test_a_call_in_flight_finishes_while_new_calls_are_refused(
    server: RunningServer,
) -> None:
    with anyio.fail_after(120):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = await start_call(ws)
            await sigterm(server)

            async with httpx.AsyncClient() as client:
                ready = await client.get(f"{server.http}/health/ready")
            assert ready.status_code == 503
            assert ready.json()["draining"] is True
            assert ready.json()["sessions"] == 1
            async with websockets.connect(f"{server.ws}/v1/stream") as refused:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await refused.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1013
            assert closed.value.rcvd.reason == "server is shutting down"

            async with anyio.create_task_group() as tg:  # the call goes on: a spoken turn
                speech = np.concatenate([espeak("What can you do?"), silence(1.5)])
                tg.start_soon(call.stream, speech)
                await call.receive_until(lambda e: e["type"] == "turn.latency")
                await call.receive_until(lambda e: e["type"] == "audio.end")
            assert server.process.poll() is None
            await ws.send(json.dumps({"type": "bye"}))
            ended = await call.receive_until(lambda e: e["type"] == "session.ended")
        assert await exit_code(server) == 0
    assert "take a message" in agent_said(call)  # the default agent's `help` reply
    assert ended["reason"] == "bye"
    assert ServerConfig().drain_message not in agent_said(call)


@pytest.mark.anyio
async def test_a_call_still_running_at_the_deadline_hears_the_goodbye(
    quick_server: RunningServer,
) -> None:
    server = quick_server
    with anyio.fail_after(120):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = await start_call(ws)
            await sigterm(server)
            ended = await call.receive_until(lambda e: e["type"] == "session.ended")
            with pytest.raises(websockets.ConnectionClosedOK):
                while True:
                    await call.receive()
        assert await exit_code(server) == 0
    assert ended["reason"] == "server_shutdown"
    assert ServerConfig().drain_message in agent_said(call)
    goodbye = [e for e in call.events if e["type"] == "audio.end"][-1]["generation"]
    assert len(call.audio[goodbye]) > RATE  # spoken: over half a second of audio


class Caller:
    """A running call as the drain sees it (one of ``calls``): what it was told; it hangs up
    at the goodbye if ``obliging`` (else it talks over it), and when it is ended."""

    def __init__(self, state: ServerState, calls: set[Caller], *, obliging: bool = True) -> None:
        self.state, self.calls, self.obliging = state, calls, obliging
        self.told: list[tuple[str, ...]] = []
        calls.add(self)

    async def farewell(self, text: str, reason: str) -> None:
        self.told.append(("farewell", text, reason))
        if self.obliging:
            self._hang_up()

    async def end_call(self, reason: str) -> None:
        self.told.append(("end_call", reason))
        self._hang_up()

    def _hang_up(self) -> None:
        self.calls.discard(self)
        self.state.sessions -= 1


def server_state(sessions: int) -> ServerState:
    state = ServerState(AgentConfig(name="drain"))
    state.sessions = sessions
    return state


@pytest.mark.anyio
async def test_calls_that_end_before_the_deadline_are_told_nothing() -> None:
    state, calls = server_state(2), set[Caller]()
    caller = Caller(state, calls)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, state, 3600, "Bye.", calls)
            await anyio.wait_all_tasks_blocked()
            state.draining.started.set()
            state.sessions -= 1
            await anyio.wait_all_tasks_blocked()
            assert not state.draining.done.is_set()  # one call still runs
            state.sessions -= 1
            await state.draining.done.wait()
    assert caller.told == []


@pytest.mark.anyio
async def test_at_the_deadline_each_call_hears_the_goodbye_then_one_that_stays_is_ended() -> None:
    state, calls = server_state(2), set[Caller]()
    leaves, stays = Caller(state, calls), Caller(state, calls, obliging=False)
    with anyio.fail_after(10):
        state.draining.started.set()
        await drain(state, 0, "Bye.", calls, goodbye_s=0)
    assert leaves.told == [("farewell", "Bye.", REASON)]
    assert stays.told == [("farewell", "Bye.", REASON), ("end_call", REASON)]
    assert state.draining.done.is_set()
    assert state.sessions == 0
    assert not calls


class LongGreeting(Script):
    async def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        yield Say(LONG_REPLY)


@pytest.mark.anyio
async def test_a_farewell_stops_the_reply_says_its_words_and_then_hangs_up(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    sink = Recorder()
    models = Models(vad_runner, asr_runner, tts_engine)  # type: ignore[arg-type]
    session = Session(models, LongGreeting(), sink, settings())
    with sink.deadline(60, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await sink.wait_for(lambda: ("audio", 1) in sink.log)
            await session.farewell("Goodbye now.", REASON)
        # the call ended by itself: nobody closed its input
    [interrupted] = sink.events(Interrupted)
    assert isinstance(interrupted, Interrupted)
    assert interrupted.generation == 1
    said = [e.delta for e in sink.events(AgentText) if isinstance(e, AgentText)]
    assert said[-1] == "Goodbye now."
    assert len(sink.audio[2]) > 16000  # spoken: over half a second
    ended = sink.log.index(("event", CallEnded(REASON)))
    assert sink.log.index(("end", 2)) < ended  # hung up once the goodbye had played
