"""The TTS cache: a hit replays what the real engine said, a miss fills it, the bound holds.

Requests go to the real Piper engine through a thin wrapper that counts them (the cache's
claim is that a hit never reaches the engine).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import anyio
import pytest

from pipeline.errors import ClientError, ExecutorClosed
from voices.cache import CachedEngine, SpeechCache, plan_key
from voices.engine import Prosody, SpeechChunk, SpeechPlan, SpeechSegment, Style
from voices.piper_engine import PiperEngine
from voices.ssml import parse_ssml

pytestmark = pytest.mark.anyio

GREETING = SpeechPlan(
    (
        SpeechSegment("Hello, thanks for calling.", marks=("start",), pause_ms=200),
        SpeechSegment(" How can I help?", Prosody(rate=1.2), marks=("question",)),
    )
)


class Counting:
    """The real engine, counting the requests it gets."""

    def __init__(self, engine: PiperEngine) -> None:
        self.engine = engine
        self.requests = 0

    @property
    def sample_rate(self) -> int:
        return self.engine.sample_rate

    def start(self) -> None:
        pass  # the fixture's engine is started and closed by the fixture

    def close(self) -> None:
        pass

    async def synthesize(
        self, text: str | SpeechPlan, prosody: Prosody | None = None
    ) -> AsyncGenerator[SpeechChunk, None]:
        self.requests += 1
        async with aclosing(self.engine.synthesize(text, prosody)) as chunks:
            async for chunk in chunks:
                yield chunk


def cached(piper_engine: PiperEngine, max_bytes: int = 1 << 24) -> CachedEngine[Counting]:
    return CachedEngine(Counting(piper_engine), max_bytes=max_bytes)


async def said(engine: CachedEngine[Counting], plan: SpeechPlan | str) -> list[SpeechChunk]:
    with anyio.fail_after(60):
        async with aclosing(engine.synthesize(plan)) as chunks:
            return [chunk async for chunk in chunks]


def pcm_bytes(chunks: list[SpeechChunk]) -> int:
    return sum(len(chunk.pcm) for chunk in chunks)


# -- hits and misses ------------------------------------------------------------------------


async def test_a_hit_replays_the_pcm_words_and_marks_without_calling_the_engine(
    piper_engine: PiperEngine,
) -> None:
    engine = cached(piper_engine)
    first = await said(engine, GREETING)
    assert engine.inner.requests == 1
    again = await said(engine, GREETING)
    assert engine.inner.requests == 1  # the engine was not asked again
    assert again == first  # every chunk: PCM, offsets, text spans, words and marks
    assert [m for chunk in again for m in chunk.marks] == ["start", "question"]
    assert any(chunk.words for chunk in again)
    stats = engine.statistics()
    assert (stats.hits, stats.misses, stats.entries) == (1, 1, 1)
    assert stats.bytes == pcm_bytes(first)


async def test_text_and_the_plan_it_makes_are_one_key(piper_engine: PiperEngine) -> None:
    engine = cached(piper_engine)
    await said(engine, "Good morning.")
    await said(engine, SpeechPlan.from_text("Good morning."))
    assert engine.inner.requests == 1


def test_every_difference_in_how_a_text_is_said_is_another_key() -> None:
    text = "We open at nine."
    plans = [
        SpeechPlan.from_text(text),
        SpeechPlan.from_text(text, Prosody(rate=1.1)),
        SpeechPlan.from_text(text, Prosody(pitch=0.9)),
        SpeechPlan.from_text(text, Prosody(noise_scale=0.5)),
        SpeechPlan((SpeechSegment(text, style=Style("happy")),)),
        SpeechPlan((SpeechSegment(text, style=Style("happy", 1.5)),)),
        SpeechPlan((SpeechSegment(text, voice="joe"),)),
        SpeechPlan((SpeechSegment(text, lang="en-GB"),)),
        SpeechPlan((SpeechSegment(text, marks=("m",)),)),
        SpeechPlan((SpeechSegment(text, pause_ms=300),)),
        parse_ssml(f'<speak><prosody rate="slow">{text}</prosody></speak>'),
        parse_ssml(f'<speak><phoneme alphabet="ipa" ph="wi">We</phoneme>{text[2:]}</speak>'),
        SpeechPlan.from_text("We open at ten."),
    ]
    keys = {plan_key(plan) for plan in plans}
    assert len(keys) == len(plans)
    assert plan_key(SpeechPlan.from_text(text)) == plan_key(SpeechPlan.from_text(text))


async def test_another_prosody_is_a_miss(piper_engine: PiperEngine) -> None:
    engine = cached(piper_engine)
    await said(engine, "Thank you.")
    await said(engine, SpeechPlan.from_text("Thank you.", Prosody(rate=1.3)))
    assert engine.inner.requests == 2
    assert engine.statistics().entries == 2


# -- what is not kept -----------------------------------------------------------------------


async def test_a_synthesis_closed_early_keeps_nothing(piper_engine: PiperEngine) -> None:
    engine = cached(piper_engine)
    plan = SpeechPlan.from_text("The first sentence is here. And a second one follows it.")
    with anyio.fail_after(60):
        async with aclosing(engine.synthesize(plan)) as chunks:
            await anext(chunks)
    assert engine.statistics().entries == 0
    await said(engine, plan)
    assert engine.inner.requests == 2  # asked again: the first was not complete


async def test_a_cancelled_synthesis_keeps_nothing(piper_engine: PiperEngine) -> None:
    engine = cached(piper_engine)
    plan = SpeechPlan.from_text("One sentence. Then another. And one more for good measure.")
    got: list[SpeechChunk] = []
    with anyio.fail_after(60):
        with anyio.CancelScope() as scope:
            async for chunk in engine.synthesize(plan):
                got.append(chunk)
                scope.cancel()  # a barge-in, after the first chunk
    assert len(got) == 1
    assert engine.statistics().entries == 0


async def test_a_failed_synthesis_keeps_nothing(piper_engine: PiperEngine) -> None:
    engine = cached(piper_engine)
    plan = SpeechPlan((SpeechSegment("Wait.", pause_ms=60_000),))  # too long a pause: refused
    with pytest.raises(ClientError):
        await said(engine, plan)
    assert engine.statistics().entries == 0


async def test_a_result_larger_than_the_bound_is_not_kept(piper_engine: PiperEngine) -> None:
    engine = cached(piper_engine, max_bytes=1000)  # less than any sentence's audio
    chunks = await said(engine, "Hello there.")
    assert pcm_bytes(chunks) > 1000
    stats = engine.statistics()
    assert (stats.entries, stats.bytes, stats.evictions) == (0, 0, 0)


async def test_a_zero_bound_keeps_nothing(piper_engine: PiperEngine) -> None:
    engine = cached(piper_engine, max_bytes=0)
    await said(engine, "Hello.")
    await said(engine, "Hello.")
    assert engine.inner.requests == 2
    assert engine.statistics().entries == 0


# -- the bound ------------------------------------------------------------------------------


async def test_eviction_keeps_the_bytes_under_the_bound_least_recently_used_first(
    piper_engine: PiperEngine,
) -> None:
    still = Prosody(noise_scale=0.0, noise_w_scale=0.0)  # the same audio every time
    a, b = (SpeechPlan.from_text(text, still) for text in ("A.", "B."))
    c = SpeechPlan((SpeechSegment("B.", still, voice="joe"),))  # another key, B's audio
    sizes = [pcm_bytes(await said(cached(piper_engine), plan)) for plan in (a, b, c)]
    assert sizes[2] == sizes[1]
    bound = sizes[0] + sizes[1] + sizes[1] // 2  # room for two of them, not three
    engine = cached(piper_engine, max_bytes=bound)
    await said(engine, a)
    await said(engine, b)
    await said(engine, a)  # now B is the least recently used
    assert engine.inner.requests == 2
    await said(engine, c)
    stats = engine.statistics()
    assert stats.bytes <= bound
    assert (stats.entries, stats.evictions) == (2, 1)
    await said(engine, a)  # still kept
    assert engine.inner.requests == 3
    await said(engine, b)  # evicted: synthesised again
    assert engine.inner.requests == 4
    assert engine.statistics().bytes <= bound


def test_the_store_never_holds_more_than_its_bound() -> None:
    store = SpeechCache(max_bytes=100)

    def entry(size: int) -> tuple[SpeechChunk, ...]:
        return (SpeechChunk(16000, bytes(size), 0, 0, 1),)

    for n, size in enumerate([40, 30, 50, 20, 90, 10, 100]):
        assert store.put(bytes([n]), entry(size))
        assert store.bytes <= 100
    assert store.put(b"big", entry(101)) is False  # larger than the bound on its own
    assert store.put(bytes([6]), entry(1)) is False  # kept already
    assert (len(store), store.bytes, store.evictions) == (1, 100, 6)
    assert store.get(bytes([6])) == entry(100)
    assert store.get(bytes([0])) is None
    assert (store.hits, store.misses) == (1, 1)


# -- concurrency and life cycle -------------------------------------------------------------


async def test_concurrent_misses_of_one_key_both_synthesise_and_keep_one_entry(
    piper_engine: PiperEngine,
) -> None:
    engine = cached(piper_engine)
    results: list[list[SpeechChunk]] = []

    async def one() -> None:
        results.append(await said(engine, "At the same time."))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)
    assert engine.inner.requests == 2
    stats = engine.statistics()
    assert (stats.entries, stats.misses) == (1, 2)
    assert stats.bytes == pcm_bytes(results[0])


async def test_a_closed_cache_refuses_requests(piper_engine: PiperEngine) -> None:
    engine = cached(piper_engine)
    await said(engine, "Hello.")
    engine.close()
    with pytest.raises(ExecutorClosed):
        await said(engine, "Hello.")
    assert engine.statistics().entries == 0
    assert engine.sample_rate == piper_engine.sample_rate
