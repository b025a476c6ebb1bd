"""Voice activity detection: Silero VAD batched across sessions, a sans-I/O detector, a stage.

- :mod:`pipeline.vad.silero`: the ONNX model (:class:`SileroVad`), per-session
  :class:`SileroState`, and :func:`vad_executor`, the shared batching executor.
- :mod:`pipeline.vad.detector`: :class:`SpeechDetector`, probabilities in, speech start/end out,
  counted in samples.
- :mod:`pipeline.vad.stage`: :class:`VadStage`, the async stage.
- :mod:`pipeline.vad.events`: :class:`SpeechStarted`, :class:`SpeechPaused`,
  :class:`SpeechStopped`.
"""

from __future__ import annotations

from pipeline.events import PIPELINE_RATE as SAMPLE_RATE
from pipeline.vad.detector import (
    DetectorConfig,
    SpeechDetector,
    SpeechEnd,
    SpeechStart,
    Transition,
)
from pipeline.vad.events import SpeechPaused, SpeechStarted, SpeechStopped
from pipeline.vad.silero import (
    CONTEXT_SAMPLES,
    FRAME_SAMPLES,
    SileroState,
    SileroVad,
    VadRequest,
    VadResult,
    packaged_model_path,
    vad_executor,
)
from pipeline.vad.stage import Forward, VadRunner, VadStage

__all__ = [
    "CONTEXT_SAMPLES",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "DetectorConfig",
    "Forward",
    "SileroState",
    "SileroVad",
    "SpeechDetector",
    "SpeechEnd",
    "SpeechPaused",
    "SpeechStart",
    "SpeechStarted",
    "SpeechStopped",
    "Transition",
    "VadRequest",
    "VadResult",
    "VadRunner",
    "VadStage",
    "packaged_model_path",
    "vad_executor",
]
