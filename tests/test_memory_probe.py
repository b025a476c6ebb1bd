"""The debug memory probe (agent/memory_probe.py): off without its variable; with it, each
SIGUSR1 writes a numbered tracemalloc snapshot and a reading of what the process holds."""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from agent.memory_probe import ENV, ProbeReading, install, read_smaps_rollup

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SIGUSR1 and /proc: Linux")


class Kept:
    """Objects the test keeps alive between two probes."""


@pytest.fixture
def restored() -> Iterator[None]:
    """The SIGUSR1 handler and tracemalloc as they were before the test."""
    handler, tracing = signal.getsignal(signal.SIGUSR1), tracemalloc.is_tracing()
    yield
    signal.signal(signal.SIGUSR1, handler)
    if not tracing:
        tracemalloc.stop()


def probe(folder: Path, number: int) -> ProbeReading:
    os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs in this thread before kill returns
    return msgspec.json.decode((folder / f"probe-{number}.json").read_bytes(), type=ProbeReading)


def test_without_its_variable_the_probe_stays_off(restored: None) -> None:
    handler, tracing = signal.getsignal(signal.SIGUSR1), tracemalloc.is_tracing()
    assert install({}) is None
    assert install({ENV: ""}) is None
    assert signal.getsignal(signal.SIGUSR1) is handler
    assert tracemalloc.is_tracing() == tracing


def test_each_signal_writes_a_snapshot_and_a_reading_that_see_what_grew(
    tmp_path: Path, restored: None
) -> None:
    folder = tmp_path / "probes"
    assert install({ENV: str(folder)}) == folder
    assert tracemalloc.is_tracing()
    first = probe(folder, 1)
    kept = [Kept() for _ in range(5000)]
    blob = bytes(4 << 20)
    second = probe(folder, 2)
    assert (first.number, second.number) == (1, 2)
    assert second.by_type.get("Kept", 0) - first.by_type.get("Kept", 0) == len(kept)
    assert second.traced - first.traced >= len(blob)
    assert second.rss > 0
    assert 0 < second.anonymous <= second.rss
    assert second.threads >= 1
    old = tracemalloc.Snapshot.load(str(folder / "probe-1.tracemalloc"))
    new = tracemalloc.Snapshot.load(str(folder / "probe-2.tracemalloc"))
    grew = new.compare_to(old, "lineno")[0]
    assert grew.traceback[0].filename == __file__
    assert grew.size_diff >= len(blob)


def test_smaps_rollup_of_a_process_that_is_not_there_is_empty() -> None:
    assert read_smaps_rollup("self")["Rss"] > 0
    assert read_smaps_rollup(2**22 + 1) == {}
