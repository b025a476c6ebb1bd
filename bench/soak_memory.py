"""What the soak's server holds in memory (bench/soak.py): read from outside, and probed inside.

From outside, at every RSS reading: ``/proc/PID/smaps_rollup``'s anonymous memory (the heap:
Python objects, numpy buffers, the models' arenas; the rest of the RSS is mapped files, the
model weights and libraries) and ``/proc/PID/status``'s thread count.

Inside, with ``--tracemalloc``: the server runs with the debug probe of
:mod:`agent.memory_probe` (``VOXLINE_MEMORY_PROBE``), and :class:`Prober` asks it for a reading
and a tracemalloc snapshot (``SIGUSR1``) at chosen points of the run. :func:`growth` diffs two
of them: the Python allocation sites that grew most, the object types whose count grew, the
Python memory traced against the anonymous RSS, and what ``malloc_trim`` gave back (free heap
that glibc kept: fragmentation, not objects).
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import msgspec

from agent.memory_probe import ProbeReading, read_smaps_rollup

__all__ = ["Prober", "growth", "print_growth", "threads"]

#: allocation sites and object types listed in a growth report
TOP = 12
MB = 2**20


def threads(pid: int) -> int:
    """The threads of process ``pid`` now (0 once it has gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def anonymous(pid: int) -> int:
    """Process ``pid``'s anonymous resident memory in bytes (0 where it cannot be read)."""
    return read_smaps_rollup(pid).get("Anonymous", 0)


@dataclass
class Prober:
    """Asks the server process ``pid`` (started with ``VOXLINE_MEMORY_PROBE=folder``) for
    probe readings, and keeps them with their time (s since the soak began) and label."""

    pid: int
    folder: Path
    taken: list[tuple[str, float, ProbeReading]] = field(default_factory=list)
    asked: int = 0  # SIGUSR1 sent: the server numbers its probes in this order

    async def take(self, label: str, at: float, within: float = 180) -> ProbeReading:
        """A reading taken now (``SIGUSR1``, then its file is awaited: another process's work,
        nothing to wait on but the file; ``TimeoutError`` after ``within`` seconds)."""
        self.asked += 1
        path = self.folder / f"probe-{self.asked}.json"
        os.kill(self.pid, signal.SIGUSR1)
        with anyio.fail_after(within):  # another process's file: polled
            while True:
                if path.exists():
                    break
                await anyio.sleep(0.2)
        probe = msgspec.json.decode(path.read_bytes(), type=ProbeReading)
        self.taken.append((label, at, probe))
        return probe

    def snapshot(self, number: int) -> tracemalloc.Snapshot:
        return tracemalloc.Snapshot.load(str(self.folder / f"probe-{number}.tracemalloc"))


def growth(prober: Prober, first: int, last: int) -> dict[str, Any]:
    """How the server's memory changed from reading ``first`` to ``last`` (1-based)."""
    (label_a, at_a, a), (label_b, at_b, b) = prober.taken[first - 1], prober.taken[last - 1]
    old, new = prober.snapshot(a.number), prober.snapshot(b.number)
    stats = new.compare_to(old, "lineno")
    sites = [
        {
            "site": f"{s.traceback[0].filename}:{s.traceback[0].lineno}",
            "size_diff_kb": round(s.size_diff / 1024, 1),
            "count_diff": s.count_diff,
            "size_kb": round(s.size / 1024, 1),
        }
        for s in sorted(stats, key=lambda s: s.size_diff, reverse=True)[:TOP]
    ]
    kinds = set(a.by_type) | set(b.by_type)
    types = sorted(
        ((k, b.by_type.get(k, 0) - a.by_type.get(k, 0)) for k in kinds),
        key=lambda item: item[1],
        reverse=True,
    )
    minutes = max(at_b - at_a, 1e-9) / 60
    return {
        "from": label_a,
        "to": label_b,
        "minutes": round(minutes, 2),
        "rss_mb": [round(a.rss / MB, 1), round(b.rss / MB, 1)],
        "anonymous_mb": [round(a.anonymous / MB, 1), round(b.anonymous / MB, 1)],
        "traced_mb": [round(a.traced / MB, 1), round(b.traced / MB, 1)],
        "rss_after_trim_mb": [round(a.rss_trimmed / MB, 1), round(b.rss_trimmed / MB, 1)],
        "objects": [a.objects, b.objects],
        "threads": [a.threads, b.threads],
        "sites": sites,
        "types": [{"type": k, "count_diff": d} for k, d in types[:TOP] if d > 0],
    }


def print_growth(report: dict[str, Any]) -> None:
    def pair(key: str) -> str:
        first, last = report[key]
        return f"{first} -> {last}"

    print(
        f"\nserver memory, {report['from']} -> {report['to']} ({report['minutes']} min): "
        f"RSS {pair('rss_mb')} MB, anonymous {pair('anonymous_mb')} MB, Python traced "
        f"{pair('traced_mb')} MB, RSS after malloc_trim {pair('rss_after_trim_mb')} MB, "
        f"gc objects {pair('objects')}, threads {pair('threads')}"
    )
    print("allocation sites that grew most (tracemalloc):")
    for site in report["sites"]:
        print(
            f"  {site['size_diff_kb']:+10.1f} KiB {site['count_diff']:+7d} blocks "
            f"(now {site['size_kb']:.1f} KiB)  {site['site']}"
        )
    print("object types whose count grew (gc):")
    for item in report["types"]:
        print(f"  {item['count_diff']:+7d}  {item['type']}")
