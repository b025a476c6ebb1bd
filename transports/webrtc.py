"""WebRTC calls, sans-I/O: the offer, the audio either side of Opus, and the data channel.

aiortc does the network work (ICE, DTLS, SRTP, SCTP, Opus); what is protocol logic lives here
as plain classes, with the adapter in :mod:`agent.webrtc_call`:

- :func:`parse_offer` takes the body of ``POST /v1/webrtc/offer``: JSON
  (``{"type": "offer", "sdp": "…", "agent": …, "voice": …, "transfer": …}``, answered with
  JSON; ``transfer: true``: the caller carries out transfers on the data channel) or a bare
  ``application/sdp`` body (WHIP style, answered with ``201`` and the SDP). ``room`` and
  ``language`` (an interpreter's two-party room, :mod:`agent.rooms`) are JSON fields, or for a
  WHIP offer the request's query parameters. :func:`check_offer`
  refuses offers Voxline cannot answer, in words the caller can act on: not SDP, no audio, no
  Opus, video, no ICE credentials or DTLS fingerprint, SDP that aiortc's parser cannot read.
  Both raise :class:`~pipeline.errors.ProtocolError`.
- :class:`InboundFrames` turns decoded RTP audio (interleaved PCM16, any channel count, any
  rate: Opus decodes to 48 kHz stereo) into the pipeline's 16 kHz mono
  :class:`~pipeline.events.AudioFrame` on one continuous timeline.
- :class:`OutboundFrames` is the outgoing track's jitter queue: reply audio, written a little
  ahead of real time by the session's playout, cut into the 20 ms frames the track sends,
  silence when there is nothing to say. It holds :data:`JITTER_S` at most (the playout's
  ``lead`` plus room for a late tick), counts what of each reply was taken (sent), and
  :meth:`~OutboundFrames.clear` drops what a barge-in cancelled, so the very next frame is
  silent, and later audio of that generation is refused.
- :func:`data_channel_protocol` is the native protocol (:mod:`transports.native`) opened at the
  track's rate: the data channel carries exactly the JSON events of ``/v1/stream``
  (``session.started`` first, ``transcript.*``, ``agent.text``, ``audio.start``/``audio.end``,
  ``interrupted``, ``turn.latency``, ``error``, ``session.ended`` last) and takes the same
  client messages (``text``, ``interrupt``, ``commit``, ``playback``, ``bye``; and
  ``transfer.result`` answering a ``transfer`` event, when the offer said ``transfer: true``);
  audio goes over the track, never over the channel.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import aiortc.sdp
import msgspec
import numpy as np

from pipeline.errors import ProtocolError
from pipeline.events import BYTES_PER_SAMPLE, AudioFrame
from transports.audio import AudioFormat, InboundAudio
from transports.errors import LANGUAGE_WITHOUT_ROOM
from transports.native import NativeProtocol

__all__ = [
    "FRAME_MS",
    "JITTER_S",
    "MAX_OFFER_BYTES",
    "OPUS_RATE",
    "InboundFrames",
    "OfferRequest",
    "OfferSummary",
    "OutboundFrames",
    "OutboundStatistics",
    "check_offer",
    "data_channel_protocol",
    "parse_offer",
]

#: Opus always runs at 48 kHz; the outbound track sends at this rate
OPUS_RATE = 48000
FRAME_MS = 20
#: the most reply audio a track queues (seconds): the session's playout writes it a bounded
#: ``lead`` ahead of real time (60 ms by default), so more than this means nobody sends it
JITTER_S = 0.2
#: the largest offer accepted (a browser's audio-and-data offer is about 2-4 KB)
MAX_OFFER_BYTES = 64 * 1024

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
_DIRECTIONS: tuple[Direction, ...] = ("sendrecv", "sendonly", "recvonly", "inactive")


# -- the offer ----------------------------------------------------------------------------------


class OfferSummary(msgspec.Struct, frozen=True):
    """What an offer asks for. ``direction`` is the audio section's, from the caller's side."""

    direction: Direction
    data_channel: bool
    candidates: int

    @property
    def caller_sends(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")


class OfferRequest(msgspec.Struct, frozen=True):
    """A checked offer. ``whip``: it came as ``application/sdp`` and wants SDP back."""

    sdp: str
    summary: OfferSummary
    agent: str | None = None
    voice: str | None = None
    whip: bool = False
    #: the caller carries out transfers (``transfer`` events on the data channel)
    transfer: bool = False
    #: the two-party room to join, and the language the caller speaks and hears there
    room: str | None = None
    language: str | None = None


class _OfferMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["offer"]
    sdp: str
    agent: str | None = None
    voice: str | None = None
    transfer: bool = False
    room: str | None = None
    language: str | None = None


_offer_decoder = msgspec.json.Decoder(_OfferMessage)


def parse_offer(
    content_type: str, body: bytes, query: Mapping[str, str] | None = None
) -> OfferRequest:
    """The body of ``POST /v1/webrtc/offer``, checked; ``ProtocolError`` says what is wrong.
    ``query``: the request's query parameters (a WHIP offer's ``room`` and ``language``)."""
    if len(body) > MAX_OFFER_BYTES:
        raise ProtocolError(f"the offer is larger than {MAX_OFFER_BYTES} bytes")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/sdp":
        sdp = _text(body)
        query = query or {}
        room, language = query.get("room"), query.get("language")
        _check_room(room, language)
        return OfferRequest(sdp, check_offer(sdp), whip=True, room=room, language=language)
    if media_type == "application/json":
        try:
            message = _offer_decoder.decode(body)
        except msgspec.ValidationError as error:
            raise ProtocolError(f"bad offer: {error}") from None
        except msgspec.DecodeError:
            raise ProtocolError("the offer is not valid JSON") from None
        _check_room(message.room, message.language)
        return OfferRequest(
            message.sdp,
            check_offer(message.sdp),
            agent=message.agent,
            voice=message.voice,
            transfer=message.transfer,
            room=message.room,
            language=message.language,
        )
    raise ProtocolError("send the offer as application/json or application/sdp")


def _check_room(room: str | None, language: str | None) -> None:
    if language is not None and room is None:
        raise ProtocolError(LANGUAGE_WITHOUT_ROOM)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("the offer is not UTF-8 text") from None


_MEDIA = re.compile(r"^m=(\w+) \S+ (\S+)(?: (.*))?$")
_OPUS = re.compile(r"^a=rtpmap:\d+ opus/48000(/\d+)?$", re.IGNORECASE)


@dataclass
class _Section:
    kind: str
    protocol: str
    lines: list[str]


def check_offer(sdp: str) -> OfferSummary:
    """What ``sdp`` asks for, or ``ProtocolError`` when Voxline cannot answer it."""
    lines = [line.strip() for line in sdp.splitlines() if line.strip()]
    if not lines or lines[0] != "v=0":
        raise ProtocolError("the offer is not SDP (it must start with v=0)")
    session: list[str] = []
    sections: list[_Section] = []
    for line in lines:
        if line.startswith("m="):
            match = _MEDIA.match(line)
            if match is None:
                raise ProtocolError(f"bad media line in the offer: {line[:80]!r}")
            sections.append(_Section(match[1], match[2], []))
        elif sections:
            sections[-1].lines.append(line)
        else:
            session.append(line)
    audio = [s for s in sections if s.kind == "audio"]
    others = {s.kind for s in sections} - {"audio", "application"}
    if others:
        raise ProtocolError(f"Voxline calls are audio only: the offer has {sorted(others)}")
    if len(audio) != 1:
        raise ProtocolError(f"the offer needs exactly one audio section, it has {len(audio)}")
    section = audio[0]
    if not any(_OPUS.match(line) for line in section.lines):
        raise ProtocolError("the offer's audio has no Opus codec (opus/48000)")
    for attribute in ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"):
        if not _has(attribute, session, section.lines):
            raise ProtocolError(f"the offer has no {attribute[2:-1]} (ICE and DTLS are required)")
    try:  # what aiortc reads when the call applies the offer: its parser asserts and indexes
        aiortc.sdp.SessionDescription.parse(sdp)
    except Exception as error:  # (AssertionError on a bad c= line: found by bench/fuzz)
        raise ProtocolError(f"the offer's SDP cannot be read ({type(error).__name__})") from None
    direction = _direction(section.lines) or _direction(session) or "sendrecv"
    data = any(s.kind == "application" and "DTLS/SCTP" in s.protocol for s in sections)
    candidates = sum(line.startswith("a=candidate:") for s in sections for line in s.lines)
    return OfferSummary(direction, data, candidates)


def _direction(lines: list[str]) -> Direction | None:
    for name in _DIRECTIONS:
        if f"a={name}" in lines:
            return name
    return None


def _has(prefix: str, session: list[str], media: list[str]) -> bool:
    return any(line.startswith(prefix) for line in (*session, *media))


# -- audio in -----------------------------------------------------------------------------------


class InboundFrames:
    """Decoded track audio to the pipeline's 16 kHz mono PCM16, one ``pts`` timeline.

    Each :meth:`convert` takes one decoded frame: interleaved PCM16 with ``channels`` channels
    at ``sample_rate``. Channels are averaged; a rate change mid-call flushes the old resampler
    and goes on from the same position.
    """

    def __init__(self) -> None:
        self._audio: InboundAudio | None = None
        self.pts = 0

    def convert(self, pcm: bytes, channels: int, sample_rate: int) -> AudioFrame | None:
        if channels < 1 or len(pcm) % (channels * BYTES_PER_SAMPLE):
            raise ValueError(f"{len(pcm)} bytes is not whole frames of {channels} channels")
        head: AudioFrame | None = None
        if self._audio is None or self._audio.format.sample_rate != sample_rate:
            if self._audio is not None:
                head = self._audio.flush()
                self.pts = self._audio.pts
            self._audio = InboundAudio(AudioFormat("pcm16", sample_rate), start=self.pts)
        if channels > 1:
            samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)
            pcm = samples.mean(axis=1).round().astype("<i2").tobytes()
        chunk = self._audio.convert(pcm)
        self.pts = self._audio.pts
        if head is None:
            return chunk
        if chunk is None:
            return head
        return head.append(chunk)


# -- audio out ----------------------------------------------------------------------------------


class OutboundStatistics(msgspec.Struct, frozen=True):
    frames: int
    silent_frames: int
    #: samples dropped by :meth:`OutboundFrames.clear` (a barge-in)
    cleared_samples: int
    #: samples dropped because more than ``max_seconds`` were buffered
    overflow_samples: int
    buffered_samples: int


class OutboundFrames:
    """Reply audio as fixed frames for a track: ``push`` any lengths, ``next_frame`` per tick.

    A frame never mixes two generations: the end of one is padded with silence. With nothing
    buffered a frame is silence. ``clear(g)`` drops ``g``'s buffered audio and refuses any it is
    sent later (the last ``remembered`` cleared generations are kept). At most ``max_seconds``
    are buffered: past that the oldest audio is dropped (and counted), which happens only when
    nobody pulls frames; the session's playout paces its writes in real time.
    :meth:`sent_samples` is how much of a generation the frames carried (the last
    ``remembered`` generations).
    """

    def __init__(
        self,
        sample_rate: int = OPUS_RATE,
        *,
        frame_ms: int = FRAME_MS,
        max_seconds: float = JITTER_S,
        remembered: int = 64,
    ) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self.max_samples = max(self.frame_samples, round(max_seconds * sample_rate))
        self._silence = bytes(self.frame_samples * BYTES_PER_SAMPLE)
        self._queue: deque[tuple[int, bytearray]] = deque()
        self._cleared: deque[int] = deque(maxlen=remembered)
        self._sent: dict[int, int] = {}
        self._remembered = remembered
        self._buffered = 0
        self._frames = 0
        self._silent = 0
        self._dropped = 0
        self._overflow = 0

    @property
    def buffered_samples(self) -> int:
        return self._buffered

    def push(self, generation: int, pcm: bytes) -> None:
        if len(pcm) % BYTES_PER_SAMPLE:
            raise ValueError(f"PCM16 needs an even number of bytes, got {len(pcm)}")
        if not pcm or generation in self._cleared:
            return
        if self._queue and self._queue[-1][0] == generation:
            self._queue[-1][1].extend(pcm)
        else:
            self._queue.append((generation, bytearray(pcm)))
        self._buffered += len(pcm) // BYTES_PER_SAMPLE
        while self._buffered > self.max_samples:
            excess = (self._buffered - self.max_samples) * BYTES_PER_SAMPLE
            head = self._queue[0][1]
            cut = min(excess, len(head))
            del head[:cut]
            if not head:
                self._queue.popleft()
            self._buffered -= cut // BYTES_PER_SAMPLE
            self._overflow += cut // BYTES_PER_SAMPLE

    def clear(self, generation: int | None = None) -> int:
        """Drop ``generation``'s audio (every generation's when ``None``); samples dropped."""
        if generation is not None and generation not in self._cleared:
            self._cleared.append(generation)
        kept: deque[tuple[int, bytearray]] = deque()
        dropped = 0
        for gen, pcm in self._queue:
            if generation is None or gen == generation:
                dropped += len(pcm) // BYTES_PER_SAMPLE
            else:
                kept.append((gen, pcm))
        self._queue = kept
        self._buffered -= dropped
        self._dropped += dropped
        return dropped

    def next_frame(self) -> tuple[bytes, int | None]:
        """The next frame and its generation (``None``: silence)."""
        self._frames += 1
        if not self._queue:
            self._silent += 1
            return self._silence, None
        generation, pcm = self._queue[0]
        size = self.frame_samples * BYTES_PER_SAMPLE
        frame = bytes(pcm[:size])
        del pcm[:size]
        if not pcm:
            self._queue.popleft()
        samples = len(frame) // BYTES_PER_SAMPLE
        self._buffered -= samples
        if generation not in self._sent and len(self._sent) == self._remembered:
            del self._sent[next(iter(self._sent))]
        self._sent[generation] = self._sent.get(generation, 0) + samples
        if len(frame) < size:
            frame += self._silence[len(frame) :]
        return frame, generation

    def sent_samples(self, generation: int) -> int:
        """Samples of ``generation`` taken by :meth:`next_frame` (its padding not counted)."""
        return self._sent.get(generation, 0)

    def statistics(self) -> OutboundStatistics:
        return OutboundStatistics(
            self._frames, self._silent, self._dropped, self._overflow, self._buffered
        )


# -- the data channel ---------------------------------------------------------------------------


def data_channel_protocol(
    session_id: str, sample_rate: int = OPUS_RATE, *, transfer: bool = False
) -> NativeProtocol:
    """The native protocol for a data channel, already open (``session.started`` is queued);
    ``transfer``: the caller carries out transfers.

    The session's audio still goes through it, so ``audio.start``/``audio.end`` and the heard
    positions of ``interrupted`` are right; its binary frames are for the track, not the
    channel: send only the ``str`` items of :meth:`~NativeProtocol.data_to_send`.
    """
    protocol = NativeProtocol(session_id)
    message = {"type": "hello", "sample_rate": sample_rate, "transfer": transfer}
    hello = msgspec.json.encode(message).decode()
    events = protocol.receive_text(hello)
    assert protocol.format is not None, events
    return protocol
