"""Turn-taking's state: who has the floor, the caller's speech being decided, the bot's reply.

:class:`Floor` is all of one call's turn-taking state; :class:`Given` is the input in hand, as
the rules are asked about it. :class:`agent.turns.TurnTaking` records
what each input says into it; the rules of :mod:`agent.turn_rules` read it and decide. The few
state changes that several rules share (closing a turn, ignoring the rest of one) are here too;
nothing here decides. Positions and ``now`` are input samples at ``sample_rate``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from agent.turn_types import ReplyKind, TurnConfig, content_words, is_echo
from pipeline.asr.events import Transcript, TranscriptDropped

__all__ = [
    "ECHO_JUDGE_MS",
    "ECHO_TURN_MS",
    "NO_TEXT_WAITS",
    "BotState",
    "Floor",
    "Given",
    "On",
    "Reply",
    "Turn",
    "UserState",
]

#: how long after a caller's onset over the echo the detector's verdict turns (80-120 ms
#: measured): what a final says before that is the echo's
ECHO_TURN_MS = 150
#: how many ``final_wait`` a paused turn with no text at all waits for its final
NO_TEXT_WAITS = 4
#: how long the echo detector needs to call echo likely once the echo arrives (measured with
#: the bot's speech coming back 40, 150 and 400 ms later at -6 to -20 dB: median 220 ms, at
#: most 340, also with the reply's frames sent up to 10 ms off schedule)
ECHO_JUDGE_MS = 350


class UserState(enum.Enum):
    SILENT = "silent"
    TURN = "turn"
    OVERLAP = "overlap"
    CHECKING = "checking"
    IGNORED = "ignored"


class BotState(enum.Enum):
    IDLE = "idle"
    THINKING = "thinking"
    SPEAKING = "speaking"


@dataclass
class Reply:
    """The bot's reply in progress (or the one just interrupted)."""

    generation: int
    kind: ReplyKind
    interruptible: bool
    answer_to: str  # the user text an answer replies to
    playing: bool = False
    #: ``now`` when its audio started playing
    audible_at: int = 0
    played: int = 0
    text: str = ""


@dataclass
class Turn:
    """The caller's speech being decided: one turn, a candidate barge-in, or a check."""

    start: int
    speaking: bool = True
    segment_start: int = 0
    stop: int = 0
    #: ``now`` when the stop was heard of (later than ``stop`` when the pipeline lags)
    stop_seen: int = 0
    covered: bool = False
    finals: dict[int, str] = field(default_factory=dict)
    partial: tuple[int, str] | None = None
    committed: bool = False
    held_ready: bool = False
    early: bool = False
    overlapped: bool = False
    time_ok: bool = False
    words_ok: bool = False
    interrupt_at: int = 0
    #: the end of the audio the ASR has reported on (transcripts and progress)
    decoded_until: int = 0
    #: all of it heard while the bot was audible and its echo likely: the bot's own voice
    echo_only: bool = False
    #: it began as echo and the caller was heard over it from here: a final's words that end
    #: before this are the echo's
    echo_until: int = 0
    #: the speech going on after a cut (T7): it talks over the answer to the turn before
    after_cut: bool = False
    #: the pause the end-of-turn model was asked about (M1), and its answer (M2: done or
    #: not); both forgotten when the caller speaks on or the pause turns out to be another
    asked: int | None = None
    done: bool | None = None
    #: the pause the VAD announced in the speech going on (its ``SpeechPaused``), while the
    #: silence rule decides: P1 may end the speech there early; forgotten once EndSpeech is
    #: sent, and when the caller speaks on or the speech stops
    pause: int | None = None

    @property
    def heard_stop(self) -> int:
        """When the stop was known here: its sample, or later if it was heard of late."""
        return max(self.stop, self.stop_seen)

    def text(self, *, with_partial: bool) -> str:
        parts = [self.finals[u] for u in sorted(self.finals)]
        if with_partial and self.partial is not None and self.partial[0] not in self.finals:
            parts.append(self.partial[1])
        return " ".join(p.strip() for p in parts if p.strip())


class Floor:
    """One call's turn-taking state, and its settings converted to samples.

    ``turn`` is ``None`` exactly when ``user`` is SILENT.
    """

    def __init__(self, config: TurnConfig, sample_rate: int, start: int) -> None:
        self.config = config
        self.sample_rate = sample_rate
        self.now = start
        self.closed = False
        c = config
        self.silence = self.ms(c.end_of_turn_silence_ms)
        self.early_silence = self.ms(c.early_end_of_turn_silence_ms)
        self.final_wait = self.ms(c.final_wait_ms)
        self.min_speech = self.ms(c.barge_in_min_speech_ms)
        self.echo_guard = self.ms(c.echo_guard_ms)
        self.echo_settle = self.ms(c.echo_max_delay_ms + ECHO_JUDGE_MS)
        self.false_wait = self.ms(c.false_interruption_ms)
        self.not_done_silence = self.ms(c.not_done_silence_ms)
        self.idle = self.ms(c.idle_timeout_ms)
        self.hangup_at = start + self.ms(c.max_call_ms) if c.max_call_ms else None
        self.user = UserState.SILENT
        self.turn: Turn | None = None
        self.reply: Reply | None = None
        self.interrupted: Reply | None = None
        self.carry = ""  # the text of a turn whose answer was cut unheard
        self.last_turn_text = ""
        self.seen_generation = 0
        self.last_reply_text = ""
        self.closed_until = start  # transcripts of audio before this are stale
        self.idle_at: int | None = None
        self.idle_count = 0
        self.echo_likely = False  # the echo detector's last verdict
        self.echo_ended = 0  # the input sample at which echo last stopped being likely
        self.sync_idle()

    def ms(self, ms: int) -> int:
        return ms * self.sample_rate // 1000

    @property
    def bot(self) -> BotState:
        if self.reply is None:
            return BotState.IDLE
        return BotState.SPEAKING if self.reply.playing else BotState.THINKING

    @property
    def open_turn(self) -> Turn:
        """The turn of a state other than SILENT (which has none)."""
        assert self.turn is not None, self.user
        return self.turn

    def echo_trusted(self) -> bool:
        """Echo likely, and the detector's verdicts count (``echo_detection``)."""
        return self.config.echo_detection and self.echo_likely

    def words(self, text: str) -> int:
        """Content words of ``text``, none if it is the bot's own voice coming back."""
        reply = self.reply or self.interrupted
        if reply is not None and reply.text and is_echo(text, reply.text, self.config.echo_overlap):
            return 0
        return len(content_words(text))

    def ignore_rest(self, turn: Turn, until: int) -> None:
        """Drop ``turn``: while its speech goes on the rest is IGNORED, else it is closed."""
        if not turn.speaking:
            self.close_turn(until)
            return
        self.turn = Turn(
            start=turn.start, segment_start=turn.segment_start, echo_only=turn.echo_only
        )
        self.user = UserState.IGNORED

    def close_turn(self, until: int) -> None:
        self.closed_until = max(self.closed_until, until)
        self.turn = None
        self.user = UserState.SILENT

    def sync_idle(self) -> None:
        """Idle timer upkeep: it runs while nobody speaks and no reply is on (Q1)."""
        quiet = self.user is UserState.SILENT and self.reply is None and self.idle > 0
        if not quiet:
            self.idle_at = None
        elif self.idle_at is None:
            self.idle_at = self.now + self.idle


class On(enum.Enum):
    """What a rule answers: an input, a timer, or the end of any step (``SETTLED``)."""

    SPEECH_STARTED = "speech_started"
    SPEECH_STOPPED = "speech_stopped"
    SPEECH_PAUSED = "speech_paused"  # the VAD's first short silence inside speech
    SCORE = "score"  # the end-of-turn model's answer
    TRANSCRIPT = "transcript"  # a partial, a final, or a dropped final
    REPLY_STARTED = "reply_started"
    REPLY_FINISHED = "reply_finished"
    ECHO = "echo"  # the echo detector's verdict
    COMMIT = "commit"
    DISCARD = "discard"
    TIMER = "timer"
    SETTLED = "settled"  # after every input and timer


@dataclass(frozen=True, slots=True)
class Given:
    """The input a rule is asked about, as the machine made it out."""

    on: On
    #: the input's position: a speech start or stop, an echo verdict; a timer: when it was due
    at: int = 0
    #: a transcript: its text (a final's from where the caller was heard over the echo)
    text: str = ""
    final: bool = False
    #: a transcript: its content words that are the caller's own (not the bot's echo)
    words: int = 0
    transcript: Transcript | TranscriptDropped | None = None
    #: the end-of-turn model's probability that the caller is done
    score: float = 0.0
