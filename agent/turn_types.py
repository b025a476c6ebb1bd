"""Turn-taking's vocabulary: its settings, the inputs it is fed and the actions it decides.

Plain frozen structs (and the text rules the machine applies to transcripts), kept apart from
the state machine in :mod:`agent.turns`, which re-exports every name here. Every action names
the rule of the machine's table that decided it (``rule``).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from agent.bounds import Milliseconds
from pipeline.asr.events import Transcript, TranscriptDropped, TranscriptProgress
from pipeline.vad.events import SpeechPaused, SpeechStarted, SpeechStopped

__all__ = [
    "FILLERS",
    "AskEndOfTurn",
    "CommitTurn",
    "DiscardTurn",
    "EchoEstimate",
    "EndOfTurn",
    "EndOfTurnScore",
    "EndSpeech",
    "HangUp",
    "IdlePrompt",
    "Interrupt",
    "PlayoutFinished",
    "PlayoutProgress",
    "PlayoutStarted",
    "ReAnswer",
    "ReplyKind",
    "ReplyStarted",
    "ResumeBot",
    "StartOfTurn",
    "TurnAction",
    "TurnConfig",
    "TurnInput",
    "UtteranceIgnored",
    "content_words",
    "is_echo",
    "looks_complete",
]


class TurnConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Turn-taking and barge-in knobs, idle callers and the call's length; durations in ms.

    The one definition of these settings: the agent file's ``turns`` section
    (:class:`agent.config.schema.TurnsConfig`, keys documented in docs/config.md) is this
    struct and what only the session uses (``idle_prompt``). The bounds are what a file may
    say, checked where settings are decoded (config files, ``msgspec.convert``); code that
    builds a config (the realtime endpoint's ``turn_detection``) may go past them. What
    ``__post_init__`` checks (nothing negative, the overlap a share, the rules between fields)
    holds however a config is made.
    """

    #: end turns on silence (off: only the client's commit, :class:`CommitTurn`, ends one)
    end_of_turn: bool = True
    #: silence after speech that ends the user's turn
    end_of_turn_silence_ms: Annotated[int, msgspec.Meta(ge=50, le=10_000)] = 600
    #: the silence that ends a turn whose final transcript already looks complete
    early_end_of_turn_silence_ms: Milliseconds = 250
    #: how long after the silence to wait for a late final transcript before using the partial
    final_wait_ms: Milliseconds = 1500
    #: a final still late after final_wait: end the turn on its partial; off: wait for the
    #: final (NO_TEXT_WAITS times as long), as an interpreter translating with Whisper must,
    #: since only a final carries the translation
    partial_fallback: bool = True
    #: how a pause is judged: ``silence`` (the durations above), or ``model``: the end-of-turn
    #: model (smart-turn v3, ``profile.turn_model``) hears the caller's first short pause:
    #: done, the turn ends at once; not done, it waits not_done_silence_ms; no answer in time
    #: (a slow or failed model), the silence rule decides
    end_of_turn_detector: Literal["silence", "model"] = "silence"
    #: the model's probability of "done" from which the caller is done
    end_of_turn_threshold: Annotated[float, msgspec.Meta(gt=0.0, lt=1.0)] = 0.5
    #: the silence that ends a turn the model says is not done (the longest any pause waits)
    not_done_silence_ms: Annotated[int, msgspec.Meta(ge=50, le=10_000)] = 2000
    #: the user may interrupt the agent
    barge_in: bool = True
    #: what makes a barge-in: enough speech or enough words, both, or words only
    barge_in_mode: Literal["speech_or_words", "speech_and_words", "words"] = "speech_or_words"
    #: speech this long over the agent interrupts it
    barge_in_min_speech_ms: Milliseconds = 300
    #: this many transcribed words over the agent interrupt it (0: the words rule is off)
    barge_in_min_words: Annotated[int, msgspec.Meta(ge=0, le=20)] = 2
    #: with echo_detection off: extra speech needed whenever the agent is audible (its echo
    #: may be what VAD hears)
    echo_guard_ms: Milliseconds = 200
    #: detect the agent's voice in the caller's audio: while it is there, speech alone does
    #: not interrupt the agent (words do); off: the fixed echo_guard_ms instead ...
    echo_detection: bool = True
    #: ... searching echo delays up to this (network round trip + client buffering) ...
    echo_max_delay_ms: Annotated[int, msgspec.Meta(ge=0, le=2000)] = 500
    #: ... and the share of an utterance's words found in the agent's recent reply that makes
    #: it echo
    echo_overlap: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.8
    #: an interruption that brings no word within this is false ...
    false_interruption_ms: Milliseconds = 1500
    #: ... and then the agent resumes its reply, answers again, or stays silent
    false_interruption: Literal["resume", "reanswer", "ignore"] = "resume"
    greeting_interruptible: bool = True
    #: silence (nobody speaking, no reply) this long before an idle prompt (0: never)
    idle_timeout_ms: Milliseconds = 8000
    #: idle prompts before hanging up on a silent caller
    idle_prompts: Annotated[int, msgspec.Meta(ge=0, le=20)] = 1
    #: the longest call (0: unlimited)
    max_call_ms: Annotated[int, msgspec.Meta(ge=0, le=86_400_000)] = 30 * 60 * 1000

    def __post_init__(self) -> None:
        durations = (
            self.end_of_turn_silence_ms,
            self.early_end_of_turn_silence_ms,
            self.final_wait_ms,
            self.barge_in_min_speech_ms,
            self.echo_guard_ms,
            self.echo_max_delay_ms,
            self.false_interruption_ms,
            self.idle_timeout_ms,
            self.max_call_ms,
            self.not_done_silence_ms,
        )
        if min(durations) < 0 or self.barge_in_min_words < 0 or self.idle_prompts < 0:
            raise ValueError("durations and counts must not be negative")
        if not 0.0 < self.echo_overlap <= 1.0:
            raise ValueError("echo_overlap must be in (0, 1]")
        if not 0.0 < self.end_of_turn_threshold < 1.0:
            raise ValueError("end_of_turn_threshold must be in (0, 1)")
        model = self.end_of_turn_detector == "model"
        if model and self.not_done_silence_ms < self.end_of_turn_silence_ms:
            raise ValueError("not_done_silence_ms must not be shorter than end_of_turn_silence_ms")
        if self.early_end_of_turn_silence_ms > self.end_of_turn_silence_ms:
            raise ValueError("early_end_of_turn_silence_ms must not exceed end_of_turn_silence_ms")
        if self.barge_in_mode != "speech_or_words" and self.barge_in_min_words == 0:
            raise ValueError(f"barge_in_mode {self.barge_in_mode!r} needs barge_in_min_words >= 1")


# -- inputs -----------------------------------------------------------------------------------


ReplyKind = Literal["answer", "greeting", "prompt", "resume"]


class ReplyStarted(msgspec.Struct, frozen=True):
    """The session started reply ``generation`` (an answer to the last turn, the greeting, an
    idle prompt, or a resumed reply). Feed it as soon as the reply starts. Generation ids
    only grow (:class:`~pipeline.generations.Generations`): an old id is ignored."""

    generation: int
    kind: ReplyKind = "answer"


class PlayoutStarted(msgspec.Struct, frozen=True):
    """The first audio of ``generation`` is playing: the bot is audible."""

    generation: int


class PlayoutProgress(msgspec.Struct, frozen=True):
    """``played`` samples of ``generation`` have played; ``text`` is what they said, if known:
    the reply's text up to the word playing now, never text synthesised ahead of playout (the
    caller cannot echo what they have not heard)."""

    generation: int
    played: int
    text: str = ""


class PlayoutFinished(msgspec.Struct, frozen=True):
    """``generation`` has stopped playing, all of it (or produced no audio at all)."""

    generation: int
    played: int = 0


class EchoEstimate(msgspec.Struct, frozen=True):
    """The echo detector's verdict from input sample ``sample`` on: is the caller's audio the
    bot's own voice coming back (``likely``)? Sent when it changes."""

    likely: bool
    sample: int = 0


class EndOfTurnScore(msgspec.Struct, frozen=True):
    """The end-of-turn model's answer to :class:`AskEndOfTurn` about the pause at ``pause``:
    how likely the caller is done (0 to 1)."""

    pause: int
    probability: float


class CommitTurn(msgspec.Struct, frozen=True):
    """End the open user turn as soon as its final transcript is in."""


class DiscardTurn(msgspec.Struct, frozen=True):
    """Drop the open user turn (a client cleared its input)."""


TurnInput = (
    SpeechStarted
    | SpeechStopped
    | Transcript
    | TranscriptDropped
    | TranscriptProgress
    | ReplyStarted
    | PlayoutStarted
    | PlayoutProgress
    | PlayoutFinished
    | EchoEstimate
    | EndOfTurnScore
    | CommitTurn
    | DiscardTurn
    | SpeechPaused
)


# -- actions ----------------------------------------------------------------------------------


class _Action(msgspec.Struct, frozen=True, kw_only=True):
    """What every action carries: ``rule``, the id of the rule in :mod:`agent.turns`' table
    that decided it (``"T5"``; ``""`` for one made by hand).

    ``rule`` says why, not what: equality and hashing leave it out, so two actions that say
    the same thing are equal whichever rule decided them (tests of the rules assert
    ``action.rule`` itself).
    """

    rule: str = ""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Action)
        return _content(self) == _content(other)

    def __hash__(self) -> int:
        return hash((type(self), _content(self)))


def _content(action: _Action) -> tuple[object, ...]:
    return tuple(getattr(action, name) for name in action.__struct_fields__ if name != "rule")


class StartOfTurn(_Action, frozen=True):
    """The caller has the floor; their speech began at ``start``."""

    start: int
    at: int


class EndOfTurn(_Action, frozen=True):
    """The caller finished a turn: answer ``text``.

    ``replaces_previous``: the previous turn's answer was cut before a sample of it played, so
    ``text`` holds that turn's text too and replaces it in the dialogue.
    """

    text: str
    start: int
    end: int
    at: int
    early: bool = False
    replaces_previous: bool = False


class Interrupt(_Action, frozen=True):
    """Barge-in: cancel ``generation``, clear its playout; ``heard`` samples of it played."""

    generation: int
    heard: int
    at: int
    reason: Literal["speech", "words"]


class ResumeBot(_Action, frozen=True):
    """A false interruption: say the rest of ``generation`` from sample ``heard`` again."""

    generation: int
    heard: int
    at: int


class ReAnswer(_Action, frozen=True):
    """A false interruption: answer ``text`` (the last user turn) afresh."""

    generation: int
    text: str
    at: int


class AskEndOfTurn(_Action, frozen=True):
    """Ask the end-of-turn model about the caller's speech from ``start`` up to now (silent
    since ``pause``); its answer comes back as :class:`EndOfTurnScore` (one about an older
    pause is ignored)."""

    start: int
    pause: int
    at: int


class EndSpeech(_Action, frozen=True):
    """The caller is done: the VAD ends their speech at ``pause`` now (if they are still
    silent since then), rather than after its minimum silence; with ``until``, once it has
    heard the silence up to that sample (the early end at a pause, rule P1)."""

    pause: int
    at: int
    until: int = 0


class IdlePrompt(_Action, frozen=True):
    """The caller has been quiet: say prompt number ``count`` (1, 2, ...)."""

    count: int
    at: int


class HangUp(_Action, frozen=True):
    """End the call: the caller stayed silent (``idle``), or the call reached its length."""

    reason: Literal["idle", "max_duration"]
    at: int


class UtteranceIgnored(_Action, frozen=True):
    """Caller speech that did not make a turn, and why."""

    text: str
    reason: Literal["no_words", "backchannel", "echo", "false_interruption", "discarded"]
    at: int


TurnAction = (
    StartOfTurn
    | EndOfTurn
    | Interrupt
    | ResumeBot
    | ReAnswer
    | IdlePrompt
    | HangUp
    | UtteranceIgnored
    | AskEndOfTurn
    | EndSpeech
)


# -- text rules -------------------------------------------------------------------------------

_WORD = re.compile(r"[\w']+")
FILLERS = frozenset({"um", "uh", "uhm", "umm", "er", "erm", "ah", "hm", "hmm", "mm", "mhm", "huh"})
_DANGLING = frozenset(
    {"and", "but", "or", "so", "because", "the", "a", "an", "to", "of", "for", "with", "if"}
    | {"that", "my", "your", "is", "are", "was", "i", "um", "uh", "like"}
)


def content_words(text: str) -> list[str]:
    """The words of ``text``, lower-cased, fillers left out."""
    return [w for w in _WORD.findall(text.lower()) if w not in FILLERS]


def looks_complete(text: str) -> bool:
    """True when ``text`` ends like a finished sentence (``. ? !``, no trailing "and ...")."""
    stripped = text.rstrip()
    if not stripped or stripped.endswith(("...", "…")) or stripped[-1] not in ".?!":
        return False
    words = _WORD.findall(stripped.lower())
    return bool(words) and words[-1] not in _DANGLING


def is_echo(text: str, bot_text: str, overlap: float = 0.8) -> bool:
    """True when at least ``overlap`` of ``text``'s words are words of ``bot_text``."""
    words = content_words(text)
    spoken = set(_WORD.findall(bot_text.lower()))
    if not words or not spoken:
        return False
    return sum(w in spoken for w in words) >= overlap * len(words)
