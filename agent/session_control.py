"""What a session is made of and what steers it: its models and settings, and the typed
control inputs its one control loop dispatches.

Everything that changes a call's state goes through the session's control channel, in order
with the ASR's transcripts and VAD events: a client's requests (:class:`TypedTurn`,
:class:`InterruptReply`, :class:`TruncateReply`, :class:`NewTurnConfig`, a transfer's
:class:`TransferResult`, a key's :class:`Keypress`, digits it could not key:
:class:`DigitsFailed`), and the session's own news about replies and playout
(``ReplyStarted``, ``PlayoutStarted``, ``PlayoutProgress``, :class:`ReplyHeard`), echo
(``EchoEstimate``) and a transfer's deadline (:class:`TransferExpired`). Each travels as a
:class:`Signal`; :data:`Control` is their union, and the loop matches on it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import anyio
import msgspec

from agent.digits import check_digit
from agent.reply import ReplyVoice
from agent.turn_asker import TurnEndRunner
from agent.turns import (
    EchoEstimate,
    EndOfTurnScore,
    PlayoutProgress,
    PlayoutStarted,
    ReplyStarted,
    TurnConfig,
    TurnTaking,
)
from pipeline.asr.decoder import DecodeOptions
from pipeline.asr.stage import AsrRunner
from pipeline.asr.utterance import TrackerConfig
from pipeline.channels import Channel
from pipeline.events import Event, Flush
from pipeline.playout import Heard
from pipeline.vad.detector import DetectorConfig
from pipeline.vad.stage import VadRunner
from voices.engine import TTSEngine


@dataclass
class Models:
    """The shared model executors a session uses."""

    vad: VadRunner
    asr: AsrRunner
    tts: TTSEngine
    #: the end-of-turn model (turns.end_of_turn_detector ``model``); none: the silence rule
    end_of_turn: TurnEndRunner | None = None


@dataclass
class SessionSettings:
    turns: TurnConfig = field(default_factory=TurnConfig)
    vad: DetectorConfig = field(
        default_factory=lambda: DetectorConfig.from_seconds(min_silence=0.3)
    )
    asr: DecodeOptions = field(default_factory=DecodeOptions)
    #: Whisper's translate task on each final too (an interpreter's ``engine: whisper``): the
    #: final transcripts carry their English translation
    translation: DecodeOptions | None = None
    #: which audio the ASR decodes: ``max_utterance`` is the longest utterance (longer speech
    #: is cut into turns, with ``Notice("utterance_cut")``)
    utterance: TrackerConfig = field(default_factory=TrackerConfig)
    #: the longest reply text (:mod:`agent.reply_limit`; ``None``: unbounded); a cut reply
    #: sends ``Notice("reply_cut")``
    max_reply_chars: int | None = None
    #: seconds of reply audio synthesised ahead of playout
    max_ahead: float = 1.5
    #: reply audio sent ahead of real time (the far side's jitter buffer)
    lead: float = 0.06
    #: say the greeting when the call starts
    greeting: bool = True
    #: answer each turn (off: turns end with ``UserTurn`` and wait for ``respond_now``)
    answer_turns: bool = True
    #: how replies speak (the agent file's voice: :func:`agent.models.reply_voice`) until
    #: ``Session.set_voice``; the default is the engine's own voice as it is
    voice: ReplyVoice = field(default_factory=ReplyVoice)
    #: seconds a transfer may wait for its outcome (:meth:`CallControls.transfer_result`)
    #: before it has failed with reason ``timeout``
    transfer_timeout: float = 15.0


class TypedTurn(msgspec.Struct, frozen=True):
    """A whole user turn typed instead of spoken: stop the bot and answer it."""

    text: str


class InterruptReply(msgspec.Struct, frozen=True):
    """Stop reply ``generation`` (``None``: the one playing) at the client's request."""

    generation: int | None = None


class TruncateReply(msgspec.Struct, frozen=True):
    """The client played ``generation`` up to sample ``played`` (output rate) and no further."""

    generation: int
    played: int


class NewTurnConfig(msgspec.Struct, frozen=True):
    config: TurnConfig


class ReplyHeard(msgspec.Struct, frozen=True):
    """A reply played to its end (the playout's report)."""

    report: Heard


class TransferResult(msgspec.Struct, frozen=True):
    """The transport's outcome of the transfer the session asked for
    (:class:`~agent.session_events.TransferRequested`)."""

    ok: bool
    reason: str = ""


class DigitsFailed(msgspec.Struct, frozen=True):
    """The transport could not key the digits the session asked for
    (:class:`~agent.session_events.DigitsRequested`): why."""

    reason: str


class TransferExpired(msgspec.Struct, frozen=True):
    """Transfer ``number`` had no outcome within the session's ``transfer_timeout``."""

    number: int


class Keypress(msgspec.Struct, frozen=True):
    """A keypad digit (DTMF), checked: collected into a digit turn (:mod:`agent.digits`)."""

    digit: str


class EndNow(msgspec.Struct, frozen=True):
    """End the call now, for ``reason`` (the other party of a room left)."""

    reason: str


class Farewell(msgspec.Struct, frozen=True):
    """Say ``text`` (stopping the reply being spoken), then hang up for ``reason`` once it has
    played: the server going away (:mod:`agent.drain`)."""

    text: str
    reason: str


class Wake(msgspec.Struct, frozen=True):
    """Nothing to do but look at what the session queued without waiting (a reply started)."""


Control = (
    TypedTurn
    | InterruptReply
    | TruncateReply
    | NewTurnConfig
    | ReplyHeard
    | TransferResult
    | TransferExpired
    | DigitsFailed
    | Keypress
    | EndNow
    | Farewell
    | Wake
    | EchoEstimate
    | EndOfTurnScore
    | ReplyStarted
    | PlayoutStarted
    | PlayoutProgress
)


class Signal(Event, frozen=True, kw_only=True, tag="signal"):
    """A control input for the session's control loop, in order with the ASR's events."""

    value: Control


class CallControls:
    """A session's requests from its transport: each is a control input queued in order with
    the ASR's events (the caller waits while the control loop is 256 inputs behind)."""

    id: str
    inbound: Channel
    turns: TurnTaking
    voice: ReplyVoice
    _control: Channel | None = None

    def set_voice(self, voice: ReplyVoice) -> None:
        """Replies started from now on speak with ``voice`` (one in progress keeps its own)."""
        self.voice = voice

    async def user_text(self, text: str) -> None:
        """A whole user turn typed instead of spoken: stop the bot and answer it."""
        await self._signal(TypedTurn(text))

    async def interrupt(self, generation: int | None = None) -> None:
        """Stop the current reply, or ``generation`` (a button, a key, a cancelled response)."""
        await self._signal(InterruptReply(generation))

    async def commit_turn(self) -> None:
        """End the caller's turn at this point of its audio (push-to-talk): a
        :class:`~pipeline.events.Flush` behind the audio so far makes the VAD close its speech
        and the ASR finalise it at once; when it reaches the control loop the turn is
        committed (with no speech in it: ``Notice("ignored.no_words")``)."""
        if self._control is not None and not self.inbound.closed:
            await self.inbound.send(Flush(session_id=self.id))

    async def end_call(self, reason: str) -> None:
        """End the call now: ``session.ended`` with ``reason`` goes out, the transport closes."""
        await self._signal(EndNow(reason))

    async def farewell(self, text: str, reason: str) -> None:
        """Say ``text`` now, then end the call for ``reason`` (``session.ended``) once it has
        played; a barge-in stops the goodbye, and the call goes on."""
        await self._signal(Farewell(text, reason))

    async def discard_turn(self) -> None:
        """The client dropped the caller's open turn and the audio it sent so far: a
        :class:`~pipeline.events.Flush` with ``discard`` behind that audio makes the VAD and the
        ASR forget it (no transcript of it comes after); when it reaches the control loop,
        turn-taking drops the open turn (``DiscardTurn``)."""
        if self._control is not None and not self.inbound.closed:
            await self.inbound.send(Flush(session_id=self.id, commit=False, discard=True))

    async def truncate(self, generation: int, played: int) -> None:
        """The client played ``generation`` up to sample ``played`` (at the output rate) and
        no further: the responder hears of the text up to there."""
        await self._signal(TruncateReply(generation, played))

    async def transfer_result(self, ok: bool, reason: str = "") -> None:
        """The outcome of the transfer the session asked for (``TransferRequested``): ``ok``,
        the call ends (``"transferred"``); else the agent says it could not, and the call goes
        on (``reason``: why, for the dialogue and the logs). No transfer waiting: ignored."""
        await self._signal(TransferResult(ok, reason))

    async def dtmf_failed(self, reason: str) -> None:
        """The digits the session asked to key (``DigitsRequested``) could not be sent
        (``reason``: why, for the client and the logs): ``Notice("dtmf_failed")``, and the
        call goes on."""
        await self._signal(DigitsFailed(reason))

    async def dtmf(self, digit: str) -> None:
        """A key the caller pressed (0-9, ``*``, ``#``, A-D; any other raises
        :class:`~pipeline.errors.ProtocolError`): digits make a user turn once complete
        (:mod:`agent.digits`); a key stops the reply being spoken, unless the dialogue's
        ``digits.interrupts`` is off."""
        await self._signal(Keypress(check_digit(digit)))

    async def set_turns(self, config: TurnConfig) -> None:
        """New turn-taking settings mid-call (an open user turn is dropped)."""
        if self._control is None:
            self.turns = TurnTaking(config)
        await self._signal(NewTurnConfig(config))

    async def _signal(self, value: Control) -> None:
        """Queue a control input for the control loop, in order with transcripts."""
        if self._control is not None:
            with contextlib.suppress(anyio.ClosedResourceError):  # the call is over
                await self._control.send(Signal(session_id=self.id, value=value))


@runtime_checkable
class Previewing(Protocol):
    """A responder that looks at partial transcripts (the intent engine's early match)."""

    async def preview(self, text: str) -> None: ...


class Previews:
    """Partial transcripts to a :class:`Previewing` responder, one at a time, newest first: a
    partial that comes while one is previewed replaces any waiting (at most one waits)."""

    def __init__(self, responder: Previewing) -> None:
        self.responder = responder
        self._newest: str | None = None
        self._ready = anyio.Event()

    def offer(self, text: str) -> None:
        self._newest = text
        self._ready.set()

    def drop(self) -> None:
        """The utterance is final: a partial of it still waiting is not previewed."""
        self._newest = None

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            text, self._newest = self._newest, None
            if text:
                await self.responder.preview(text)
