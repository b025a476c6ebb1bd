"""Realtime transcription sessions (``/v1/realtime?intent=transcription``), sans-I/O.

Live captions for apps that only transcribe: the client configures the input (format,
``audio.input.transcription`` {model, language, prompt, keywords}, ``turn_detection``, noise
reduction) and appends audio; the server sends speech events, commits each turn as a user item
and transcribes it; it never responds.

:class:`TranscriptionProtocol` is the session's own part (its ``session.*`` events and the
requests a transcription session refuses); the input side, which is the same as a realtime
session's, is a :class:`~transports.realtime.RealtimeProtocol` it holds (:attr:`~
TranscriptionProtocol.input`): the audio buffer, commits, speech and transcription events are
made there, once, and the adapter drives them there (its ``RealtimeSink``). The realtime
protocol is kept at ``create_response: false`` and ``interrupt_response: false``, text only.
Its messages join this protocol's one ordered queue (:meth:`~TranscriptionProtocol.queue`, and
on every call): what each protocol queues goes out in the order it was made.

Client event -> what the session gets (and what the protocol answers itself):

==================================  ==========================================================
``session.update`` (``session.type``  :class:`SessionUpdated` (the input side's) and
``"transcription"``)                  :class:`TranscriptionChanged`; ``session.updated``
``transcription_session.update``    the same, from the beta API's shape;
                                    ``transcription_session.updated``
``input_audio_buffer.append``       :class:`~pipeline.events.AudioFrame` (16 kHz)
``input_audio_buffer.commit``       :class:`CommitRequested` (``committed``, the user item)
``input_audio_buffer.clear``        :class:`InputCleared` (``cleared``)
``response.*``, ``conversation.*``  an ``error`` naming ``type``: not in a transcription
``output_audio_buffer.clear``       session
==================================  ==========================================================

An update Voxline cannot honour (``transcription.languages``, ``delay``, ``include``,
``idle_timeout_ms``, a response setting, an unknown model or language, any field the API does
not have) is refused whole with an ``error`` whose ``param`` names the field; the session goes
on as it was. The model names accepted are the caller's (``models``); each is served by the
profile's Whisper.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from typing import Any

import msgspec
from msgspec import UnsetType

from pipeline.asr.decoder import whisper_languages
from transports.errors import PeerError
from transports.realtime import RealtimeProtocol, RealtimeState
from transports.realtime_caps import MAX_MESSAGE_BYTES
from transports.realtime_events import (
    CLIENT_EVENT_TYPES,
    Ids,
    RealtimeSessionConfig,
    ServerVad,
    Transcription,
    TurnDetection,
    envelope_decoder,
    format_to_wire,
)
from transports.realtime_inbound import RealtimeEvent, SessionUpdated
from transports.realtime_transcription_events import (
    OPENAI_TRANSCRIPTION_MODELS,
    BetaTranscriptionSessionUpdate,
    TranscriptionSessionSpec,
    TranscriptionSessionUpdate,
    UpdateHead,
    beta_format,
    beta_param,
    beta_to_ga,
)

__all__ = [
    "INPUT_EVENTS",
    "TranscriptionChanged",
    "TranscriptionEvent",
    "TranscriptionProtocol",
    "default_detection",
]

#: the client events the input side takes as they are
INPUT_EVENTS = (
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
)
_EVENTS = ("session.update", "transcription_session.update", *INPUT_EVENTS)
_INPUT = "session.audio.input"

_encoder = msgspec.json.Encoder()
_update_decoder = msgspec.json.Decoder(TranscriptionSessionUpdate)
_beta_decoder = msgspec.json.Decoder(BetaTranscriptionSessionUpdate)
_head_decoder = msgspec.json.Decoder(UpdateHead)


class TranscriptionChanged(msgspec.Struct, frozen=True):
    """How to decode from now on: ``language`` (``None``: the agent's), the ``prompt`` and
    ``keywords`` (Whisper's initial prompt and hotwords; empty: the agent's)."""

    model: str
    language: str | None
    prompt: str | None
    keywords: tuple[str, ...]


TranscriptionEvent = RealtimeEvent | TranscriptionChanged


#: what decoding a whole message raises once its envelope was read: the envelope's decoder
#: skips the other fields without checking their UTF-8 or their depth (found by bench/fuzz)
_UNREADABLE = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)


class _Refused(Exception):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def default_detection(silence_ms: int = 500) -> ServerVad:
    """The turn detection a transcription session starts with."""
    return ServerVad(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=silence_ms)


class TranscriptionProtocol:
    """One transcription connection; ``session.created`` is queued on construction."""

    def __init__(
        self,
        *,
        models: Collection[str] = ("voxline", *OPENAI_TRANSCRIPTION_MODELS),
        detection: TurnDetection | None = None,
        id_seed: str | None = None,
        max_message_chars: int = MAX_MESSAGE_BYTES,
    ) -> None:
        seed = uuid.uuid4().hex[:12] if id_seed is None else id_seed
        #: the model names ``transcription.model`` may take
        self.models = frozenset(models)
        config = RealtimeSessionConfig(
            output_modalities=("text",),
            transcription=Transcription(model="voxline"),
            turn_detection=_silent(default_detection() if detection is None else detection),
        )
        #: the input side: audio buffer, commits, speech and transcription events
        self.input = RealtimeProtocol(config, id_seed=seed, max_message_chars=max_message_chars)
        self.input.data_to_send()  # its realtime session.created: this session shows its own
        self._ids = Ids(seed + "t")  # event ids apart from the input side's (``t`` is not hex)
        self.max_message_chars = max_message_chars
        self.keywords: tuple[str, ...] = ()
        self._outbox: list[str] = []
        self._emit("session.created", session=self.to_wire())

    @property
    def transcription(self) -> Transcription:
        transcription = self.input.config.transcription
        assert transcription is not None  # a transcription session always transcribes
        return transcription

    @property
    def changed(self) -> TranscriptionChanged:
        """The decoding the session is set to now."""
        t = self.transcription
        return TranscriptionChanged(t.model or "voxline", t.language, t.prompt, self.keywords)

    # -- receiving ----------------------------------------------------------------------------

    def receive_text(self, text: str | bytes) -> list[TranscriptionEvent]:
        if self.input.state is RealtimeState.CLOSED:
            return []
        if len(text) > self.max_message_chars:
            return list(self.input.receive_text(text))  # refused there: message_too_large
        try:
            envelope = envelope_decoder.decode(text)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return list(self.input.receive_text(text))  # refused there: invalid_json
        kind = envelope.type
        event_id = envelope.event_id if isinstance(envelope.event_id, str) else None
        if kind in INPUT_EVENTS:
            return list(self.input.receive_text(text))
        if kind == "session.update":
            return self._session_update(text, event_id)
        if kind == "transcription_session.update":
            return self._beta_update(text, event_id)
        if kind in CLIENT_EVENT_TYPES:
            message = f"'{kind}' is not supported in transcription sessions"
            return self._error("invalid_value", message, param="type", event_id=event_id)
        return self._error(
            "invalid_value",
            f"Invalid value: {kind!r}. Supported values are: {', '.join(_EVENTS)}.",
            param="type",
            event_id=event_id,
        )

    def receive_bytes(self, data: bytes) -> list[TranscriptionEvent]:
        return list(self.input.receive_bytes(data))

    def _session_update(self, text: str | bytes, event_id: str | None) -> list[TranscriptionEvent]:
        try:
            head = _head_decoder.decode(text)
        except _UNREADABLE as error:
            return self._invalid(str(error), event_id)
        kind = None if head.session is None else head.session.type
        if kind != "transcription":
            return self._error(
                "invalid_value",
                "this is a transcription session (opened with intent=transcription):"
                " session.type must be 'transcription'",
                param="session.type",
                event_id=event_id,
            )
        try:
            update = _update_decoder.decode(text)
        except _UNREADABLE as error:
            return self._invalid(str(error), event_id)
        return self._apply(update.session, event_id, beta=False)

    def _beta_update(self, text: str | bytes, event_id: str | None) -> list[TranscriptionEvent]:
        try:
            update = _beta_decoder.decode(text)
        except _UNREADABLE as error:
            return self._invalid(str(error), event_id)
        return self._apply(beta_to_ga(update.session), event_id, beta=True)

    def _apply(
        self, spec: TranscriptionSessionSpec, event_id: str | None, *, beta: bool
    ) -> list[TranscriptionEvent]:
        try:
            realtime, keywords = self._realtime_input(spec)
        except _Refused as refused:
            param = beta_param(refused.param) if beta else refused.param
            return self._error("invalid_value", refused.message, param=param, event_id=event_id)
        self._pull()  # what the input side queued before: its answer to this comes alone
        update = {"type": "session.update", "session": {"type": "realtime", "audio": realtime}}
        events = self.input.receive_text(_encoder.encode(update))
        answer = self.input.data_to_send()
        if not any(isinstance(e, SessionUpdated) for e in events):
            for message in answer:  # the input side's error: this session's, with its event_id
                error = json.loads(message)["error"]
                param = beta_param(error["param"]) if beta else error["param"]
                self._error(error["code"], error["message"], param=param, event_id=event_id)
            return [e for e in events if isinstance(e, PeerError)]
        if keywords is not None:
            self.keywords = keywords
        if beta:
            self._emit("transcription_session.updated", session=self.to_beta_wire())
        else:
            self._emit("session.updated", session=self.to_wire())
        return [*events, self.changed]

    def _realtime_input(
        self, spec: TranscriptionSessionSpec
    ) -> tuple[dict[str, Any], tuple[str, ...] | None]:
        """The input side's ``audio`` update for ``spec``, and the keywords it sets; raises
        :class:`_Refused` for what a transcription session does not do."""
        if not isinstance(spec.include, UnsetType) and spec.include:
            raise _Refused("session.include", "include is not supported (no logprobs)")
        if isinstance(spec.audio, UnsetType) or isinstance(spec.audio.input, UnsetType):
            return {}, None
        given = spec.audio.input
        input_: dict[str, Any] = {}
        keywords = None
        if not isinstance(given.format, UnsetType):
            input_["format"] = format_to_wire(given.format)
        if not isinstance(given.transcription, UnsetType):
            t, param = given.transcription, f"{_INPUT}.transcription"
            if t is None:
                raise _Refused(param, "a transcription session transcribes: it cannot be null")
            for name in ("languages", "delay"):
                if getattr(t, name) is not None:
                    raise _Refused(f"{param}.{name}", f"{name} is not supported: use language")
            model = t.model or self.transcription.model or "voxline"
            if model not in self.models:
                known = ", ".join(sorted(self.models))
                raise _Refused(f"{param}.model", f"unknown model {model!r} (models: {known})")
            if t.language is not None and t.language not in whisper_languages():
                raise _Refused(f"{param}.language", f"unknown language {t.language!r}")
            input_["transcription"] = {"model": model, "language": t.language, "prompt": t.prompt}
            keywords = tuple(k for k in t.keywords or () if k.strip())
        if not isinstance(given.turn_detection, UnsetType):
            detection = given.turn_detection
            input_["turn_detection"] = None if detection is None else _detection(detection)
        if not isinstance(given.noise_reduction, UnsetType):
            input_["noise_reduction"] = msgspec.to_builtins(given.noise_reduction)
        return {"input": input_}, keywords

    def _invalid(self, reason: str, event_id: str | None) -> list[TranscriptionEvent]:
        """A strict decode's ``reason``: the field it names is the ``param``."""
        message, _, where = reason.partition(" - at `$.")
        param = where.rstrip("`") or None
        prefix, _, rest = message.partition("Object contains unknown field `")
        if not prefix and rest:
            field = rest.split("`", 1)[0]
            param = f"{param}.{field}" if param else field
            message = f"Unsupported field: '{param}' is not supported in transcription sessions"
        return self._error("invalid_value", message, param=param, event_id=event_id)

    def _error(
        self, code: str, message: str, *, param: str | None = None, event_id: str | None = None
    ) -> list[TranscriptionEvent]:
        error = {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        }
        self._emit("error", error=error)
        return [PeerError(code, message)]

    # -- sending ------------------------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        """The ``session`` of ``session.created`` / ``session.updated``."""
        config = self.input.config
        transcription: dict[str, Any] = msgspec.to_builtins(self.transcription)
        if self.keywords:
            transcription["keywords"] = list(self.keywords)
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": config.id,
            "audio": {
                "input": {
                    "format": format_to_wire(config.input_format),
                    "transcription": transcription,
                    "turn_detection": _shown(config.turn_detection),
                    "noise_reduction": msgspec.to_builtins(config.noise_reduction),
                }
            },
            "include": None,
        }

    def to_beta_wire(self) -> dict[str, Any]:
        """The ``session`` of ``transcription_session.updated`` (the beta API's shape)."""
        config = self.input.config
        detection = _shown(config.turn_detection)
        if detection is not None:
            detection.pop("eagerness", None)
        return {
            "id": config.id,
            "object": "realtime.transcription_session",
            "input_audio_format": beta_format(config.input_format),
            "input_audio_transcription": msgspec.to_builtins(self.transcription),
            "turn_detection": detection,
            "input_audio_noise_reduction": msgspec.to_builtins(config.noise_reduction),
            "modalities": ["text"],
            "include": None,
        }

    def queue(self, message: str) -> None:
        """A message of the input side's, in its turn (the adapter's sink sends them here)."""
        self._outbox.append(message)

    def data_to_send(self) -> list[str]:
        self._pull()
        out, self._outbox = self._outbox, []
        return out

    def close(self) -> None:
        self.input.close()

    def _pull(self) -> None:
        self._outbox.extend(self.input.data_to_send())

    def _emit(self, kind: str, /, **fields: Any) -> None:
        # pragma below: every caller runs after receive_text's own check for a closed session;
        # kept so that nothing a later caller emits can follow the close
        if self.input.state is RealtimeState.CLOSED:  # pragma: no cover
            return
        self._pull()  # the input side's messages made before this one go first
        event = {"type": kind, "event_id": self._ids.next("event"), **fields}
        self._outbox.append(_encoder.encode(event).decode())


def _silent(detection: TurnDetection) -> TurnDetection:
    """``detection`` for the input side: turns end, nothing answers or interrupts."""
    return msgspec.structs.replace(detection, create_response=False, interrupt_response=False)


def _detection(detection: TurnDetection) -> dict[str, Any]:
    """The input side's turn detection for a client's; raises :class:`_Refused` for the
    response settings (a transcription session never responds)."""
    param = f"{_INPUT}.turn_detection"
    if isinstance(detection, ServerVad) and detection.idle_timeout_ms is not None:
        raise _Refused(f"{param}.idle_timeout_ms", "no idle timeout: nothing ever responds")
    for name in ("create_response", "interrupt_response"):
        if getattr(detection, name):
            raise _Refused(f"{param}.{name}", f"{name}: a transcription session never responds")
    built: dict[str, Any] = msgspec.to_builtins(_silent(detection))
    return built


def _shown(detection: TurnDetection | None) -> dict[str, Any] | None:
    """``detection`` as a transcription session shows it (no response settings)."""
    if detection is None:
        return None
    shown: dict[str, Any] = msgspec.to_builtins(detection)
    for name in ("create_response", "interrupt_response", "idle_timeout_ms"):
        shown.pop(name, None)
    return shown
