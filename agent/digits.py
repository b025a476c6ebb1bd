"""Keypad digits (DTMF) into user turns: a sans-I/O collector, and the turn it makes.

A transport hands each key press to :meth:`~agent.session_control.CallControls.dtmf` (RFC 4733
events and SIP INFO on SIP, Twilio's ``dtmf`` events, the native protocol's and the WebRTC
data channel's ``dtmf`` message). The session feeds them to its :class:`DigitCollector` with
``now`` (the caller-audio position in samples, as turn-taking counts) and the
:class:`KeypadRule` its responder gives for the moment (:class:`KeypadAware`: what the
dialogue expects, e.g. a 6-digit code, or a menu of one-key choices). The collector never
reads a clock: :attr:`DigitCollector.deadline` says when its inter-digit timeout falls due and
:meth:`DigitCollector.expire` fires it.

=====  =================================================  =====================================
rule   input                                              result
=====  =================================================  =====================================
K1     the terminator, with digits before it              a turn of those digits (the
                                                          terminator is not part of them)
K2     the terminator alone                               a turn of the terminator itself (a
                                                          menu may offer ``#`` as a key)
K3     a digit that makes ``max_length`` digits (or       a turn of the digits so far
       :data:`MAX_DIGITS`)
K4     no key for ``timeout_ms`` after the last digit     a turn of the digits so far
       (:meth:`DigitCollector.expire`)
K5     any other digit                                    collected; the timeout starts again
=====  =================================================  =====================================

A complete digit string is a user turn. The session answers it with ``respond`` like a spoken
turn, its text a :class:`Keypad` (a ``str`` that reads ``"[keypad] 1234"``, what an LLM is
shown, and carries :attr:`Keypad.digits` for a dialogue that reads keys).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

from agent.config.dialogue import MAX_DIGITS, DigitsConfig
from pipeline.errors import ProtocolError
from pipeline.events import PIPELINE_RATE
from transports.rtp.dtmf import EVENTS

__all__ = [
    "KEYPAD_PREFIX",
    "KEYS",
    "MAX_DIGITS",
    "DigitCollector",
    "KeyedTurn",
    "Keypad",
    "KeypadAware",
    "KeypadRule",
    "check_digit",
    "check_digits",
    "keypad_rule",
]

#: the sixteen DTMF keys (RFC 4733 §3.2): 0-9, ``*``, ``#`` and A-D
KEYS = EVENTS
#: how :class:`Keypad` text starts (what an LLM sees before the digits)
KEYPAD_PREFIX = "[keypad] "


def check_digit(digit: str) -> str:
    """``digit`` as a key (``a``-``d`` upper-cased); any other raises
    :class:`~pipeline.errors.ProtocolError`."""
    key = digit.upper()
    if len(key) != 1 or key not in KEYS:
        raise ProtocolError(f"not a DTMF digit: {digit!r} (keys are 0-9, *, # and A-D)")
    return key


def check_digits(digits: str) -> str:
    """``digits`` for the agent to key (``send_dtmf``), upper-cased: 1 to :data:`MAX_DIGITS`
    keys, else ``ValueError`` says why (the config checks its literals; this checks what a
    template or the LLM filled in)."""
    keys = digits.upper()
    if not 1 <= len(keys) <= MAX_DIGITS:
        raise ValueError(f"{len(keys)} digits (1 to {MAX_DIGITS} may be sent)")
    if any(key not in KEYS for key in keys):
        raise ValueError("not DTMF digits (keys are 0-9, *, # and A-D)")
    return keys


class KeypadRule(msgspec.Struct, frozen=True, kw_only=True):
    """When a string of digits is complete, as the dialogue expects it now."""

    #: ends a string early (not part of it); ``""``: none
    terminator: str = "#"
    #: the longest pause between two digits before the string counts as complete
    timeout_ms: int = 3000
    #: complete at this many digits (a code's length, the longest menu key; ``None``: only
    #: the terminator, the timeout or :data:`MAX_DIGITS` complete a string)
    max_length: int | None = None
    #: a key press stops the reply being spoken (a barge-in by key, as IVRs do)
    interrupts: bool = True

    @classmethod
    def of(cls, config: DigitsConfig) -> KeypadRule:
        """The agent file's ``dialogue.digits`` (nothing asked for: no length)."""
        return cls(
            terminator=config.terminator,
            timeout_ms=config.timeout_ms,
            interrupts=config.interrupts,
        )


@runtime_checkable
class KeypadAware(Protocol):
    """A responder that says how the digits it expects now are collected."""

    def keypad(self) -> KeypadRule: ...


def keypad_rule(responder: object) -> KeypadRule:
    """The rule ``responder`` gives (the defaults when it gives none)."""
    return responder.keypad() if isinstance(responder, KeypadAware) else KeypadRule()


class KeyedTurn(msgspec.Struct, frozen=True):
    """A complete digit string: the keys, the caller-audio samples of its first and last key,
    and the rule (above) that completed it."""

    digits: str
    start: int
    end: int
    rule: str


class Keypad(str):
    """A user turn keyed in: its text is ``"[keypad] " + digits``; :attr:`digits` the keys."""

    digits: str

    def __new__(cls, digits: str) -> Keypad:
        text = super().__new__(cls, KEYPAD_PREFIX + digits)
        text.digits = digits
        return text


class DigitCollector:
    """One call's keypad; positions and ``now`` are samples at ``sample_rate``."""

    def __init__(self, sample_rate: int = PIPELINE_RATE) -> None:
        self.sample_rate = sample_rate
        self._digits = ""
        self._start = 0
        self._last = 0
        self._timeout = 0  # samples, of the rule the last digit came with

    @property
    def digits(self) -> str:
        """The digits collected so far (no turn yet)."""
        return self._digits

    @property
    def deadline(self) -> int | None:
        """When the digits so far time out (K4); ``None``: nothing is being collected."""
        return self._last + self._timeout if self._digits else None

    def press(self, key: str, now: int, rule: KeypadRule) -> KeyedTurn | None:
        """Key ``key`` (checked with :func:`check_digit`) at ``now``; the turn it completes."""
        key = check_digit(key)
        if rule.terminator and key == rule.terminator:
            if not self._digits:
                return KeyedTurn(key, now, now, "K2")
            return self._complete(now, "K1")
        if not self._digits:
            self._start = now
        self._digits += key
        self._last = now
        self._timeout = rule.timeout_ms * self.sample_rate // 1000
        if len(self._digits) >= min(rule.max_length or MAX_DIGITS, MAX_DIGITS):
            return self._complete(now, "K3")
        return None  # K5

    def expire(self, now: int) -> KeyedTurn | None:
        """The digits so far, once their timeout has passed by ``now`` (K4)."""
        deadline = self.deadline
        if deadline is None or now < deadline:
            return None
        return self._complete(deadline, "K4")

    def _complete(self, end: int, rule: str) -> KeyedTurn:
        turn = KeyedTurn(self._digits, self._start, end, rule)
        self._digits = ""
        return turn
