"""Wire shapes of the OpenAI-Realtime-compatible protocol (the GA API, as the ``openai`` SDK
types it in ``openai.types.realtime``).

- Client events are msgspec Structs in one tagged union on ``type``, decoded by one decoder
  (:data:`client_event_decoder`). Optional fields default to ``UNSET`` where the API tells a
  missing field ("leave it as it is") from ``null`` ("turn it off"). Fields Voxline does not
  use are ignored.
- :class:`RealtimeSessionConfig` is the effective session (what ``session.created`` and
  ``session.updated`` show); :func:`apply_update` folds a ``session.update`` into it, or says
  why it cannot.
- :class:`Ids` makes the ids of events, items and responses.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Collection
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from pipeline.asr.decoder import whisper_languages
from transports.audio import AudioFormat
from transports.realtime_caps import TOO_LARGE, instructions_problem, tools_problem

__all__ = [
    "CLIENT_EVENT_TYPES",
    "EAGERNESS_SILENCE_MS",
    "MAX_OUTPUT_TOKENS",
    "AudioFormatSpec",
    "AudioPCM",
    "AudioPCMA",
    "AudioPCMU",
    "ClientEvent",
    "ContentPart",
    "ConversationItemCreate",
    "ConversationItemDelete",
    "ConversationItemRetrieve",
    "ConversationItemTruncate",
    "Envelope",
    "FunctionTool",
    "Ids",
    "InputAudioBufferAppend",
    "InputAudioBufferClear",
    "InputAudioBufferCommit",
    "Item",
    "Modality",
    "NoiseReduction",
    "OutputAudioBufferClear",
    "RealtimeSessionConfig",
    "ResponseCancel",
    "ResponseCreate",
    "ResponseParams",
    "SemanticVad",
    "ServerVad",
    "SessionUpdate",
    "ToolChoice",
    "ToolChoiceFunction",
    "Transcription",
    "TurnDetection",
    "UpdateRejected",
    "apply_update",
    "check_max_output_tokens",
    "check_tools",
    "client_event_decoder",
    "envelope_decoder",
    "format_of",
    "format_to_wire",
]


# -- audio formats and turn detection ---------------------------------------------------------


class AudioPCM(msgspec.Struct, frozen=True, tag_field="type", tag="audio/pcm"):
    """PCM16 little-endian mono; the API's rate is 24 kHz (Voxline also takes 8-48 kHz)."""

    rate: int = 24000


class AudioPCMU(msgspec.Struct, frozen=True, tag_field="type", tag="audio/pcmu"):
    """G.711 μ-law, 8 kHz."""


class AudioPCMA(msgspec.Struct, frozen=True, tag_field="type", tag="audio/pcma"):
    """G.711 A-law, 8 kHz."""


AudioFormatSpec = AudioPCM | AudioPCMU | AudioPCMA


def format_of(spec: AudioFormatSpec) -> AudioFormat:
    match spec:
        case AudioPCM(rate=rate):
            return AudioFormat("pcm16", rate)
        case AudioPCMU():
            return AudioFormat("mulaw", 8000)
        case AudioPCMA():
            return AudioFormat("alaw", 8000)
    raise AssertionError(spec)  # pragma: no cover


def format_to_wire(spec: AudioFormatSpec) -> dict[str, Any]:
    match spec:
        case AudioPCM(rate=rate):
            return {"type": "audio/pcm", "rate": rate}
        case AudioPCMU():
            return {"type": "audio/pcmu"}
        case AudioPCMA():
            return {"type": "audio/pcma"}
    raise AssertionError(spec)  # pragma: no cover


class ServerVad(msgspec.Struct, frozen=True, tag_field="type", tag="server_vad"):
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: int | None = None


class SemanticVad(msgspec.Struct, frozen=True, tag_field="type", tag="semantic_vad"):
    """Voxline has no semantic end-of-turn model yet: ``eagerness`` picks the silence."""

    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


TurnDetection = ServerVad | SemanticVad

#: silence before the end of a turn, for each semantic_vad eagerness
EAGERNESS_SILENCE_MS = {"low": 1200, "medium": 700, "auto": 700, "high": 400}


class Transcription(msgspec.Struct, frozen=True):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class NoiseReduction(msgspec.Struct, frozen=True):
    type: str | None = None


class VoiceId(msgspec.Struct, frozen=True):
    id: str


# -- function tools ---------------------------------------------------------------------------


class FunctionTool(msgspec.Struct, frozen=True, tag_field="type", tag="function"):
    """A tool the client runs (``session.tools``, ``response.tools``): the model may call it;
    the call is a ``function_call`` item, answered by the client's ``function_call_output``."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str = ""
    #: JSON schema of the arguments (an object)
    parameters: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


class ToolChoiceFunction(msgspec.Struct, frozen=True, tag_field="type", tag="function"):
    name: str


#: ``auto``, ``none`` (no tool), ``required`` (some tool), or the function to call
ToolChoice = Literal["auto", "none", "required"] | ToolChoiceFunction


def check_tools(
    tools: list[FunctionTool] | tuple[FunctionTool, ...],
    choice: ToolChoice | None,
    where: str,
) -> None:
    """Raise :class:`UpdateRejected` (``param`` under ``where``: ``session``, ``response``)
    for tools the model cannot be given, or too many (:mod:`transports.realtime_caps`); a named
    choice must name one of ``tools``."""
    if (problem := tools_problem(tools, f"{where}.tools")) is not None:
        raise UpdateRejected(*problem, code=TOO_LARGE)
    names: set[str] = set()
    for n, tool in enumerate(tools):
        if tool.name in names:
            raise UpdateRejected(f"{where}.tools[{n}].name", f"duplicate tool name {tool.name!r}")
        names.add(tool.name)
        if tool.parameters.get("type", "object") != "object":
            raise UpdateRejected(
                f"{where}.tools[{n}].parameters", "parameters must be a JSON schema of an object"
            )
    if isinstance(choice, ToolChoiceFunction) and choice.name not in names:
        raise UpdateRejected(
            f"{where}.tool_choice", f"tool_choice names no tool given: {choice.name!r}"
        )


#: the most ``max_output_tokens`` may be, as in the API (``"inf"``: no limit of the client's)
MAX_OUTPUT_TOKENS = 4096


def check_max_output_tokens(value: int | Literal["inf"] | None, param: str) -> None:
    """Raise :class:`UpdateRejected` naming ``param`` unless ``value`` is ``"inf"`` (or
    ``None``) or 1..:data:`MAX_OUTPUT_TOKENS`."""
    if isinstance(value, int) and not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise UpdateRejected(
            param, f"max_output_tokens must be 'inf' or an integer from 1 to {MAX_OUTPUT_TOKENS}"
        )


# -- session.update ---------------------------------------------------------------------------


class AudioInputSpec(msgspec.Struct, frozen=True):
    format: AudioFormatSpec | UnsetType = UNSET
    transcription: Transcription | UnsetType | None = UNSET
    turn_detection: TurnDetection | UnsetType | None = UNSET
    noise_reduction: NoiseReduction | UnsetType | None = UNSET


class AudioOutputSpec(msgspec.Struct, frozen=True):
    format: AudioFormatSpec | UnsetType = UNSET
    voice: str | VoiceId | UnsetType = UNSET
    speed: float | UnsetType = UNSET


class AudioSpec(msgspec.Struct, frozen=True):
    input: AudioInputSpec | UnsetType = UNSET
    output: AudioOutputSpec | UnsetType = UNSET


Modality = Literal["text", "audio"]


class SessionSpec(msgspec.Struct, frozen=True):
    type: str = "realtime"
    model: str | UnsetType = UNSET
    instructions: str | UnsetType = UNSET
    #: the beta API's place for the voice (the GA one is ``audio.output.voice``)
    voice: str | VoiceId | UnsetType = UNSET
    output_modalities: list[Modality] | UnsetType = UNSET
    audio: AudioSpec | UnsetType = UNSET
    tools: list[FunctionTool] | UnsetType = UNSET
    tool_choice: ToolChoice | UnsetType = UNSET
    max_output_tokens: int | Literal["inf"] | UnsetType | None = UNSET


# -- conversation items -----------------------------------------------------------------------


class ContentPart(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str
    text: str | None = None
    audio: str | None = None
    transcript: str | None = None


class Item(msgspec.Struct, frozen=True, omit_defaults=True):
    """A conversation item (``message``, ``function_call``, ``function_call_output``)."""

    type: str
    id: str | None = None
    role: str | None = None
    content: list[ContentPart] = msgspec.field(default_factory=list)
    status: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None

    @property
    def text(self) -> str:
        """The item's text: typed text and audio transcripts, joined."""
        parts = [p.text or p.transcript or "" for p in self.content]
        return "".join(parts) if self.type == "message" else (self.output or self.arguments or "")


class ResponseParams(msgspec.Struct, frozen=True):
    instructions: str | None = None
    output_modalities: list[Modality] | None = None
    conversation: str | None = None
    input: list[Item] | None = None
    metadata: dict[str, str] | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    #: this response's tools and choice (``None``: the session's)
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None


# -- client events ----------------------------------------------------------------------------


class _ClientEvent(msgspec.Struct, frozen=True, tag_field="type"):
    event_id: str | None = None


class SessionUpdate(_ClientEvent, frozen=True, tag="session.update"):
    session: SessionSpec = SessionSpec()


class InputAudioBufferAppend(_ClientEvent, frozen=True, tag="input_audio_buffer.append"):
    audio: str = ""


class InputAudioBufferCommit(_ClientEvent, frozen=True, tag="input_audio_buffer.commit"):
    pass


class InputAudioBufferClear(_ClientEvent, frozen=True, tag="input_audio_buffer.clear"):
    pass


class OutputAudioBufferClear(_ClientEvent, frozen=True, tag="output_audio_buffer.clear"):
    pass


class ConversationItemCreate(_ClientEvent, frozen=True, tag="conversation.item.create"):
    item: Item = Item("message")
    previous_item_id: str | None = None


class ConversationItemDelete(_ClientEvent, frozen=True, tag="conversation.item.delete"):
    item_id: str = ""


class ConversationItemRetrieve(_ClientEvent, frozen=True, tag="conversation.item.retrieve"):
    item_id: str = ""


class ConversationItemTruncate(_ClientEvent, frozen=True, tag="conversation.item.truncate"):
    item_id: str = ""
    content_index: int = 0
    audio_end_ms: int = 0


class ResponseCreate(_ClientEvent, frozen=True, tag="response.create"):
    response: ResponseParams | None = None


class ResponseCancel(_ClientEvent, frozen=True, tag="response.cancel"):
    response_id: str | None = None


ClientEvent = (
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | OutputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemDelete
    | ConversationItemRetrieve
    | ConversationItemTruncate
    | ResponseCreate
    | ResponseCancel
)
CLIENT_EVENT_TYPES = tuple(str(t.__struct_config__.tag) for t in ClientEvent.__args__)
client_event_decoder = msgspec.json.Decoder(ClientEvent)


class Envelope(msgspec.Struct, frozen=True):
    """What is read of a message that does not decode: its type and id, for the error."""

    type: Any = None
    event_id: Any = None


envelope_decoder = msgspec.json.Decoder(Envelope)


# -- the effective session --------------------------------------------------------------------


class RealtimeSessionConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What the session is set to; ``None`` turn detection or transcription means off."""

    id: str = ""
    model: str = "voxline"
    instructions: str = ""
    voice: str = "default"
    speed: float = 1.0
    output_modalities: tuple[Modality, ...] = ("audio",)
    input_format: AudioFormatSpec = AudioPCM()
    output_format: AudioFormatSpec = AudioPCM()
    transcription: Transcription | None = Transcription(model="voxline")
    turn_detection: TurnDetection | None = ServerVad(
        threshold=0.5,
        prefix_padding_ms=300,
        silence_duration_ms=600,
        create_response=True,
        interrupt_response=True,
    )
    noise_reduction: NoiseReduction | None = None
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: ToolChoice = "auto"
    max_output_tokens: int | Literal["inf"] = "inf"

    @property
    def input_audio(self) -> AudioFormat:
        return format_of(self.input_format)

    @property
    def output_audio(self) -> AudioFormat:
        return format_of(self.output_format)

    @property
    def speaks(self) -> bool:
        return "audio" in self.output_modalities

    def to_wire(self) -> dict[str, Any]:
        """The ``session`` object of ``session.created`` / ``session.updated``."""
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": self.id,
            "model": self.model,
            "instructions": self.instructions,
            "output_modalities": list(self.output_modalities),
            "audio": {
                "input": {
                    "format": format_to_wire(self.input_format),
                    "transcription": msgspec.to_builtins(self.transcription),
                    "turn_detection": msgspec.to_builtins(self.turn_detection),
                    "noise_reduction": msgspec.to_builtins(self.noise_reduction),
                },
                "output": {
                    "format": format_to_wire(self.output_format),
                    "voice": self.voice,
                    "speed": self.speed,
                },
            },
            "tools": msgspec.to_builtins(self.tools),
            "tool_choice": msgspec.to_builtins(self.tool_choice),
            "max_output_tokens": self.max_output_tokens,
        }


class UpdateRejected(Exception):
    """A ``session.update`` Voxline cannot apply: ``param`` names the field; ``code`` is the
    ``error`` event's (``value_too_large``: over a cap of :mod:`transports.realtime_caps`)."""

    def __init__(self, param: str, message: str, *, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.param = param
        self.message = message
        self.code = code


def apply_update(
    config: RealtimeSessionConfig,
    spec: SessionSpec,
    *,
    voice_locked: bool,
    voices: Collection[str] | None = None,
) -> RealtimeSessionConfig:
    """``config`` with ``spec``'s fields applied; raises :class:`UpdateRejected`.

    ``voices``: the voice names the session may take (``None``: any name).
    """
    if spec.type != "realtime":
        raise UpdateRejected(
            "session.type",
            "this is a 'realtime' session: a transcription session is opened with"
            " /v1/realtime?intent=transcription",
        )
    changes: dict[str, Any] = {}
    if not isinstance(spec.model, UnsetType):
        changes["model"] = spec.model
    if not isinstance(spec.instructions, UnsetType):
        if (problem := instructions_problem(spec.instructions, "session.instructions")) is not None:
            raise UpdateRejected(*problem, code=TOO_LARGE)
        changes["instructions"] = spec.instructions
    if not isinstance(spec.output_modalities, UnsetType):
        modalities = tuple(dict.fromkeys(spec.output_modalities))
        if len(modalities) != 1:
            raise UpdateRejected(
                "session.output_modalities", "output_modalities must be ['audio'] or ['text']"
            )
        changes["output_modalities"] = modalities
    if not isinstance(spec.tools, UnsetType):
        changes["tools"] = tuple(spec.tools)
    if not isinstance(spec.tool_choice, UnsetType):
        changes["tool_choice"] = spec.tool_choice
    if "tools" in changes or "tool_choice" in changes:
        tools = changes.get("tools", config.tools)
        check_tools(tools, changes.get("tool_choice", config.tool_choice), "session")
    if not isinstance(spec.max_output_tokens, UnsetType):
        check_max_output_tokens(spec.max_output_tokens, "session.max_output_tokens")
        changes["max_output_tokens"] = (
            "inf" if spec.max_output_tokens is None else spec.max_output_tokens
        )
    if not isinstance(spec.audio, UnsetType):
        if not isinstance(spec.audio.input, UnsetType):
            changes.update(_input_changes(spec.audio.input))
        if not isinstance(spec.audio.output, UnsetType):
            changes.update(_output_changes(spec.audio.output, config, voice_locked, voices))
    if not isinstance(spec.voice, UnsetType):
        changes["voice"] = _voice(spec.voice, "session.voice", config, voice_locked, voices)
    return msgspec.structs.replace(config, **changes)


def _check_format(spec: AudioFormatSpec, param: str) -> None:
    problem = format_of(spec).problem()
    if problem is not None:
        raise UpdateRejected(param, problem)


def _input_changes(spec: AudioInputSpec) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if not isinstance(spec.format, UnsetType):
        _check_format(spec.format, "session.audio.input.format")
        changes["input_format"] = spec.format
    if not isinstance(spec.transcription, UnsetType):
        language = None if spec.transcription is None else spec.transcription.language
        if language is not None and language not in whisper_languages():
            raise UpdateRejected(
                "session.audio.input.transcription.language", f"unknown language {language!r}"
            )
        changes["transcription"] = spec.transcription
    if not isinstance(spec.noise_reduction, UnsetType):
        changes["noise_reduction"] = spec.noise_reduction
    if not isinstance(spec.turn_detection, UnsetType):
        detection = spec.turn_detection
        if isinstance(detection, ServerVad):
            if detection.threshold is not None and not 0.0 <= detection.threshold <= 1.0:
                raise UpdateRejected(
                    "session.audio.input.turn_detection.threshold", "threshold must be 0-1"
                )
            for name in ("prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"):
                value = getattr(detection, name)
                if value is not None and value < 0:
                    raise UpdateRejected(
                        f"session.audio.input.turn_detection.{name}", f"{name} must be >= 0"
                    )
        changes["turn_detection"] = detection
    return changes


def _output_changes(
    spec: AudioOutputSpec,
    config: RealtimeSessionConfig,
    voice_locked: bool,
    voices: Collection[str] | None,
) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if not isinstance(spec.format, UnsetType):
        _check_format(spec.format, "session.audio.output.format")
        changes["output_format"] = spec.format
    if not isinstance(spec.voice, UnsetType):
        param = "session.audio.output.voice"
        changes["voice"] = _voice(spec.voice, param, config, voice_locked, voices)
    if not isinstance(spec.speed, UnsetType):
        if not 0.25 <= spec.speed <= 1.5:
            raise UpdateRejected("session.audio.output.speed", "speed must be 0.25-1.5")
        changes["speed"] = spec.speed
    return changes


def _voice(
    spec: str | VoiceId,
    param: str,
    config: RealtimeSessionConfig,
    voice_locked: bool,
    voices: Collection[str] | None,
) -> str:
    voice = spec.id if isinstance(spec, VoiceId) else spec
    if voice == config.voice:
        return voice
    if voices is not None and voice not in voices:
        known = ", ".join(sorted(voices)) or "none"
        raise UpdateRejected(param, f"unknown voice {voice!r} (this server speaks: {known})")
    if voice_locked:
        raise UpdateRejected(param, "the voice cannot change once the assistant has spoken")
    return voice


class Ids:
    """Ids like the API's: ``event_<seed><n>``, ``item_...``, ``resp_...``."""

    def __init__(self, seed: str | None = None) -> None:
        self.seed = uuid.uuid4().hex[:12] if seed is None else seed
        self._counter = itertools.count(1)

    def next(self, kind: str) -> str:
        return f"{kind}_{self.seed}{next(self._counter):x}"
