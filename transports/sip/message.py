"""SIP messages (RFC 3261 §7, §20, §25): parse bytes, build bytes, never raise on peer input.

:func:`parse_message` turns one datagram (or one framed stream message) into a
:class:`SipRequest` or :class:`SipResponse`, or a :class:`ParseError` that says why and which
status a UA answers with. :class:`StreamFramer` cuts a TCP byte stream into messages by
``Content-Length``. ``bytes(message)`` serialises, writing ``Content-Length`` itself.

Rules (ids are cited by the tests):

=====  ======================================================================  ============
rule   peer input                                                              result
=====  ======================================================================  ============
M1     more than :data:`MAX_MESSAGE_SIZE` bytes, or more than                  513
       :data:`MAX_HEADERS` header fields
M2     start line that is neither ``METHOD SP URI SP SIP/2.0`` nor             400 (none
       ``SIP/2.0 SP 3DIGIT SP reason``                                         for a reply)
M3     a version other than ``SIP/2.0`` on a request                           505
M4     a header line without ``:``, or a name that is not a token              400
M5     Via, From, To, Call-ID or CSeq missing or malformed, a malformed        400
       Contact, CSeq method not the request's, CSeq number over 2**31-1,
       Max-Forwards not a number; From, To, Call-ID, CSeq, Max-Forwards or
       Content-Length more than once in a request
M6     Content-Length not a number, or more than the bytes that follow         400
M7     Content-Length less than what follows (a datagram): the rest is         accepted
       dropped (RFC 3261 §18.3)
M8     lines ending in LF alone; folded header lines (leading SP/HT);          accepted
       compact names (``i``, ``f``, ``v``...); any name case; several
       values on one line or one value per line
M9     an unknown method (any token)                                           accepted
                                                                               (the UA
                                                                               answers 501)
=====  ======================================================================  ============

A parsed message's headers keep their order and spelling; lookups are case-insensitive and
expand compact forms. Parsed values (:meth:`SipMessage.cseq`, :meth:`SipMessage.vias`,
:meth:`SipMessage.from_addr`, ...) are safe to call on anything :func:`parse_message`
returned: M5 checked them. On a message the code builds itself they raise ``ValueError`` when
the code built it wrong ("our error").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Self

import msgspec

__all__ = [
    "MAGIC_COOKIE",
    "MAX_HEADERS",
    "MAX_MESSAGE_SIZE",
    "CSeq",
    "NameAddr",
    "ParseError",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "StreamFramer",
    "Via",
    "canonical_name",
    "is_number",
    "make_response",
    "parse_message",
    "reason_phrase",
    "split_list",
]

#: largest message accepted, start line to body (a UDP datagram's limit)
MAX_MESSAGE_SIZE = 65_535
#: most header fields in one message
MAX_HEADERS = 100
MAGIC_COOKIE = "z9hG4bK"
#: fields a request carries once (RFC 3261 §7.3.1; RFC 4475's torture set): twice is a 400
_ONCE = ("From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length")

_COMPACT = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
}
_SPELLING = {
    name.lower(): name
    for name in (
        *_COMPACT.values(),
        "Call-ID",
        "CSeq",
        "Max-Forwards",
        "WWW-Authenticate",
        "Record-Route",
        "Route",
        "Allow",
        "Require",
        "Unsupported",
        "User-Agent",
        "Min-SE",
        "Min-Expires",
        "RSeq",
        "RAck",
    )
}
#: headers whose values are comma-separated lists (RFC 3261 §7.3.1)
_LIST_HEADERS = frozenset(
    ("via", "contact", "route", "record-route", "allow", "supported", "require", "unsupported")
)
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_REASONS = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    420: "Bad Extension",
    422: "Session Interval Too Small",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    513: "Message Too Large",
    603: "Decline",
}


def reason_phrase(status: int) -> str:
    """The usual reason phrase for ``status`` (``"Unknown"`` for one this table lacks)."""
    return _REASONS.get(status, "Unknown")


def is_number(text: str | bytes) -> bool:
    """Whether ``text`` is a plain decimal number: ASCII digits, at most 20 of them (``isdigit``
    alone takes ``²``, which ``int`` refuses, and 5,000 digits, which ``int`` refuses too:
    both found by bench/fuzz)."""
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def canonical_name(name: str) -> str:
    """The long form in its usual spelling: ``i`` -> ``Call-ID``, ``cseq`` -> ``CSeq``."""
    lower = name.lower()
    if lower in _COMPACT:
        return _COMPACT[lower]
    return _SPELLING.get(lower, "-".join(part.capitalize() for part in lower.split("-")))


def split_list(value: str) -> list[str]:
    """Split a header value on commas outside quotes and angle brackets."""
    parts: list[str] = []
    depth, quoted, start, i = 0, False, 0, 0
    while i < len(value):
        ch = value[i]
        if quoted and ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth = max(depth - 1, 0)
        elif not quoted and depth == 0 and ch == ",":
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return [part for part in parts if part]


def _params(text: str) -> dict[str, str]:
    """``;a=1;b`` -> ``{"a": "1", "b": ""}`` (names lower-cased, quotes kept)."""
    found: dict[str, str] = {}
    for item in text.split(";"):
        name, _, value = item.strip().partition("=")
        if name:
            found[name.strip().lower()] = value.strip()
    return found


# -- parsed header values -----------------------------------------------------------------


class Via(msgspec.Struct, frozen=True):
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport``."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str]

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")

    @classmethod
    def parse(cls, text: str) -> Via:
        match = re.match(r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+([^;]+)(.*)$", text.strip())
        if not match:
            raise ValueError(f"malformed Via: {text[:80]!r}")
        host, port = _host_port(match.group(2).strip())
        return cls(match.group(1).upper(), host, port, _params(match.group(3)))

    def __str__(self) -> str:
        sent_by = self.host if self.port is None else f"{self.host}:{self.port}"
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"SIP/2.0/{self.transport} {sent_by}{params}"


def _host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):  # IPv6 reference
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
        host = f"[{host}]"
    else:
        host, _, port_text = text.partition(":")
    if not host or any(ch.isspace() for ch in host):
        raise ValueError(f"bad host: {text[:80]!r}")
    if not port_text:
        return host.lower(), None
    if not is_number(port_text) or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port: {text[:80]!r}")
    return host.lower(), int(port_text)


class NameAddr(msgspec.Struct, frozen=True):
    """From, To, Contact: ``"Display" <uri>;tag=...`` (``params`` are the header's, not the
    URI's)."""

    uri: str
    display: str = ""
    params: dict[str, str] = {}

    @property
    def tag(self) -> str:
        return self.params.get("tag", "")

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if "<" in text:
            display, _, rest = text.partition("<")
            uri, closed, params = rest.partition(">")
            if not closed:
                raise ValueError(f"unclosed '<': {text[:80]!r}")
        else:  # addr-spec: parameters after the URI belong to the header (RFC 3261 §20.10)
            display = ""
            uri, _, params = text.partition(";")
            params = ";" + params if params else ""
        uri = uri.strip()
        if text != "*" and (not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$", uri)):
            raise ValueError(f"bad URI: {uri[:80]!r}")
        return cls(uri, display.strip().strip('"'), _params(params))

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(self.uri, self.display, {**self.params, "tag": tag})

    def __str__(self) -> str:
        display = f'"{self.display}" ' if self.display else ""
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"{display}<{self.uri}>{params}"


class CSeq(msgspec.Struct, frozen=True):
    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        number, _, method = text.strip().partition(" ")
        method = method.strip()
        if not is_number(number) or int(number) >= 2**31 or not _TOKEN.match(method):
            raise ValueError(f"bad CSeq: {text[:80]!r}")
        return cls(int(number), method)

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


# -- messages -------------------------------------------------------------------------------


class SipMessage(msgspec.Struct, frozen=True):
    """What requests and responses share: headers in order (name as written, value) and body."""

    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def get(self, name: str, default: str = "") -> str:
        """The first value of ``name`` (any case, compact or long), or ``default``."""
        values = self.get_all(name)
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, comma lists split for list headers (Via, Contact, ...)."""
        wanted = canonical_name(name).lower()
        values = [v for n, v in self.headers if canonical_name(n).lower() == wanted]
        if wanted in _LIST_HEADERS:
            return [part for value in values for part in split_list(value)]
        return values

    def has(self, name: str) -> bool:
        return bool(self.get_all(name))

    def replace(self, name: str, *values: str) -> Self:
        """A copy with every ``name`` field removed and ``values`` added where the first was
        (at the end when there was none)."""
        wanted = canonical_name(name).lower()
        out: list[tuple[str, str]] = []
        placed = False
        for n, v in self.headers:
            if canonical_name(n).lower() != wanted:
                out.append((n, v))
            elif not placed:
                out += [(canonical_name(name), value) for value in values]
                placed = True
        if not placed:
            out += [(canonical_name(name), value) for value in values]
        return msgspec.structs.replace(self, headers=tuple(out))

    @property
    def call_id(self) -> str:
        return self.get("Call-ID")

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self.get("CSeq"))

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.get_all("Via")]

    @property
    def from_addr(self) -> NameAddr:
        return NameAddr.parse(self.get("From"))

    @property
    def to_addr(self) -> NameAddr:
        return NameAddr.parse(self.get("To"))

    @property
    def contact(self) -> NameAddr | None:
        values = self.get_all("Contact")
        return NameAddr.parse(values[0]) if values else None

    def _head(self) -> str:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        lines = [self._head()]
        lines += [f"{n}: {v}" for n, v in self.headers if canonical_name(n) != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


class SipRequest(SipMessage, frozen=True):
    method: str = ""
    uri: str = ""

    @property
    def max_forwards(self) -> int:
        value = self.get("Max-Forwards", "70")
        return int(value) if is_number(value.strip()) else 70

    def _head(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"


class SipResponse(SipMessage, frozen=True):
    status: int = 0
    reason: str = ""

    def _head(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"


class ParseError(msgspec.Struct, frozen=True):
    """Why a message was refused. ``status`` is what the RFC has a UA answer (None for a
    response: responses are never answered); ``request`` is the request as far as it could be
    read, with what a reply copies. Without ``request`` no answer can be built, and the
    message is only dropped (and logged)."""

    rule: str
    reason: str
    status: int | None = None
    request: SipRequest | None = None


# -- parsing ----------------------------------------------------------------------------------

_REQUEST_LINE = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) (SIP/\d+\.\d+)$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6]\d\d) ?(.*)$")


def _split_head(data: bytes) -> tuple[bytes, bytes] | None:
    """Header block and body, split at the first empty line (CRLF or LF); None if none."""
    match = re.search(rb"\r?\n\r?\n", data)
    return (data[: match.start()], data[match.end() :]) if match else None


def _unfold(head: str) -> list[str]:
    lines: list[str] = []
    for line in re.split(r"\r?\n", head):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1].rstrip() + " " + line.strip()
        else:
            lines.append(line)
    return lines


def parse_message(data: bytes, *, stream: bool = False) -> SipRequest | SipResponse | ParseError:
    """One SIP message from ``data`` (a datagram, or one message cut by :class:`StreamFramer`
    when ``stream``: there the body must be exactly ``Content-Length`` bytes). See the rules."""
    if len(data) > MAX_MESSAGE_SIZE:
        return ParseError("M1", f"message of {len(data)} bytes", 513)
    data = data.lstrip(b"\r\n")  # RFC 3261 §7.5: CRLFs before the start line are ignored
    split = _split_head(data)
    if split is None:
        return ParseError("M2", "no empty line after the headers")
    head_bytes, body = split
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return ParseError("M2", "headers are not UTF-8")
    start, *header_lines = _unfold(head)
    version = "SIP/2.0"
    if match := _STATUS_LINE.match(start):
        message: SipRequest | SipResponse = SipResponse(
            status=int(match.group(1)), reason=match.group(2)
        )
    elif match := _REQUEST_LINE.match(start):
        message = SipRequest(method=match.group(1), uri=match.group(2))
        version = match.group(3)
    else:
        return ParseError("M2", f"bad start line: {start[:80]!r}")
    if len(header_lines) > MAX_HEADERS:
        return ParseError("M1", f"{len(header_lines)} header fields", 513)
    headers: list[tuple[str, str]] = []
    bad = ""
    for line in header_lines:
        name, colon, value = line.partition(":")
        if colon and _TOKEN.match(name.strip()):
            headers.append((name.strip(), value.strip()))
        else:
            bad = bad or line
    if bad:  # the good lines are kept, so that the 400 can still be built
        return _refuse(message, "M4", f"bad header line: {bad[:80]!r}", headers)
    message = msgspec.structs.replace(message, headers=tuple(headers))
    length_text = message.get("Content-Length", "")
    if length_text:
        if not is_number(length_text):
            return _refuse(message, "M6", f"Content-Length {length_text[:20]!r}", headers)
        length = int(length_text)
        if length > len(body) or (stream and length != len(body)):
            return _refuse(message, "M6", f"Content-Length {length}, {len(body)} bytes", headers)
        body = body[:length]  # M7
    elif stream and body:
        return _refuse(message, "M6", "no Content-Length on a stream", headers)
    message = msgspec.structs.replace(message, body=body)
    if version != "SIP/2.0":
        return _refuse(message, "M3", f"version {version}", headers, 505)
    if problem := _missing(message):
        return _refuse(message, "M5", problem, headers)
    return message


def _refuse(
    message: SipRequest | SipResponse,
    rule: str,
    reason: str,
    headers: Iterable[tuple[str, str]],
    status: int = 400,
) -> ParseError:
    if isinstance(message, SipResponse):
        return ParseError(rule, reason)  # responses are never answered
    partial = msgspec.structs.replace(message, headers=tuple(headers))
    answerable = _missing(partial, for_reply=True) is None
    return ParseError(rule, reason, status, partial if answerable else None)


def _missing(message: SipRequest | SipResponse, *, for_reply: bool = False) -> str | None:
    """What M5 finds wrong, or None. ``for_reply`` checks only what a reply copies."""
    try:
        if not message.vias:
            return "no Via"
        message.from_addr  # noqa: B018 -- parsed to check it
        message.to_addr  # noqa: B018
        if not for_reply:  # a reply does not copy the Contact
            message.contact  # noqa: B018
        if not message.call_id:
            return "no Call-ID"
        cseq = message.cseq
    except ValueError as error:
        return str(error)
    if for_reply or isinstance(message, SipResponse):
        return None
    for name in _ONCE:
        if len(message.get_all(name)) > 1:
            return f"{name} more than once"
    if cseq.method != message.method:
        return f"CSeq method {cseq.method} on a {message.method}"
    max_forwards = message.get("Max-Forwards", "70")
    if not is_number(max_forwards):
        return f"Max-Forwards {max_forwards[:20]!r}"
    return None


def make_response(
    request: SipRequest,
    status: int,
    reason: str = "",
    *,
    to_tag: str = "",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipResponse:
    """A response to ``request`` (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied,
    ``to_tag`` added to To when it has none (never on 100), then ``headers``."""
    copied: list[tuple[str, str]] = [("Via", via) for via in request.get_all("Via")]
    to = request.get("To")
    if to_tag and status != 100 and not request.to_addr.tag:
        to = str(request.to_addr.with_tag(to_tag))
    copied += [("From", request.get("From")), ("To", to)]
    copied += [("Call-ID", request.call_id), ("CSeq", request.get("CSeq"))]
    return SipResponse(
        headers=(*copied, *headers),
        body=body,
        status=status,
        reason=reason or reason_phrase(status),
    )


class StreamFramer:
    """Cuts a TCP byte stream into messages (RFC 3261 §18.3): feed any chunks, get whole
    messages (or :class:`ParseError`) in order. CRLF keep-alives between messages are
    skipped. A header block over :data:`MAX_MESSAGE_SIZE` or a bad ``Content-Length`` cannot
    be framed past: :attr:`broken` is set and the adapter closes the connection."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.broken: ParseError | None = None

    def feed(self, data: bytes) -> list[SipRequest | SipResponse | ParseError]:
        if self.broken:
            return []
        self._buffer += data
        return list(self._messages())

    def _messages(self) -> Iterator[SipRequest | SipResponse | ParseError]:
        while True:
            while self._buffer[:2] == b"\r\n":
                del self._buffer[:2]
            match = re.search(rb"\r?\n\r?\n", self._buffer)
            if match is None:
                if len(self._buffer) > MAX_MESSAGE_SIZE:
                    yield self._break(ParseError("M1", "header block too large", 513))
                return
            head = bytes(self._buffer[: match.start()])
            lengths = re.findall(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\S*)", head)
            length_text = lengths[0] if lengths else b"0"
            if not is_number(length_text) or match.end() + int(length_text) > MAX_MESSAGE_SIZE:
                yield self._break(ParseError("M6", "cannot frame: bad Content-Length", 400))
                return
            end = match.end() + int(length_text)
            if len(self._buffer) < end:
                return
            chunk = bytes(self._buffer[:end])
            del self._buffer[:end]
            yield parse_message(chunk, stream=True)

    def _break(self, error: ParseError) -> ParseError:
        self.broken = error
        self._buffer.clear()
        return error
