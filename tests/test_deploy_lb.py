"""The compose deployment's load balancer, for real: two ``voxline serve`` replicas behind the
real HAProxy running deploy/compose/haproxy.cfg (addresses through its environment variables).

A native WebSocket call goes through HAProxy; its replica gets SIGTERM and starts to drain:
HAProxy's health check on /health/ready takes it out of the pool (new calls go to the other
replica) while the call in progress goes on through the tunnel, answers a spoken turn and
ends by itself, and the drained replica exits 0. Then: every metric the Grafana dashboard
queries is one a real server exports.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import numpy as np
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.audio import espeak, silence
from tests.server import RunningServer, free_port, running_server
from tests.test_deploy import COMPOSE, tool
from tests.test_drain import agent_file, agent_said, start_call


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The servers run their own loops; the client's loop does not matter: run once."""
    return ("asyncio", {})


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two replicas of the default agent whose calls may go on 120 s into a drain (time for a
    spoken turn on a busy machine: the test ends its call itself)."""
    config = agent_file(tmp_path, drain_timeout_s=120)
    with running_server(config) as first, running_server(config) as second:
        yield first, second


def haproxy(first: RunningServer, second: RunningServer) -> Iterator[RunningServer]:
    """HAProxy with the project's configuration in front of the two replicas, once it listens;
    its log (health check changes included) read as a server's is."""
    port = free_port()
    env = {
        **os.environ,
        "HAPROXY_BIND": f"127.0.0.1:{port}",
        "HAPROXY_STATS_BIND": f"127.0.0.1:{free_port()}",
        "VOXLINE_1": f"127.0.0.1:{first.port}",
        "VOXLINE_2": f"127.0.0.1:{second.port}",
        "HAPROXY_DNS": f"127.0.0.1:{free_port()}",  # never asked: the addresses are IPs
    }
    # master-worker in the foreground: the master says "Loading success." once its worker
    # runs on the bound listeners
    command = ["timeout", "300", tool("haproxy"), "-W", "-db", "-f", str(COMPOSE / "haproxy.cfg")]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    running = RunningServer(process, port, [])

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with running.printed:
                running.log.append(line)
                running.printed.notify_all()
        with running.printed:
            running.printed.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        running.wait_for_log("Loading success.", 30)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def balancer(replicas: tuple[RunningServer, RunningServer]) -> Iterator[RunningServer]:
    yield from haproxy(*replicas)


async def sessions(server: RunningServer) -> int:
    async with httpx.AsyncClient() as client:
        ready = await client.get(f"{server.http}/health/ready")
    count: int = ready.json()["sessions"]
    return count


async def wait_for(server: RunningServer, text: str) -> str:
    return await anyio.to_thread.run_sync(server.wait_for_log, text, 60)


@pytest.mark.anyio
async def test_a_draining_replica_leaves_the_pool_while_its_call_through_haproxy_goes_on(
    replicas: tuple[RunningServer, RunningServer], balancer: RunningServer
) -> None:
    names = {replicas[0].port: "voxline-1", replicas[1].port: "voxline-2"}
    with anyio.fail_after(180):
        async with websockets.connect(f"{balancer.ws}/v1/stream") as ws:
            call = await start_call(ws)  # greeted through the tunnel
            counts = [await sessions(replica) for replica in replicas]
            assert sorted(counts) == [0, 1]
            busy, idle = replicas if counts[0] else replicas[::-1]

            busy.process.send_signal(signal.SIGTERM)  # a rolling update takes this one
            await wait_for(busy, "SIGTERM: draining")
            await wait_for(balancer, f"voxline/{names[busy.port]} is DOWN")

            async with websockets.connect(f"{balancer.ws}/v1/stream") as second:
                await start_call(second)  # a new call: greeted by the other replica
                assert await sessions(idle) == 1
                await second.send(json.dumps({"type": "bye"}))

            async with anyio.create_task_group() as tg:  # the first call goes on
                speech = np.concatenate([espeak("What can you do?"), silence(1.5)])
                tg.start_soon(call.stream, speech)
                await call.receive_until(lambda e: e["type"] == "turn.latency")
                await call.receive_until(lambda e: e["type"] == "audio.end")
            await ws.send(json.dumps({"type": "bye"}))
            ended = await call.receive_until(lambda e: e["type"] == "session.ended")
        assert await anyio.to_thread.run_sync(busy.process.wait, 60) == 0
        async with httpx.AsyncClient() as client:  # /metrics is for Prometheus, not the public
            metrics = await client.get(f"{balancer.http}/metrics")
    assert ended["reason"] == "bye"
    assert "take a message" in agent_said(call)  # the default agent's `help` reply
    assert metrics.status_code == 404


def exported_samples(exposition: str) -> set[str]:
    """Every sample name a scrape of this exposition can hold (a counter's ``_total``, a
    histogram's ``_bucket``/``_sum``/``_count``), from its families, samples or not."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    return names


def test_every_metric_on_the_dashboard_is_one_a_server_exports() -> None:
    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "voxline.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bvoxline_[a-z_]+\b", target["expr"])
    }
    assert len(queried) >= 10
    with running_server() as server:
        exposition = httpx.get(f"{server.http}/metrics").text
    missing = queried - exported_samples(exposition)
    assert not missing, f"the dashboard queries metrics no server exports: {sorted(missing)}"


def test_the_metric_check_tells_a_missing_metric() -> None:
    exposition = "# HELP voxline_x_total X.\n# TYPE voxline_x_total counter\n"
    assert exported_samples(exposition) == {"voxline_x", "voxline_x_total"}
    assert "voxline_sessions" not in exported_samples(exposition)
