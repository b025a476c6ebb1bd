"""The translation benchmark's parallel set, its scores and its tables (no server, no model).

``bench/data/translation.tsv`` holds everyday sentences (phone calls, travel, bookings, help
lines) in English, French, German and Spanish, one sentence a row, one language a column
(the header names them); the translations were written by hand. Each sentence is both the
source a caller speaks and the reference of its translation into the other languages.

Quality is chrF (sacrebleu's ``CHRF`` with its defaults: character 6-grams, beta 2) over a
leg's sentences as a corpus, 0-100.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sacrebleu.metrics.chrf import CHRF

from bench.v2v_report import ms, pct

__all__ = [
    "DATA",
    "LANGUAGES",
    "Leg",
    "Sentence",
    "chrf",
    "load_parallel",
    "report",
]

DATA = Path(__file__).resolve().parent / "data" / "translation.tsv"
LANGUAGES = ("en", "fr", "de", "es")


def load_parallel(path: Path = DATA) -> list[dict[str, str]]:
    """The rows of the parallel set at ``path``: each maps every language of
    :data:`LANGUAGES` to the sentence in it. Raises ``ValueError`` naming the line of a row
    with a missing or empty cell, or a header that is not the four languages."""
    with path.open(encoding="utf-8", newline="") as file:
        reader = csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, [])
        if sorted(header) != sorted(LANGUAGES):
            raise ValueError(f"{path}: the header must name {', '.join(LANGUAGES)}: {header}")
        rows = []
        for line, cells in enumerate(reader, start=2):
            if len(cells) != len(header) or not all(cell.strip() for cell in cells):
                raise ValueError(f"{path}:{line}: every language needs a sentence: {cells}")
            rows.append(dict(zip(header, (cell.strip() for cell in cells), strict=True)))
    return rows


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """chrF (0-100) of ``hypotheses`` against their ``references`` (one each), as a corpus."""
    if len(hypotheses) != len(references):
        raise ValueError("one reference per hypothesis")
    if not hypotheses:
        return float("nan")
    return float(CHRF().corpus_score(list(hypotheses), [list(references)]).score)


@dataclass(frozen=True)
class Sentence:
    """One sentence of a leg: what was said, heard and spoken back, and how long it took."""

    source: str  # the sentence spoken (in the leg's source language)
    reference: str  # its hand translation (in the target language)
    heard: str = ""  # the server's final transcripts of it, joined
    language: str = ""  # the language Whisper detects in the sentence when not told
    translation: str = ""  # the translation text the server spoke (agent.text)
    latency: float | None = None  # s, end of speech -> first loud frame of the translation
    asr: float = 0.0  # s, baseline: the final decode
    #: s, baseline: the translate decode, or the LLM's first text (None: nothing to translate)
    translate: float | None = 0.0
    tts: float = 0.0  # s, baseline: the first chunk of the translation's first clause
    split: bool = False  # the turn ended at a pause inside the sentence (no latency then)

    @property
    def models(self) -> float | None:
        return None if self.translate is None else self.asr + self.translate + self.tts


@dataclass
class Leg:
    """One engine and language pair: a call of every sentence, and its baseline."""

    engine: str  # whisper | llm
    source: str
    target: str
    sentences: list[Sentence] = field(default_factory=list)
    vad_silence: float = 0.0  # s, the VAD's min_silence_ms (before the final decode starts)
    skipped: str = ""  # why the leg did not run

    @property
    def name(self) -> str:
        return f"{self.source}->{self.target} {self.engine}"

    def summary(self) -> dict[str, object]:
        s = self.sentences
        latencies = [x.latency for x in s if x.latency is not None]
        models = [x.models for x in s if x.models is not None]
        return {
            "engine": self.engine,
            "pair": f"{self.source}->{self.target}",
            "skipped": self.skipped,
            "sentences": len(s),
            "answered": len(latencies),
            "e2e_p50_ms": 1000 * pct(latencies, 50),
            "e2e_p95_ms": 1000 * pct(latencies, 95),
            "asr_p50_ms": 1000 * pct([x.asr for x in s], 50),
            "translate_p50_ms": 1000 * pct([x.translate for x in s if x.translate is not None], 50),
            "tts_p50_ms": 1000 * pct([x.tts for x in s], 50),
            "models_p50_ms": 1000 * pct(models, 50),
            "models_p95_ms": 1000 * pct(models, 95),
            "floor_p50_ms": 1000 * pct([self.vad_silence + m for m in models], 50),
            "chrf": chrf([x.translation for x in s], [x.reference for x in s]),
            "asr_chrf": chrf([x.heard for x in s], [x.source for x in s]),
            "language_detected": sum(x.language == self.source for x in s),
            "split": sum(x.split for x in s),
        }


def _score(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else "-"


def report(legs: Sequence[Leg]) -> list[dict[str, object]]:
    """Print each leg's sentences, then the summary table (markdown); return the summaries."""
    for leg in legs:
        if leg.skipped or not leg.sentences:
            continue
        print(f"\n### {leg.name}\n")
        print("| # | said | ASR heard (language) | translation | ear to ear ms | models ms |")
        print("|---|---|---|---|---|---|")
        for i, x in enumerate(leg.sentences, 1):
            models = f"{ms(x.asr)} + {ms(x.translate)} + {ms(x.tts)}"
            print(
                f"| {i} | {x.source} | {x.heard} ({x.language or '?'}) | {x.translation} | "
                f"{ms(x.latency)} | {models} |"
            )
    summaries = [leg.summary() for leg in legs]
    print("\n### Speech-to-speech translation\n")
    print(
        "| engine | pair | timed (split turns) | ear to ear p50 | p95 | models p50 (ASR + "
        "translate + TTS first chunk) | models p95 | floor p50 | chrF | ASR chrF (source) | "
        "language detected |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for leg, s in zip(legs, summaries, strict=True):
        if leg.skipped:
            print(f"| {leg.engine} | {s['pair']} | skipped: {leg.skipped} |" + " |" * 8)
            continue
        n = s["sentences"]
        print(
            f"| {leg.engine} | {s['pair']} | {s['answered']}/{n} ({s['split']}) | "
            f"{s['e2e_p50_ms']:.0f} ms | {s['e2e_p95_ms']:.0f} ms | {s['models_p50_ms']:.0f} ms "
            f"({s['asr_p50_ms']:.0f} + {s['translate_p50_ms']:.0f} + {s['tts_p50_ms']:.0f}) | "
            f"{s['models_p95_ms']:.0f} ms | {s['floor_p50_ms']:.0f} ms | {_score(s['chrf'])} | "
            f"{_score(s['asr_chrf'])} | {s['language_detected']}/{n} |"
        )
    print(
        "\ntimed: sentences whose translation was heard, with its ear-to-ear time; a split turn "
        "ended at a pause inside the sentence (translated in parts, not timed). chrF over the "
        "leg's sentences (an unheard one scores as empty); ASR chrF: the finals against the "
        "source sentence; floor: the VAD's min_silence + the models."
    )
    return summaries
