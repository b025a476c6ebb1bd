"""The semantic end-of-turn model: smart-turn v3 (ONNX, CPU), batched across calls.

The model hears the end of a caller's utterance and says how likely it is that they are done
(a sigmoid probability), from the audio alone: the pitch and pace of a finished sentence
against those of a speaker who stops to think ("and, um"). Its input is the last 8 s of the
utterance at 16 kHz (a shorter one zero-padded in front), normalised to zero mean and unit
variance, as Whisper's 80-band log-mel spectrogram (:func:`features`, 80 x 800); it returns
one probability per row, and rows are independent, so requests of many calls run as one ONNX
call (:meth:`SmartTurn.batch`) on the one executor every session shares
(:func:`end_of_turn_executor`).

The CPU weights (``smart-turn-v3.2-cpu.onnx``, about 8.7 MB, BSD-2-Clause) ship inside the
``pipecat-ai`` wheel, which setup installs without its dependencies only to take this file;
:func:`packaged_model_path` finds it without importing the package. The file is checked
against :data:`SMART_TURN_SHA256` (its entry in :data:`pipeline.model_digests.SHA256`) when it
is loaded, hashed once and then stamped (another copy named by path: against the hash given
with it, if any), so a different pipecat release fails at start-up, not in a call.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.errors import ModelError
from pipeline.events import PIPELINE_RATE, Pcm
from pipeline.executor import ModelExecutor
from pipeline.model_digests import SHA256, check
from pipeline.model_digests import sha256_of as sha256_of  # exported from here too

__all__ = [
    "PACKAGED_MODEL",
    "SMART_TURN_SHA256",
    "WINDOW_SAMPLES",
    "SmartTurn",
    "TurnEndRequest",
    "TurnEndResult",
    "end_of_turn_executor",
    "features",
    "packaged_model_path",
    "sha256_of",
]

#: the file inside the ``pipecat`` package of the ``pipecat-ai==1.14.0`` wheel
PACKAGED_MODEL = Path("audio") / "turn" / "smart_turn" / "data" / "smart-turn-v3.2-cpu.onnx"
#: its name in :data:`pipeline.model_digests.SHA256`
PACKAGED_NAME = f"pipecat/{PACKAGED_MODEL.as_posix()}"
SMART_TURN_SHA256 = SHA256[PACKAGED_NAME]
#: the model hears the last 8 s of an utterance
WINDOW_SAMPLES = 8 * PIPELINE_RATE

_N_FFT = 400
_HOP = 160
_MELS = 80
_FRAMES = WINDOW_SAMPLES // _HOP  # 800

Floats = npt.NDArray[np.float32]


def packaged_model_path() -> Path:
    """The ONNX file shipped in the ``pipecat-ai`` wheel (the package is not imported: its
    ``__init__`` sets up logging and imports much more)."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the end-of-turn model comes from the pipecat-ai wheel, which is not installed "
            "(pip install --no-deps pipecat-ai==1.14.0), or give profile.turn_model.path"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / PACKAGED_MODEL
    if not path.is_file():
        raise ModelError(f"the installed pipecat-ai has no {PACKAGED_MODEL} (want 1.14.0)")
    return path


@functools.cache
def _mel_filters() -> npt.NDArray[np.float64]:
    # Whisper's Slaney-scale filterbank, as faster-whisper builds it: (80, 201)
    from faster_whisper.feature_extractor import FeatureExtractor

    filters: npt.NDArray[np.float64] = FeatureExtractor.get_mel_filters(
        PIPELINE_RATE, _N_FFT, n_mels=_MELS
    ).astype(np.float64)
    return filters


_WINDOW = np.hanning(_N_FFT + 1)[:-1]  # periodic Hann


def features(audio: Pcm) -> Floats:
    """The model's input for one utterance (PCM16 at 16 kHz): shape (80, 800), float32.

    The last :data:`WINDOW_SAMPLES` of ``audio`` (zeros in front of a shorter one), scaled to
    zero mean and unit variance, then Whisper's log-mel: a centred 400-point STFT every 160
    samples (reflect-padded, periodic Hann), power through the mel filters, log10 floored 8
    below its peak, ``(x + 4) / 4``; the last frame dropped. Computed in float64.
    """
    window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    tail = audio[-WINDOW_SAMPLES:]
    if len(tail):
        window[-len(tail) :] = tail.astype(np.float32) * (1.0 / 32768.0)
    x = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), _N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2  # (801, 201)
    mel = _mel_filters() @ power[:_FRAMES].T  # (80, 800)
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    out: Floats = ((log + 4.0) / 4.0).astype(np.float32)
    return out


@dataclass(frozen=True, slots=True, eq=False)  # an array inside: compare by identity
class TurnEndRequest:
    """The utterance so far (PCM16, 16 kHz, mono; only its last 8 s count)."""

    audio: Pcm

    def __post_init__(self) -> None:
        # checked here, in the caller, so one bad request cannot fail a whole batch
        if self.audio.ndim != 1 or self.audio.dtype != np.int16 or not len(self.audio):
            raise ValueError("an end-of-turn request is a non-empty 1-D int16 array")


@dataclass(frozen=True, slots=True)
class TurnEndResult:
    #: how likely the caller is done (0 to 1)
    probability: float


class SmartTurn:
    """A loaded smart-turn v3 model. Thread-safe to call, but meant for one executor worker.

    ``model_path`` ``None``: the file in the installed ``pipecat-ai`` wheel, which must be
    the one of :data:`SMART_TURN_SHA256`. A path given: checked against ``sha256`` if given.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        sha256: str | None = None,
        threads: int = 1,
    ) -> None:
        import onnxruntime  # type: ignore[import-untyped,unused-ignore]  # ships no stubs

        if model_path is None:
            path, sha256 = packaged_model_path(), None  # its pinned digest, not a given one
            check(path, PACKAGED_NAME)  # stamped: read once, not at every start
        else:
            path = Path(model_path)
        try:
            found = sha256_of(path) if sha256 is not None else None
        except OSError as error:
            raise ModelError(f"cannot read the end-of-turn model {path}: {error}") from None
        if found is not None and found != sha256:
            raise ModelError(f"{path} is not the expected end-of-turn model (SHA-256 {found})")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load the end-of-turn model from {path}") from error
        inputs = [(i.name, tuple(i.shape[1:])) for i in self._session.get_inputs()]
        if inputs != [("input_features", (_MELS, _FRAMES))]:
            raise ModelError(f"{path} is not a smart-turn v3 model (inputs {inputs})")
        self.path = path

    def __call__(self, request: TurnEndRequest) -> TurnEndResult:
        """One utterance (a batch of one)."""
        return self.batch([request])[0]

    def batch(self, requests: Sequence[TurnEndRequest]) -> list[TurnEndResult]:
        """Utterances of many calls in one model call; one result per request, in order."""
        if not requests:
            return []
        inputs = np.stack([features(request.audio) for request in requests])
        try:
            (scores,) = self._session.run(None, {"input_features": inputs})
        except Exception as error:
            raise ModelError("the end-of-turn model failed") from error
        return [TurnEndResult(float(np.clip(score, 0.0, 1.0))) for score in scores[:, 0]]


def end_of_turn_executor(
    model: SmartTurn, *, max_batch: int = 8, max_queue: int = 64, name: str = "smart-turn"
) -> ModelExecutor[TurnEndRequest, TurnEndResult]:
    """The shared executor: whatever requests are waiting (up to ``max_batch``, of any calls)
    run as one call when the worker is free (no timer: a lone request runs at once).

    Each call has at most one request waiting (the session asks again only about a newer
    pause), so ``max_queue`` is about the number of calls asking at the same moment.
    """
    return ModelExecutor(name, batch_fn=model.batch, max_batch=max_batch, max_queue=max_queue)
