"""Turn-taking and barge-in: who has the floor, as a sans-I/O state machine.

Feed :meth:`TurnTaking.feed` the session's events with ``now``, the input audio position in
samples (16 kHz) when each is handled, and :meth:`TurnTaking.advance` between events (a tick);
both return the actions to take. Nothing reads a clock: given the same timestamped inputs the
machine returns the same actions however the ticks fall between them (timers fire at their
deadline, stamped with it). :meth:`TurnTaking.next_deadline` says when the next timer is due,
so a session can sleep until then instead of ticking every frame.

Inputs: VAD :class:`~pipeline.vad.events.SpeechStarted` / ``SpeechStopped`` /
``SpeechPaused``; the end-of-turn model's :class:`EndOfTurnScore`; ASR
:class:`~pipeline.asr.events.Transcript` (partials, finals), ``TranscriptDropped`` and
``TranscriptProgress`` (how far the ASR has heard when it has no new words); the
session's :class:`ReplyStarted`, :class:`PlayoutStarted`, :class:`PlayoutProgress`,
:class:`PlayoutFinished` (``played`` in samples of that generation's audio, at its own rate);
:class:`EchoEstimate`, the echo detector's verdict (:mod:`pipeline.echo`) whenever it changes;
and :class:`CommitTurn` / :class:`DiscardTurn` for clients that end or drop turns themselves.
Those inputs, the actions and :class:`TurnConfig` live in :mod:`agent.turn_types` (re-exported
here), the state in :mod:`agent.turn_state`, the rules below as data in :mod:`agent.turn_rules`;
this module drives them: it records what each input says, then asks the rules what to do.

Outputs: :class:`StartOfTurn`, :class:`EndOfTurn`, :class:`Interrupt`, :class:`ResumeBot`,
:class:`ReAnswer`, :class:`IdlePrompt`, :class:`HangUp`, :class:`UtteranceIgnored` (a user
utterance that is not a turn always says why); :class:`AskEndOfTurn` and :class:`EndSpeech`
for the session to carry to the end-of-turn model and the VAD. Each names the rule below that
decided it (``action.rule``, e.g. ``"T5"``).

State: the **bot** side is IDLE, THINKING (a reply started, no audio yet) or SPEAKING; the
**user** side is one of

- ``SILENT``    no open user turn;
- ``TURN``      a user turn is open (speaking, or paused while the end of turn is decided);
- ``OVERLAP``   the user speaks over a reply and it is not yet decided whether that is a
                barge-in (it may be a cough, a backchannel, or the bot's own voice);
- ``CHECKING``  the bot was interrupted; waiting for words to show the interruption was real;
- ``IGNORED``   the rest of a speech segment judged not to be a turn.

Rules (C is the :class:`TurnConfig`; "words" are content words, fillers like "um" excluded,
and while the bot is audible, words that mostly repeat what it just said are echo, not words).
They are data, :data:`agent.turn_rules.RULES`, in this order: for each input and each timer the
rules for it are tried in turn and the first that holds decides; its actions carry its id, and
the decision is logged with it (logger ``voxline.turns``, debug). A row that says when
something is due (T3, T4, E1) is also in the due time of the timer rows it sets (T5, T6, B1).
The tests check that this table and the data name the same rules in the same order.

====  ================  ===============================  ==========================================
rule  user state        input / timer                    actions -> next state
====  ================  ===============================  ==========================================
Q2    any               C.max_call passes                HangUp(max_duration); then nothing (first:
                                                         it wins a tie with any other timer)
T1    SILENT            speech starts (IGNORED too), or  StartOfTurn -> TURN
                        a final with words and no VAD
                        events around it; bot IDLE
T2    SILENT            the same, bot has a reply        -> OVERLAP
T3    TURN, OVERLAP,    speech stops                     pause: end of turn due at stop + C.silence
      CHECKING          speech starts again              not paused (OVERLAP: B1 counts from here)
T4    TURN (paused)     final covering the stop          due at stop + C.early_silence if the text
                                                         looks complete (ends . ? !, no dangling
                                                         "and"; before the stop: P1);
                                                         ``CommitTurn`` (also CHECKING):
                                                         due at once -> TURN
T5    TURN (paused)     due, final in (or C.final_wait   EndOfTurn(text) -> SILENT; no words:
                        passed: the partial is used;     UtteranceIgnored(no_words); a turn over
                        C.partial_fallback off: as if
                        there were no partial)
                                                         the bot's audio that only repeats it:
                                                         UtteranceIgnored(echo)
T6    TURN (paused)     due while a reply plays (held)   held; EndOfTurn when the reply finishes
T7    TURN, bot IDLE    a final ``cut`` at the ASR's     EndOfTurn(text) at the cut, StartOfTurn
                        longest utterance, with speech   -> TURN: the speech after the cut is the
                        after the cut                    next turn (OVERLAP if a reply starts
                                                         while it goes on)
T8    any but SILENT    ``DiscardTurn``                  UtteranceIgnored(discarded) -> IGNORED
                                                         while the speech goes on, else SILENT
M1    TURN (speaking)   ``SpeechPaused`` (the VAD's      AskEndOfTurn(start, pause): the model
                        first 100 ms of silence), with   hears the turn so far; speech going on
                        C.end_of_turn_detector model     (T3) or another stop forgets it
M2    TURN              EndOfTurnScore of that pause     done (>= C.end_of_turn_threshold): due
                                                         at the stop, at once (EndSpeech first if
                                                         the VAD is still confirming it); not
                                                         done: at stop + C.not_done_silence, over
                                                         T4's; no answer: T4 decides
P1    TURN (speaking)   ``SpeechPaused``, pauses judged  the pause is noted (a newer one replaces
                        by silence (not the model's),    it: the caller spoke on after the last)
                        C.early_silence < C.silence
      TURN (speaking)   due at pause + C.early_silence,  EndSpeech(pause): the VAD ends the speech
                        once the ASR has heard past the  there if still silent since (else the
                        pause and the text so far looks  turn goes on); its stop and the final
                        complete (T4's check); text that follow, and T4 ends the turn on them at
                        comes later: at once             once (the final too must look complete)
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
                        fewer words (or is C.final_wait  -> SILENT; the bot goes on
                        late)
B4    OVERLAP           the reply finishes first         StartOfTurn -> TURN (no barge-in needed);
                                                         a turn heard only as echo:
                                                         UtteranceIgnored(echo) -> IGNORED / SILENT
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
F3    CHECKING          a reply starts (the session      -> TURN, held (T6)
                        answers already)
I1    IGNORED           >= C.min_words words             barge-in again (or TURN when bot IDLE)
I2    IGNORED           speech stops                     -> SILENT (its late transcripts dropped)
Q1    SILENT, bot IDLE  C.idle_timeout passes            IdlePrompt(n) for n <= C.idle_prompts,
                                                         then HangUp(idle)
E1    OVERLAP, IGNORED  EchoEstimate while the bot is    the turn is heard only as echo
                        audible (any state: the verdict  (``echo_only``) while echo is likely and
                        is remembered; B1's deadline     it has no words of its own; when that
                        follows it)                      ends, a final's words before are echo
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

Early end at a pause (P1): the VAD confirms a stop only after its own ``min_silence`` (300 ms
in the default agent, counted in 32 ms frames: 320), so T4's ``C.early_silence`` (250) counted
from that stop could never act before it. The VAD announces the pause first (``SpeechPaused``,
100 ms in), and the ASR decodes the speech so far then (its speculative final, sent as a
partial). When that text looks complete, P1 ends the speech at the pause once
``C.early_silence`` has passed, with ``EndSpeech`` as M2 does: the VAD ends it once it has
heard that much silence (``until``: the clock runs on while a client's audio stalls) if the
silence still began there (speech resumed before the deadline keeps the speech going, and the
VAD's next pause or stop replaces this one), the ASR takes its speculative decode as the final,
and all three agree that the speech ended at the pause. The VAD never reports speech resuming
inside its own silence run, so that check is the VAD's, not this machine's.

Transcripts belong to a turn by position: a final "covers" a pause when its audio ends at or
after the speech stop; transcripts of audio before the end of the last closed turn are stale
and dropped. ``C.final_wait`` counts from when the stop reached turn-taking, not from its
sample: a lagging pipeline (a loaded machine) hands over the stop and its final late, and the
wait is for the final, so lag alone never turns speech into an empty turn. With no partial
either (nothing to fall back on), or with ``C.partial_fallback`` off (an interpreter, whose
translation only a final carries), T5 waits ``NO_TEXT_WAITS`` times as long: the ASR sends a
final, or says why it dropped one, for every utterance, so only a lost one runs out the wait.
The same holds for F2: "no words within ``C.false_interruption_ms`` of the interruption" is
judged on what the ASR made of that audio, not on the clock. While the caller speaks, F2 waits
until a transcript (or ``TranscriptProgress``: every partial decode sends one or the other)
covers the audio up to its deadline; a lagging ASR (a loaded machine) otherwise resumed the bot
over a caller whose words were still being decoded, and cut it again when they came. Only a
lost report runs out that wait (``NO_TEXT_WAITS`` times ``C.final_wait`` more).
"""

from __future__ import annotations

from agent.turn_rules import decide, fire, next_due
from agent.turn_state import (
    ECHO_JUDGE_MS,
    NO_TEXT_WAITS,
    BotState,
    Floor,
    Given,
    On,
    Reply,
    UserState,
)
from agent.turn_types import (
    AskEndOfTurn,
    CommitTurn,
    DiscardTurn,
    EchoEstimate,
    EndOfTurn,
    EndOfTurnScore,
    EndSpeech,
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
from pipeline.vad.events import SpeechPaused, SpeechStarted, SpeechStopped

__all__ = [
    "ECHO_JUDGE_MS",
    "NO_TEXT_WAITS",
    "AskEndOfTurn",
    "BotState",
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
    "TurnTaking",
    "UserState",
    "UtteranceIgnored",
    "content_words",
    "is_echo",
    "looks_complete",
]


class TurnTaking:
    """One call's turn-taking; positions and ``now`` are samples at ``sample_rate``."""

    def __init__(
        self, config: TurnConfig | None = None, *, sample_rate: int = PIPELINE_RATE, start: int = 0
    ) -> None:
        self._floor = Floor(config or TurnConfig(), sample_rate, start)

    @property
    def config(self) -> TurnConfig:
        return self._floor.config

    @property
    def sample_rate(self) -> int:
        return self._floor.sample_rate

    @property
    def now(self) -> int:
        return self._floor.now

    @property
    def closed(self) -> bool:
        """The call has ended (HangUp): nothing more is decided."""
        return self._floor.closed

    @property
    def user(self) -> UserState:
        return self._floor.user

    @property
    def bot(self) -> BotState:
        return self._floor.bot

    @property
    def echo_likely(self) -> bool:
        """The echo detector's last verdict."""
        return self._floor.echo_likely

    # -- driving ------------------------------------------------------------------------------

    def feed(self, event: TurnInput, now: int) -> list[TurnAction]:
        """Handle ``event`` at ``now`` (timers due before it fire first)."""
        actions = self.advance(now)
        if self.closed:
            return actions
        actions += self._handle(event)
        actions += self._settle()
        return actions + self.advance(self._floor.now)

    def advance(self, now: int) -> list[TurnAction]:
        """Move the clock to ``now`` (never backwards), firing the timers due by then."""
        floor = self._floor
        actions: list[TurnAction] = []
        while not floor.closed:
            due = self.next_deadline()
            if due is None or due > now:
                break
            floor.now = max(floor.now, due)
            actions += fire(floor, due)
            actions += self._settle()
        floor.now = max(floor.now, now)
        return actions

    def next_deadline(self) -> int | None:
        """When the next timer is due (``None``: none is set)."""
        return None if self._floor.closed else next_due(self._floor)

    def idle_from(self, now: int) -> None:
        """Count the idle timeout (Q1) from ``now``, not from ``start``: a machine made anew
        mid-call keeps the call's start for its length (Q2) and its transcripts, but the
        silence so far was timed by the machine before it."""
        floor = self._floor
        if floor.idle_at is not None:
            floor.idle_at = max(floor.idle_at, now + floor.idle)

    def _settle(self) -> list[TurnAction]:
        """After any change: a held turn ends once the reply is gone (T6); idle timer upkeep."""
        actions = decide(self._floor, Given(On.SETTLED))
        self._floor.sync_idle()
        return actions

    # -- inputs: record what each says, then ask the rules ------------------------------------

    def _handle(self, event: TurnInput) -> list[TurnAction]:
        floor = self._floor
        reply = floor.reply
        match event:
            case SpeechStarted(sample=sample):
                return decide(floor, Given(On.SPEECH_STARTED, at=sample))
            case SpeechStopped(sample=sample):
                return decide(floor, Given(On.SPEECH_STOPPED, at=sample))
            case SpeechPaused(sample=sample):
                return decide(floor, Given(On.SPEECH_PAUSED, at=sample))
            case EndOfTurnScore(pause=pause, probability=probability):
                return decide(floor, Given(On.SCORE, at=pause, score=probability))
            case Transcript() | TranscriptDropped():
                return self._transcript(event)
            case TranscriptProgress(start=start, end=end):
                if floor.turn is not None and start >= floor.closed_until:
                    floor.turn.decoded_until = max(floor.turn.decoded_until, end)
                return []
            case ReplyStarted(generation=generation, kind=kind):
                return self._reply_started(generation, kind)
            case PlayoutStarted(generation=generation):
                # a reply not announced with ReplyStarted: fine, it starts here
                actions = [] if reply is not None else self._reply_started(generation, "answer")
                reply = floor.reply
                if reply is not None and reply.generation == generation:
                    if not reply.playing:
                        reply.audible_at = floor.now
                    reply.playing = True
                return actions
            case PlayoutProgress(generation=generation, played=played, text=text):
                if reply is not None and reply.generation == generation:
                    reply.played = max(reply.played, played)
                    reply.text = text or reply.text
                return []
            case PlayoutFinished(generation=generation):
                if reply is None or reply.generation != generation:
                    return []
                floor.last_reply_text = reply.text
                floor.reply = None
                return decide(floor, Given(On.REPLY_FINISHED))
            case EchoEstimate(likely=likely, sample=sample):
                if floor.echo_likely and not likely:
                    floor.echo_ended = sample
                floor.echo_likely = likely
                return decide(floor, Given(On.ECHO, at=sample))
            case CommitTurn():
                return decide(floor, Given(On.COMMIT))
            case DiscardTurn():
                return decide(floor, Given(On.DISCARD))
        raise AssertionError(f"unhandled input {event!r}")  # pragma: no cover

    def _transcript(self, event: Transcript | TranscriptDropped) -> list[TurnAction]:
        floor = self._floor
        if event.start < floor.closed_until:
            return []  # audio of a turn already closed
        final = isinstance(event, TranscriptDropped) or event.is_final
        text = "" if isinstance(event, TranscriptDropped) else event.text
        turn = floor.turn
        if turn is None:  # SILENT: T1 or T2 may open a turn with it, which then hears it
            actions = decide(floor, Given(On.TRANSCRIPT, text=text, final=final, transcript=event))
            return actions if floor.turn is None else actions + self._transcript(event)
        turn.decoded_until = max(turn.decoded_until, event.end)
        if final:
            if turn.echo_until and isinstance(event, Transcript) and event.words:
                text = " ".join(w.word.strip() for w in event.words if w.end > turn.echo_until)
            turn.finals[event.utterance] = text
            if not turn.speaking and event.end >= turn.stop:  # it covers the pause (T4)
                turn.covered = True
                turn.early = looks_complete(turn.text(with_partial=False))
        else:
            turn.partial = (event.utterance, text)
        words = floor.words(text)
        return decide(
            floor, Given(On.TRANSCRIPT, text=text, final=final, words=words, transcript=event)
        )

    def _reply_started(self, generation: int, kind: ReplyKind) -> list[TurnAction]:
        floor = self._floor
        if generation <= floor.seen_generation:
            return []  # generations only grow: this one is stale or announced already
        floor.seen_generation = generation
        interruptible = floor.config.barge_in and (
            kind != "greeting" or floor.config.greeting_interruptible
        )
        answer_to = floor.last_turn_text if kind == "answer" else ""
        floor.reply = Reply(generation, kind, interruptible, answer_to)
        return decide(floor, Given(On.REPLY_STARTED))
