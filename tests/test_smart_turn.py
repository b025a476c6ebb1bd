"""The end-of-turn model (pipeline/turn/smart_turn.py) and a call's questions to it
(agent/turn_asker.py), with the real smart-turn v3 weights from the pipecat-ai wheel.

What the model reliably does on espeak-ng speech (measured while writing these, probabilities
0.90-0.95 against 0.005): a finished sentence is done; the same sentence trailing off into
"and, um" is not. Syntax alone is not what it hears: a sentence cut after "for" with a
falling, final-sounding voice is "done" to it, so no test asserts on that.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest
from anyio import wait_all_tasks_blocked
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from agent.turn_asker import HEARD_PAUSE, PRE_ROLL, TurnAsker, question_span
from agent.turns import AskEndOfTurn, EndOfTurnScore
from pipeline.errors import ModelError
from pipeline.events import Pcm
from pipeline.executor import ModelExecutor
from pipeline.turn.smart_turn import (
    SMART_TURN_SHA256,
    WINDOW_SAMPLES,
    SmartTurn,
    TurnEndRequest,
    TurnEndResult,
    end_of_turn_executor,
    features,
    packaged_model_path,
    sha256_of,
)
from tests.audio import espeak, silence

DONE = "I would like to book a table for two tonight."
HESITATING = "I would like to book a table for two and, um"


@pytest.fixture(scope="module")
def smart_turn() -> SmartTurn:
    return SmartTurn()


@pytest.fixture(scope="module")
def executor(smart_turn: SmartTurn) -> Iterator[ModelExecutor[TurnEndRequest, TurnEndResult]]:
    with end_of_turn_executor(smart_turn) as started:
        yield started


def said(text: str, pause: float = 0.2) -> Pcm:
    """``text`` after 0.3 s of silence, and the pause the model is asked at."""
    return np.concatenate([silence(0.3), espeak(text), silence(pause)])


# -- the file ---------------------------------------------------------------------------------


def test_the_weights_are_the_pinned_file_of_the_pipecat_wheel() -> None:
    path = packaged_model_path()
    assert path.name == "smart-turn-v3.2-cpu.onnx"
    assert sha256_of(path) == SMART_TURN_SHA256


def test_a_file_that_is_not_the_expected_one_fails_to_load(tmp_path: Path) -> None:
    other = tmp_path / "model.onnx"
    other.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not the expected end-of-turn model"):
        SmartTurn(other, sha256=SMART_TURN_SHA256)
    with pytest.raises(ModelError, match="cannot load"):
        SmartTurn(other)
    with pytest.raises(ModelError, match="cannot read"):
        SmartTurn(tmp_path / "missing.onnx", sha256=SMART_TURN_SHA256)


def test_the_features_are_80_mel_bands_of_the_last_8_seconds() -> None:
    short = features(espeak(DONE))
    assert short.shape == (80, 800)
    assert short.dtype == np.float32
    long = np.concatenate([espeak(HESITATING), silence(10.0), espeak(DONE)])
    # only the last 8 s count: what came 10 s before changes nothing
    np.testing.assert_array_equal(features(long), features(long[-8 * 16000 :]))


def test_a_request_is_checked_where_it_is_made() -> None:
    with pytest.raises(ValueError, match="non-empty 1-D int16"):
        TurnEndRequest(np.zeros(0, dtype=np.int16))
    with pytest.raises(ValueError, match="non-empty 1-D int16"):
        TurnEndRequest(np.zeros(10, dtype=np.float32))


# -- what it hears ----------------------------------------------------------------------------


def test_a_finished_sentence_is_done_and_one_trailing_off_into_um_is_not(
    smart_turn: SmartTurn,
) -> None:
    assert smart_turn(TurnEndRequest(said(DONE))).probability > 0.8
    assert smart_turn(TurnEndRequest(said(HESITATING))).probability < 0.1


def test_a_batch_says_what_each_request_says_alone(smart_turn: SmartTurn) -> None:
    requests = [TurnEndRequest(said(DONE)), TurnEndRequest(said(HESITATING))]
    batched = [r.probability for r in smart_turn.batch(requests)]
    alone = [smart_turn(r).probability for r in requests]
    assert batched == pytest.approx(alone, abs=1e-3)


@pytest.mark.anyio
async def test_the_executor_runs_the_requests_of_several_calls_together(
    executor: ModelExecutor[TurnEndRequest, TurnEndResult],
) -> None:
    before = executor.statistics().batches
    got: list[float] = []

    async def ask(audio: Pcm) -> None:
        got.append((await executor.run(TurnEndRequest(audio))).probability)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for text in (DONE, HESITATING, DONE, HESITATING):
                tg.start_soon(ask, said(text))
    stats = executor.statistics()
    assert len(got) == 4
    assert stats.batches - before < 4  # four calls' questions in fewer runs of the model
    assert stats.largest_batch >= 2


# -- a call's questions -----------------------------------------------------------------------


def answered() -> tuple[
    MemoryObjectSendStream[EndOfTurnScore], MemoryObjectReceiveStream[EndOfTurnScore]
]:
    return anyio.create_memory_object_stream[EndOfTurnScore](8)


async def first_answer(
    asker: TurnAsker, answers: MemoryObjectReceiveStream[EndOfTurnScore]
) -> EndOfTurnScore:
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(asker.run)
            score = await answers.receive()
            tg.cancel_scope.cancel()
    return score


@pytest.mark.anyio
async def test_the_asker_asks_about_the_turn_and_answers_with_the_pause(
    executor: ModelExecutor[TurnEndRequest, TurnEndResult],
) -> None:
    send, answers = answered()
    asker = TurnAsker(executor, send.send)
    audio = said(DONE)
    for at in range(0, len(audio), 320):  # 20 ms frames, as a transport sends them
        asker.push(audio[at : at + 320].tobytes(), at)
    pause = len(audio) - 3200
    asker.ask(AskEndOfTurn(start=4800, pause=pause, at=len(audio)))
    score = await first_answer(asker, answers)
    assert score.pause == pause
    assert score.probability > 0.8
    assert (asker.asked, asker.answered, asker.failed) == (1, 1, 0)
    send.close()
    answers.close()


@pytest.mark.anyio
async def test_a_newer_question_replaces_one_still_waiting(
    executor: ModelExecutor[TurnEndRequest, TurnEndResult],
) -> None:
    send, answers = answered()
    asker = TurnAsker(executor, send.send)
    audio = said(HESITATING)
    asker.push(audio.tobytes(), 0)
    pause = len(audio) - 3200  # where the trailing silence begins
    asker.ask(AskEndOfTurn(start=0, pause=pause - 1600, at=len(audio)))
    asker.ask(AskEndOfTurn(start=0, pause=pause, at=len(audio)))
    score = await first_answer(asker, answers)
    assert score.pause == pause
    assert score.probability < 0.1
    assert asker.answered == 1
    send.close()
    answers.close()


@pytest.mark.anyio
async def test_a_model_that_cannot_answer_sends_nothing(smart_turn: SmartTurn) -> None:
    send, answers = answered()
    closed = end_of_turn_executor(smart_turn)
    closed.start()
    closed.close()
    asker = TurnAsker(closed, send.send)
    asker.push(said(DONE).tobytes(), 0)
    asker.ask(AskEndOfTurn(start=0, pause=100, at=100))
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(asker.run)
            await wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
    assert asker.failed == 1
    with pytest.raises(anyio.WouldBlock):
        answers.receive_nowait()
    send.close()
    answers.close()


def test_no_kept_audio_means_no_question() -> None:
    send, answers = answered()
    asker = TurnAsker(None, send.send)  # type: ignore[arg-type]  # never asked
    asker.push(b"\x00\x00" * 320, 16000)
    asker.ask(AskEndOfTurn(start=40000, pause=40000, at=40000))
    assert asker.asked == 0
    send.close()
    answers.close()


def test_the_question_is_the_turn_up_to_the_pause_as_the_vad_announced_it() -> None:
    question = AskEndOfTurn(start=48000, pause=160000, at=170000)
    assert question_span(question) == (48000 - PRE_ROLL, 160000 + HEARD_PAUSE)
    long = AskEndOfTurn(start=0, pause=400000, at=400000)
    assert question_span(long) == (400000 + HEARD_PAUSE - WINDOW_SAMPLES, 400000 + HEARD_PAUSE)


@pytest.mark.anyio
async def test_the_answer_does_not_depend_on_the_audio_after_the_pause(
    executor: ModelExecutor[TurnEndRequest, TurnEndResult],
) -> None:
    # a question asked late (a lagging VAD, a busy machine) hears no more than one asked at
    # once: the start of the next word made the model say "done" about the pause before it
    before = np.concatenate([silence(0.5), espeak("I would like to,")])
    after = np.concatenate([silence(0.3), espeak("book a table for two")])
    audio = np.concatenate([before, after])
    question = AskEndOfTurn(start=8000, pause=len(before), at=len(before) + HEARD_PAUSE)

    async def answer(received: int) -> float:
        send, answers = answered()
        asker = TurnAsker(executor, send.send)
        for at in range(0, received, 320):
            asker.push(audio[at : min(at + 320, received)].tobytes(), at)
        asker.ask(question)
        score = await first_answer(asker, answers)
        send.close()
        answers.close()
        return score.probability

    at_once, late = await answer(len(before) + HEARD_PAUSE), await answer(len(audio))
    assert late == pytest.approx(at_once, abs=1e-6)
    begin, end = question_span(question)
    alone = await executor.run(TurnEndRequest(audio[begin:end]))
    assert at_once == pytest.approx(alone.probability, abs=1e-6)
