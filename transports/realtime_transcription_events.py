"""Wire shapes of Realtime transcription sessions (``/v1/realtime?intent=transcription``).

What the ``openai`` SDK types as ``RealtimeTranscriptionSessionCreateRequest`` (GA: a
``session.update`` whose ``session.type`` is ``"transcription"``) and as the beta API's
``transcription_session.update``. Both decode strictly (``forbid_unknown_fields``): a field
Voxline does not support is refused with its path, never silently ignored, so a client that
asks for diarization or logprobs learns it will not get them. The beta shape is translated into
the GA one (:func:`beta_to_ga`); the session itself is kept by
:class:`~transports.realtime_transcription.TranscriptionProtocol`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from transports.realtime_events import (
    AudioFormatSpec,
    AudioPCM,
    AudioPCMA,
    AudioPCMU,
    SemanticVad,
    ServerVad,
    TurnDetection,
)

__all__ = [
    "BETA_PARAMS",
    "OPENAI_TRANSCRIPTION_MODELS",
    "BetaSession",
    "BetaTranscriptionSessionUpdate",
    "InputSpec",
    "NoiseReductionSpec",
    "TranscriptionSessionSpec",
    "TranscriptionSessionUpdate",
    "TranscriptionSpec",
    "UpdateHead",
    "beta_format",
    "beta_param",
    "beta_to_ga",
]

#: OpenAI's transcription model names a session may ask for; each is served by the profile's
#: Whisper (so are ``voxline`` and the profile's own model name)
OPENAI_TRANSCRIPTION_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")


class TranscriptionSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``audio.input.transcription``: ``languages`` and ``delay`` are decoded to be refused
    by name (Voxline has one language per decode and no delay setting)."""

    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    keywords: list[str] | None = None
    languages: list[str] | None = None
    delay: str | None = None


class NoiseReductionSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["near_field", "far_field"] | None = None


class InputSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: AudioFormatSpec | UnsetType = UNSET
    transcription: TranscriptionSpec | UnsetType | None = UNSET
    turn_detection: TurnDetection | UnsetType | None = UNSET
    noise_reduction: NoiseReductionSpec | UnsetType | None = UNSET


class AudioSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    input: InputSpec | UnsetType = UNSET


class TranscriptionSessionSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["transcription"] = "transcription"
    audio: AudioSpec | UnsetType = UNSET
    include: list[str] | UnsetType | None = UNSET


class TranscriptionSessionUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["session.update"]
    session: TranscriptionSessionSpec
    event_id: str | None = None


class _Head(msgspec.Struct, frozen=True):
    type: Any = None


class UpdateHead(msgspec.Struct, frozen=True):
    """What is read of a ``session.update`` first: which kind of session it is for."""

    session: _Head | None = None


# -- the beta API -----------------------------------------------------------------------------


class BetaTranscription(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class BetaTurnDetection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["server_vad", "semantic_vad"] | None = None
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None
    eagerness: Literal["low", "medium", "high", "auto"] | None = None


class BetaSession(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    input_audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] | UnsetType = UNSET
    input_audio_transcription: BetaTranscription | UnsetType | None = UNSET
    turn_detection: BetaTurnDetection | UnsetType | None = UNSET
    input_audio_noise_reduction: NoiseReductionSpec | UnsetType | None = UNSET
    include: list[str] | UnsetType | None = UNSET
    #: a transcription session's output is text: any value is taken and shown as ``["text"]``
    modalities: list[Literal["text", "audio"]] | UnsetType | None = UNSET


class BetaTranscriptionSessionUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["transcription_session.update"]
    session: BetaSession
    event_id: str | None = None


_BETA_FORMATS: dict[str, AudioFormatSpec] = {
    "pcm16": AudioPCM(),
    "g711_ulaw": AudioPCMU(),
    "g711_alaw": AudioPCMA(),
}

#: GA parameter paths and where the beta API has them (for an error's ``param``)
BETA_PARAMS = (
    ("session.audio.input.format", "session.input_audio_format"),
    ("session.audio.input.transcription", "session.input_audio_transcription"),
    ("session.audio.input.turn_detection", "session.turn_detection"),
    ("session.audio.input.noise_reduction", "session.input_audio_noise_reduction"),
)


def beta_param(param: str | None) -> str | None:
    """The beta API's name for the GA field ``param``."""
    for ga, beta in BETA_PARAMS:
        if param is not None and (param == ga or param.startswith(ga + ".")):
            return beta + param[len(ga) :]
    return param


def beta_format(spec: AudioFormatSpec) -> str:
    match spec:
        case AudioPCMU():
            return "g711_ulaw"
        case AudioPCMA():
            return "g711_alaw"
    return "pcm16"


def _beta_detection(spec: BetaTurnDetection) -> TurnDetection:
    if spec.type == "semantic_vad":
        return SemanticVad(
            eagerness=spec.eagerness,
            create_response=spec.create_response,
            interrupt_response=spec.interrupt_response,
        )
    return ServerVad(
        threshold=spec.threshold,
        prefix_padding_ms=spec.prefix_padding_ms,
        silence_duration_ms=spec.silence_duration_ms,
        create_response=spec.create_response,
        interrupt_response=spec.interrupt_response,
    )


def beta_to_ga(session: BetaSession) -> TranscriptionSessionSpec:
    """The GA update that says what the beta ``session`` says."""
    fields: dict[str, Any] = {}
    if not isinstance(session.input_audio_format, UnsetType):
        fields["format"] = _BETA_FORMATS[session.input_audio_format]
    if not isinstance(session.input_audio_transcription, UnsetType):
        beta = session.input_audio_transcription
        fields["transcription"] = (
            None if beta is None else TranscriptionSpec(beta.model, beta.language, beta.prompt)
        )
    if not isinstance(session.turn_detection, UnsetType):
        detection = session.turn_detection
        fields["turn_detection"] = None if detection is None else _beta_detection(detection)
    if not isinstance(session.input_audio_noise_reduction, UnsetType):
        fields["noise_reduction"] = session.input_audio_noise_reduction
    audio = AudioSpec(input=InputSpec(**fields)) if fields else UNSET
    return TranscriptionSessionSpec(audio=audio, include=session.include)
