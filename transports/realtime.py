"""The OpenAI-Realtime-compatible protocol (``/v1/realtime``), sans-I/O.

Enough of the GA Realtime API that the official ``openai`` SDK
(``client.realtime.connect(model=..., websocket_base_url="ws://host/v1")``) holds a spoken
conversation with Voxline. Event names and shapes follow ``openai.types.realtime``; the tests
validate every server event this module builds against the SDK's own models.

:class:`RealtimeProtocol` keeps one connection's state (the effective session, the
conversation's items, the responses in progress) and does no I/O: feed it the client's text
frames (:meth:`~RealtimeProtocol.receive_text`), act on the events it returns, call its methods
for what the session does (speech started, a response's audio, ...), and send what
:meth:`~RealtimeProtocol.data_to_send` returns as text frames, in order.

Client event -> what the session gets (the events of :mod:`transports.realtime_inbound`) and
what the protocol answers by itself:

======================================  ===================================================
``session.update``                      :class:`SessionUpdated` (``session.updated``)
``input_audio_buffer.append``           :class:`~pipeline.events.AudioFrame` at 16 kHz
``input_audio_buffer.commit``           :class:`CommitRequested` (``committed``, the user
                                        item ``conversation.item.added``)
``input_audio_buffer.clear``            :class:`InputCleared` (``cleared``)
``conversation.item.create``            :class:`ItemCreated` (``added``, ``done``)
``conversation.item.delete``            :class:`ItemDeleted` (``deleted``)
``conversation.item.retrieve``          nothing (``retrieved``)
``conversation.item.truncate``          :class:`TruncateRequested` (``truncated``)
``response.create``                     :class:`ResponseRequested`
``response.cancel``                     :class:`CancelRequested` (``response.done``, status
                                        ``cancelled``: the response ends here at once)
``output_audio_buffer.clear``           :class:`CancelRequested` (``output_audio_buffer.cleared``)
======================================  ===================================================

Anything else, and anything malformed or over a cap (:mod:`transports.realtime_caps`), gets an
``error`` event (``invalid_request_error``, with the client's ``event_id`` and the offending
``param``) and a :class:`PeerError` for the session's logs; the connection goes on ("their
error"). The checks are :mod:`transports.realtime_requests`'s; so is the override rule, which a
protocol made with ``overrides=False`` applies to every client event before anything else (a
key that may not replace the agent's instructions and tools: ``override_not_allowed``).
The conversation's oldest items are pruned past its cap: ``conversation.item.deleted`` and an
:class:`ItemDeleted` each. The session misusing the protocol
(audio for a response that was never started) raises ``ValueError`` ("our error").

Positions: ``audio_start_ms``/``audio_end_ms`` of speech events are on the input timeline
(what the client appended); samples given to :meth:`~RealtimeProtocol.speech_started` and
friends are pipeline samples at 16 kHz. ``conversation.item.truncate``'s ``audio_end_ms`` is
converted to a sample position at the rate the session sent that response's audio at.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Collection
from typing import Any

import msgspec

from pipeline.errors import InvalidAudio
from transports import realtime_caps as caps
from transports.audio import (
    PIPELINE_RATE,
    InboundAudio,
    samples_to_ms,
)
from transports.errors import PeerError
from transports.realtime_conversation import (
    Conversation,
    RateLimits,
    ResponseStatus,
    item_to_wire,
)
from transports.realtime_events import (
    ConversationItemCreate,
    ConversationItemDelete,
    ConversationItemRetrieve,
    ConversationItemTruncate,
    Ids,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCommit,
    OutputAudioBufferClear,
    RealtimeSessionConfig,
    ResponseCancel,
    ResponseCreate,
    ResponseParams,
    SessionUpdate,
    UpdateRejected,
    apply_update,
    client_event_decoder,
)
from transports.realtime_inbound import (
    CancelRequested,
    CommitRequested,
    InputCleared,
    ItemCreated,
    ItemDeleted,
    RealtimeEvent,
    ResponseRequested,
    SessionUpdated,
    TruncateRequested,
)
from transports.realtime_requests import (
    Refusal,
    decode_refusal,
    item_refusal,
    missing_item,
    override_refusal,
    response_refusal,
    truncate_target,
)

__all__ = ["PeerError", "RealtimeProtocol", "RealtimeState"]

#: the least audio ``input_audio_buffer.commit`` accepts, as the API does
MIN_COMMIT_MS = 100


class RealtimeState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


_encoder = msgspec.json.Encoder()


class RealtimeProtocol:
    """One ``/v1/realtime`` connection; ``session.created`` is queued on construction."""

    def __init__(
        self,
        config: RealtimeSessionConfig | None = None,
        *,
        id_seed: str | None = None,
        max_message_chars: int = caps.MAX_MESSAGE_BYTES,
        voices: Collection[str] | None = None,
        rate_limits: RateLimits | None = None,
        overrides: bool = True,
    ) -> None:
        self._ids = Ids(id_seed)
        #: the client may replace the agent's instructions and tools (:func:`~transports.
        #: realtime_requests.override_refusal`: ``False`` for a key granted ``overrides=no``)
        self.overrides = overrides
        #: the voice names ``session.update`` may set (``None``: any); others are refused
        self.voices = voices
        self.config = msgspec.structs.replace(
            config or RealtimeSessionConfig(), id=self._ids.next("sess")
        )
        self.max_message_chars = max_message_chars
        self.state = RealtimeState.OPEN
        self._outbox: list[str] = []
        self._inbound = InboundAudio(self.config.input_audio, max_bytes=caps.MAX_APPEND_AUDIO_BYTES)
        self._buffered = 0  # input samples (client rate) since the last commit or clear
        self._pending_item: str | None = None  # the user item the current speech will be
        self.conversation = Conversation(self._ids, self._emit, lambda: self.config, rate_limits)
        self._emit("session.created", session=self.config.to_wire())

    # -- receiving ----------------------------------------------------------------------------

    def receive_text(self, text: str | bytes) -> list[RealtimeEvent]:
        """The events of one client message, then those of items pruned since the last one
        (:data:`~transports.realtime_caps.MAX_CONVERSATION_BYTES`)."""
        if self.state is RealtimeState.CLOSED:
            return []
        return [*self._receive(text), *self.conversation.take_pruned()]

    def _receive(self, text: str | bytes) -> list[RealtimeEvent]:
        if len(text) > self.max_message_chars:
            return self._error(
                "message_too_large", f"messages are limited to {self.max_message_chars} characters"
            )
        try:
            event = client_event_decoder.decode(text)
        except msgspec.ValidationError as error:
            return self._refuse(*decode_refusal(text, str(error)))
        except msgspec.DecodeError:
            return self._error("invalid_json", "the message is not a JSON object")
        except RecursionError:  # msgspec's guard against deep nesting (found by bench/fuzz)
            return self._error("invalid_json", "the JSON is nested too deeply")
        if not self.overrides and (refused := override_refusal(event, self.config)) is not None:
            return self._refuse(refused, event.event_id)
        match event:
            case SessionUpdate():
                return self._session_update(event)
            case InputAudioBufferAppend():
                return self._append(event)
            case InputAudioBufferCommit():
                return self._commit(event)
            case InputAudioBufferClear():
                self._buffered = 0
                self._pending_item = None  # the cleared speech is no item
                self._emit("input_audio_buffer.cleared")
                return [InputCleared()]
            case OutputAudioBufferClear():
                return self._output_clear(event)
            case ConversationItemCreate():
                return self._item_create(event)
            case ConversationItemDelete(item_id=item_id):
                if item_id not in self.conversation.items:
                    return self._missing_item("item_delete_invalid_item_id", item_id, event)
                wire = self.conversation.items[item_id]
                call_id = wire.get("call_id") if wire["type"] == "function_call" else None
                made_by = self.conversation.made.get(item_id)
                self.conversation.forget(item_id)
                self._emit("conversation.item.deleted", item_id=item_id)
                return [ItemDeleted(item_id, call_id, made_by)]
            case ConversationItemRetrieve(item_id=item_id):
                if item_id not in self.conversation.items:
                    return self._missing_item("item_retrieve_invalid_item_id", item_id, event)
                self._emit("conversation.item.retrieved", item=self.conversation.items[item_id])
                return []
            case ConversationItemTruncate():
                return self._truncate(event)
            case ResponseCreate():
                return self._response_create(event)
            case ResponseCancel():
                return self._response_cancel(event)
        raise AssertionError(f"unhandled event {event!r}")  # pragma: no cover

    def receive_bytes(self, data: bytes) -> list[RealtimeEvent]:
        """The API speaks JSON text frames only."""
        return self._error("invalid_message", "binary frames are not part of this protocol")

    def _session_update(self, event: SessionUpdate) -> list[RealtimeEvent]:
        try:
            locked = self.conversation.voice_locked
            config = apply_update(
                self.config, event.session, voice_locked=locked, voices=self.voices
            )
        except UpdateRejected as rejected:
            return self._error(
                rejected.code, rejected.message, param=rejected.param, event_id=event.event_id
            )
        events: list[RealtimeEvent] = []
        if config.input_format != self.config.input_format:
            tail = self._inbound.flush()
            if tail is not None:
                events.append(tail)
            self._inbound = InboundAudio(
                config.input_audio, max_bytes=caps.MAX_APPEND_AUDIO_BYTES, start=self._inbound.pts
            )
            self._buffered = 0
        self.config = config
        self._emit("session.updated", session=config.to_wire())
        events.append(SessionUpdated(config))
        return events

    def _append(self, event: InputAudioBufferAppend) -> list[RealtimeEvent]:
        try:
            payload = base64.b64decode(event.audio, validate=True)
            chunk = self._inbound.convert(payload)
        except (binascii.Error, ValueError, InvalidAudio) as error:
            message = str(error) if isinstance(error, InvalidAudio) else "audio is not base64"
            return self._error("invalid_value", message, param="audio", event_id=event.event_id)
        self._buffered += self.config.input_audio.samples(len(payload))
        return [] if chunk is None else [chunk]

    def _commit(self, event: InputAudioBufferCommit) -> list[RealtimeEvent]:
        buffered_ms = samples_to_ms(self._buffered, self.config.input_audio.sample_rate)
        if buffered_ms < MIN_COMMIT_MS:
            return self._error(
                "input_audio_buffer_commit_empty",
                f"buffer too small. Expected at least {MIN_COMMIT_MS}ms of audio, but buffer"
                f" only has {buffered_ms}.00ms of audio.",
                event_id=event.event_id,
            )
        return [CommitRequested(self.commit_input())]

    def _output_clear(self, event: OutputAudioBufferClear) -> list[RealtimeEvent]:
        active = self.conversation.active()
        if active is None:
            return []
        generation, response_id = active
        self.end_response(generation, status="cancelled", reason="client_cancelled")
        self._emit("output_audio_buffer.cleared", response_id=response_id)
        return [CancelRequested(generation, response_id, clear_audio=True)]

    def _item_create(self, event: ConversationItemCreate) -> list[RealtimeEvent]:
        refusal = item_refusal(event, self.conversation.items)
        if refusal is not None:
            return self._refuse(refusal, event.event_id)
        item, previous = event.item, event.previous_item_id
        item = msgspec.structs.replace(
            item, id=item.id or self._ids.next("item"), status=item.status or "completed"
        )
        wire = item_to_wire(item)
        if previous is None:
            after = self.conversation.last_item  # the end of the conversation
        else:
            after = None if previous == "root" else previous
        previous_id = self.conversation.add_item(wire, after)
        self._emit("conversation.item.added", item=wire, previous_item_id=previous_id)
        self._emit("conversation.item.done", item=wire, previous_item_id=previous_id)
        return [ItemCreated(item, previous_id)]

    def _truncate(self, event: ConversationItemTruncate) -> list[RealtimeEvent]:
        conversation = self.conversation
        target = truncate_target(event, conversation.items, conversation.audio_items)
        if isinstance(target, Refusal):
            return self._refuse(target, event.event_id)
        generation, samples = target
        self._emit(
            "conversation.item.truncated",
            item_id=event.item_id,
            content_index=0,
            audio_end_ms=event.audio_end_ms,
        )
        return [TruncateRequested(event.item_id, generation, event.audio_end_ms, samples)]

    def _response_create(self, event: ResponseCreate) -> list[RealtimeEvent]:
        params = event.response or ResponseParams()
        refusal = response_refusal(params, self.config)
        if refusal is not None:
            return self._refuse(refusal, event.event_id)
        active = self.conversation.active()
        if params.conversation != "none" and active is not None:
            return self._error(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {active[1]}."
                " Wait until the response is finished before creating a new one.",
                event_id=event.event_id,
            )
        return [ResponseRequested(params)]

    def _response_cancel(self, event: ResponseCancel) -> list[RealtimeEvent]:
        if event.response_id is None:
            active = self.conversation.active()
        else:
            generation = self.conversation.find(event.response_id)
            active = None if generation is None else (generation, event.response_id)
        if active is None:
            return self._error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                event_id=event.event_id,
            )
        generation, response_id = active
        self.end_response(generation, status="cancelled", reason="client_cancelled")
        return [CancelRequested(generation, response_id)]

    def _missing_item(
        self,
        code: str,
        item_id: str,
        event: ConversationItemDelete | ConversationItemRetrieve,
    ) -> list[RealtimeEvent]:
        return self._refuse(missing_item(code, item_id), event.event_id)

    def _refuse(self, refusal: Refusal, event_id: str | None) -> list[RealtimeEvent]:
        return self._error(refusal.code, refusal.message, param=refusal.param, event_id=event_id)

    def _error(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        event_id: str | None = None,
        kind: str = "invalid_request_error",
    ) -> list[RealtimeEvent]:
        self._emit(
            "error",
            error={
                "type": kind,
                "code": code,
                "message": message,
                "param": param,
                "event_id": event_id,
            },
        )
        return [PeerError(code, message)]

    # -- the caller's side --------------------------------------------------------------------

    def data_to_send(self) -> list[str]:
        out, self._outbox = self._outbox, []
        return out

    def speech_started(self, sample: int) -> str:
        """The caller took the floor with speech from ``sample`` (16 kHz); returns its future
        item id.

        Clients stop their own playback when they see this event: send it for the caller's
        turn or barge-in only, never for speech that is not theirs (the bot's echo).
        """
        item_id = self._pending_item or self._ids.next("item")
        self._pending_item = item_id
        self._emit(
            "input_audio_buffer.speech_started",
            audio_start_ms=samples_to_ms(sample, PIPELINE_RATE),
            item_id=item_id,
        )
        return item_id

    def speech_stopped(self, sample: int) -> str:
        item_id = self._pending_item or self._ids.next("item")
        self._pending_item = item_id
        self._emit(
            "input_audio_buffer.speech_stopped",
            audio_end_ms=samples_to_ms(sample, PIPELINE_RATE),
            item_id=item_id,
        )
        return item_id

    def commit_input(self) -> str:
        """The user's turn ended: commit it as a user audio item; returns the item id.

        Its transcript follows with :meth:`input_transcript_completed`.
        """
        item_id = self._pending_item or self._ids.next("item")
        self._pending_item = None
        self._buffered = 0
        wire = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        previous = self.conversation.add_item(wire, self.conversation.last_item)
        self._emit("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        self._emit("conversation.item.added", item=wire, previous_item_id=previous)
        return item_id

    def input_transcript_delta(self, item_id: str, delta: str) -> None:
        if self.config.transcription is not None and delta:
            self._emit(
                "conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=delta,
            )

    def input_transcript_completed(
        self, item_id: str, transcript: str, *, seconds: float = 0.0
    ) -> None:
        wire = self.conversation.items.get(item_id)
        if wire is not None:
            wire["content"][0]["transcript"] = transcript
            self.conversation.resize(item_id)
        if self.config.transcription is not None:
            self._emit(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=transcript,
                usage={"type": "duration", "seconds": round(seconds, 3)},
            )
        if wire is not None:
            previous = self.conversation.before(item_id)
            self._emit("conversation.item.done", item=wire, previous_item_id=previous)

    def input_transcript_failed(self, item_id: str, message: str) -> None:
        if self.config.transcription is not None:
            self._emit(
                "conversation.item.input_audio_transcription.failed",
                item_id=item_id,
                content_index=0,
                error={
                    "type": "transcription_error",
                    "code": "transcription_failed",
                    "message": message,
                },
            )

    def idle_timeout(self, start_sample: int, end_sample: int) -> str:
        """The caller said nothing for the idle timeout; returns the id of the (empty) item
        that :meth:`commit_input` commits next (the API commits the silent audio)."""
        item_id = self._pending_item or self._ids.next("item")
        self._pending_item = item_id
        self._emit(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=samples_to_ms(start_sample, PIPELINE_RATE),
            audio_end_ms=samples_to_ms(end_sample, PIPELINE_RATE),
            item_id=item_id,
        )
        return item_id

    # -- responses: :class:`~transports.realtime_conversation.Conversation` writes them ------

    def start_response(self, generation: int, params: ResponseParams | None = None) -> str:
        """Reply ``generation`` begins (``response.created``); returns the response id."""
        return self.conversation.start_response(generation, params)

    def send_text(self, generation: int, delta: str) -> None:
        """What the assistant says (an audio transcript delta, or text in a text response)."""
        self.conversation.send_text(generation, delta)

    def send_audio(self, generation: int, pcm: bytes, sample_rate: int) -> None:
        """The assistant's audio (PCM16 LE mono at ``sample_rate``), in the output format."""
        self.conversation.send_audio(generation, pcm, sample_rate)

    def send_function_call(
        self, generation: int, *, call_id: str, name: str, arguments: str
    ) -> str:
        """A tool call by the assistant (a ``function_call`` item, complete); returns its id."""
        return self.conversation.send_function_call(
            generation, call_id=call_id, name=name, arguments=arguments
        )

    def end_response(
        self, generation: int, *, status: ResponseStatus = "completed", reason: str | None = None
    ) -> None:
        """Reply ``generation`` is over: ``response.done`` with ``status`` (the rules are
        :meth:`~transports.realtime_conversation.Conversation.end_response`'s)."""
        self.conversation.end_response(generation, status=status, reason=reason)

    def fail_response(self, generation: int, message: str, *, code: str = "reply_failed") -> None:
        """Our failure to make reply ``generation``: ``response.done`` with status ``failed``
        and the error in ``status_details`` (not an ``error`` event: the session goes on)."""
        error = {"type": "server_error", "code": code, "message": message}
        self.conversation.end_response(generation, status="failed", error=error)

    def truncated_transcript(self, generation: int, heard: str) -> None:
        """The text heard of a truncated reply (known after ``conversation.item.truncated``,
        from the synthesizer's word timings): its item's transcript ends there."""
        self.conversation.truncate_transcript(generation, heard)

    def cancel_response(self, generation: int, reason: str = "turn_detected") -> None:
        """Barge-in (or any cancel): :meth:`end_response` with status ``cancelled``."""
        self.end_response(generation, status="cancelled", reason=reason)

    def send_error(self, message: str, *, code: str = "server_error") -> None:
        """Our failure, for the client (keep the details in the log)."""
        self._error(code, message, kind="server_error")

    def close(self) -> None:
        self.state = RealtimeState.CLOSED

    def _emit(self, kind: str, /, **fields: Any) -> None:
        if self.state is RealtimeState.CLOSED:
            return
        self._outbox.append(
            _encoder.encode({"type": kind, "event_id": self._ids.next("event"), **fields}).decode()
        )
