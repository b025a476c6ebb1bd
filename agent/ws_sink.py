"""The half of a WebSocket transport's ``CallSink`` that is the same for every protocol that
streams bot audio per generation (native ``/v1/stream``, Twilio Media Streams).

:class:`ProtocolSink` hands the session's audio to the sans-I/O protocol and, after each thing
the session says, moves what the protocol queued into the call's :class:`~agent.ws_io.Outbox`,
in order. A transport's sink adds only its protocol's words: the rate replies are made at
(:attr:`~ProtocolSink.output_rate`), what a barge-in clears (``clear_audio``) and what each
session event becomes (``send_event``). The Realtime sink keeps its own audio methods: a
Realtime reply is a response, opened and closed around its audio.
"""

from __future__ import annotations

import abc
from typing import Generic, Protocol, TypeVar

from agent.ws_io import Outbox, SansIOProtocol, Sender


class StreamingProtocol(SansIOProtocol, Protocol):
    """A sans-I/O protocol that streams bot audio (PCM16 at ``sample_rate``) per generation."""

    def send_audio(self, generation: int, pcm: bytes, sample_rate: int, /) -> None: ...

    def end_audio(self, generation: int, /) -> None: ...


P = TypeVar("P", bound=StreamingProtocol)


class ProtocolSink(abc.ABC, Generic[P]):
    """Bot audio through ``protocol``, and its queued messages flushed to ``outgoing``."""

    def __init__(self, protocol: P, outgoing: Sender) -> None:
        self.protocol = protocol
        self._outbox = Outbox(protocol, outgoing)

    @property
    @abc.abstractmethod
    def output_rate(self) -> int:
        """The rate the session makes replies at for this protocol."""

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        self.protocol.send_audio(generation, pcm, self.output_rate)
        await self.flush()

    async def end_audio(self, generation: int) -> None:
        self.protocol.end_audio(generation)
        await self.flush()

    async def flush(self) -> None:
        await self._outbox.flush()
