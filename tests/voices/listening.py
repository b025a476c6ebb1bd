"""Helpers for tests that listen to synthesized speech: render a plan, measure it, compare what
Whisper heard with what was meant.

Whisper writes numbers its own way ("1,234", "21st", "$42.50", "9.30pm"), so comparisons go
through a *skeleton*: the text read through :func:`voices.normalize.normalize` (so written
forms become words the way Voxline says them), number words turned back into digits, and
everything but letters and digits removed. "Call five five five, zero one two three." and
"call 555 0123" have the same skeleton, ``call5550123``.
"""

from __future__ import annotations

import difflib
import re
from contextlib import aclosing
from dataclasses import dataclass

import anyio
import msgspec
import msgspec.structs
import numpy as np
import soxr
from faster_whisper import WhisperModel

from voices.engine import SpeechChunk, SpeechPlan
from voices.normalize import normalize
from voices.piper_engine import PiperEngine

_ONES = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_ORDINALS = {
    "first": "one", "second": "two", "third": "three", "fourth": "four", "fifth": "five",
    "sixth": "six", "seventh": "seven", "eighth": "eight", "ninth": "nine", "tenth": "ten",
    "eleventh": "eleven", "twelfth": "twelve", "twentieth": "twenty", "thirtieth": "thirty",
}  # fmt: skip
_SCALES = {"thousand": 1000, "million": 10**6, "billion": 10**9}


def words_to_digits(text: str) -> list[str]:
    """Tokens of ``text`` with runs of number words as numbers ("twenty twenty-four" is
    ``["20", "24"]``, "one thousand two hundred" is ``["1200"]``); ordinal endings dropped."""
    tokens = re.findall(r"[a-z0-9]+", text.lower().replace("-", " "))
    out: list[str] = []
    total: int | None = None  # the number being read
    group = 0  # its part below the last scale word

    def flush() -> None:
        nonlocal total, group
        if total is not None:
            out.append(str(total + group))
        total, group = None, 0

    for token in tokens:
        token = _ORDINALS.get(token, token)
        token = re.sub(r"^(\d+)(st|nd|rd|th)$", r"\1", token)
        if token in _ONES:
            value = _ONES[token]
            # joins "twenty" + "four", "two hundred" + "five", "thousand" + "two"
            if total is None or not (
                (group % 100 == 0 and group > 0 and value < 100)
                or (group % 100 >= 20 and group % 10 == 0 and value < 10)
                or (group == 0 and total > 0)
            ):
                flush()
                total = 0
            group += value
        elif token in _TENS:
            value = _TENS[token]
            if total is None or not (
                (group % 100 == 0 and group > 0) or (group == 0 and total > 0)
            ):
                flush()
                total = 0
            group += value
        elif token == "hundred" and total is not None and 0 < group < 100:
            group *= 100
        elif token in _SCALES and total is not None and group > 0:
            total += group * _SCALES[token]
            group = 0
        else:
            flush()
            out.append(token)
    flush()
    return out


def skeleton(text: str) -> str:
    """Letters and digits of what ``text`` says, numbers as digits (see the module docstring)."""
    return "".join(words_to_digits(normalize(text)))


def similarity(meant: str, heard: str) -> float:
    """How alike the skeletons are (1 is identical)."""
    return difflib.SequenceMatcher(None, skeleton(meant), skeleton(heard), autojunk=False).ratio()


@dataclass(frozen=True)
class Rendered:
    chunks: list[SpeechChunk]
    sample_rate: int

    @property
    def samples(self) -> np.ndarray:
        return np.frombuffer(b"".join(c.pcm for c in self.chunks), dtype="<i2")

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def deterministic(plan: SpeechPlan) -> SpeechPlan:
    """``plan`` with Piper's random noise off where the plan leaves it to the voice.

    Piper samples noise for each utterance, so the same text sounds a little different every
    time and a test that listens to it could pass or fail by chance. With the noise at zero the
    audio is the same on every run.
    """
    segments = []
    for segment in plan.segments:
        prosody = segment.prosody
        quiet = msgspec.structs.replace(
            prosody,
            noise_scale=0.0 if prosody.noise_scale is None else prosody.noise_scale,
            noise_w_scale=0.0 if prosody.noise_w_scale is None else prosody.noise_w_scale,
        )
        segments.append(msgspec.structs.replace(segment, prosody=quiet))
    return SpeechPlan(tuple(segments))


def render(engine: PiperEngine, plan: SpeechPlan, timeout: float = 60) -> Rendered:
    """Every chunk of ``plan``, rendered deterministically (runs its own event loop: call it
    from sync tests)."""
    plan = deterministic(plan)

    async def run() -> list[SpeechChunk]:
        with anyio.fail_after(timeout):
            await anyio.to_thread.run_sync(engine.start)
            async with aclosing(engine.synthesize(plan)) as chunks:
                return [chunk async for chunk in chunks]

    return Rendered(anyio.run(run), engine.sample_rate)


def hear(model: WhisperModel, samples: np.ndarray, sample_rate: int) -> str:
    """What Whisper writes for ``samples`` (PCM16 values)."""
    audio = soxr.resample(samples.astype(np.float32) / 32768.0, sample_rate, 16000)
    audio = np.concatenate([audio, np.zeros(8000, dtype=np.float32)])  # a little silence after
    segments, _ = model.transcribe(
        audio, language="en", beam_size=5, condition_on_previous_text=False, without_timestamps=True
    )
    return " ".join(segment.text.strip() for segment in segments)
