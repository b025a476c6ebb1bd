"""Speech known in advance is synthesised once: :class:`CachedEngine`, a bounded cache of
synthesised audio in front of any :class:`~voices.engine.TTSEngine`.

What is kept and under which key:

- **Key**: a digest (BLAKE2b, 128 bits) of the msgpack encoding of the request's whole
  :class:`~voices.engine.SpeechPlan`: every segment's text, prosody (all knobs), style, pause,
  marks, voice, language and phonemes. Any difference in how a text is to be said is another
  key. A cache belongs to one engine (the instance it wraps), and the catalog voice is in the
  plan (:attr:`~voices.engine.SpeechSegment.voice`), so the key names the voice too.
- **Value**: the :class:`~voices.engine.SpeechChunk` list exactly as the engine produced it
  (PCM, sample offsets, text spans, word timings, marks). Chunks are frozen, so one entry is
  replayed to any number of readers at once.

Rules:

1. A **hit** replays the chunks in order as an async generator, with a checkpoint before each
   one, so a reader that is cancelled (a barge-in) stops there as it would with a live engine;
   the inner engine is not called.
2. A **miss** synthesises through the inner engine, passing each chunk on as it comes, and
   keeps the result only once the inner request has ended normally. A request that is closed
   early or cancelled, or that fails, keeps nothing.
3. **Concurrent misses** of one key each synthesise (the inner engine's queue orders them, and
   neither waits for a request it does not own); the first to complete stores the entry, a
   later one leaves it as it is.
4. **Bound**: the PCM bytes of every entry together stay at or under ``max_bytes`` (word
   timings and marks, a few dozen bytes per word, are not counted). Storing past the bound
   evicts least recently used entries first; a result larger than the bound on its own is not
   kept (and a miss stops collecting it as soon as it is). ``max_bytes=0``: nothing is kept.

:meth:`CachedEngine.statistics` reports hits, misses, entries, bytes and evictions (exported
at ``/metrics`` as ``voxline_tts_cache_*``). Life cycle (``start``, ``close``, the context
manager) and :attr:`~CachedEngine.sample_rate` are the inner engine's.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import anyio.lowlevel
import msgspec

from pipeline.errors import ExecutorClosed
from voices.engine import Prosody, SpeechChunk, SpeechPlan, TTSEngine, as_plan
from voices.router import VoiceRouter

__all__ = ["CacheStatistics", "CachedEngine", "Lifecycle", "SpeechCache", "plan_key"]

_ENCODER = msgspec.msgpack.Encoder()


def plan_key(plan: SpeechPlan) -> bytes:
    """The cache key of ``plan``: a digest of everything it says and how."""
    return hashlib.blake2b(_ENCODER.encode(plan), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    name: str
    hits: int
    misses: int
    #: entries kept now, and their PCM bytes
    entries: int
    bytes: int
    max_bytes: int
    #: entries dropped to make room for newer ones
    evictions: int


class SpeechCache:
    """The store: chunk lists by key, least recently used first, bounded in PCM bytes (plain
    synchronous code; :class:`CachedEngine` is its async side)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 or more, not {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, tuple[tuple[SpeechChunk, ...], int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> tuple[SpeechChunk, ...] | None:
        """The chunks kept for ``key`` (now the most recently used), counted as a hit; or
        ``None``, counted as a miss."""
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found[0]

    def put(self, key: bytes, chunks: tuple[SpeechChunk, ...]) -> bool:
        """Keep ``chunks`` under ``key``, evicting the least recently used entries as the bound
        needs; ``False`` (nothing changes) when the key is kept already or the chunks alone
        are larger than the bound."""
        size = sum(len(chunk.pcm) for chunk in chunks)
        if key in self._entries or size > self.max_bytes:
            return False
        while self.bytes + size > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped
            self.evictions += 1
        self._entries[key] = (chunks, size)
        self.bytes += size
        return True

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0


class Lifecycle(Protocol):
    """What :class:`CachedEngine` needs of the engine it wraps, beyond speaking."""

    def start(self) -> None: ...
    def close(self) -> None: ...


class _Wrappable(TTSEngine, Lifecycle, Protocol):
    pass


E = TypeVar("E", bound=_Wrappable)


class CachedEngine(Generic[E]):
    """A :class:`~voices.engine.TTSEngine` that speaks through ``inner`` and replays what it
    has said before; ``max_bytes``: the bound on kept PCM (see the module docstring)."""

    def __init__(self, inner: E, *, max_bytes: int, name: str = "tts") -> None:
        self.inner = inner
        self.name = name
        self._cache = SpeechCache(max_bytes)
        self._closed = False

    # -- life cycle: the inner engine's ----------------------------------------------------

    def start(self) -> None:
        self.inner.start()

    def close(self) -> None:
        """Close the inner engine and drop every entry; later requests raise
        :class:`~pipeline.errors.ExecutorClosed`."""
        self._closed = True
        self._cache.clear()
        self.inner.close()

    def __enter__(self) -> CachedEngine[E]:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def sample_rate(self) -> int:
        return self.inner.sample_rate

    def unrouted(self, plan: SpeechPlan) -> tuple[str, ...]:
        """:meth:`VoiceRouter.unrouted` of the inner engine when it is a router, else ``()``."""
        return self.inner.unrouted(plan) if isinstance(self.inner, VoiceRouter) else ()

    def statistics(self) -> CacheStatistics:
        cache = self._cache
        return CacheStatistics(
            self.name,
            cache.hits,
            cache.misses,
            len(cache),
            cache.bytes,
            cache.max_bytes,
            cache.evictions,
        )

    # -- requests --------------------------------------------------------------------------

    async def synthesize(
        self, text: str | SpeechPlan, prosody: Prosody | None = None
    ) -> AsyncGenerator[SpeechChunk, None]:
        """Speak ``text`` or a plan, from the cache when it was said before; see
        :meth:`voices.engine.TTSEngine.synthesize` and the module docstring."""
        if self._closed:
            raise ExecutorClosed("the TTS cache is closed")
        plan = as_plan(text, prosody)
        key = plan_key(plan)
        kept = self._cache.get(key)
        if kept is not None:
            for chunk in kept:
                await anyio.lowlevel.checkpoint()
                yield chunk
            return
        chunks: list[SpeechChunk] | None = [] if self._cache.max_bytes else None
        size = 0
        async with aclosing(self.inner.synthesize(plan)) as stream:
            async for chunk in stream:
                if chunks is not None:
                    size += len(chunk.pcm)
                    chunks = chunks if size <= self._cache.max_bytes else None
                    if chunks is not None:
                        chunks.append(chunk)
                yield chunk
        # reached only when the inner request ended normally and this one was read to its end
        if chunks is not None and not self._closed:
            self._cache.put(key, tuple(chunks))
