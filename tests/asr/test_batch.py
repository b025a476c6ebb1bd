"""transcribe_file: long audio in windows through the real executor; segments from words."""

from __future__ import annotations

import anyio
import numpy as np
import pytest

from pipeline.asr.batch import Word, segment_words, snap_to_sound, transcribe_file
from pipeline.asr.decoder import Decoded, DecodeOptions, DecodeRequest
from pipeline.asr.events import TranscriptWord
from pipeline.events import PIPELINE_RATE as RATE
from pipeline.executor import ModelExecutor
from tests.asr.wer import wer
from tests.audio import espeak, silence

#: (start in seconds, sentence): 46 s in all, so the decoder needs two windows at least
PLACED = (
    (1.0, "What time do you open tomorrow?"),
    (9.0, "I would like to change my order."),
    (19.5, "Please call me back later."),
    (31.0, "The delivery arrives on Monday morning."),
    (41.0, "Can you send me the receipt?"),
)


def placed_speech() -> np.ndarray:
    audio = silence(46.0)
    for start, sentence in PLACED:
        speech = espeak(sentence)
        at = int(start * RATE)
        audio[at : at + len(speech)] = speech
    return audio.astype(np.float32) / np.float32(32768)


@pytest.mark.anyio
async def test_words_of_a_long_file_keep_their_place_in_the_file(
    executor: ModelExecutor[DecodeRequest, Decoded],
) -> None:
    with anyio.fail_after(60):
        transcript = await transcribe_file(executor, placed_speech(), DecodeOptions(beam_size=1))
    assert len({segment.window_start for segment in transcript.segments}) >= 2
    assert transcript.duration == pytest.approx(46.0)
    assert transcript.language == "en"
    reference = " ".join(sentence for _, sentence in PLACED)
    assert wer(reference, transcript.text) <= 0.1, transcript.text
    # every word lies within the sentence it belongs to (0.3 s margin) ...
    heard: dict[str, list[str]] = {sentence: [] for _, sentence in PLACED}
    for word in transcript.words:
        assert word.start <= word.end
        owner = [
            sentence
            for start, sentence in PLACED
            if start - 0.3 <= word.start and word.end <= start + len(espeak(sentence)) / RATE + 0.3
        ]
        assert owner, f"{word} lies outside every sentence"
        heard[owner[0]].append(word.word)
    # ... and each sentence's words are the ones said there
    for sentence, words in heard.items():
        assert wer(sentence, " ".join(words)) <= 0.2, (sentence, words)
    starts = [word.start for word in transcript.words]
    assert starts == sorted(starts)


@pytest.mark.anyio
async def test_silence_gives_no_segments_and_says_why(
    executor: ModelExecutor[DecodeRequest, Decoded],
) -> None:
    with anyio.fail_after(30):
        transcript = await transcribe_file(
            executor, np.zeros(35 * RATE, np.float32), DecodeOptions()
        )
    assert transcript.text == ""
    assert transcript.segments == ()
    assert [d.reason for d in transcript.dropped] == ["silence", "silence"]


def words(*spec: tuple[str, float, float]) -> list[Word]:
    return [Word(text, start, end, 1.0) for text, start, end in spec]


@pytest.mark.parametrize(
    ("spec", "groups"),
    [
        pytest.param(
            [("Hello.", 0, 0.5), ("How", 0.6, 0.8), ("are", 0.8, 0.9), ("you?", 0.9, 1.2)],
            [["Hello."], ["How", "are", "you?"]],
            id="a sentence end closes a segment",
        ),
        pytest.param(
            [("Yes,", 0, 0.3), ("now", 0.4, 0.6)],
            [["Yes,", "now"]],
            id="a clause end early in a segment does not",
        ),
        pytest.param(
            [("one", 0, 2), ("two,", 2, 4.5), ("three", 4.6, 5)],
            [["one", "two,"], ["three"]],
            id="a clause end after four seconds does",
        ),
        pytest.param(
            [("a", 0, 5), ("b", 5, 10.5), ("c", 10.5, 11)],
            [["a", "b"], ["c"]],
            id="ten seconds close a segment anywhere",
        ),
        pytest.param(
            [("He said “stop.”", 0, 1), ("Then", 1, 2)],
            [["He said “stop.”"], ["Then"]],
            id="closing quotes after the sentence end",
        ),
    ],
)
def test_words_are_grouped_into_subtitle_sized_segments(
    spec: list[tuple[str, float, float]], groups: list[list[str]]
) -> None:
    result = segment_words(words(*spec))
    assert [[w.word for w in group] for group in result] == groups


def test_word_spans_lose_the_silence_at_their_edges() -> None:
    audio = np.zeros(3 * RATE, np.float32)
    audio[int(1.5 * RATE) : int(2.0 * RATE)] = 0.3  # the only sound: 1.5 s to 2.0 s
    spoken_late = TranscriptWord(word="late", start=0, end=int(2.0 * RATE), probability=1.0)
    trailing = TranscriptWord(word="long", start=int(1.5 * RATE), end=3 * RATE, probability=1.0)
    quiet = TranscriptWord(word="hush", start=int(2.5 * RATE), end=3 * RATE, probability=1.0)
    assert snap_to_sound([spoken_late, trailing, quiet], audio) == [
        (int(1.45 * RATE), int(2.0 * RATE)),
        (int(1.5 * RATE), int(2.05 * RATE)),
        (int(2.5 * RATE), 3 * RATE),
    ]
