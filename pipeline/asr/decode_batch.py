"""Decoding several windows in one pass of the model (synchronous; :meth:`WhisperDecoder.decode`
is a batch of one, so both take this one path).

The ASR executor hands :func:`decode_batch` the requests of several calls at once; CTranslate2
takes them as one batch at each step, and each request's result is what it would have been
alone (same features, same prompt, same search):

1. **Admission**, request by request: the audio is checked (1-D float32, at most
   ``max_audio_seconds``: otherwise its :class:`~pipeline.errors.InvalidAudio` takes its place
   in the results), then the silence and too-short guards (answered at once, no model), then
   the log-mel features of its window (:func:`window_samples`).
2. **Encode**: windows of the same length are stacked and encoded in one call. Windows of
   another length get their own call: padding one to a longer window would change its decode
   (every window is padded to ``min_window``, 10 s, so most share a length).
3. **Language**: one ``detect_language`` over the rows that configure none.
4. **Generate**: one call per beam size and prompt length (CTranslate2 wants
   ``<|startoftranscript|>`` at the same position in every prompt of a call), each request
   with its own prompt. The call's ``max_length`` is its largest request's; a request whose
   sequence reaches its own token budget is cut there and counts as having hit it.
5. **Align** (finals with word timings and text): one call per language and task.

**Errors.** A step that raises for a group of requests is retried request by request, so the
error reaches only the request it belongs to (as its entry in the results), never its batch.

**Timings.** Each result's ``timings`` are the steps it took part in, as long as each step of
its group took (``features`` is its own), and ``total`` from the start of the batch to the end
of its group.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.asr import guards
from pipeline.asr.decoder import MAX_TOKENS, Decoded, DecodeOptions, DecodeRequest, Floats
from pipeline.asr.events import TranscriptWord
from pipeline.errors import InvalidAudio
from pipeline.events import PIPELINE_RATE

if TYPE_CHECKING:
    from pipeline.asr.decoder import WhisperDecoder

#: samples per log-mel frame
HOP = 160
# Whisper's own punctuation sets (full-width forms included on purpose)
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"  # noqa: RUF001


def window_samples(length: int, options: DecodeOptions) -> int:
    """The window a request of ``length`` samples is decoded in: the audio and
    ``tail_silence``, padded to ``min_window``, at most Whisper's 30 s."""
    content = length + round(options.tail_silence * PIPELINE_RATE)
    return min(max(content, round(options.min_window * PIPELINE_RATE)), 30 * PIPELINE_RATE)


def batch_key(request: DecodeRequest) -> Hashable:
    """Requests with equal keys share every step of a batch but the prompt's: the window's
    length and the beam size (the executor batches a request only with others of its key)."""
    options = request.options
    beam = options.beam_size if request.final else options.partial_beam_size
    return window_samples(len(request.audio), options), beam


@dataclass(slots=True, eq=False)
class _Item:
    """One admitted request on its way through the steps."""

    index: int
    request: DecodeRequest
    level: guards.Activity
    #: samples of audio and tail silence (the rest of the window is padding)
    content: int
    features: Floats
    timings: dict[str, float]
    language: str = "en"
    language_probability: float = 1.0
    tokenizer: Any = None
    prompt: list[int] = field(default_factory=list)
    decoded: Decoded | None = None
    tokens: list[int] = field(default_factory=list)
    dropped: str | None = None

    @property
    def beam(self) -> int:
        options = self.request.options
        return options.beam_size if self.request.final else options.partial_beam_size

    @property
    def limit(self) -> int:
        """The most tokens this request may generate after its prompt."""
        seconds = len(self.request.audio) / PIPELINE_RATE
        budget = 8 + math.ceil(seconds * self.request.options.max_tokens_per_second)
        return min(MAX_TOKENS, len(self.prompt) + budget) - len(self.prompt)


def decode_batch(
    decoder: WhisperDecoder, requests: Sequence[DecodeRequest]
) -> list[Decoded | Exception]:
    """One result per request, in order: its :class:`Decoded`, or the error it alone raised."""
    started = time.perf_counter()
    results: list[Decoded | Exception] = [Decoded(text="")] * len(requests)
    groups: dict[int, list[_Item]] = defaultdict(list)
    for index, request in enumerate(requests):
        try:
            admitted = _admit(decoder, index, request)
        except InvalidAudio as exc:
            results[index] = exc
            continue
        if isinstance(admitted, _Item):
            groups[admitted.features.shape[-1]].append(admitted)
        else:
            results[index] = replace(admitted, timings={"total": time.perf_counter() - started})
    for group in groups.values():
        for item, result in zip(group, _decode_group(decoder, group), strict=True):
            if not isinstance(result, Exception):
                result.timings["total"] = time.perf_counter() - started
            results[item.index] = result
    return results


def _admit(decoder: WhisperDecoder, index: int, request: DecodeRequest) -> _Item | Decoded:
    options, audio = request.options, request.audio
    if audio.ndim != 1 or audio.dtype != np.float32:
        raise InvalidAudio("the decoder takes 1-D float32 samples at 16 kHz")
    if len(audio) > options.max_audio_seconds * PIPELINE_RATE:
        raise InvalidAudio(f"at most {options.max_audio_seconds:.2f} s of audio per request")
    level = guards.activity(audio, floor_dbfs=options.silence_dbfs)
    if level.peak_dbfs < options.silence_dbfs:
        return Decoded(text="", dropped=guards.SILENCE)
    if level.active_seconds < options.min_active:
        return Decoded(text="", dropped=guards.TOO_SHORT)
    mark = time.perf_counter()
    content = len(audio) + round(options.tail_silence * PIPELINE_RATE)
    padded = np.zeros(window_samples(len(audio), options), dtype=np.float32)
    padded[: len(audio)] = audio
    features = decoder.model.feature_extractor(padded)[..., :-1]
    timings = {"features": time.perf_counter() - mark}
    return _Item(index, request, level, content, features, timings)


def _decode_group(decoder: WhisperDecoder, group: list[_Item]) -> list[Decoded | Exception]:
    """``group`` (windows of one length) decoded together; on an error, one at a time."""
    try:
        return list(_run(decoder, group))
    except Exception as exc:  # goes to its request's caller; retried alone when batched
        if len(group) == 1:
            return [exc]
        for item in group:  # start afresh: a step may have filled some in
            item.decoded, item.tokens, item.dropped = None, [], None
        return [_decode_group(decoder, [item])[0] for item in group]


def _run(decoder: WhisperDecoder, items: list[_Item]) -> list[Decoded]:
    import ctranslate2

    model = decoder.model.model
    mark = time.perf_counter()
    stacked = np.ascontiguousarray(np.stack([item.features for item in items]))
    encoded = model.encode(ctranslate2.StorageView.from_array(stacked))
    _detect_languages(decoder, items, encoded)
    for item in items:
        options = item.request.options
        item.tokenizer = decoder.tokenizer(item.language, options.task)
        item.prompt = decoder.prompt(item.tokenizer, options, item.request.context)
    mark = _lap(items, "encode", mark)

    by_search: dict[tuple[int, int], list[int]] = defaultdict(list)
    for row, item in enumerate(items):
        by_search[item.beam, len(item.prompt)].append(row)
    for (beam, _), rows in by_search.items():
        chosen = [items[row] for row in rows]
        outcomes = model.generate(
            _rows(encoded, rows, len(items)),
            [item.prompt for item in chosen],
            beam_size=beam,
            max_length=max(len(item.prompt) + item.limit for item in chosen),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        for item, outcome in zip(chosen, outcomes, strict=True):
            _read(item, outcome)
    mark = _lap(items, "generate", mark)

    by_language: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row, item in enumerate(items):
        options = item.request.options
        if item.dropped is None and item.request.final and options.word_timestamps and item.tokens:
            by_language[item.language, options.task].append(row)
    for rows in by_language.values():
        chosen = [items[row] for row in rows]
        alignments = decoder.model.find_alignment(
            chosen[0].tokenizer,
            [item.tokens for item in chosen],
            _rows(encoded, rows, len(items)),
            [item.content // HOP for item in chosen],
        )
        for item, alignment in zip(chosen, alignments, strict=True):
            _place_words(item, alignment)
    if by_language:
        _lap([items[row] for rows in by_language.values() for row in rows], "align", mark)
    return [replace(_decoded(item), dropped=item.dropped) for item in items]


def _detect_languages(decoder: WhisperDecoder, items: list[_Item], encoded: Any) -> None:
    if not decoder.multilingual:
        return
    rows = []
    for row, item in enumerate(items):
        if item.request.options.language is None:
            rows.append(row)
        else:
            item.language = item.request.options.language
    if not rows:
        return
    detected = decoder.model.model.detect_language(_rows(encoded, rows, len(items)))
    for row, ranking in zip(rows, detected, strict=True):
        token, probability = ranking[0]
        items[row].language = str(token)[2:-2]
        items[row].language_probability = float(probability)


def _rows(encoded: Any, rows: list[int], total: int) -> Any:
    """The encoder output of ``rows`` only: the output itself when that is every row, else
    a copy of those rows on the CPU (CTranslate2 moves it to the model's device)."""
    if rows == list(range(total)):
        return encoded
    import ctranslate2

    host = encoded if encoded.device == "cpu" else encoded.to_device(ctranslate2.Device.cpu)
    # from_array shares the copy's memory and keeps a reference to it
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(host)[rows]))


def _read(item: _Item, outcome: Any) -> None:
    """The text of ``item``'s sequence (cut at its own budget), and the guards' verdict."""
    options, tokenizer = item.request.options, item.tokenizer
    sequence: list[int] = list(outcome.sequences_ids[0])[: item.limit]
    tokens = [t for t in sequence if t < tokenizer.eot]
    item.decoded = Decoded(
        text=tokenizer.decode(tokens).strip(),
        language=item.language,
        language_probability=item.language_probability,
        avg_logprob=float(outcome.scores[0]) * len(tokens) / (len(tokens) + 1),
        no_speech_prob=float(outcome.no_speech_prob),
        timings=item.timings,
    )
    collapsed, changed = guards.collapse_repeats(item.decoded.text)
    if changed:
        item.decoded = replace(item.decoded, text=collapsed, notes=("repetition_collapsed",))
        tokens = tokenizer.encode(" " + collapsed) if collapsed else []
    item.tokens = tokens
    runaway = len(sequence) >= item.limit and not changed
    item.dropped = _judge(item.decoded, options, runaway=runaway)


def _decoded(item: _Item) -> Decoded:
    assert item.decoded is not None
    return item.decoded


def _judge(decoded: Decoded, options: DecodeOptions, *, runaway: bool) -> str | None:
    """The guard that rejects this decode, if any (see :mod:`pipeline.asr.guards`)."""
    if guards.is_no_speech(
        decoded.no_speech_prob,
        decoded.avg_logprob,
        no_speech_threshold=options.no_speech_threshold,
        log_prob_threshold=options.log_prob_threshold,
    ):
        return guards.NO_SPEECH
    if options.min_avg_logprob is not None and decoded.avg_logprob < options.min_avg_logprob:
        return guards.LOW_CONFIDENCE
    if runaway:
        return guards.RUNAWAY
    if not any(guards.normalise_word(w) for w in decoded.text.split()):
        return guards.EMPTY
    return None


def _place_words(item: _Item, alignment: list[dict[str, Any]]) -> None:
    """Attach word timings (punctuation merged into its word as faster-whisper does); drop
    trailing words aligned after the end of the audio."""
    from faster_whisper.transcribe import merge_punctuations

    merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
    alignment = [a for a in alignment if str(a["word"]).strip()]
    decoded, length = _decoded(item), len(item.request.audio)
    # Words aligned wholly after the audio sit in the silence the decoder appended: nothing
    # was said there (seen: "Fail better. Fail better." for one "Fail better." in context).
    spoken = len(alignment)
    while spoken and alignment[spoken - 1]["start"] * PIPELINE_RATE >= length:
        spoken -= 1
    if spoken < len(alignment):
        kept = [t for a in alignment[:spoken] for t in a["tokens"]]
        text = item.tokenizer.decode(kept).strip()
        decoded = replace(decoded, text=text, notes=(*decoded.notes, "trailing_words_removed"))
        if not spoken:
            item.decoded, item.dropped = decoded, guards.NO_SPEECH
            return
    # Alignment puts the first word's start at the window's start: keep words where there is
    # sound (Whisper's alignment is only as precise as its 20 ms frames anyway).
    margin = PIPELINE_RATE // 20
    bounds = (max(item.level.onset - margin, 0), min(item.level.offset + margin, length))
    item.decoded = replace(decoded, words=_words(alignment[:spoken], bounds))


def _words(alignment: list[dict[str, Any]], bounds: tuple[int, int]) -> tuple[TranscriptWord, ...]:
    low, high = bounds
    words = []
    for timing in alignment:
        start = min(max(round(float(timing["start"]) * PIPELINE_RATE), low), high)
        end = min(max(round(float(timing["end"]) * PIPELINE_RATE), start), high)
        words.append(
            TranscriptWord(
                word=str(timing["word"]).strip(),
                start=start,
                end=end,
                probability=float(timing["probability"]),
            )
        )
    return tuple(words)


def _lap(items: list[_Item], name: str, mark: float) -> float:
    now = time.perf_counter()
    for item in items:
        item.timings[name] = now - mark
    return now
