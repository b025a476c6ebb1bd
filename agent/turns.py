"""Turn-taking and barge-in: who has the floor, as a sans-I/O state machine.

Feed :meth:`TurnTaking.feed` the session's events with ``now``, the input audio position in
samples (16 kHz) when each is handled, and :meth:`TurnTaking.advance` between events (a tick);
both return the actions to take. Nothing reads a clock: given the same timestamped inputs the
machine returns the same actions however the ticks fall between them (timers fire at their
deadline, stamped with it). :meth:`TurnTaking.next_deadline` says when the next timer is due,
so a session can sleep until then instead of ticking every frame.

Inputs: VAD :class:`~pipeline.vad.events.SpeechStarted` / ``SpeechStopped``; ASR
:class:`~pipeline.asr.events.Transcript` (partials, finals), ``TranscriptDropped`` and
``TranscriptProgress`` (how far the ASR has heard when it has no new words); the
session's :class:`ReplyStarted`, :class:`PlayoutStarted`, :class:`PlayoutProgress`,
:class:`PlayoutFinished` (``played`` in samples of that generation's audio, at its own rate);
:class:`EchoEstimate`, the echo detector's verdict (:mod:`pipeline.echo`) whenever it changes;
and :class:`CommitTurn` / :class:`DiscardTurn` for clients that end or drop turns themselves.
Those inputs, the actions and :class:`TurnConfig` live in :mod:`agent.turn_types` (re-exported
here); this module is the machine.

Outputs: :class:`StartOfTurn`, :class:`EndOfTurn`, :class:`Interrupt`, :class:`ResumeBot`,
:class:`ReAnswer`, :class:`IdlePrompt`, :class:`HangUp`, :class:`UtteranceIgnored` (a user
utterance that is not a turn always says why).

State: the **bot** side is IDLE, THINKING (a reply started, no audio yet) or SPEAKING; the
**user** side is one of

- ``SILENT``    no open user turn;
- ``TURN``      a user turn is open (speaking, or paused while the end of turn is decided);
- ``OVERLAP``   the user speaks over a reply and it is not yet decided whether that is a
                barge-in (it may be a cough, a backchannel, or the bot's own voice);
- ``CHECKING``  the bot was interrupted; waiting for words to show the interruption was real;
- ``IGNORED``   the rest of a speech segment judged not to be a turn.

Rules (C is the :class:`TurnConfig`; "words" are content words, fillers like "um" excluded,
and while the bot is audible, words that mostly repeat what it just said are echo, not words):

====  ================  ===============================  ==========================================
rule  user state        input / timer                    actions -> next state
====  ================  ===============================  ==========================================
T1    SILENT            speech starts, bot IDLE          StartOfTurn -> TURN
T2    SILENT            speech starts, bot has a reply   -> OVERLAP
T3    TURN              speech stops                     pause: end of turn due at stop + C.silence
T4    TURN (paused)     final covering the stop          due at stop + C.early_silence if the text
                                                         looks complete (ends . ? !, no dangling
                                                         "and"); ``CommitTurn``: due at once
T5    TURN (paused)     due, final in (or C.final_wait   EndOfTurn(text) -> SILENT; no words:
                        passed: the partial is used)     UtteranceIgnored(no_words); a turn over
                                                         the bot's audio that only repeats it:
                                                         UtteranceIgnored(echo)
T6    TURN (paused)     due while a reply plays (held)   held; EndOfTurn when the reply finishes
T7    TURN, bot IDLE    a final ``cut`` at the ASR's     EndOfTurn(text) at the cut, StartOfTurn
                        longest utterance, with speech   -> TURN: the speech after the cut is the
                        after the cut                    next turn (OVERLAP if a reply starts
                                                         while it goes on)
B1    OVERLAP           speech lasts C.min_speech, and   barge-in (below). While the bot is
                        the bot is not audible, or echo  audible and the last EchoEstimate says
                        is not likely and the reply has  echo is likely, speech alone never
                        played C.echo_max_delay +        barges in; when the verdict turns, the
                        ECHO_JUDGE_MS (C.echo_detection  speech counts from the turn: B1 at
                        off: C.min_speech + C.echo_guard C.min_speech after it
                        while audible)
B2    OVERLAP           >= C.min_words words, and not    barge-in (mode ``speech_or_words``; with
                        a turn heard only as echo        ``speech_and_words`` B1 and B2 together;
                                                         with ``words`` B2 only)
B3    OVERLAP           speech stops, its final has      UtteranceIgnored(backchannel or no_words)
                        fewer words                      -> SILENT; the bot goes on
B4    OVERLAP           the reply finishes first         StartOfTurn -> TURN (no barge-in needed)
barge-in  reply interruptible                            StartOfTurn, Interrupt(generation, heard)
                                                         -> TURN if words were seen, else CHECKING.
                                                         An unheard answer (heard 0) is replaced:
                                                         the next EndOfTurn carries the previous
                                                         turn's text too (``replaces_previous``)
barge-in  not interruptible (greeting        StartOfTurn -> TURN, held (T6)
          with C.greeting_interruptible off, C.barge_in off)
F1    CHECKING          a word                           -> TURN (a real interruption)
F2    CHECKING          final with no words, or          false interruption: ResumeBot(generation,
                        C.false_interruption_ms passed   heard) / ReAnswer(text) / nothing, per
                        without words, as the ASR heard  C.false_interruption; UtteranceIgnored(
                        them (waiting for a pending      false_interruption) -> IGNORED / SILENT
                        final up to C.final_wait; for
                        the ASR to hear that far)
I1    IGNORED           >= C.min_words words             barge-in again (or TURN when bot IDLE)
I2    IGNORED           speech stops                     -> SILENT (its late transcripts dropped)
Q1    SILENT, bot IDLE  C.idle_timeout passes            IdlePrompt(n) for n <= C.idle_prompts,
                                                         then HangUp(idle)
Q2    any               C.max_call passes                HangUp(max_duration); then nothing
E1    any               EchoEstimate(likely)             remembered; B1's deadline follows it
====  ================  ===============================  ==========================================

Echo guard policy: without echo cancellation the bot's voice comes back through the caller's
microphone. The session's echo detector (:mod:`pipeline.echo`) compares the caller's audio with
what the bot just played and sends :class:`EchoEstimate` when its verdict changes (none yet:
not likely). While the bot is audible (PlayoutStarted until PlayoutFinished) **and echo is
likely**, speech alone does not barge in at all: what the VAD hears may be the bot itself. A
caller talking over the echo is louder than the echo can be, so the verdict turns within
about 100 ms of their onset; what the VAD heard before it was the echo, so the speech counts
from the turn and the barge-in is decided ``min_speech`` after it (a cough over the echo is not
a barge-in). Words wait as well: a turn heard only while echo was likely (``echo_only``) is the
bot's voice whatever the ASR made of it (a partial of the echo cut mid-word reads "mass" for
"message"), so it neither barges in (B2, I1) nor becomes a turn (T5: UtteranceIgnored(echo));
once the verdict turns while the bot is audible, its words count again. A turn with words of
its own before echo was found stays the caller's.
A reply that has just begun has had no time to echo: until it has played ``echo_max_delay``
plus the detector's ``ECHO_JUDGE_MS``, a "not likely" means "not heard yet", so speech alone
waits for that too (a caller who speaks in the first 0.85 s of a reply interrupts it then).
With no echo the barge-in is decided at ``min_speech``. With ``echo_detection`` off the
detector's verdicts are ignored and a fixed guard applies instead: speech alone needs
``min_speech + echo_guard`` of it whenever the bot is audible. Whatever the detector says, ASR words
count only if most of them (``echo_overlap``) are not words the bot has just said
(``PlayoutProgress.text``). On lines that echo badly, use ``barge_in_mode="speech_and_words"``
or ``"words"``: echo then never interrupts, because echo is never words of the caller's own.

Transcripts belong to a turn by position: a final "covers" a pause when its audio ends at or
after the speech stop; transcripts of audio before the end of the last closed turn are stale
and dropped. ``C.final_wait`` counts from when the stop reached turn-taking, not from its
sample: a lagging pipeline (a loaded machine) hands over the stop and its final late, and the
wait is for the final, so lag alone never turns speech into an empty turn. With no partial
either (nothing to fall back on), T5 waits ``NO_TEXT_WAITS`` times as long: the ASR sends a
final, or says why it dropped one, for every utterance, so only a lost one runs out the wait.
The same holds for F2: "no words within ``C.false_interruption_ms`` of the interruption" is
judged on what the ASR made of that audio, not on the clock. While the caller speaks, F2 waits
until a transcript (or ``TranscriptProgress``: every partial decode sends one or the other)
covers the audio up to its deadline; a lagging ASR (a loaded machine) otherwise resumed the bot
over a caller whose words were still being decoded, and cut it again when they came. Only a
lost report runs out that wait (``NO_TEXT_WAITS`` times ``C.final_wait`` more).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from agent.turn_types import (
    CommitTurn,
    DiscardTurn,
    EchoEstimate,
    EndOfTurn,
    HangUp,
    IdlePrompt,
    Interrupt,
    PlayoutFinished,
    PlayoutProgress,
    PlayoutStarted,
    ReAnswer,
    ReplyKind,
    ReplyStarted,
    ResumeBot,
    StartOfTurn,
    TurnAction,
    TurnConfig,
    TurnInput,
    UtteranceIgnored,
    content_words,
    is_echo,
    looks_complete,
)
from pipeline.asr.events import Transcript, TranscriptDropped, TranscriptProgress
from pipeline.events import PIPELINE_RATE
from pipeline.vad.events import SpeechStarted, SpeechStopped

__all__ = [
    "ECHO_JUDGE_MS",
    "NO_TEXT_WAITS",
    "BotState",
    "CommitTurn",
    "DiscardTurn",
    "EchoEstimate",
    "EndOfTurn",
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
    "TurnTaking",
    "UserState",
    "UtteranceIgnored",
    "content_words",
    "is_echo",
    "looks_complete",
]


# -- the machine ------------------------------------------------------------------------------


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
class _Reply:
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
class _Turn:
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

    @property
    def heard_stop(self) -> int:
        """When the stop was known here: its sample, or later if it was heard of late."""
        return max(self.stop, self.stop_seen)

    def text(self, *, with_partial: bool) -> str:
        parts = [self.finals[u] for u in sorted(self.finals)]
        if with_partial and self.partial is not None and self.partial[0] not in self.finals:
            parts.append(self.partial[1])
        return " ".join(p.strip() for p in parts if p.strip())


class TurnTaking:
    """One call's turn-taking; positions and ``now`` are samples at ``sample_rate``."""

    def __init__(
        self, config: TurnConfig | None = None, *, sample_rate: int = PIPELINE_RATE, start: int = 0
    ) -> None:
        self.config = config or TurnConfig()
        self.sample_rate = sample_rate
        self.now = start
        self.closed = False
        c = self.config
        self._silence = self._ms(c.end_of_turn_silence_ms)
        self._early_silence = self._ms(c.early_end_of_turn_silence_ms)
        self._final_wait = self._ms(c.final_wait_ms)
        self._min_speech = self._ms(c.barge_in_min_speech_ms)
        self._echo_guard = self._ms(c.echo_guard_ms)
        self._echo_settle = self._ms(c.echo_max_delay_ms + ECHO_JUDGE_MS)
        self._false_wait = self._ms(c.false_interruption_ms)
        self._idle = self._ms(c.idle_timeout_ms)
        self._hangup_at = start + self._ms(c.max_call_ms) if c.max_call_ms else None
        self.user = UserState.SILENT
        self._turn: _Turn | None = None
        self._reply: _Reply | None = None
        self._interrupted: _Reply | None = None
        self._carry = ""  # the text of a turn whose answer was cut unheard
        self._last_turn_text = ""
        self._seen_generation = 0
        self._last_reply_text = ""
        self._closed_until = start  # transcripts of audio before this are stale
        self._idle_at: int | None = None
        self._idle_count = 0
        self.echo_likely = False  # the echo detector's last verdict
        self._echo_ended = 0  # the input sample at which echo last stopped being likely
        self._sync_idle()

    def _ms(self, ms: int) -> int:
        return ms * self.sample_rate // 1000

    @property
    def bot(self) -> BotState:
        if self._reply is None:
            return BotState.IDLE
        return BotState.SPEAKING if self._reply.playing else BotState.THINKING

    # -- driving ------------------------------------------------------------------------------

    def feed(self, event: TurnInput, now: int) -> list[TurnAction]:
        """Handle ``event`` at ``now`` (timers due before it fire first)."""
        actions = self.advance(now)
        if self.closed:
            return actions
        actions += self._handle(event)
        actions += self._settle()
        return actions + self.advance(self.now)

    def advance(self, now: int) -> list[TurnAction]:
        """Move the clock to ``now`` (never backwards), firing the timers due by then."""
        actions: list[TurnAction] = []
        while not self.closed:
            due = self.next_deadline()
            if due is None or due > now:
                break
            self.now = max(self.now, due)
            actions += self._fire(due)
            actions += self._settle()
        self.now = max(self.now, now)
        return actions

    def next_deadline(self) -> int | None:
        """When the next timer is due (``None``: none is set)."""
        if self.closed:
            return None
        times = [
            t for t in (self._hangup_at, self._idle_at, self._turn_deadline()) if t is not None
        ]
        return min(times) if times else None

    # -- timers -------------------------------------------------------------------------------

    def _turn_deadline(self) -> int | None:
        turn = self._turn
        if turn is None:
            return None
        if self.user is UserState.TURN:
            if turn.speaking or turn.held_ready or not (self.config.end_of_turn or turn.committed):
                return None
            if not turn.covered:
                # with no text to fall back on, the final is worth waiting longer for
                wait = self._final_wait * (1 if turn.text(with_partial=True) else NO_TEXT_WAITS)
                return max(turn.stop + self._silence, turn.heard_stop) + wait
            if turn.committed:
                return self.now
            return turn.stop + (self._early_silence if turn.early else self._silence)
        if self.user is UserState.OVERLAP:
            if not turn.speaking:
                return turn.heard_stop + self._final_wait
            if turn.time_ok or self.config.barge_in_mode == "words":
                return None
            due = turn.segment_start + self._min_speech
            reply = self._reply
            if reply is None or not reply.playing:  # the bot is not audible: no echo to fear
                return due
            if not self.config.echo_detection:
                return due + self._echo_guard
            if self.echo_likely:
                return None  # echo likely: speech alone waits for the verdict to turn
            # speech heard while it was echo counts from when it stopped being; the detector
            # cannot have heard the echo of a reply that just began
            echo_ended = self._echo_ended + self._min_speech
            return max(due, echo_ended, reply.audible_at + self._echo_settle)
        if self.user is UserState.CHECKING:
            due = turn.interrupt_at + self._false_wait
            if not turn.speaking and not turn.covered:
                due = max(due, turn.heard_stop + self._final_wait)
            elif turn.speaking and turn.decoded_until < due:
                # the ASR has not yet heard the window: wait for it, not for the clock
                due += self._final_wait * NO_TEXT_WAITS
            return due
        return None

    def _fire(self, due: int) -> list[TurnAction]:
        """Run the timer due at ``due`` (the earliest; the call ends first on a tie)."""
        if self._hangup_at == due:
            self.closed = True
            return [HangUp("max_duration", self.now)]
        if self._turn_deadline() == due:
            assert self._turn is not None
            turn = self._turn
            if self.user is UserState.TURN:
                if self._reply is not None:
                    turn.held_ready = True
                    return []
                return self._end_turn()
            if self.user is UserState.OVERLAP:
                if not turn.speaking:
                    return self._ignore_overlap()
                turn.time_ok = True
                return self._maybe_barge_in("speech")
            return self._false_interruption()
        assert self._idle_at == due
        if self._idle_count < self.config.idle_prompts:
            self._idle_count += 1
            self._idle_at = self.now + self._idle
            return [IdlePrompt(self._idle_count, self.now)]
        self.closed = True
        return [HangUp("idle", self.now)]

    def _settle(self) -> list[TurnAction]:
        """After any change: a held turn ends once the reply is gone; idle timer upkeep."""
        actions: list[TurnAction] = []
        turn = self._turn
        if (
            self.user is UserState.TURN
            and turn is not None
            and turn.held_ready
            and self._reply is None
        ):
            actions += self._end_turn()
        self._sync_idle()
        return actions

    def _sync_idle(self) -> None:
        quiet = self.user is UserState.SILENT and self._reply is None and self._idle > 0
        if not quiet:
            self._idle_at = None
        elif self._idle_at is None:
            self._idle_at = self.now + self._idle

    # -- inputs -------------------------------------------------------------------------------

    def _handle(self, event: TurnInput) -> list[TurnAction]:
        match event:
            case SpeechStarted(sample=sample):
                return self._speech_started(sample)
            case SpeechStopped(sample=sample):
                return self._speech_stopped(sample)
            case Transcript() | TranscriptDropped():
                return self._transcript(event)
            case TranscriptProgress(start=start, end=end):
                if self._turn is not None and start >= self._closed_until:
                    self._turn.decoded_until = max(self._turn.decoded_until, end)
                return []
            case ReplyStarted(generation=generation, kind=kind):
                return self._reply_started(generation, kind)
            case PlayoutStarted(generation=generation):
                if self._reply is None:
                    self._reply_started(generation, "answer")  # not announced: fine
                if self._reply is not None and self._reply.generation == generation:
                    if not self._reply.playing:
                        self._reply.audible_at = self.now
                    self._reply.playing = True
                return []
            case PlayoutProgress(generation=generation, played=played, text=text):
                if self._reply is not None and self._reply.generation == generation:
                    self._reply.played = max(self._reply.played, played)
                    self._reply.text = text or self._reply.text
                return []
            case PlayoutFinished(generation=generation):
                if self._reply is not None and self._reply.generation == generation:
                    return self._reply_ended()
                return []
            case EchoEstimate(likely=likely, sample=sample):
                if self.echo_likely and not likely:
                    self._echo_ended = sample
                self.echo_likely = likely
                turn, reply = self._turn, self._reply
                # what is heard while the bot is audible follows the verdict (after it stopped,
                # the verdict only says its reference went quiet); a turn with words of its own
                # before echo was found stays the caller's
                overlapping = self.user in (UserState.OVERLAP, UserState.IGNORED)
                if turn is not None and reply is not None and reply.playing and overlapping:
                    own = self._words(turn.text(with_partial=True)) > 0
                    was = turn.echo_only
                    turn.echo_only = self._echo_trusted() and (turn.echo_only or not own)
                    if was and not turn.echo_only:  # the detector turns ~100 ms into them
                        turn.echo_until = sample - self._ms(ECHO_TURN_MS)
                return []
            case CommitTurn():
                return self._commit()
            case DiscardTurn():
                return self._discard()
        raise AssertionError(f"unhandled input {event!r}")  # pragma: no cover

    def _speech_started(self, sample: int) -> list[TurnAction]:
        turn = self._turn
        if self.user in (UserState.SILENT, UserState.IGNORED) or turn is None:
            self._turn = _Turn(start=sample, segment_start=sample)
            if self._reply is None:
                self.user = UserState.TURN
                return [StartOfTurn(sample, self.now)]
            self.user = UserState.OVERLAP
            self._turn.overlapped = self._reply.playing
            self._turn.echo_only = self._reply.playing and self._echo_trusted()
            return []
        turn.speaking = True
        turn.covered = False
        turn.held_ready = False
        turn.segment_start = sample
        if self.user is UserState.OVERLAP:
            turn.time_ok = False
            turn.overlapped = turn.overlapped or bool(self._reply and self._reply.playing)
        return []

    def _speech_stopped(self, sample: int) -> list[TurnAction]:
        turn = self._turn
        if self.user is UserState.IGNORED:
            self._close_turn(sample)
            return []
        if turn is None or self.user is UserState.SILENT or not turn.speaking:
            return []
        turn.speaking = False
        turn.stop = sample
        turn.stop_seen = self.now
        turn.covered = False
        return []

    def _transcript(self, event: Transcript | TranscriptDropped) -> list[TurnAction]:
        if event.start < self._closed_until:
            return []  # audio of a turn already closed
        final = isinstance(event, TranscriptDropped) or event.is_final
        text = "" if isinstance(event, TranscriptDropped) else event.text
        if self.user is UserState.SILENT:
            if not final or not content_words(text):
                return []
            # A final with no VAD events around it: a turn that has already paused.
            self._turn = _Turn(start=event.start, speaking=False, stop=event.end)
            self.user = UserState.TURN if self._reply is None else UserState.OVERLAP
            actions: list[TurnAction] = []
            if self.user is UserState.TURN:
                actions.append(StartOfTurn(event.start, self.now))
            return actions + self._transcript(event)
        turn = self._turn
        assert turn is not None
        turn.decoded_until = max(turn.decoded_until, event.end)
        if final:
            if turn.echo_until and isinstance(event, Transcript) and event.words:
                text = " ".join(w.word.strip() for w in event.words if w.end > turn.echo_until)
            turn.finals[event.utterance] = text
            if not turn.speaking and event.end >= turn.stop:
                turn.covered = True
                turn.early = looks_complete(turn.text(with_partial=False))
            cut = isinstance(event, Transcript) and event.cut
            after = turn.speaking or event.end < turn.stop  # speech after the cut
            if cut and after and self.user is UserState.TURN and self._reply is None:
                assert isinstance(event, Transcript)
                return self._cut_turn(turn, event)  # T7
        else:
            turn.partial = (event.utterance, text)
        words = self._words(text)
        match self.user:
            case UserState.OVERLAP if turn.echo_only:
                if turn.covered:
                    return self._ignore_overlap()
            case UserState.OVERLAP:
                min_words = self.config.barge_in_min_words
                if min_words and words >= min_words:
                    turn.words_ok = True
                    return self._maybe_barge_in("words")
                if turn.covered:
                    return self._ignore_overlap()
            case UserState.CHECKING:
                if words >= 1:
                    self.user = UserState.TURN
                elif turn.covered:
                    return self._false_interruption()
            case UserState.IGNORED if not turn.echo_only:
                min_words = self.config.barge_in_min_words
                if min_words and words >= min_words:
                    turn.words_ok = True
                    turn.time_ok = True
                    if self._reply is None:
                        self.user = UserState.TURN
                        return [StartOfTurn(turn.segment_start, self.now)]
                    self.user = UserState.OVERLAP
                    return self._maybe_barge_in("words")
            case _:
                pass
        return []

    def _echo_trusted(self) -> bool:
        """Echo likely, and the detector's verdicts count (``echo_detection``)."""
        return self.config.echo_detection and self.echo_likely

    def _words(self, text: str) -> int:
        """Content words of ``text``, none if it is the bot's own voice coming back."""
        reply = self._reply or self._interrupted
        if reply is not None and reply.text and is_echo(text, reply.text, self.config.echo_overlap):
            return 0
        return len(content_words(text))

    def _reply_started(self, generation: int, kind: ReplyKind) -> list[TurnAction]:
        if generation <= self._seen_generation:
            return []  # generations only grow: this one is stale or announced already
        self._seen_generation = generation
        interruptible = self.config.barge_in and (
            kind != "greeting" or self.config.greeting_interruptible
        )
        answer_to = self._last_turn_text if kind == "answer" else ""
        self._reply = _Reply(generation, kind, interruptible, answer_to)
        turn = self._turn
        if self.user is UserState.TURN and turn is not None and turn.after_cut and turn.speaking:
            self.user = UserState.OVERLAP  # T7: the caller talks on over the answer
        if self.user is UserState.CHECKING:
            self.user = UserState.TURN  # the session answers already; the turn is held
            self._interrupted = None
        return []

    def _reply_ended(self) -> list[TurnAction]:
        assert self._reply is not None
        self._last_reply_text = self._reply.text
        self._reply = None
        if self.user is UserState.OVERLAP:
            turn = self._turn
            assert turn is not None
            if turn.echo_only:  # the bot's own voice: not a turn, and nothing joins it
                text = turn.text(with_partial=True)
                self._ignore_rest(turn, self.now)
                return [UtteranceIgnored(text, "echo", self.now)]
            self.user = UserState.TURN
            return [StartOfTurn(turn.start, self.now)]
        return []

    def _commit(self) -> list[TurnAction]:
        turn = self._turn
        if turn is None or self.user not in (UserState.TURN, UserState.CHECKING):
            return []
        self.user = UserState.TURN
        self._interrupted = None
        turn.committed = True
        if turn.speaking:
            turn.speaking = False
            turn.stop = turn.stop_seen = self.now
        return []

    def _discard(self) -> list[TurnAction]:
        turn = self._turn
        if turn is None or self.user is UserState.SILENT:
            return []
        text = turn.text(with_partial=True)
        self._interrupted = None
        self._carry = ""
        self._ignore_rest(turn, self.now)
        return [UtteranceIgnored(text, "discarded", self.now)]

    # -- decisions ----------------------------------------------------------------------------

    def _maybe_barge_in(self, reason: Literal["speech", "words"]) -> list[TurnAction]:
        turn = self._turn
        assert turn is not None
        assert self._reply is not None
        mode = self.config.barge_in_mode
        if mode == "speech_and_words" and not (turn.time_ok and turn.words_ok):
            return []
        reply = self._reply
        actions: list[TurnAction] = [StartOfTurn(turn.start, self.now)]
        if not reply.interruptible:
            self.user = UserState.TURN
            return actions
        actions.append(Interrupt(reply.generation, reply.played, self.now, reason))
        self._last_reply_text = reply.text
        self._reply = None
        self._interrupted = reply
        if reply.played == 0 and reply.kind == "answer":
            self._carry = reply.answer_to
        if turn.words_ok:
            self.user = UserState.TURN
        else:
            self.user = UserState.CHECKING
            turn.interrupt_at = self.now
        return actions

    def _false_interruption(self) -> list[TurnAction]:
        turn = self._turn
        reply = self._interrupted
        assert turn is not None
        assert reply is not None
        actions: list[TurnAction] = []
        policy = self.config.false_interruption
        if policy == "reanswer" and reply.kind == "answer" and reply.answer_to:
            actions.append(ReAnswer(reply.generation, reply.answer_to, self.now))
        elif policy != "ignore":
            actions.append(ResumeBot(reply.generation, reply.played, self.now))
        actions.append(
            UtteranceIgnored(turn.text(with_partial=True), "false_interruption", self.now)
        )
        self._interrupted = None
        self._carry = ""
        self._ignore_rest(turn, turn.stop)
        return actions

    def _ignore_overlap(self) -> list[TurnAction]:
        turn = self._turn
        assert turn is not None
        text = turn.text(with_partial=not turn.covered)
        reason: Literal["backchannel", "no_words", "echo"] = "no_words"
        if content_words(text):
            reason = "echo" if turn.echo_only or self._words(text) == 0 else "backchannel"
        self._close_turn(turn.stop)
        return [UtteranceIgnored(text, reason, self.now)]

    def _end_turn(self) -> list[TurnAction]:
        turn = self._turn
        assert turn is not None
        text = turn.text(with_partial=not turn.covered)
        carry, self._carry = self._carry, ""
        self._interrupted = None
        self._close_turn(turn.stop)
        if not content_words(text):
            return [UtteranceIgnored(text, "no_words", self.now)]
        if turn.echo_only or (
            turn.overlapped and is_echo(text, self._last_reply_text, self.config.echo_overlap)
        ):
            return [UtteranceIgnored(text, "echo", self.now)]
        if carry:
            text = f"{carry} {text}"
        self._last_turn_text = text
        self._idle_count = 0
        early = turn.covered and turn.early and not turn.committed
        early = early and self._early_silence < self._silence
        return [EndOfTurn(text, turn.start, turn.stop, self.now, early, bool(carry))]

    def _cut_turn(self, turn: _Turn, cut: Transcript) -> list[TurnAction]:
        """T7: the ASR cut a long utterance at ``cut.end``: the turn ends there; the speech
        after it (going on, or already stopped when a lagging ASR reports the cut) is the next."""
        at = cut.end
        rest = _Turn(
            start=at,
            speaking=turn.speaking,
            segment_start=at,
            stop=turn.stop,
            stop_seen=turn.stop_seen,
            decoded_until=turn.decoded_until,
            after_cut=True,
        )
        if turn.partial is not None and turn.partial[0] > cut.utterance:
            rest.partial = turn.partial
        turn.speaking = False
        turn.stop = at
        turn.covered = True
        turn.early = False
        actions = self._end_turn()
        self._turn = rest
        self.user = UserState.TURN
        return [*actions, StartOfTurn(at, self.now)]

    def _ignore_rest(self, turn: _Turn, until: int) -> None:
        """Drop ``turn``: while its speech goes on the rest is IGNORED, else it is closed."""
        if not turn.speaking:
            self._close_turn(until)
            return
        self._turn = _Turn(
            start=turn.start, segment_start=turn.segment_start, echo_only=turn.echo_only
        )
        self.user = UserState.IGNORED

    def _close_turn(self, until: int) -> None:
        self._closed_until = max(self._closed_until, until)
        self._turn = None
        self.user = UserState.SILENT
