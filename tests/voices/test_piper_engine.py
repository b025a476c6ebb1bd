"""The Piper engine end to end: a real worker process, real speech, real failures."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path

import anyio
import numpy as np
import pytest
from anyio import wait_all_tasks_blocked
from faster_whisper import WhisperModel

from pipeline.breaker import BreakerState
from pipeline.errors import ClientError, ExecutorClosed, ModelError, Overloaded
from voices.engine import Prosody, SpeechChunk, SpeechPlan, SpeechSegment, heard_until
from voices.piper_engine import PiperEngine, expected_seconds
from voices.resample import ChunkResampler

from .conftest import transcribe

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

LONG_TEXT = " ".join(f"This is sentence number {n} of a long answer." for n in range(1, 31))


async def collect(chunks: AsyncGenerator[SpeechChunk, None]) -> list[SpeechChunk]:
    async with aclosing(chunks):
        return [chunk async for chunk in chunks]


async def ready(engine: PiperEngine) -> None:
    """Wait until the shared worker is up (a test before may have killed it)."""
    await anyio.to_thread.run_sync(engine.start)


def samples(chunks: list[SpeechChunk]) -> np.ndarray:
    return np.frombuffer(b"".join(c.pcm for c in chunks), dtype="<i2")


def assert_aligned(text: str, chunks: list[SpeechChunk]) -> None:
    """Chunks follow each other; words tile each chunk, in order, and cover every word."""
    position = 0
    text_end = 0
    words: list[str] = []
    for chunk in chunks:
        assert chunk.sample_offset == position
        assert chunk.text_start >= text_end
        position = chunk.end_offset
        if not chunk.words:
            continue
        assert chunk.words[0].sample_start == chunk.sample_offset
        assert chunk.words[-1].sample_end == chunk.end_offset
        for before, after in itertools.pairwise(chunk.words):
            assert before.sample_end == after.sample_start
            assert before.text_end < after.text_start
        for word in chunk.words:
            assert word.sample_start <= word.sample_end
        assert (chunk.text_start, chunk.text_end) == (
            chunk.words[0].text_start,
            chunk.words[-1].text_end,
        )
        text_end = chunk.text_end
        words.extend(text[w.text_start : w.text_end] for w in chunk.words)
    assert words == text.split()


async def test_speech_is_loud_enough_and_at_the_voice_rate(piper_engine: PiperEngine) -> None:
    with anyio.fail_after(60):
        await ready(piper_engine)
        chunks = await collect(piper_engine.synthesize("Good morning, how can I help you?"))
    assert piper_engine.sample_rate == 22050
    assert {c.sample_rate for c in chunks} == {22050}
    audio = samples(chunks).astype(np.float64)
    assert 0.5 < len(audio) / 22050 < 6
    assert np.sqrt(np.mean(audio**2)) > 1000  # well above silence (full scale is 32767)


async def test_speech_is_intelligible(piper_engine: PiperEngine, whisper: WhisperModel) -> None:
    text = "The quick brown fox jumps over the lazy dog. Please call me back tomorrow morning."
    with anyio.fail_after(120):
        await ready(piper_engine)
        chunks = await collect(piper_engine.synthesize(text))
        resampler = ChunkResampler(16000)
        pcm = b"".join(resampler.process(c).pcm for c in chunks)
        tail = resampler.flush()
        pcm += tail.pcm if tail else b""
        heard = await anyio.to_thread.run_sync(transcribe, whisper, pcm)
    expected = re.findall(r"[a-z']+", text.lower())
    recognised = [word for word in expected if word in heard]
    assert len(recognised) >= 0.8 * len(expected), heard


async def test_word_timings_are_in_order_and_cover_audio_and_text(
    piper_engine: PiperEngine,
) -> None:
    text = "Hello there, Dr. Smith! It costs 3.5 dollars... really? I've got 2024 reasons - why?"
    with anyio.fail_after(60):
        await ready(piper_engine)
        chunks = await collect(piper_engine.synthesize(text))
    assert piper_engine.statistics().alignment == "phonemes"
    assert len(chunks) >= 3  # one per sentence
    assert_aligned(text, chunks)
    words = [w for c in chunks for w in c.words]
    # "3.5" is three spoken words and "2024" four: they last longer than "It" and "got"
    length = {text[w.text_start : w.text_end]: w.sample_end - w.sample_start for w in words}
    assert length["3.5"] > length["It"]
    assert length["2024"] > length["got"]
    # stopping playout halfway through a word keeps only the words before it
    smith = next(w for w in words if text[w.text_start : w.text_end] == "Smith!")
    middle = (smith.sample_start + smith.sample_end) // 2
    assert text[: heard_until(words, middle)] == "Hello there, Dr."
    assert text[: heard_until(words, smith.sample_end)] == "Hello there, Dr. Smith!"


async def test_a_plan_speaks_each_segment_with_its_prosody(piper_engine: PiperEngine) -> None:
    plan = SpeechPlan(
        (
            SpeechSegment("Thank you for calling. ", pause_ms=300),
            SpeechSegment("Thank you for calling.", Prosody(length_scale=1.6, volume=0.5)),
        )
    )
    with anyio.fail_after(60):
        await ready(piper_engine)
        chunks = await collect(piper_engine.synthesize(plan))
    assert_aligned(plan.text, chunks)
    normal, pause, slow = chunks
    assert pause.words == ()
    assert pause.num_samples == 22050 * 300 // 1000
    assert not samples([pause]).any()
    assert slow.num_samples > 1.3 * normal.num_samples
    assert np.abs(samples([slow])).max() < 0.6 * np.abs(samples([normal])).max()
    assert plan.text[slow.text_start : slow.text_end] == "Thank you for calling."
    assert slow.text_start == len("Thank you for calling. ")


async def test_nothing_to_say_gives_no_chunks(piper_engine: PiperEngine) -> None:
    with anyio.fail_after(60):
        await ready(piper_engine)
        assert await collect(piper_engine.synthesize("   ")) == []
        assert await collect(piper_engine.synthesize(SpeechPlan(()))) == []


async def test_closing_the_stream_mid_utterance_stops_synthesis(
    piper_engine: PiperEngine,
) -> None:
    with anyio.fail_after(60):
        await ready(piper_engine)
        before = piper_engine.statistics()
        async with aclosing(piper_engine.synthesize(LONG_TEXT)) as chunks:
            first = await anext(chunks)
        # the worker takes the next request only after it has ended the cancelled one
        after_chunks = await collect(piper_engine.synthesize("And now something else."))
    after = piper_engine.statistics()
    assert LONG_TEXT[first.text_start : first.text_end] == LONG_TEXT.split(".")[0] + "."
    assert after_chunks
    assert after.cancelled == before.cancelled + 1
    assert after.stopped == before.stopped + 1  # the worker did not synthesize all 30 sentences
    assert after.requests_done == before.requests_done + 2
    assert after.requests_failed == before.requests_failed


async def test_cancelling_the_reader_stops_synthesis(piper_engine: PiperEngine) -> None:
    received: list[SpeechChunk] = []

    async def listen(scope: anyio.CancelScope) -> None:
        with scope:
            async with aclosing(piper_engine.synthesize(LONG_TEXT)) as chunks:
                async for chunk in chunks:
                    received.append(chunk)

    with anyio.fail_after(60):
        await ready(piper_engine)
        before = piper_engine.statistics()
        scope = anyio.CancelScope()
        async with anyio.create_task_group() as group:
            group.start_soon(listen, scope)
            await wait_all_tasks_blocked()  # the request is with the worker
            scope.cancel()
        await collect(piper_engine.synthesize("Next."))
    after = piper_engine.statistics()
    assert len(received) < 30
    assert after.cancelled == before.cancelled + 1
    assert after.stopped == before.stopped + 1


async def test_a_worker_crash_fails_only_the_request_it_was_synthesizing(
    piper_engine: PiperEngine,
) -> None:
    outcome: dict[str, list[SpeechChunk] | ModelError] = {}

    async def speak(name: str, text: str) -> None:
        try:
            outcome[name] = await collect(piper_engine.synthesize(text))
        except ModelError as error:
            outcome[name] = error

    with anyio.fail_after(120):
        await ready(piper_engine)
        before = piper_engine.statistics()
        pid = before.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # frozen: the request below stays in flight
        async with anyio.create_task_group() as group:
            try:
                group.start_soon(speak, "running", "This request is running when the worker dies.")
                await wait_all_tasks_blocked()
                group.start_soon(speak, "waiting", "This request waits in the queue.")
                await wait_all_tasks_blocked()
                stats = piper_engine.statistics()
                assert (stats.in_flight, stats.queue_depth) == (1, 1)
            finally:
                os.kill(pid, signal.SIGKILL)  # also when the test fails: never leave it frozen
    running, waiting = outcome["running"], outcome["waiting"]
    assert isinstance(running, ModelError)
    assert "Piper worker died" in str(running)
    assert isinstance(waiting, list)
    assert waiting
    after = piper_engine.statistics()
    assert after.restarts == before.restarts + 1
    assert after.worker_pid not in (None, pid)
    assert after.requests_failed == before.requests_failed + 1


async def test_a_hung_worker_is_killed_at_the_deadline_and_the_next_request_gets_a_new_one(
    piper_engine: PiperEngine,
) -> None:
    text = "Nobody will hear this sentence."
    with anyio.fail_after(120):
        await ready(piper_engine)
        before = piper_engine.statistics()
        pid = before.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # a real hang: the process is there, it never answers
        try:
            with pytest.raises(ModelError, match=r"timed out: no answer in 3\.0 s"):
                await collect(piper_engine.synthesize(text))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # killed by the engine; never left frozen
        chunks = await collect(piper_engine.synthesize("The new worker speaks."))
    assert chunks
    after = piper_engine.statistics()
    assert after.timeouts == before.timeouts + 1
    assert after.restarts == before.restarts + 1
    assert after.worker_pid not in (None, pid)
    assert after.requests_failed == before.requests_failed + 1
    assert after.breaker.state is BreakerState.CLOSED  # the success closed it again


def test_the_deadline_grows_with_the_audio_a_request_should_make() -> None:
    plain = SpeechPlan.from_text("x" * 30)  # 2 s of speech at 15 characters a second
    slow = SpeechPlan.from_text("x" * 30, Prosody(rate=0.5))
    paused = SpeechPlan((SpeechSegment("x" * 30, pause_ms=1000),))
    assert [expected_seconds(p) for p in (plain, slow, paused)] == [2.0, 4.0, 3.0]


async def test_a_worker_that_keeps_failing_opens_the_breaker_and_requests_are_refused_at_once(
    tmp_path: Path,
) -> None:
    engine = PiperEngine(tmp_path / "missing.onnx", breaker_failures=2, breaker_cooldown_s=3600)
    try:
        with anyio.fail_after(120):
            for _ in range(2):  # each request starts a worker that dies loading the voice
                with pytest.raises(ModelError, match="failed to start"):
                    await collect(engine.synthesize("Hello."))
            with pytest.raises(ModelError, match="circuit breaker open"):
                await collect(engine.synthesize("Hello."))
        stats = engine.statistics()
        assert stats.worker_pid is None  # the refusal started no worker
        assert (stats.breaker.state, stats.breaker.refused) == (BreakerState.OPEN, 1)
    finally:
        engine.close()


async def test_a_full_queue_refuses_at_once() -> None:
    engine = PiperEngine(max_queue=0)  # never started: the refusal comes before any worker
    with anyio.fail_after(5), pytest.raises(Overloaded):
        await collect(engine.synthesize("Hello."))
    assert engine.statistics().rejected == 1
    engine.close()


async def test_too_much_text_or_silence_is_the_callers_error() -> None:
    engine = PiperEngine(max_chars=10)
    with anyio.fail_after(5), pytest.raises(ClientError, match="limit 10"):
        await collect(engine.synthesize("This is longer than ten characters."))
    with anyio.fail_after(5), pytest.raises(ClientError, match="pauses"):
        await collect(engine.synthesize(SpeechPlan((SpeechSegment("Hi.", pause_ms=-1),))))
    engine.close()


async def test_a_closed_engine_refuses_work() -> None:
    engine = PiperEngine()
    engine.close()
    with anyio.fail_after(5), pytest.raises(ExecutorClosed):
        await collect(engine.synthesize("Hello."))


def test_a_voice_that_cannot_load_fails_start_with_the_reason(tmp_path: Path) -> None:
    model = tmp_path / "missing.onnx"
    engine = PiperEngine(model, startup_timeout=60)
    with pytest.raises(ModelError, match=r"failed to start: could not load the voice"):
        engine.start()
    engine.close()
