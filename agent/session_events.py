"""What a session tells its transport: the events, and the sink protocol that receives them.

Each transport adapter implements :class:`CallSink` in its own protocol's words (the native
JSON events, Realtime server events, Twilio media/mark/clear, a WebRTC track and data channel).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec


class UserSpeech(msgspec.Struct, frozen=True, tag="speech"):
    started: bool
    sample: int


class UserTurnStarted(msgspec.Struct, frozen=True, tag="user_turn_started"):
    """Turn-taking took the caller's speech as theirs (:class:`~agent.turn_types.StartOfTurn`):
    a turn opened while the bot was silent, or the caller took the floor over a reply. Speech
    that is not (the bot's echo, a cough, a backchannel) never gets one.

    ``sample``: where the speech began (16 kHz input samples); ``interrupts``: the reply that
    this barge-in cancels (its :class:`Interrupted` follows), ``None`` when none is.
    """

    sample: int
    interrupts: int | None = None


class UserTranscript(msgspec.Struct, frozen=True, tag="transcript"):
    text: str
    final: bool
    utterance: int
    stable: str = ""
    unstable: str = ""
    #: the language the ASR heard (an ISO 639-1 code; configured or detected)
    language: str = ""


class UserTurn(msgspec.Struct, frozen=True, tag="user_turn"):
    """The caller's turn ended (samples ``start``-``end``, 16 kHz); it is answered next
    unless the session was told not to (:attr:`SessionSettings.answer_turns`)."""

    text: str
    start: int
    end: int
    #: the turn-taking rule that ended it (:mod:`agent.turns`' table, e.g. ``"T5"``; a keyed
    #: turn: :mod:`agent.digits`' table, e.g. ``"K1"``)
    rule: str = ""
    #: keyed in, not spoken: ``text`` is the digits (DTMF)
    keypad: bool = False


class AgentText(msgspec.Struct, frozen=True, tag="agent_text"):
    generation: int
    delta: str


class Interrupted(msgspec.Struct, frozen=True, tag="interrupted"):
    generation: int
    heard_text: str
    played_ms: float
    #: the turn-taking rule that interrupted it (``""``: the client asked)
    rule: str = ""


class ReplyTruncated(msgspec.Struct, frozen=True, tag="reply_truncated"):
    """The client said it played reply ``generation`` only up to a point
    (:meth:`~agent.session_control.CallControls.truncate`): ``heard_text`` is what that
    audio said."""

    generation: int
    heard_text: str


class MarkReached(msgspec.Struct, frozen=True, tag="mark"):
    """Playout reached an SSML ``<mark name="..."/>`` of reply ``generation``, ``at_ms`` into
    its audio."""

    generation: int
    name: str
    at_ms: float


class TurnLatency(msgspec.Struct, frozen=True, tag="latency"):
    """Milliseconds per stage of one answer, from the end of the caller's speech."""

    generation: int
    stages: dict[str, float]


class CallEnded(msgspec.Struct, frozen=True, tag="call_ended"):
    reason: str


class TransferRequested(msgspec.Struct, frozen=True, tag="transfer"):
    target: str


class DigitsRequested(msgspec.Struct, frozen=True, tag="dtmf"):
    """Key ``digits`` (checked: 0-9, ``*``, ``#``, A-D) to the far end, spaced as a phone
    keys them, after the reply audio sent so far; a transport that cannot says so with
    :meth:`~agent.session_control.CallControls.dtmf_failed`. Only a :class:`DigitSink` gets
    one."""

    digits: str


class Notice(msgspec.Struct, frozen=True, tag="notice"):
    """Something the client should know that does not end the call."""

    code: str
    message: str
    #: the turn-taking rule behind it, for a turn decision (``ignored.*``)
    rule: str = ""


SessionEvent = (
    UserSpeech
    | UserTurnStarted
    | UserTranscript
    | UserTurn
    | AgentText
    | Interrupted
    | ReplyTruncated
    | MarkReached
    | TurnLatency
    | CallEnded
    | TransferRequested
    | DigitsRequested
    | Notice
)


class CallSink(Protocol):
    """The transport side of a session."""

    @property
    def output_rate(self) -> int: ...

    async def send_audio(self, generation: int, pcm: bytes) -> None: ...

    async def end_audio(self, generation: int) -> None: ...

    async def clear_audio(self, generation: int) -> int | None:
        """Barge-in: drop what the far side still buffers of ``generation``.

        Returns how many samples of it (at :attr:`output_rate`) the far side says it played,
        when it knows (Twilio marks); ``None``: what was sent counts as played.
        """
        ...

    async def send_event(self, event: SessionEvent) -> None: ...


@runtime_checkable
class DigitSink(Protocol):
    """A :class:`CallSink` whose transport keys digits: it gets ``DigitsRequested`` (and may
    still fail them). For any other sink the session fails digits at once (``unsupported``)."""

    #: True: this sink's transport keys digits
    keys_digits: bool
