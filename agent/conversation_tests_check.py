"""What a conversation test's turn produced, and how it differs from what was expected.

:class:`Outcome` is one turn as the runner saw it; :func:`check_turn` lists each
:class:`Mismatch` between it and the turn's :class:`~agent.conversation_tests.Expect` (an
empty list: the turn passed). Plain synchronous code: the tests feed it outcomes directly.
"""

from __future__ import annotations

from typing import Any

import msgspec

from agent.conversation_tests import Expect, ReplyCheck, ToolCallCheck

__all__ = ["Mismatch", "Outcome", "ToolCallSeen", "check_reply", "check_turn"]


class ToolCallSeen(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook request as it went over HTTP."""

    tool: str
    arguments: dict[str, Any] = {}


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """One turn as it went."""

    #: what the dialogue was given: the caller's line, its transcript, or ``[keypad] 123``
    heard: str
    #: None: no intent matched (or an engine without intents)
    intent: str | None = None
    #: the conversation's slots and variables after the turn (JSON values)
    values: dict[str, Any] = {}
    #: those set this turn (None: forgotten)
    changes: dict[str, Any] = {}
    #: everything said, as plain text
    reply: str = ""
    tool_calls: list[ToolCallSeen] = []
    #: the end_call reason, when the turn ended the call
    ended: str | None = None
    #: the transfer target, when the turn transferred the call
    transfer: str | None = None


class Mismatch(msgspec.Struct, frozen=True, kw_only=True):
    """One field that differs: ``expected`` and ``got`` as the report shows them."""

    field: str
    expected: str
    got: str


def check_reply(check: ReplyCheck | None, reply: str, field: str = "reply") -> list[Mismatch]:
    if check is None or check.matches(reply):
        return []
    return [Mismatch(field=field, expected=check.describe(), got=repr(reply))]


def check_turn(expect: Expect, got: Outcome) -> list[Mismatch]:
    """Every expectation of ``expect`` that ``got`` does not meet."""
    found: list[Mismatch] = []
    if expect.intent is not msgspec.UNSET and expect.intent != got.intent:
        found.append(Mismatch(field="intent", expected=_show(expect.intent), got=_show(got.intent)))
    for name, value in expect.slots.items():
        actual = got.values.get(name)
        if not _same(value, actual):
            found.append(Mismatch(field=f"slots.{name}", expected=_show(value), got=_show(actual)))
    found += check_reply(expect.reply, got.reply)
    if expect.tool_calls is not None and not _calls_match(expect.tool_calls, got.tool_calls):
        found.append(
            Mismatch(
                field="tool_calls",
                expected=_show([msgspec.to_builtins(call) for call in expect.tool_calls]),
                got=_show([msgspec.to_builtins(call) for call in got.tool_calls]),
            )
        )
    ends = expect.ends
    if ends is not None:
        over = got.ended is not None or got.transfer is not None
        if isinstance(ends, bool) and ends != over:
            want = "the call ends" if ends else "the call goes on"
            found.append(Mismatch(field="ends", expected=want, got=_ending(got)))
        elif isinstance(ends, str) and ends != got.ended:
            found.append(Mismatch(field="ends", expected=f"end_call {ends!r}", got=_ending(got)))
    if expect.transfer is not None and expect.transfer != got.transfer:
        found.append(
            Mismatch(
                field="transfer", expected=f"transfer to {expect.transfer!r}", got=_ending(got)
            )
        )
    return found


def _calls_match(expected: list[ToolCallCheck], got: list[ToolCallSeen]) -> bool:
    if len(expected) != len(got):
        return False
    for want, call in zip(expected, got, strict=True):
        if want.tool != call.tool:
            return False
        for name, value in want.arguments.items():
            if not _same(value, call.arguments.get(name)):
                return False
    return True


def _same(expected: Any, got: Any) -> bool:
    """Equal as JSON values; a number also matches its spelling as a string ("4" and 4)."""
    if expected == got:
        return True
    if isinstance(expected, bool) or isinstance(got, bool):
        return False
    if isinstance(expected, int | float) and isinstance(got, str):
        return str(expected) == got
    if isinstance(got, int | float) and isinstance(expected, str):
        return str(got) == expected
    return False


def _ending(got: Outcome) -> str:
    if got.transfer is not None:
        return f"transfer to {got.transfer!r}"
    if got.ended is not None:
        return f"end_call {got.ended!r}"
    return "the call goes on"


def _show(value: Any) -> str:
    if value is None:
        return "none"
    return msgspec.json.encode(value).decode()
