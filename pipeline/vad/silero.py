"""Silero VAD (v5/v6 ONNX) through onnxruntime, batched across sessions.

The model takes 512 new samples at 16 kHz *plus the 64 samples before them* (its context:
without it the probabilities collapse to about zero), a recurrent state of shape
``(2, batch, 128)`` and the rate; it returns a speech probability per row and the next state.
Rows are independent, so frames of many sessions run as one call with batch dimension N,
each row carrying its own session's state (:meth:`SileroVad.batch`).

A session's state is a small immutable :class:`SileroState`: each call returns the next one in
its :class:`VadResult`, so a request that was abandoned (its caller cancelled) can never
corrupt the state a session goes on with.

The weights ship in the ``silero-vad`` wheel; it is located with ``importlib.util.find_spec``
without importing the package (its modules import torch), and checked against its pinned
SHA-256 (:mod:`pipeline.model_digests`, stamped after the first time). Production configs may
name any other copy of the file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.errors import ModelError
from pipeline.events import PIPELINE_RATE, Pcm
from pipeline.executor import ModelExecutor
from pipeline.model_digests import check

#: new samples per model call
FRAME_SAMPLES = 512
#: samples of the previous frame prepended to each call
CONTEXT_SAMPLES = 64
STATE_SIZE = 128
#: the file inside the ``silero-vad`` wheel's package folder
PACKAGED_MODEL = Path("data") / "silero_vad.onnx"

Floats = npt.NDArray[np.float32]


def packaged_model_path() -> Path:
    """The ONNX file shipped in the ``silero-vad`` wheel (the package is not imported), once
    it has passed its SHA-256 check."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the silero-vad package is not installed; give a model path instead")
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGED_MODEL
    if not path.is_file():
        raise ModelError(f"the silero-vad package has no {PACKAGED_MODEL}")
    check(path, f"silero_vad/{PACKAGED_MODEL.as_posix()}")
    return path


@dataclass(frozen=True, slots=True, eq=False)  # arrays inside: compare by identity
class SileroState:
    """One session's model state: the recurrent state and the last 64 samples seen."""

    #: shape (2, 128), float32
    recurrent: Floats
    #: shape (64,), float32 in [-1, 1)
    context: Floats

    @classmethod
    def initial(cls) -> SileroState:
        return cls(
            recurrent=np.zeros((2, STATE_SIZE), dtype=np.float32),
            context=np.zeros(CONTEXT_SAMPLES, dtype=np.float32),
        )


@dataclass(frozen=True, slots=True, eq=False)  # arrays inside: compare by identity
class VadRequest:
    """One 512-sample PCM16 frame of a session, with that session's current state."""

    frame: Pcm
    state: SileroState

    def __post_init__(self) -> None:
        # checked here, in the caller, so one bad frame cannot fail a whole batch
        if self.frame.shape != (FRAME_SAMPLES,) or self.frame.dtype != np.int16:
            raise ValueError(f"a VAD frame is {FRAME_SAMPLES} int16 samples")


@dataclass(frozen=True, slots=True, eq=False)  # arrays inside: compare by identity
class VadResult:
    probability: float
    #: the state to send with the session's next frame
    state: SileroState


class SileroVad:
    """A loaded Silero VAD model. Thread-safe to call, but meant for one executor worker."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
    ) -> None:
        import onnxruntime  # type: ignore[import-untyped,unused-ignore]  # ships no stubs

        path = Path(model_path) if model_path is not None else packaged_model_path()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load the silero VAD model from {path}") from error
        inputs = {i.name for i in self._session.get_inputs()}
        if inputs != {"input", "state", "sr"}:
            raise ModelError(f"{path} is not a silero v5/v6 VAD model (inputs {sorted(inputs)})")
        self.path = path
        self._rate = np.array(PIPELINE_RATE, dtype=np.int64)

    def new_state(self) -> SileroState:
        return SileroState.initial()

    def __call__(self, request: VadRequest) -> VadResult:
        """One frame of one session (a batch of one)."""
        return self.batch([request])[0]

    def batch(self, requests: Sequence[VadRequest]) -> list[VadResult]:
        """Frames of many sessions in one model call; one result per request, in order."""
        if not requests:
            return []
        count = len(requests)
        audio = np.empty((count, CONTEXT_SAMPLES + FRAME_SAMPLES), dtype=np.float32)
        state = np.empty((2, count, STATE_SIZE), dtype=np.float32)
        for row, request in enumerate(requests):
            audio[row, :CONTEXT_SAMPLES] = request.state.context
            audio[row, CONTEXT_SAMPLES:] = request.frame
            state[:, row, :] = request.state.recurrent
        audio[:, CONTEXT_SAMPLES:] *= 1.0 / 32768.0
        try:
            probabilities, next_state = self._session.run(
                None, {"input": audio, "state": state, "sr": self._rate}
            )
        except Exception as error:
            raise ModelError("the silero VAD model failed") from error
        contexts = audio[:, -CONTEXT_SAMPLES:].copy()
        return [
            VadResult(
                probability=float(probabilities[row, 0]),
                state=SileroState(recurrent=next_state[:, row, :], context=contexts[row]),
            )
            for row in range(count)
        ]


def vad_executor(
    model: SileroVad, *, max_batch: int = 64, max_queue: int = 256, name: str = "silero-vad"
) -> ModelExecutor[VadRequest, VadResult]:
    """The shared executor: whatever frames are waiting (up to ``max_batch``) run as one call.

    ``max_queue`` bounds the waiting frames; each session has at most one frame in flight, so
    it is also about the number of sessions the executor admits at once.
    """
    return ModelExecutor(name, batch_fn=model.batch, max_batch=max_batch, max_queue=max_queue)
