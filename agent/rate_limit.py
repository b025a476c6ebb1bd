"""Requests per minute per API key: a token bucket, sans-I/O (the time is the caller's).

A bucket holds up to ``per_minute`` tokens and gains ``per_minute / 60`` a second; a request
takes one. A full bucket lets a burst of ``per_minute`` requests through at once, then one every
``60 / per_minute`` seconds. A request that finds no token is refused and told how long until
there is one (:meth:`TokenBucket.take` returns it: the ``Retry-After`` of a 429).

:class:`RateLimits` keeps one bucket per key, made on the key's first request; the keys are
the server's own (configured at start-up), so their number is bounded. It reads the clock it
was given (:func:`time.monotonic` by default); :class:`TokenBucket` never reads one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable

__all__ = ["RateLimits", "TokenBucket"]

#: a token short by less than this is whole (refills summed in floating point)
_ROUNDING = 1e-9


class TokenBucket:
    """``per_minute`` requests a minute, in bursts of up to ``per_minute`` (see the module)."""

    def __init__(self, per_minute: int, now: float) -> None:
        if per_minute < 1:
            raise ValueError(f"a rate is at least 1 request a minute, not {per_minute}")
        self.per_minute = per_minute
        self.tokens = float(per_minute)
        self._at = now

    def take(self, now: float) -> float:
        """Take a token at time ``now`` (seconds): ``0.0`` if one was there, otherwise the
        seconds until there is one (nothing is taken). A clock that went back refills nothing."""
        rate = self.per_minute / 60.0
        if now > self._at:
            self.tokens = min(float(self.per_minute), self.tokens + (now - self._at) * rate)
            self._at = now
        if self.tokens >= 1.0 - _ROUNDING:
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / rate


class RateLimits:
    """One bucket per key, on ``clock``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[Hashable, TokenBucket] = {}

    def take(self, key: Hashable, per_minute: int) -> int:
        """A request of ``key``, allowed ``per_minute``: ``0`` if it may go on, otherwise the
        whole seconds to wait (at least 1: a ``Retry-After``)."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None or bucket.per_minute != per_minute:
            bucket = self._buckets[key] = TokenBucket(per_minute, now)
        wait = bucket.take(now)
        return 0 if wait == 0.0 else max(1, math.ceil(wait))
