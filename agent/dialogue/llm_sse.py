"""Server-sent events, decoded sans-I/O (the wire format of a streamed chat completion).

:class:`SSEDecoder` takes the response body as it arrives (:meth:`~SSEDecoder.feed`, bytes
split anywhere, even inside a UTF-8 character or a ``\\r\\n``) and returns the complete
:class:`SSEEvent` objects; :meth:`~SSEDecoder.end` says the body ended and returns whatever
was still pending. It follows the WHATWG rules for the fields an LLM server uses: lines end
with ``\\r\\n``, ``\\n`` or ``\\r``; a blank line dispatches the event; ``data`` lines join with
``\\n``; a line starting with ``:`` is a comment (keep-alive pings); one space after the colon
is dropped; a field without a colon has an empty value; unknown fields are ignored; an event
with no ``data`` line is not dispatched. Bytes that are not UTF-8 raise
:class:`~pipeline.errors.ModelError` (the server broke the protocol, not the caller).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from pipeline.errors import ModelError


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Bytes of an ``text/event-stream`` body in, :class:`SSEEvent` objects out."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._buffer = ""
        #: a ``\r`` ended the previous feed: a ``\n`` starting the next one belongs to it
        self._after_cr = False
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._ended = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add body bytes; return the events they complete."""
        if self._ended:
            raise RuntimeError("feed() after end()")
        try:
            text = self._utf8.decode(chunk)
        except UnicodeDecodeError as error:
            raise ModelError(f"LLM stream is not UTF-8: {error.reason}") from error
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        if text:
            self._after_cr = text.endswith("\r")
        self._buffer += text
        return self._lines()

    def end(self) -> list[SSEEvent]:
        """The body ended. An event not closed by a blank line is discarded, as the spec says."""
        if self._ended:
            return []
        self._ended = True
        try:
            self._buffer += self._utf8.decode(b"", final=True)
        except UnicodeDecodeError as error:
            raise ModelError("LLM stream ends inside a UTF-8 character") from error
        return []

    def _lines(self) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        buffer = self._buffer
        start = 0
        n = len(buffer)
        while start < n:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, following = lf, lf + 1
            elif cr + 1 < n:
                end, following = cr, cr + (2 if buffer[cr + 1] == "\n" else 1)
            else:
                end, following = cr, cr + 1  # a lone "\r" at the end: feed() skips its "\n"
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = following
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> SSEEvent | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return SSEEvent("\n".join(data), event or "message", self._id)
