"""Batched decoding with the real embedded model: the same results as alone, errors that stay
with their request, and the shared executor's batches (finals first, one kind per batch)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import anyio
import numpy as np
import pytest
from anyio import wait_all_tasks_blocked

from pipeline.asr import guards
from pipeline.asr.decode_batch import batch_key
from pipeline.asr.decoder import Decoded, DecodeOptions, DecodeRequest, WhisperDecoder
from pipeline.asr.events import Transcript
from pipeline.asr.stage import FINAL_PRIORITY, PARTIAL_PRIORITY, AsrStage, asr_executor
from pipeline.asr.utterance import TrackerConfig
from pipeline.channels import Channel, Policy
from pipeline.errors import InvalidAudio, ModelError
from pipeline.events import PIPELINE_RATE as RATE
from pipeline.events import AudioFrame, Pcm
from pipeline.executor import ModelExecutor
from pipeline.vad import SpeechStarted, SpeechStopped
from tests.asr.support import SENTENCES, spoken, two_cities_opening
from tests.asr.wer import wer
from tests.audio import espeak, silence

Executor = ModelExecutor[DecodeRequest, Decoded]
#: the context that makes :class:`Gated` hold its worker, and :class:`Picky` fail
HOLD = "hold the worker here"
BREAK = "break this request"


def floats(pcm: Pcm) -> np.ndarray[tuple[int], np.dtype[np.float32]]:
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


def request(pcm: Pcm, *, final: bool = True, context: str = "", **options: object) -> DecodeRequest:
    return DecodeRequest(
        audio=floats(pcm),
        final=final,
        options=DecodeOptions(**options),  # type: ignore[arg-type]
        context=context,
    )


def outcome(result: Decoded | Exception) -> tuple[object, ...]:
    """What must not depend on the batch: text, verdict, language, words, notes."""
    if isinstance(result, Exception):
        return (type(result).__name__,)
    words = tuple(w.word for w in result.words)
    return result.text, result.dropped, result.language, words, result.notes


class Picky(WhisperDecoder):
    """The real model, whose prompt step fails for a request with the context :data:`BREAK`
    (a failure inside a batched step, past every check of the audio)."""

    @staticmethod
    def prompt(tokenizer: object, options: DecodeOptions, context: str) -> list[int]:
        if context == BREAK:
            raise ValueError("this request cannot be prompted")
        return WhisperDecoder.prompt(tokenizer, options, context)


class Gated(WhisperDecoder):
    """The real model, recording each batch; a batch holding a request with the context
    :data:`HOLD` waits on :attr:`release` (so callers can queue behind it)."""

    def __init__(self, decoder: WhisperDecoder) -> None:
        super().__init__(decoder.model)
        self.batches: list[list[DecodeRequest]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[Decoded | Exception]:
        self.batches.append(list(requests))
        if any(r.context == HOLD for r in requests):
            self.entered.set()
            self.release.wait()
        return super().decode_batch(requests)

    async def wait_entered(self) -> None:
        await anyio.to_thread.run_sync(self.entered.wait, abandon_on_cancel=True)


# -- decode_batch --------------------------------------------------------------------------------


def test_a_batch_gives_each_request_what_it_gets_alone(decoder: WhisperDecoder) -> None:
    longer = np.concatenate([spoken(SENTENCES[0]), silence(1.0), two_cities_opening()])
    german = espeak("Guten Morgen, ich möchte einen Tisch reservieren.", voice="de")
    requests = [
        request(spoken(SENTENCES[0])),  # beam 5, word timings
        request(spoken(SENTENCES[1]), final=False),  # greedy, no words
        request(spoken(SENTENCES[2]), context="I called earlier about my order."),
        request(spoken(SENTENCES[1]), final=False, context="Good morning."),
        request(
            spoken("Welcome to Voxline, how can I help?"),
            hotwords="Voxline",
            initial_prompt="A call to Voxline.",
        ),
        request(german, language=None),  # detected from the same encoder pass
        request(spoken(SENTENCES[2]), final=False, language=None),
        request(longer),  # an 11 s window: a batch of its own length
        request(silence(1.0)),  # the silence guard answers without the model
    ]
    alone = [outcome(decoder.decode(r)) for r in requests]
    together = [outcome(r) for r in decoder.decode_batch(requests)]
    assert together == alone
    assert together[5][2] == "de"
    assert together[-1][1] == guards.SILENCE
    assert all(text for text, *_ in together[:-1])


def test_a_batch_of_one_is_decode(decoder: WhisperDecoder) -> None:
    one = request(spoken(SENTENCES[1]))
    (batched,) = decoder.decode_batch([one])
    assert isinstance(batched, Decoded)
    assert outcome(batched) == outcome(decoder.decode(one))
    assert set(batched.timings) >= {"features", "encode", "generate", "align", "total"}


def test_a_bad_request_fails_alone_and_the_rest_of_its_batch_is_decoded(
    decoder: WhisperDecoder,
) -> None:
    good = request(spoken(SENTENCES[0]))
    flat = floats(spoken(SENTENCES[1]))
    two_d = DecodeRequest(audio=np.stack([flat, flat]), final=True)
    too_long = DecodeRequest(audio=np.zeros(31 * RATE, np.float32), final=False)
    results = decoder.decode_batch([two_d, good, too_long])
    assert isinstance(results[0], InvalidAudio)
    assert isinstance(results[2], InvalidAudio)
    assert outcome(results[1]) == outcome(decoder.decode(good))


def test_a_request_failing_inside_a_batched_step_fails_alone(decoder: WhisperDecoder) -> None:
    picky = Picky(decoder.model)
    first, second = request(spoken(SENTENCES[0])), request(spoken(SENTENCES[2]))
    broken = request(spoken(SENTENCES[1]), context=BREAK)
    results = picky.decode_batch([first, broken, second])
    assert isinstance(results[1], ValueError)
    assert outcome(results[0]) == outcome(decoder.decode(first))
    assert outcome(results[2]) == outcome(decoder.decode(second))
    with pytest.raises(ValueError, match="cannot be prompted"):
        picky.decode(broken)


def test_the_batch_key_is_the_window_and_the_beam() -> None:
    short, other = request(espeak("Yes."), final=False), request(espeak("Thank you."), final=False)
    assert batch_key(short) == batch_key(other) == (10 * RATE, 1)  # both padded to 10 s
    assert batch_key(request(espeak("Yes."))) == (10 * RATE, 5)  # a final's beam
    long = request(np.zeros(12 * RATE, np.int16), final=False)
    assert batch_key(long) == (12 * RATE + 12000, 1)  # 12 s and 0.75 s of tail


# -- the shared executor -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_executor_batches_waiting_requests_finals_first_one_kind_per_batch(
    decoder: WhisperDecoder,
) -> None:
    gated = Gated(decoder)
    partials = [request(spoken(s), final=False) for s in SENTENCES]
    finals = [request(spoken(s)) for s in SENTENCES[:2]]
    got: dict[int, Decoded] = {}

    async def run(index: int, one: DecodeRequest, priority: int) -> None:
        got[index] = await executor.run(one, priority=priority)

    with anyio.fail_after(60), asr_executor(gated, batch_size=4) as executor:
        async with anyio.create_task_group() as tg:
            blocker = request(spoken(SENTENCES[0]), final=False, context=HOLD)
            tg.start_soon(run, -1, blocker, PARTIAL_PRIORITY)
            await gated.wait_entered()
            for index, one in enumerate(partials):
                tg.start_soon(run, index, one, PARTIAL_PRIORITY)
            for index, one in enumerate(finals, start=len(partials)):
                tg.start_soon(run, index, one, FINAL_PRIORITY)
            await wait_all_tasks_blocked()
            gated.release.set()
        statistics = executor.statistics()
    assert [[r.final for r in batch] for batch in gated.batches] == [
        [False],
        [True, True],  # the finals, queued last, go first, together
        [False, False, False],  # then the partials, together
    ]
    assert statistics.batch_sizes == (1, 1, 1, 0)
    assert statistics.requests_done == 6
    for index, one in enumerate([*partials, *finals]):
        assert outcome(got[index]) == outcome(decoder.decode(one))


@pytest.mark.anyio
async def test_in_the_executor_a_bad_request_fails_alone(decoder: WhisperDecoder) -> None:
    gated = Gated(decoder)
    good = request(spoken(SENTENCES[0]), final=False)
    flat = floats(spoken(SENTENCES[1]))
    bad = DecodeRequest(audio=np.stack([flat, flat]), final=False)  # 2-D
    got: dict[str, object] = {}

    async def run(name: str, one: DecodeRequest) -> None:
        try:
            got[name] = await executor.run(one)
        except ModelError as exc:
            got[name] = exc

    with anyio.fail_after(60), asr_executor(gated, batch_size=4) as executor:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "blocker", request(spoken(SENTENCES[2]), final=False, context=HOLD))
            await gated.wait_entered()
            tg.start_soon(run, "bad", bad)
            tg.start_soon(run, "good", good)
            await wait_all_tasks_blocked()
            gated.release.set()
        statistics = executor.statistics()
    assert [len(batch) for batch in gated.batches] == [1, 2]  # the bad one batched, and alone
    assert isinstance(got["bad"], ModelError)
    assert isinstance(got["bad"].__cause__, InvalidAudio)
    assert isinstance(got["good"], Decoded)
    assert got["good"].text
    assert (statistics.requests_done, statistics.requests_failed) == (2, 1)


# -- partials thin out under load ----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_call_waiting_on_a_busy_executor_sends_only_its_newest_job(
    decoder: WhisperDecoder,
) -> None:
    """While the executor is held, a call speaks a whole utterance (four partials' worth):
    its one request in flight is the first partial; the partials after it are replaced by the
    final before they reach the executor."""
    gated = Gated(decoder)
    audio = np.concatenate([espeak(SENTENCES[1]), silence(1.5)])
    seen: list[DecodeRequest] = []

    class Recording:
        async def run(self, one: DecodeRequest, /, *, priority: int = 0) -> Decoded:
            # the first partial carries HOLD: the executor stays busy while the call goes on
            first = not seen
            seen.append(one)
            if first:
                one = DecodeRequest(one.audio, one.final, one.options, HOLD)
            return await executor.run(one, priority=priority)

    inbox = Channel("test->asr", 512, Policy.BLOCK)
    outbox = Channel("asr->test", 512, Policy.BLOCK)
    stage = AsrStage(Recording(), tracker=TrackerConfig(first_partial=8000, partial_interval=8000))
    spoken_end = len(audio) - round(1.2 * RATE)

    async def recognise() -> None:
        try:
            await stage(inbox, outbox)
        finally:
            outbox.close()

    with anyio.fail_after(60), asr_executor(gated, batch_size=4) as executor:
        async with anyio.create_task_group() as tg:
            tg.start_soon(recognise)
            await inbox.send(
                SpeechStarted(session_id="s", sample=0, audio_start=0, probability=0.9)
            )
            for i in range(0, len(audio), 320):
                pcm = audio[i : i + 320].astype("<i2").tobytes()
                await inbox.send(AudioFrame(session_id="s", sample_rate=RATE, pcm=pcm, pts=i))
            await gated.wait_entered()
            await inbox.send(SpeechStopped(session_id="s", sample=spoken_end, speech_start=0))
            inbox.close()
            await wait_all_tasks_blocked()
            gated.release.set()
            finals = [e async for e in outbox if isinstance(e, Transcript) and e.is_final]
    assert [r.final for r in seen] == [False, True]
    assert wer(SENTENCES[1], finals[0].text) == 0.0, finals[0].text
