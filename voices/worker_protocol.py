"""The pipe protocol between Voxline and a synthesis worker process.

Each message is a msgpack-encoded tagged :mod:`msgspec` struct behind a 4-byte big-endian length.
Voxline writes requests on the worker's stdin and reads replies from its stdout; stderr is for
logs only.

::

    worker                               Voxline
      | <------------------- (process start)
      | --- Ready(sample_rate, ...) ---->   voice loaded and warmed up
      | <-- Synthesize(id, segments) ---
      | --- Chunk(id, chunk) ----------->   one per synthesized sentence (or pause)
      | <-- Cancel(id) -----------------    optional: stop request ``id`` early
      | --- Done(id, chunks, stopped) -->   the last message of every request ...
      | --- Failed(id, reason) --------->   ... or this one, when synthesis raised
      | <-- (stdin closed) -------------    the worker exits
      | --- Fatal(reason) -------------->   before exiting on an error it cannot survive

The worker handles one request at a time, in order. A ``Cancel`` for a request that already
ended is ignored. Replies for a request always come in the order shown.
"""

from __future__ import annotations

import struct
from typing import IO, Literal

import msgspec

from voices.engine import SpeechChunk, SpeechSegment

#: the largest message either side accepts (a long sentence of audio is well under 1 MiB)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_LENGTH = struct.Struct(">I")


class Synthesize(msgspec.Struct, frozen=True, tag="synthesize"):
    id: int
    segments: tuple[SpeechSegment, ...]


class Cancel(msgspec.Struct, frozen=True, tag="cancel"):
    id: int


class Ready(msgspec.Struct, frozen=True, tag="ready"):
    sample_rate: int
    voice: str
    #: "phonemes": word timings from the model's phoneme durations; "estimated": spread evenly
    alignment: Literal["phonemes", "estimated"]


class Chunk(msgspec.Struct, frozen=True, tag="chunk"):
    id: int
    chunk: SpeechChunk


class Done(msgspec.Struct, frozen=True, tag="done"):
    id: int
    chunks: int
    #: the request was cancelled before all of it was synthesized
    stopped: bool = False


class Failed(msgspec.Struct, frozen=True, tag="failed"):
    id: int
    reason: str


class Fatal(msgspec.Struct, frozen=True, tag="fatal"):
    reason: str


Request = Synthesize | Cancel
Reply = Ready | Chunk | Done | Failed | Fatal

_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(Request)
_reply_decoder = msgspec.msgpack.Decoder(Reply)


def encode(message: Request | Reply) -> bytes:
    """``message`` framed for the pipe."""
    body = _encoder.encode(message)
    return _LENGTH.pack(len(body)) + body


def _read_body(stream: IO[bytes]) -> bytes | None:
    header = stream.read(_LENGTH.size)
    if not header:
        return None
    if len(header) < _LENGTH.size:
        raise EOFError("the pipe closed inside a message header")
    (size,) = _LENGTH.unpack(header)
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {size} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    body = stream.read(size)
    if len(body) < size:
        raise EOFError("the pipe closed inside a message")
    return body


def read_request(stream: IO[bytes]) -> Request | None:
    """The next request from a blocking binary stream; ``None`` at a clean end of stream."""
    body = _read_body(stream)
    return None if body is None else _request_decoder.decode(body)


def read_reply(stream: IO[bytes]) -> Reply | None:
    """The next reply from a blocking binary stream; ``None`` at a clean end of stream."""
    body = _read_body(stream)
    return None if body is None else _reply_decoder.decode(body)
