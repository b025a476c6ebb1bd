"""A debug-only memory probe: what the server's memory is made of, on demand (bench/soak.py).

Off unless ``VOXLINE_MEMORY_PROBE`` names a folder when ``voxline serve`` starts. Then the
process traces Python allocations (:mod:`tracemalloc`; one frame each, or as many as
``PYTHONTRACEMALLOC`` asks, which also starts tracing before the imports) and each ``SIGUSR1``
writes two files there, numbered from 1 in the order asked:

- ``probe-N.tracemalloc``: the snapshot (:meth:`tracemalloc.Snapshot.load` reads it; two
  snapshots diffed with :meth:`~tracemalloc.Snapshot.compare_to` give the sites that grew);
- ``probe-N.json``: :class:`ProbeReading` as JSON: the RSS and its anonymous part
  (``/proc/self/smaps_rollup``), the Python memory traced, the threads, the live objects the
  garbage collector tracks by type, and the RSS again after glibc's ``malloc_trim(0)`` has
  given back the free memory it held (what that gives back was fragmentation, not objects).

The snapshot is taken in the signal handler, on the event loop's thread: the server stalls
while it is written (about a second per 100 MB traced), which is why this is for debugging
only. Writing ``probe-N.json`` last, by a rename, tells a reader both files are complete.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import signal
import threading
import tracemalloc
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import msgspec

__all__ = ["ENV", "ProbeReading", "install", "read_smaps_rollup"]

#: the environment variable that turns the probe on: the folder it writes to
ENV = "VOXLINE_MEMORY_PROBE"
#: object types listed in a reading, the most numerous first
TOP_TYPES = 60


class ProbeReading(msgspec.Struct, frozen=True):
    """The process's memory as one ``SIGUSR1`` found it (sizes in bytes)."""

    number: int
    rss: int
    anonymous: int
    traced: int  # Python allocations that tracemalloc follows (numpy arrays included)
    traced_peak: int
    threads: int
    objects: int  # objects the garbage collector tracks
    by_type: dict[str, int]  # the TOP_TYPES most numerous of them
    rss_trimmed: int  # after malloc_trim(0); 0 where glibc is not the allocator
    anonymous_trimmed: int


def read_smaps_rollup(pid: int | str = "self") -> dict[str, int]:
    """``/proc/PID/smaps_rollup``'s sizes in bytes by field (``Rss``, ``Anonymous``, ...);
    empty where there is no such file (not Linux, or the process has gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    sizes = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) == 2 and fields[1] == "kB" and fields[0].isdigit():
            sizes[name] = int(fields[0]) * 1024
    return sizes


def _malloc_trim() -> bool:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc
        return False
    trim(0)
    return True


def reading(number: int) -> ProbeReading:
    """The process's memory now (and after a ``malloc_trim``)."""
    counts = Counter(type(o).__qualname__ for o in gc.get_objects())
    traced, peak = tracemalloc.get_traced_memory()
    before = read_smaps_rollup()
    trimmed = read_smaps_rollup() if _malloc_trim() else {}
    return ProbeReading(
        number=number,
        rss=before.get("Rss", 0),
        anonymous=before.get("Anonymous", 0),
        traced=traced,
        traced_peak=peak,
        threads=threading.active_count(),
        objects=sum(counts.values()),
        by_type=dict(counts.most_common(TOP_TYPES)),
        rss_trimmed=trimmed.get("Rss", 0),
        anonymous_trimmed=trimmed.get("Anonymous", 0),
    )


def install(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Turn the probe on where ``environ`` names its folder (created if need be): the folder,
    or ``None`` (the probe stays off). Call it once, from the main thread, at start-up."""
    folder = environ.get(ENV)
    if not folder:
        return None
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    if not tracemalloc.is_tracing():
        tracemalloc.start(1)
    taken = 0

    def probe(signum: int, frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        tracemalloc.take_snapshot().dump(str(path / f"probe-{taken}.tracemalloc"))
        partial = path / f".probe-{taken}.json"
        partial.write_bytes(msgspec.json.encode(reading(taken)))
        partial.rename(path / f"probe-{taken}.json")

    signal.signal(signal.SIGUSR1, probe)
    return path
