"""Message bodies the user agent reads besides SDP: DTMF by SIP INFO and ``message/sipfrag``.

=========================  ==============================================================
body                       read as
=========================  ==============================================================
application/dtmf-relay     the ``Signal=`` line's value (``Signal=5\\r\\nDuration=160``)
application/dtmf           the whole body (``5``)
message/sipfrag            the status of its first line (``SIP/2.0 200 OK`` -> 200), as a
                           REFER's NOTIFY carries it (RFC 3515 §2.4.5)
=========================  ==============================================================

Neither raises on peer input: what cannot be read is ``""`` or ``None``.
"""

from __future__ import annotations

import re

__all__ = ["DTMF_DIGITS", "dtmf_digit", "sipfrag_status"]

DTMF_DIGITS = "0123456789*#ABCD"
_SIPFRAG = re.compile(rb"^\s*SIP/2\.0\s+([1-6]\d\d)(?:\s|$)")


def dtmf_digit(content_type: str, body: bytes) -> str:
    """What an INFO body says the digit is, upper-cased (``""``: it says none; a valid one
    is a single character of :data:`DTMF_DIGITS`)."""
    text = body.decode("utf-8", "replace").strip()
    digit = ""
    if content_type == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            digit = value.strip() if name.strip().lower() == "signal" else digit
    elif content_type == "application/dtmf":
        digit = text
    return digit.upper()


def sipfrag_status(body: bytes) -> int | None:
    """The status line's code of a ``message/sipfrag`` body, or None when it has none."""
    match = _SIPFRAG.match(body)
    return int(match.group(1)) if match else None
