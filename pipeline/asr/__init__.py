"""Streaming speech recognition: Whisper through CTranslate2 on short windows, with guards.

- :mod:`pipeline.asr.model`: where the model comes from (:class:`AsrModelConfig`: the embedded
  wheels assembled once into the user's cache, a local folder, a hub name) and loading it.
- :mod:`pipeline.asr.decoder`: :class:`WhisperDecoder`, the synchronous decode of one window
  (no 30 s padding), with word timings, language detection, prompts and hotwords.
- :mod:`pipeline.asr.decode_batch`: how it decodes several windows (several calls') in one
  pass of the model, each as it would alone.
- :mod:`pipeline.asr.guards`: the checks that keep it from inventing text (pure functions).
- :mod:`pipeline.asr.agreement`: :class:`LocalAgreement`, stable partials (sans-I/O).
- :mod:`pipeline.asr.utterance`: :class:`UtteranceTracker`, what to decode and when (sans-I/O).
- :mod:`pipeline.asr.stage`: :class:`AsrStage`, the async stage, and :func:`asr_executor`, the
  one executor per model and device that every session shares.
- :mod:`pipeline.asr.events`: :class:`Transcript`, :class:`TranscriptWord`,
  :class:`TranscriptDropped`, :class:`TranscriptProgress`.
"""

from __future__ import annotations

from pipeline.asr.agreement import LocalAgreement, Partial
from pipeline.asr.decoder import (
    Decoded,
    DecodeOptions,
    DecodeRequest,
    WhisperDecoder,
    to_model_audio,
)
from pipeline.asr.events import (
    Transcript,
    TranscriptDropped,
    TranscriptProgress,
    TranscriptWord,
)
from pipeline.asr.guards import REASONS
from pipeline.asr.model import (
    GPU_MODEL,
    AsrModelConfig,
    cache_root,
    embedded_model_dir,
    load_whisper,
    resolve_model,
)
from pipeline.asr.stage import OVERLOADED, AsrRunner, AsrStage, asr_executor
from pipeline.asr.utterance import Decode, TrackerConfig, UtteranceTracker

__all__ = [
    "GPU_MODEL",
    "OVERLOADED",
    "REASONS",
    "AsrModelConfig",
    "AsrRunner",
    "AsrStage",
    "Decode",
    "DecodeOptions",
    "DecodeRequest",
    "Decoded",
    "LocalAgreement",
    "Partial",
    "TrackerConfig",
    "Transcript",
    "TranscriptDropped",
    "TranscriptProgress",
    "TranscriptWord",
    "UtteranceTracker",
    "WhisperDecoder",
    "asr_executor",
    "cache_root",
    "embedded_model_dir",
    "load_whisper",
    "resolve_model",
    "to_model_audio",
]
