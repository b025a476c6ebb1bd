"""The native WebSocket protocol (``/v1/stream``), sans-I/O.

Text frames carry JSON events, binary frames carry audio in the format the client declared in
its ``hello``. The full message list is in docs/protocol.md. :class:`NativeProtocol` holds one
connection's state and never does I/O: feed it what the socket received
(:meth:`~NativeProtocol.receive_text`, :meth:`~NativeProtocol.receive_bytes`) and act on the
events it returns; call the ``send_*`` methods for what the session has to say; after either,
send what :meth:`~NativeProtocol.data_to_send` returns (``str``: a text frame, ``bytes``: a
binary frame), in order.

States::

    AWAITING_HELLO --hello--> OPEN --bye / close()--> CLOSED

Peer input never raises ("their error"): a bad message queues an ``error`` event for the
client, returns a :class:`PeerError` for the session's logs and metrics, and the call goes on.
Misuse by the session ("our error": audio for two generations at once, sending before the
hello) raises ``RuntimeError``/``ValueError``.

Bot audio is streamed per generation: ``audio.start`` (with the generation id) comes before a
generation's first binary frame and ``audio.end`` after its last. Once a generation is
interrupted, any audio, text or mark the session still sends for it is dropped here, so stale
output never reaches the client.

Turn decisions carry the id of the turn-taking rule behind them (``rule``: ``"T5"``, ``"B1"``,
... from :mod:`agent.turns`' table) on ``turn.ended``, ``interrupted`` and ``error`` notices;
the field is left out when there is none.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import msgspec

from pipeline.errors import InvalidAudio
from pipeline.events import AudioFrame
from transports.audio import (
    PIPELINE_RATE,
    AudioFormat,
    Encoding,
    InboundAudio,
    OutboundAudio,
    samples_to_ms,
)
from transports.errors import PeerError
from transports.rtp.dtmf import EVENTS as DTMF_KEYS

__all__ = [
    "PROTOCOL_VERSION",
    "Bye",
    "CommitRequest",
    "Hello",
    "InterruptRequest",
    "Keys",
    "NativeEvent",
    "NativeProtocol",
    "NativeState",
    "Outbound",
    "PeerError",
    "Playback",
    "TransferOutcome",
    "UserText",
]

PROTOCOL_VERSION = 1

#: what :meth:`NativeProtocol.data_to_send` returns: text frames as ``str``, binary as ``bytes``
Outbound = str | bytes


class NativeState(enum.Enum):
    AWAITING_HELLO = "awaiting_hello"
    OPEN = "open"
    CLOSED = "closed"


# -- inbound events (for the session) ---------------------------------------------------------


class Hello(msgspec.Struct, frozen=True):
    """The client's audio format; the session has started (``session.started`` was queued).
    ``transfer``: the client carries out transfers (``transfer`` / ``transfer.result``)."""

    format: AudioFormat
    version: int = PROTOCOL_VERSION
    transfer: bool = False


class UserText(msgspec.Struct, frozen=True):
    """The client typed a whole user turn."""

    text: str


class InterruptRequest(msgspec.Struct, frozen=True):
    """The client asks the bot to stop talking (a button, push-to-talk)."""


class CommitRequest(msgspec.Struct, frozen=True):
    """The client ends the caller's turn now (push-to-talk released), without waiting for
    the silence that ends a turn."""


class Playback(msgspec.Struct, frozen=True):
    """The client has played ``samples`` (at its rate) of ``generation``'s audio.

    ``source_samples`` is the same position at the rate the session sent that audio at. The
    protocol keeps the last one (:meth:`NativeProtocol.played`): what the caller heard of a
    reply cut by a barge-in.
    """

    generation: int
    samples: int
    source_samples: int


class Bye(msgspec.Struct, frozen=True):
    """The client ends the call."""

    reason: str = ""


class Keys(msgspec.Struct, frozen=True):
    """The caller pressed keypad ``digits`` (DTMF: 0-9, ``*``, ``#``, A-D), in this order."""

    digits: str


class TransferOutcome(msgspec.Struct, frozen=True):
    """The client's answer to the ``transfer`` it was sent: done (``ok``), or not and why."""

    ok: bool
    reason: str = ""


NativeEvent = (
    Hello
    | AudioFrame
    | UserText
    | InterruptRequest
    | CommitRequest
    | Playback
    | Bye
    | TransferOutcome
    | Keys
    | PeerError
)


# -- wire messages from the client ------------------------------------------------------------


class _HelloMessage(msgspec.Struct, frozen=True, tag="hello"):
    sample_rate: int
    encoding: Encoding = "pcm16"
    version: int = PROTOCOL_VERSION
    transfer: bool = False


class _TextMessage(msgspec.Struct, frozen=True, tag="text"):
    text: str


class _InterruptMessage(msgspec.Struct, frozen=True, tag="interrupt"):
    pass


class _CommitMessage(msgspec.Struct, frozen=True, tag="commit"):
    pass


class _PlaybackMessage(msgspec.Struct, frozen=True, tag="playback"):
    generation: int
    samples: int


class _ByeMessage(msgspec.Struct, frozen=True, tag="bye"):
    reason: str = ""


class _DtmfMessage(msgspec.Struct, frozen=True, tag="dtmf"):
    digit: str | None = None
    digits: str | None = None


class _TransferResultMessage(msgspec.Struct, frozen=True, tag="transfer.result"):
    ok: bool
    reason: str = ""


_ClientMessage = (
    _HelloMessage
    | _TextMessage
    | _InterruptMessage
    | _CommitMessage
    | _PlaybackMessage
    | _ByeMessage
    | _TransferResultMessage
    | _DtmfMessage
)
_TYPES = ("hello", "text", "interrupt", "commit", "playback", "bye", "transfer.result", "dtmf")
_decoder = msgspec.json.Decoder(_ClientMessage)
_encoder = msgspec.json.Encoder()
#: generations whose rates are remembered for playback reports
_REMEMBERED = 16
#: keys one ``dtmf`` message may carry
MAX_KEYS = 32


class NativeProtocol:
    """One ``/v1/stream`` connection."""

    def __init__(
        self,
        session_id: str,
        *,
        max_frame_bytes: int = 64 * 1024,
        max_text_chars: int = 64 * 1024,
    ) -> None:
        self.session_id = session_id
        self.max_frame_bytes = max_frame_bytes
        self.max_text_chars = max_text_chars
        self.state = NativeState.AWAITING_HELLO
        self.format: AudioFormat | None = None
        self._outbox: list[Outbound] = []
        self._inbound: InboundAudio | None = None
        self._stream: tuple[int, OutboundAudio] | None = None
        self._interrupted: set[int] = set()
        self._rates: dict[int, OutboundAudio] = {}
        self._played: dict[int, int] = {}  # last playback report, source samples
        #: the client said in its hello that it carries out transfers
        self.transfers = False
        self._transferring = False  # a transfer event waits for its transfer.result

    # -- receiving ----------------------------------------------------------------------------

    def receive_text(self, text: str) -> list[NativeEvent]:
        """A text frame from the client."""
        if self.state is NativeState.CLOSED:
            return []
        if len(text) > self.max_text_chars:
            return self._error(
                "text_too_large", f"text frames are limited to {self.max_text_chars} characters"
            )
        try:
            message = _decoder.decode(text)
        except msgspec.ValidationError as error:
            return self._bad_message(str(error))
        except msgspec.DecodeError:
            return self._error("bad_json", "text frames must be JSON objects")
        except RecursionError:  # msgspec's guard against deep nesting (found by bench/fuzz)
            return self._error("bad_json", "the JSON is nested too deeply")
        if isinstance(message, _HelloMessage):
            return self._hello(message)
        if self.state is NativeState.AWAITING_HELLO:
            return self._error("hello_required", "send a hello message first")
        match message:
            case _TextMessage(text=typed):
                return [UserText(typed)]
            case _InterruptMessage():
                return [InterruptRequest()]
            case _CommitMessage():
                return [CommitRequest()]
            case _PlaybackMessage(generation=generation, samples=samples):
                return self._playback(generation, samples)
            case _ByeMessage(reason=reason):
                self.close("bye")
                return [Bye(reason)]
            case _DtmfMessage(digit=digit, digits=digits):
                return self._keys(digit, digits)
            case _TransferResultMessage(ok=ok, reason=reason):
                if not self._transferring:
                    return self._error("no_transfer", "no transfer waits for a result")
                self._transferring = False
                return [TransferOutcome(ok, reason)]
        raise AssertionError(f"unhandled message {message!r}")  # pragma: no cover

    def receive_bytes(self, data: bytes) -> list[NativeEvent]:
        """A binary frame from the client: audio in its declared format."""
        if self.state is NativeState.CLOSED:
            return []
        if self._inbound is None:
            return self._error("hello_required", "send a hello message before audio")
        if len(data) > self.max_frame_bytes:
            return self._error(
                "frame_too_large", f"audio frames are limited to {self.max_frame_bytes} bytes"
            )
        try:
            chunk = self._inbound.convert(data)
        except InvalidAudio as error:
            return self._error("bad_audio", str(error))
        return [] if chunk is None else [chunk]

    def _hello(self, message: _HelloMessage) -> list[NativeEvent]:
        if self.state is not NativeState.AWAITING_HELLO:
            return self._error("hello_repeated", "the session has already started")
        audio = AudioFormat(message.encoding, message.sample_rate)
        problem = audio.problem()
        if problem is not None:
            return self._error("bad_hello", problem)
        if message.version != PROTOCOL_VERSION:
            return self._error("bad_hello", f"protocol version {PROTOCOL_VERSION} only")
        self.format = audio
        self.transfers = message.transfer
        self._inbound = InboundAudio(audio, max_bytes=self.max_frame_bytes)
        self.state = NativeState.OPEN
        self._emit(
            {
                "type": "session.started",
                "session_id": self.session_id,
                "version": PROTOCOL_VERSION,
                "sample_rate": audio.sample_rate,
                "encoding": audio.encoding,
            }
        )
        return [Hello(audio, message.version, message.transfer)]

    def _playback(self, generation: int, samples: int) -> list[NativeEvent]:
        if samples < 0:
            return self._error("bad_message", "playback samples must not be negative")
        stream = self._rates.get(generation)
        if stream is None:
            return self._error(
                "unknown_generation", f"no audio of generation {generation} was sent recently"
            )
        if samples > stream.samples:
            return self._error(
                "bad_message",
                f"generation {generation} has {stream.samples} samples so far, not {samples}",
            )
        source = stream.to_source(samples)
        last = self._played.get(generation)
        if last is not None and source < last:
            return self._error(
                "bad_message", f"playback of generation {generation} cannot go backwards"
            )
        self._played[generation] = source
        return [Playback(generation, samples, source)]

    def _keys(self, digit: str | None, digits: str | None) -> list[NativeEvent]:
        if (digit is None) == (digits is None):
            return self._error("bad_message", "dtmf takes one of digit or digits")
        keys = (digit or digits or "").upper()
        if digit is not None and len(keys) != 1:
            return self._error("bad_message", "digit is one key; send several as digits")
        if not 0 < len(keys) <= MAX_KEYS or not set(keys) <= set(DTMF_KEYS):
            return self._error(
                "bad_message", f"dtmf keys are 0-9, *, # and A-D, 1 to {MAX_KEYS} a message"
            )
        return [Keys(keys)]

    def played(self, generation: int) -> int | None:
        """The last position the client reported for ``generation``, at the rate the session
        sent its audio (``None``: no report)."""
        return self._played.get(generation)

    def _bad_message(self, reason: str) -> list[NativeEvent]:
        if "`$.type`" in reason or "field `type`" in reason:
            return self._error("unknown_type", f"type must be one of {', '.join(_TYPES)}")
        if reason.startswith("Expected `object`") and " - at " not in reason:
            return self._error("bad_json", "text frames must be JSON objects")
        return self._error("bad_message", reason)

    def _error(self, code: str, message: str) -> list[NativeEvent]:
        self.send_error(code, message)
        return [PeerError(code, message)]

    # -- sending ------------------------------------------------------------------------------

    def data_to_send(self) -> list[Outbound]:
        """Frames to send, in order; the queue is emptied."""
        out, self._outbox = self._outbox, []
        return out

    def send_speech_started(self, sample: int) -> None:
        """The caller started speaking at ``sample`` (16 kHz, the pipeline's timeline)."""
        self._emit({"type": "speech.started", "at_ms": samples_to_ms(sample, PIPELINE_RATE)})

    def send_speech_stopped(self, sample: int) -> None:
        self._emit({"type": "speech.stopped", "at_ms": samples_to_ms(sample, PIPELINE_RATE)})

    def send_transcript(
        self,
        utterance: int,
        text: str,
        *,
        final: bool,
        stable: str = "",
        unstable: str = "",
        language: str = "",
    ) -> None:
        """A transcript; a final says the ``language`` heard, when the ASR says it."""
        if final:
            message = {"type": "transcript.final", "utterance": utterance, "text": text}
            self._emit(message | ({"language": language} if language else {}))
        else:
            self._emit(
                {
                    "type": "transcript.partial",
                    "utterance": utterance,
                    "text": text,
                    "stable": stable,
                    "unstable": unstable,
                }
            )

    def send_turn_ended(
        self, text: str, start: int, end: int, *, rule: str = "", keypad: bool = False
    ) -> None:
        """The caller's turn (samples ``start``-``end`` at 16 kHz, the pipeline's timeline)
        ended with ``text``; ``rule`` is the turn-taking rule that ended it. ``keypad``: the
        turn was keyed in and ``text`` is its digits (``rule`` then is :mod:`agent.digits`')."""
        self._emit(
            {
                "type": "turn.ended",
                "text": text,
                "start_ms": samples_to_ms(start, PIPELINE_RATE),
                "end_ms": samples_to_ms(end, PIPELINE_RATE),
                **_rule(rule),
                **({"keypad": True} if keypad else {}),
            }
        )

    def send_agent_text(self, generation: int, delta: str) -> None:
        """A piece of what the bot is going to say in ``generation``."""
        if generation not in self._interrupted:
            self._emit({"type": "agent.text", "generation": generation, "delta": delta})

    def send_audio(self, generation: int, pcm: bytes, sample_rate: int) -> None:
        """Bot audio (PCM16 LE mono at ``sample_rate``) for ``generation``.

        The first call for a generation queues ``audio.start``. Audio of an interrupted
        generation is dropped. Raises ``ValueError`` while another generation's audio is open.
        """
        audio = self._require_open()
        if generation in self._interrupted:
            return
        if self._stream is None:
            stream = OutboundAudio(audio)
            self._stream = (generation, stream)
            self._remember(generation, stream)
            self._emit(
                {
                    "type": "audio.start",
                    "generation": generation,
                    "sample_rate": audio.sample_rate,
                    "encoding": audio.encoding,
                }
            )
        elif self._stream[0] != generation:
            raise ValueError(
                f"audio for generation {generation} while {self._stream[0]} is still open"
            )
        data = self._stream[1].convert(pcm, sample_rate)
        if data:
            self._outbox.append(data)

    def end_audio(self, generation: int) -> None:
        """``generation`` has no more audio: send the resampler's tail and ``audio.end``."""
        if self._stream is None or self._stream[0] != generation:
            return
        stream = self._stream[1]
        tail = stream.flush()
        if tail:
            self._outbox.append(tail)
        self._end_stream(interrupted=False)

    def send_mark(self, generation: int, name: str, at_ms: float) -> None:
        """Playout reached the SSML ``<mark name="..."/>`` ``name``, ``at_ms`` into
        ``generation``'s audio (sent in whole milliseconds). Dropped once it is interrupted."""
        if generation not in self._interrupted:
            self._emit(
                {"type": "mark", "generation": generation, "name": name, "at_ms": round(at_ms)}
            )

    def send_interrupted(
        self,
        generation: int,
        *,
        played_samples: int | None = None,
        heard_text: str = "",
        rule: str = "",
    ) -> None:
        """``generation`` was cut off; ``played_samples`` is the heard position at the source
        rate (the last playback report when ``None``); ``rule`` is the turn-taking rule that
        cut it (``""``: the client asked). Its later audio is dropped."""
        self._interrupted.add(generation)
        stream = self._rates.get(generation)
        if self._stream is not None and self._stream[0] == generation:
            self._end_stream(interrupted=True)
        if played_samples is None:
            played_samples = self._played.get(generation, 0)
        played_ms = 0
        if stream is not None and stream.source_rate:
            played_ms = samples_to_ms(played_samples, stream.source_rate)
        self._emit(
            {
                "type": "interrupted",
                "generation": generation,
                "played_ms": played_ms,
                "heard_text": heard_text,
                **_rule(rule),
            }
        )

    def send_latency(self, generation: int, latency_ms: Mapping[str, float]) -> None:
        """The per-stage latency breakdown of the turn that ``generation`` answers."""
        self._emit(
            {
                "type": "turn.latency",
                "generation": generation,
                "latency_ms": {name: round(value, 1) for name, value in latency_ms.items()},
            }
        )

    def send_transfer(self, target: str) -> None:
        """Ask the client to transfer the call to ``target``; it answers ``transfer.result``.
        Raises ``RuntimeError`` unless its hello said it carries out transfers."""
        if not self.transfers:
            raise RuntimeError("the client does not carry out transfers")
        self._transferring = True
        self._emit({"type": "transfer", "target": target})

    def send_dtmf(self, digits: str) -> None:
        """Ask the client to key ``digits`` (0-9, ``*``, ``#``, A-D) to the far end: the
        reply audio sent before it has played; nothing is answered."""
        self._emit({"type": "dtmf", "digits": digits})

    def send_error(self, code: str, message: str, *, rule: str = "") -> None:
        """An error or notice from the session (``internal`` for our failures: keep details in
        the log); ``rule``: the turn-taking rule behind a notice about a turn decision."""
        self._emit({"type": "error", "code": code, "message": message, **_rule(rule)})

    def close(self, reason: str) -> None:
        """End the session: ``session.ended`` is the last message."""
        if self.state is NativeState.CLOSED:
            return
        if self._stream is not None:
            self._end_stream(interrupted=True)
        self._emit({"type": "session.ended", "reason": reason})
        self.state = NativeState.CLOSED

    # -- helpers ------------------------------------------------------------------------------

    def _require_open(self) -> AudioFormat:
        if self.format is None:
            raise RuntimeError("no audio format before the client's hello")
        return self.format

    def _end_stream(self, *, interrupted: bool) -> None:
        assert self._stream is not None
        generation, stream = self._stream
        self._stream = None
        self._emit(
            {
                "type": "audio.end",
                "generation": generation,
                "samples": stream.samples,
                "duration_ms": samples_to_ms(stream.samples, stream.format.sample_rate),
                "interrupted": interrupted,
            }
        )

    def _remember(self, generation: int, stream: OutboundAudio) -> None:
        self._rates[generation] = stream
        while len(self._rates) > _REMEMBERED:
            oldest = next(iter(self._rates))
            del self._rates[oldest]
            self._played.pop(oldest, None)

    def _emit(self, message: Mapping[str, Any]) -> None:
        if self.state is NativeState.CLOSED:
            return
        self._outbox.append(_encoder.encode(message).decode())


def _rule(rule: str) -> dict[str, str]:
    """The ``rule`` field of a turn decision's event: left out when there is none."""
    return {"rule": rule} if rule else {}
