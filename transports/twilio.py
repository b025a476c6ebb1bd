"""Twilio Media Streams (``/v1/telephony/twilio``), sans-I/O.

Twilio sends JSON text messages: ``connected``, ``start`` (stream and call ids, custom
parameters), ``media`` (base64 μ-law 8 kHz, 20 ms a message), ``dtmf``, ``mark`` and ``stop``.
A bidirectional stream (``<Connect><Stream>``) takes ``media``, ``mark`` and ``clear`` back.
:class:`TwilioProtocol` turns the first into events for the session and the session's audio
into the second; it does no I/O (feed :meth:`~TwilioProtocol.receive_text`, send what
:meth:`~TwilioProtocol.data_to_send` returns as text frames).

What the caller heard. Audio sent to Twilio is buffered and played at its pace. After every
``mark_interval`` of a generation's audio (and after its last sample) a ``mark`` is queued;
Twilio echoes a mark once everything before it has played, so each echo is a :class:`Played`
event: generation ``g`` was heard up to sample ``n`` (at the rate the session sent it). On
barge-in, :meth:`~TwilioProtocol.interrupt` queues ``clear``: Twilio drops its buffer and
echoes the marks still pending at once. Those echoes say nothing about playback, so they are
swallowed, and the heard position is the last mark echoed before the clear (conservative: at
most one interval early).

Inbound audio comes out as 16 kHz :class:`~pipeline.events.AudioFrame` on a continuous
timeline: a jump in Twilio's media timestamps (lost packets) is filled with silence, up to
``max_gap_ms`` at a time, so durations counted in samples stay true.

Peer input never raises: a malformed message is reported as a :class:`PeerError` (Twilio has
no error message to send back) and ignored.
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import Any

import msgspec

from pipeline.events import AudioFrame
from transports.audio import AudioFormat, InboundAudio, OutboundAudio
from transports.errors import PeerError
from transports.rtp.dtmf import EVENTS as DTMF_KEYS

__all__ = [
    "TWILIO_FORMAT",
    "Connected",
    "Dtmf",
    "PeerError",
    "Played",
    "StreamStarted",
    "StreamStopped",
    "TwilioEvent",
    "TwilioProtocol",
    "TwilioState",
]

TWILIO_FORMAT = AudioFormat("mulaw", 8000)
_SILENCE = b"\xff"  # μ-law zero


class TwilioState(enum.Enum):
    CONNECTING = "connecting"  # before ``start``
    STREAMING = "streaming"
    STOPPED = "stopped"


# -- events for the session -------------------------------------------------------------------


class Connected(msgspec.Struct, frozen=True):
    protocol: str
    version: str


class StreamStarted(msgspec.Struct, frozen=True):
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, Any]


class Played(msgspec.Struct, frozen=True):
    """Twilio has played ``generation`` up to ``samples`` (at the rate it was sent at).

    ``finished`` is true when that is the generation's last sample.
    """

    generation: int
    samples: int
    finished: bool


class Dtmf(msgspec.Struct, frozen=True):
    """The caller pressed a key: ``digit`` is one of 0-9, ``*``, ``#``, A-D (checked)."""

    digit: str


class StreamStopped(msgspec.Struct, frozen=True):
    """The call or the stream ended; nothing more will arrive."""


TwilioEvent = Connected | StreamStarted | AudioFrame | Played | Dtmf | StreamStopped | PeerError


# -- wire messages from Twilio ----------------------------------------------------------------


class _MediaFormat(msgspec.Struct, frozen=True, rename="camel"):
    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000
    channels: int = 1


class _StartInfo(msgspec.Struct, frozen=True, rename="camel"):
    stream_sid: str = ""
    account_sid: str = ""
    call_sid: str = ""
    tracks: list[str] = msgspec.field(default_factory=lambda: ["inbound"])
    custom_parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    media_format: _MediaFormat = _MediaFormat()


class _Connected(msgspec.Struct, frozen=True, tag_field="event", tag="connected"):
    protocol: str = ""
    version: str = ""


class _Start(msgspec.Struct, frozen=True, tag_field="event", tag="start", rename="camel"):
    start: _StartInfo
    stream_sid: str = ""


class _MediaInfo(msgspec.Struct, frozen=True):
    payload: str
    track: str = "inbound"
    timestamp: str | int | None = None


class _Media(msgspec.Struct, frozen=True, tag_field="event", tag="media"):
    media: _MediaInfo


class _MarkInfo(msgspec.Struct, frozen=True):
    name: str


class _Mark(msgspec.Struct, frozen=True, tag_field="event", tag="mark"):
    mark: _MarkInfo


class _DtmfInfo(msgspec.Struct, frozen=True):
    digit: str


class _Dtmf(msgspec.Struct, frozen=True, tag_field="event", tag="dtmf"):
    dtmf: _DtmfInfo


class _Stop(msgspec.Struct, frozen=True, tag_field="event", tag="stop"):
    pass


_decoder = msgspec.json.Decoder(_Connected | _Start | _Media | _Mark | _Dtmf | _Stop)
_encoder = msgspec.json.Encoder()


class _SentMark(msgspec.Struct):
    generation: int
    samples: int  # at the source rate
    finished: bool


class TwilioProtocol:
    """One Twilio media stream.

    ``frame_ms`` sizes outbound media messages; ``mark_interval_ms`` is the grain of the heard
    position. ``max_gap_ms`` caps the silence inserted for one timestamp jump.
    """

    def __init__(
        self,
        *,
        frame_ms: int = 20,
        mark_interval_ms: int = 200,
        max_gap_ms: int = 1000,
        max_message_chars: int = 64 * 1024,
    ) -> None:
        if frame_ms <= 0 or mark_interval_ms <= 0:
            raise ValueError("frame_ms and mark_interval_ms must be positive")
        self.frame_bytes = TWILIO_FORMAT.sample_rate * frame_ms // 1000
        self.mark_interval = TWILIO_FORMAT.sample_rate * mark_interval_ms // 1000
        self.max_gap_ms = max_gap_ms
        self.max_message_chars = max_message_chars
        self.state = TwilioState.CONNECTING
        self.stream_sid: str | None = None
        #: milliseconds of silence inserted for lost media so far
        self.gaps_filled_ms = 0
        self._outbox: list[str] = []
        self._inbound = InboundAudio(TWILIO_FORMAT)
        self._received_ms = 0.0  # media time received so far
        self._first_timestamp: int | None = None
        # the generation being sent: its encoder, bytes not yet framed, samples since a mark
        self._stream: tuple[int, OutboundAudio] | None = None
        self._pending = b""
        self._since_mark = 0
        self._framed = 0  # samples of the generation sent in media messages
        self._marks: dict[str, _SentMark] = {}
        self._flushed: set[str] = set()
        self._heard: dict[int, int] = {}
        self._interrupted: set[int] = set()
        self._mark_count = 0

    # -- receiving ----------------------------------------------------------------------------

    def receive_text(self, text: str) -> list[TwilioEvent]:
        if self.state is TwilioState.STOPPED:
            return []
        if len(text) > self.max_message_chars:
            return [PeerError("message_too_large", f"message of {len(text)} characters")]
        try:
            message = _decoder.decode(text)
        except msgspec.ValidationError as error:
            if "`$.event`" in str(error) or "field `event`" in str(error):
                return [PeerError("unknown_event", "event must be a Media Streams event name")]
            return [PeerError("bad_message", str(error))]
        except msgspec.DecodeError:
            return [PeerError("bad_json", "messages must be JSON objects")]
        except RecursionError:  # msgspec's guard against deep nesting (found by bench/fuzz)
            return [PeerError("bad_json", "the JSON is nested too deeply")]
        match message:
            case _Connected(protocol=protocol, version=version):
                return [Connected(protocol, version)]
            case _Start():
                return self._start(message)
            case _Stop():
                self.state = TwilioState.STOPPED
                flushed = self._inbound.flush()
                return [StreamStopped()] if flushed is None else [flushed, StreamStopped()]
        if self.state is TwilioState.CONNECTING:
            return [PeerError("not_started", "a message before the start message")]
        match message:
            case _Media(media=media):
                return self._media(media)
            case _Mark(mark=_MarkInfo(name=name)):
                return self._mark(name)
            case _Dtmf(dtmf=_DtmfInfo(digit=digit)):
                key = digit.upper()
                if len(key) != 1 or key not in DTMF_KEYS:
                    return [PeerError("bad_dtmf", f"not a DTMF digit: {digit[:8]!r}")]
                return [Dtmf(key)]
        raise AssertionError(f"unhandled message {message!r}")  # pragma: no cover

    def receive_bytes(self, data: bytes) -> list[TwilioEvent]:
        """Twilio sends text only; a binary frame is reported and ignored."""
        return [PeerError("unexpected_binary", f"a binary frame of {len(data)} bytes")]

    def _start(self, message: _Start) -> list[TwilioEvent]:
        if self.state is not TwilioState.CONNECTING:
            return [PeerError("start_repeated", "the stream has already started")]
        info = message.start
        self.stream_sid = info.stream_sid or message.stream_sid
        self.state = TwilioState.STREAMING
        events: list[TwilioEvent] = []
        media = info.media_format
        if (media.encoding, media.sample_rate, media.channels) != ("audio/x-mulaw", 8000, 1):
            events.append(
                PeerError(
                    "unsupported_format",
                    f"{media.encoding} {media.sample_rate} Hz x{media.channels}:"
                    " decoding as μ-law 8 kHz mono",
                )
            )
        events.append(
            StreamStarted(
                self.stream_sid,
                info.call_sid,
                info.account_sid,
                tuple(info.tracks),
                dict(info.custom_parameters),
            )
        )
        return events

    def _media(self, media: _MediaInfo) -> list[TwilioEvent]:
        if media.track not in ("inbound", "inbound_track"):
            return []
        try:
            payload = base64.b64decode(media.payload, validate=True)
        except (binascii.Error, ValueError):
            return [PeerError("bad_audio", "media payload is not base64")]
        events: list[TwilioEvent] = []
        gap = self._gap(media.timestamp)
        if gap:
            chunk = self._inbound.convert(_SILENCE * (gap * 8))
            if chunk is not None:
                events.append(chunk)
        self._received_ms += len(payload) / 8
        chunk = self._inbound.convert(payload)
        if chunk is not None:
            events.append(chunk)
        return events

    def _gap(self, timestamp: str | int | None) -> int:
        """Milliseconds of media missing before a message stamped ``timestamp``."""
        if timestamp is None:
            return 0
        try:
            stamp = int(timestamp)
        except ValueError:
            return 0
        if self._first_timestamp is None:
            self._first_timestamp = stamp
        missing = stamp - self._first_timestamp - round(self._received_ms)
        if missing < 40:  # jitter in the stamps, or one lost frame: not worth filling
            return 0
        gap = min(missing, self.max_gap_ms)
        self._received_ms += gap
        self.gaps_filled_ms += gap
        return gap

    def _mark(self, name: str) -> list[TwilioEvent]:
        if name in self._flushed:
            self._flushed.discard(name)
            return []
        mark = self._marks.pop(name, None)
        if mark is None:
            return [PeerError("unknown_mark", "a mark this stream did not send")]
        self._heard[mark.generation] = mark.samples
        return [Played(mark.generation, mark.samples, mark.finished)]

    # -- sending ------------------------------------------------------------------------------

    def data_to_send(self) -> list[str]:
        out, self._outbox = self._outbox, []
        return out

    def send_audio(self, generation: int, pcm: bytes, sample_rate: int) -> None:
        """Bot audio (PCM16 LE mono at ``sample_rate``) for ``generation``.

        Audio of an interrupted generation is dropped. Starting a new generation while
        another is open ends the open one first (its last mark included).
        """
        self._require_started()
        if generation in self._interrupted:
            return
        if self._stream is not None and self._stream[0] != generation:
            self.end_audio(self._stream[0])
        if self._stream is None:
            self._stream = (generation, OutboundAudio(TWILIO_FORMAT))
            self._since_mark = 0
            self._framed = 0
        self._queue(self._stream[1].convert(pcm, sample_rate))

    def end_audio(self, generation: int) -> None:
        """``generation`` has no more audio: send the rest and a final mark."""
        if self._stream is None or self._stream[0] != generation:
            return
        stream = self._stream[1]
        self._queue(stream.flush())
        if self._pending:
            self._media_message(self._pending)
            self._framed += len(self._pending)
            self._pending = b""
        self._send_mark(finished=True)
        self._stream = None

    def interrupt(self, generation: int) -> int:
        """Barge-in: stop ``generation`` now (``clear``); return the heard position.

        The position is in samples at the rate the audio was sent at: the last mark Twilio
        echoed for it. Later audio for ``generation`` is dropped.
        """
        self._interrupted.add(generation)
        pending = [name for name, mark in self._marks.items() if mark.generation == generation]
        current = self._stream is not None and self._stream[0] == generation
        if current or pending:
            self._require_started()
            self._send({"event": "clear", "streamSid": self.stream_sid})
            # Twilio echoes every mark still queued when it clears: those were not played.
            for name in list(self._marks):
                self._flushed.add(name)
                del self._marks[name]
        if current:
            self._stream = None
            self._pending = b""
        return self._heard.get(generation, 0)

    def heard(self, generation: int) -> int:
        """The last position of ``generation`` that Twilio reported played."""
        return self._heard.get(generation, 0)

    # -- helpers ------------------------------------------------------------------------------

    def _require_started(self) -> None:
        if self.stream_sid is None:
            raise RuntimeError("no stream to send to before Twilio's start message")

    def _queue(self, data: bytes) -> None:
        """Frame ``data`` into media messages, with a mark after every interval."""
        data = self._pending + data
        frames = len(data) // self.frame_bytes
        for n in range(frames):
            frame = data[n * self.frame_bytes : (n + 1) * self.frame_bytes]
            self._media_message(frame)
            self._framed += len(frame)
            self._since_mark += len(frame)
            if self._since_mark >= self.mark_interval:
                self._send_mark(finished=False)
        self._pending = data[frames * self.frame_bytes :]

    def _media_message(self, frame: bytes) -> None:
        payload = base64.b64encode(frame).decode()
        self._send({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})

    def _send_mark(self, *, finished: bool) -> None:
        assert self._stream is not None
        generation, stream = self._stream
        position = stream.source_samples if finished else stream.to_source(self._framed)
        self._mark_count += 1
        name = f"{generation}:{self._mark_count}"
        self._marks[name] = _SentMark(generation, position, finished)
        self._since_mark = 0
        self._send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def _send(self, message: dict[str, Any]) -> None:
        self._outbox.append(_encoder.encode(message).decode())
