"""Transferring a Twilio call, sans-I/O: the REST request that redirects it, and its outcome.

A media stream cannot transfer its call; Twilio's REST API can. Updating the call with new
TwiML (``POST {base}/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``, form field
``Twiml``) replaces what it runs: ``<Response><Dial>TARGET</Dial></Response>`` dials the
target, and Twilio stops the stream (its ``stop`` message), which ends the session's side.
The request authenticates with HTTP basic auth, the account SID and its auth token.

:func:`dial_request` builds the request (or says why it cannot be made);
:func:`dial_outcome` reads the response's status. The adapter (:mod:`agent.twilio_call`) sends
it with httpx.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from dataclasses import dataclass
from xml.sax.saxutils import escape

__all__ = ["DialRequest", "dial_outcome", "dial_request", "dial_twiml"]

#: what a Twilio SID looks like (two letters, 32 hex digits); anything else is not sent
_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")


@dataclass(frozen=True)
class DialRequest:
    """A ``POST`` to make: where, its headers, its form body."""

    url: str
    headers: dict[str, str]
    body: bytes


def dial_twiml(target: str) -> str:
    """The TwiML that dials ``target`` (a number, a SIP URI or a client name), XML-escaped."""
    return f"<Response><Dial>{escape(target)}</Dial></Response>"


def dial_request(
    base_url: str, account_sid: str, auth_token: str, call_sid: str, target: str
) -> DialRequest | str:
    """The request that transfers call ``call_sid`` to ``target``; or why there is none
    (``no_credentials``, ``no_call``: the stream's ``start`` named no call)."""
    if not account_sid or not auth_token:
        return "no_credentials"
    if not _SID.match(account_sid):
        return "bad_account_sid"
    if not _SID.match(call_sid):
        return "no_call"
    path = f"/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json"
    credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
    body = urllib.parse.urlencode({"Twiml": dial_twiml(target)}).encode()
    headers = {
        "authorization": f"Basic {credentials}",
        "content-type": "application/x-www-form-urlencoded",
    }
    return DialRequest(base_url.rstrip("/") + path, headers, body)


def dial_outcome(status: int) -> str:
    """``""`` when the call was updated (a 2xx), else the failure's reason (``HTTP 404``)."""
    return "" if 200 <= status < 300 else f"HTTP {status}"
