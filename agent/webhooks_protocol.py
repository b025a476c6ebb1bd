"""Call events as webhooks send them: the messages, their signature and the retry rules.

Sans-I/O: nothing here awaits, reads a clock or draws a random number (the time and the
jitter are given); :mod:`agent.webhooks` does the sending. Each event is one ``POST`` of its
JSON body (``{"type", "id", "created_at", "data"}``) with these headers:

=============================  ==============================================================
``Voxline-Webhook-Id``         the event's id (``evt_…``): the same on every try and for
                               every endpoint, so a receiver can drop a repeat
``Voxline-Webhook-Timestamp``  when this try was signed (unix seconds)
``Voxline-Webhook-Signature``  ``v1=`` and the hex HMAC-SHA256, keyed with the endpoint's
                               secret, of ``{id}.{timestamp}.`` followed by the raw body
``Voxline-Webhook-Attempt``    1 for the first try, then 2, 3 …
=============================  ==============================================================

A receiver checks the signature over the bytes it received and refuses a timestamp far from
its clock (a replay); docs/config.md "Webhooks" has a function it can copy.

What comes of a try (:func:`next_step`):

======================================  =====================================================
the answer                              then
======================================  =====================================================
2xx                                     delivered
no answer (network error, the timeout)  again after ``backoff_s`` x 2^(try-1), jittered
408, 429, 5xx                           (between half and all of it, at most
                                        :data:`MAX_DELAY_S`), or after ``Retry-After``
                                        if that is later; after ``max_attempts`` tries:
                                        ``failed``
anything else (3xx, other 4xx)          ``rejected``: not tried again
======================================  =====================================================
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
from dataclasses import dataclass

import msgspec

from agent.records.model import CallRecord

__all__ = [
    "ATTEMPT_HEADER",
    "ID_HEADER",
    "MAX_DELAY_S",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "CallEndedEvent",
    "CallStarted",
    "CallStartedEvent",
    "Deliver",
    "Delivered",
    "Event",
    "GiveUp",
    "Retry",
    "event_type",
    "headers",
    "next_step",
    "retry_after",
    "sign",
]

ID_HEADER = "Voxline-Webhook-Id"
TIMESTAMP_HEADER = "Voxline-Webhook-Timestamp"
SIGNATURE_HEADER = "Voxline-Webhook-Signature"
ATTEMPT_HEADER = "Voxline-Webhook-Attempt"
#: the longest wait before a retry, ``Retry-After`` included
MAX_DELAY_S = 300.0
#: statuses tried again besides 5xx
RETRIED = frozenset({408, 429})


class CallStarted(msgspec.Struct, frozen=True, kw_only=True):
    """A call that has just started: its record's first fields, and who called whom where
    the transport knows (``None`` where it does not)."""

    id: str
    agent: str
    transport: str
    started_at: dt.datetime
    caller: str | None = None
    called: str | None = None


class CallStartedEvent(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="call.started"
):
    id: str
    created_at: dt.datetime
    data: CallStarted


class CallEndedEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="call.ended"):
    """A call is over: ``data`` is its record, as ``GET /v1/calls/{id}`` serves it."""

    id: str
    created_at: dt.datetime
    data: CallRecord


#: what a webhook sends; its ``type`` is its tag
Event = CallStartedEvent | CallEndedEvent


def event_type(event: Event) -> str:
    """``call.started`` or ``call.ended``."""
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def sign(secret: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``v1=`` and the hex HMAC-SHA256 of
    ``{event_id}.{timestamp}.{body}`` keyed with ``secret``."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    return "v1=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()


def headers(
    secret: bytes, event_id: str, timestamp: int, attempt: int, body: bytes
) -> dict[str, str]:
    """The headers of one try (see the module doc)."""
    return {
        "Content-Type": "application/json",
        ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, event_id, timestamp, body),
        ATTEMPT_HEADER: str(attempt),
    }


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta seconds, or an HTTP date; ``now``
    in unix seconds); ``None`` when there is none or it does not parse."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class Delivered:
    """The endpoint took the event."""


@dataclass(frozen=True)
class Retry:
    """Try again in ``delay_s``."""

    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    """Dropped: ``failed`` (every try failed) or ``rejected`` (an answer not to retry)."""

    reason: str


Deliver = Delivered | Retry | GiveUp


def next_step(
    status: int | None,
    attempt: int,
    *,
    max_attempts: int,
    backoff_s: float,
    jitter: float,
    retry_after_s: float | None = None,
) -> Deliver:
    """What follows try number ``attempt`` (1-based), answered ``status`` (``None``: no
    answer); ``jitter`` in [0, 1) picks the delay between half and all of the backoff."""
    if status is not None and 200 <= status < 300:
        return Delivered()
    if status is not None and status not in RETRIED and not 500 <= status < 600:
        return GiveUp("rejected")
    if attempt >= max_attempts:
        return GiveUp("failed")
    backoff = min(MAX_DELAY_S, backoff_s * 2.0 ** (attempt - 1))
    delay = backoff * (0.5 + jitter / 2)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_DELAY_S))
    return Retry(delay)
