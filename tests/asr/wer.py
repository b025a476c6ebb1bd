"""The tests' word error rate: :mod:`pipeline.asr.wer`, re-exported where the tests import it."""

from __future__ import annotations

from pipeline.asr.wer import corpus_wer, edit_distance, normalise, wer

__all__ = ["corpus_wer", "edit_distance", "normalise", "wer"]
