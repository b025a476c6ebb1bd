"""What the dialogue decides for one user turn: replies, call events, state changes.

A :class:`DialogueDecision` is what the session acts on: speak ``replies`` in order, then carry
out ``events`` (end the call, transfer it, key digits, hand the turn to the LLM). ``changes``
lists the slots and variables set this turn (as JSON values), ``webhooks`` the calls made.

:class:`Say` and the :data:`CallAction` events are also the parts of every spoken reply
(:data:`agent.reply.ReplyPart`): a decision's replies and events are spoken as they are, and an
LLM's reply streams as ``Say`` deltas (``final=False``) and the same actions.

:class:`WebhookCall` and :class:`WebhookResult` pass between the sans-I/O conversation and
the adapter that does the HTTP request.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "CallAction",
    "DialogueDecision",
    "EndCall",
    "Event",
    "HandOff",
    "Say",
    "SendDigits",
    "Transfer",
    "WebhookCall",
    "WebhookResult",
]


class Say(msgspec.Struct, frozen=True):
    """Text to speak. ``final=False`` marks a streaming delta (more text follows: an LLM's
    reply as it comes; a decision's replies are whole); ``ssml``: ``text`` is a whole SSML
    document (``<speak>...``)."""

    text: str
    final: bool = True
    #: None: the voice's default emotion
    emotion: str | None = None
    ssml: bool = False
    #: not empty: this is the agent's fallback, said because the model failed (why: an
    #: :data:`~agent.dialogue.llm.FallbackReason`); the client hears of the failure
    fallback: str = ""


class EndCall(msgspec.Struct, frozen=True, tag="end_call"):
    """Hang up once what was said before it has been played."""

    reason: str = "agent"


class Transfer(msgspec.Struct, frozen=True, tag="transfer"):
    """Hand the call to someone else (the transport turns this into a SIP REFER, a Twilio
    ``<Dial>``, or an event to a WebSocket client)."""

    target: str


class HandOff(msgspec.Struct, frozen=True, kw_only=True, tag="handoff"):
    """Let the LLM write the reply to ``utterance``."""

    utterance: str
    note: str = ""
    #: the conversation's slots and variables, as JSON values, for the LLM's context
    values: dict[str, Any] = {}
    #: the question a flow was waiting on, to ask again after the LLM's answer
    pending: Say | None = None


class SendDigits(msgspec.Struct, frozen=True, tag="send_dtmf"):
    """Key ``digits`` to the far end once what was said before it has played (RFC 4733
    telephone events on SIP, a ``dtmf`` event to a WebSocket or WebRTC client): an IVR's
    menu, a code. The session checks them (0-9, ``*``, ``#``, A-D; at most 32)."""

    digits: str


#: what a reply does once it has played, besides speaking
CallAction = EndCall | Transfer | SendDigits
Event = EndCall | Transfer | SendDigits | HandOff


class WebhookCall(msgspec.Struct, frozen=True, kw_only=True):
    """``POST {"tool": tool, "arguments": arguments, "call_id": call_id}`` to ``url``."""

    id: int
    tool: str
    url: str
    arguments: dict[str, Any]
    headers: dict[str, str] = {}
    timeout_s: float = 5.0

    @property
    def call_id(self) -> str:
        return f"intent-{self.id}"


class WebhookResult(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    tool: str
    ok: bool
    #: HTTP status (None: no response)
    status: int | None = None
    #: the decoded JSON body (``{"text": ...}`` for another body)
    data: Any = None
    #: why it failed: ``timeout``, ``unreachable``, ``HTTP 500``, ``too large``
    error: str | None = None


class DialogueDecision(msgspec.Struct, frozen=True, kw_only=True):
    replies: tuple[Say, ...] = ()
    events: tuple[Event, ...] = ()
    #: slots and variables set this turn (JSON values; None: forgotten)
    changes: dict[str, Any] = {}
    webhooks: tuple[WebhookResult, ...] = ()
    #: the intent matched this turn and its score (None: none matched)
    intent: str | None = None
    score: float = 0.0
    #: the flow running after this turn and where it stands
    flow: str | None = None
    stage: str = "idle"
    #: False when nothing in the utterance was understood (a fallback reply)
    understood: bool = True
    #: decided on a partial transcript: a preview, nothing was committed
    early: bool = False

    @property
    def text(self) -> str:
        """All replies as one string (for logs and tests)."""
        return " ".join(reply.text for reply in self.replies)

    @property
    def ended(self) -> bool:
        return any(isinstance(event, EndCall | Transfer) for event in self.events)
