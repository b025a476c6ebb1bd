"""Turn-taking's rules as data: the table at the top of :mod:`agent.turns`, executed.

Each :class:`Rule` row names the input it answers (:class:`~agent.turn_state.On`), the user
states it applies in, a condition and an effect (:mod:`agent.turn_effects`); a timer row also
says when it is due. For each input (once the machine has recorded what it says in the
:class:`~agent.turn_state.Floor`) and each timer, the rows for it are tried in :data:`RULES`'
order and the first that holds decides: its effect changes the state and returns the actions,
which carry the rule's id, and the decision is logged (logger ``voxline.turns``, debug: ids,
states and action names, never what the caller said). A rule whose table row names several
inputs (F2: a final with no words, or its timer) has a row for each; rows of one id sit
together, in the table's order.

Sans-I/O like the machine: no clock, no awaits; ``now`` is the floor's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from agent.turn_effects import (
    ask_model,
    barge_in_on_speech,
    barge_in_on_words,
    close,
    commit,
    cut_turn,
    discard,
    end_speech_early,
    end_turn,
    false_interruption,
    follow_echo,
    hang_up,
    hold,
    hold_for_answer,
    idle_prompt,
    ignore_echo,
    ignore_overlap,
    note_pause,
    overlap_at_final,
    pause,
    real_interruption,
    speak_again,
    start_overlap,
    start_turn,
    take_score,
    take_turn,
    talk_over_answer,
    turn_at_final,
    words_after_all,
)
from agent.turn_state import NO_TEXT_WAITS, Floor, Given, On, UserState
from agent.turn_types import TurnAction, content_words, looks_complete
from pipeline.asr.events import Transcript

__all__ = ["RULES", "Rule", "decide", "fire", "next_due"]

log = logging.getLogger("voxline.turns")


Condition = Callable[[Floor, Given], bool]
Effect = Callable[[Floor, Given], list[TurnAction]]
Due = Callable[[Floor], int | None]


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: on ``on``, in one of ``states``, when ``when`` holds (and for a
    timer, once ``due`` comes), ``then`` runs and its actions carry ``id``."""

    id: str
    on: On
    states: tuple[UserState, ...]
    when: Condition
    then: Effect
    due: Due | None = None

    def holds(self, floor: Floor, given: Given) -> bool:
        if floor.user not in self.states or not self.when(floor, given):
            return False
        return self.due is None or self.due(floor) == given.at


# -- conditions -------------------------------------------------------------------------------


def always(floor: Floor, given: Given) -> bool:
    return True


def both(first: Condition, second: Condition) -> Condition:
    def condition(floor: Floor, given: Given) -> bool:
        return first(floor, given) and second(floor, given)

    return condition


def bot_idle(floor: Floor, given: Given) -> bool:
    return floor.reply is None


def bot_busy(floor: Floor, given: Given) -> bool:
    return floor.reply is not None


def bot_audible(floor: Floor, given: Given) -> bool:
    return floor.reply is not None and floor.reply.playing


def speaking(floor: Floor, given: Given) -> bool:
    return floor.open_turn.speaking


def paused(floor: Floor, given: Given) -> bool:
    return not floor.open_turn.speaking


def held(floor: Floor, given: Given) -> bool:
    return floor.open_turn.held_ready


def covered(floor: Floor, given: Given) -> bool:
    """A final has covered the pause (its audio ends at or after the speech stop)."""
    return floor.open_turn.covered


def heard_only_as_echo(floor: Floor, given: Given) -> bool:
    return floor.open_turn.echo_only


def final_with_words(floor: Floor, given: Given) -> bool:
    return given.final and bool(content_words(given.text))


def a_word(floor: Floor, given: Given) -> bool:
    return given.words >= 1


def no_words(floor: Floor, given: Given) -> bool:
    return given.words == 0


def enough_own_words(floor: Floor, given: Given) -> bool:
    """``barge_in_min_words`` of the caller's own, in a turn not heard only as echo."""
    least = floor.config.barge_in_min_words
    return not floor.open_turn.echo_only and least > 0 and given.words >= least


def cut_with_speech_after(floor: Floor, given: Given) -> bool:
    """A final the ASR cut at its longest utterance, with the caller's speech going on after
    it, and no reply to talk over."""
    cut, turn = given.transcript, floor.open_turn
    if not isinstance(cut, Transcript) or not (cut.is_final and cut.cut):
        return False
    return (turn.speaking or cut.end < turn.stop) and floor.reply is None


def model_decides(floor: Floor, given: Given) -> bool:
    """C.end_of_turn_detector is ``model`` and pauses end turns (C.end_of_turn)."""
    c = floor.config
    return c.end_of_turn and c.end_of_turn_detector == "model" and not floor.open_turn.committed


def answers_this_pause(floor: Floor, given: Given) -> bool:
    """The model's answer is about the pause going on (not one the caller spoke after)."""
    turn = floor.open_turn
    return turn.asked == given.at and (turn.speaking or turn.stop == given.at)


def silence_decides_early(floor: Floor, given: Given) -> bool:
    """Pauses end turns by silence (C.end_of_turn, not the model's, not a commit's), and
    C.early_silence is the shorter silence."""
    c = floor.config
    return (
        c.end_of_turn
        and c.end_of_turn_detector == "silence"
        and not floor.open_turn.committed
        and floor.early_silence < floor.silence
    )


def speaking_after_cut(floor: Floor, given: Given) -> bool:
    turn = floor.open_turn
    return turn.after_cut and turn.speaking


# -- when timers are due ----------------------------------------------------------------------


def call_end_due(floor: Floor) -> int | None:
    return floor.hangup_at


def idle_due(floor: Floor) -> int | None:
    return floor.idle_at


def end_of_turn_due(floor: Floor) -> int | None:
    """T3, T4: a paused turn ends C.silence after its stop, C.early_silence if its final looks
    complete, at once when committed; waiting C.final_wait for a final that is not in. M2:
    the model's answer about the pause: done, at once; not done, C.not_done_silence."""
    turn = floor.open_turn
    c = floor.config
    if turn.speaking or turn.held_ready or not (c.end_of_turn or turn.committed):
        return None
    silence = floor.not_done_silence if turn.done is False else floor.silence
    if not turn.covered:
        # with no text to fall back on (or none that may be used), the final is worth
        # waiting longer for
        fallback = c.partial_fallback and turn.text(with_partial=True)
        wait = floor.final_wait * (1 if fallback else NO_TEXT_WAITS)
        return max(turn.stop + silence, turn.heard_stop) + wait
    if turn.committed:
        return floor.now
    if turn.done is not None:
        return turn.stop if turn.done else turn.stop + silence
    return turn.stop + (floor.early_silence if turn.early else silence)


def early_pause_due(floor: Floor) -> int | None:
    """P1: C.early_silence after the VAD's pause, once the ASR has heard past it (the
    speculative final, a partial, or its progress) and the speech so far looks complete."""
    turn = floor.open_turn
    if turn.pause is None or turn.committed or turn.decoded_until < turn.pause:
        return None
    if not looks_complete(turn.text(with_partial=True)):
        return None
    return turn.pause + floor.early_silence


def barge_in_due(floor: Floor) -> int | None:
    """B1: C.min_speech of this speech segment; while the bot is audible, echo decides."""
    turn = floor.open_turn
    if turn.time_ok or floor.config.barge_in_mode == "words":
        return None
    due = turn.segment_start + floor.min_speech
    reply = floor.reply
    if reply is None or not reply.playing:  # the bot is not audible: no echo to fear
        return due
    if not floor.config.echo_detection:
        return due + floor.echo_guard
    if floor.echo_likely:
        return None  # echo likely: speech alone waits for the verdict to turn
    # speech heard while it was echo counts from when it stopped being; the detector cannot
    # have heard the echo of a reply that just began
    echo_ended = floor.echo_ended + floor.min_speech
    return max(due, echo_ended, reply.audible_at + floor.echo_settle)


def final_wait_due(floor: Floor) -> int | None:
    """B3: the final of speech over a reply is C.final_wait late."""
    return floor.open_turn.heard_stop + floor.final_wait


def check_due(floor: Floor) -> int | None:
    """F2: C.false_interruption_ms after the interruption, as far as the ASR has heard."""
    turn = floor.open_turn
    due = turn.interrupt_at + floor.false_wait
    if not turn.speaking and not turn.covered:
        due = max(due, turn.heard_stop + floor.final_wait)
    elif turn.speaking and turn.decoded_until < due:
        # the ASR has not yet heard the window: wait for it, not for the clock
        due += floor.final_wait * NO_TEXT_WAITS
    return due


# -- the table --------------------------------------------------------------------------------

SILENT, TURN, OVERLAP = UserState.SILENT, UserState.TURN, UserState.OVERLAP
CHECKING, IGNORED = UserState.CHECKING, UserState.IGNORED
ANY = tuple(UserState)
OPEN = (TURN, OVERLAP, CHECKING)

#: the rules in the order they are tried (the order of the table in :mod:`agent.turns`)
RULES: tuple[Rule, ...] = (
    Rule("Q2", On.TIMER, ANY, always, hang_up, due=call_end_due),
    Rule("T1", On.SPEECH_STARTED, (SILENT, IGNORED), bot_idle, start_turn),
    Rule("T1", On.TRANSCRIPT, (SILENT,), both(final_with_words, bot_idle), turn_at_final),
    Rule("T2", On.SPEECH_STARTED, (SILENT, IGNORED), bot_busy, start_overlap),
    Rule("T2", On.TRANSCRIPT, (SILENT,), both(final_with_words, bot_busy), overlap_at_final),
    Rule("T3", On.SPEECH_STOPPED, OPEN, speaking, pause),
    Rule("T3", On.SPEECH_STARTED, OPEN, always, speak_again),
    Rule("T4", On.COMMIT, (TURN, CHECKING), always, commit),
    Rule("T5", On.TIMER, (TURN,), bot_idle, end_turn, due=end_of_turn_due),
    Rule("T6", On.TIMER, (TURN,), bot_busy, hold, due=end_of_turn_due),
    Rule("T6", On.SETTLED, (TURN,), both(held, bot_idle), end_turn),
    Rule("T7", On.TRANSCRIPT, (TURN,), cut_with_speech_after, cut_turn),
    Rule("T7", On.REPLY_STARTED, (TURN,), speaking_after_cut, talk_over_answer),
    Rule("T8", On.DISCARD, (*OPEN, IGNORED), always, discard),
    Rule("M1", On.SPEECH_PAUSED, (TURN,), both(speaking, model_decides), ask_model),
    Rule("M2", On.SCORE, (TURN,), answers_this_pause, take_score),
    Rule("P1", On.SPEECH_PAUSED, (TURN,), both(speaking, silence_decides_early), note_pause),
    Rule("P1", On.TIMER, (TURN,), speaking, end_speech_early, due=early_pause_due),
    Rule("B1", On.TIMER, (OVERLAP,), speaking, barge_in_on_speech, due=barge_in_due),
    Rule("B2", On.TRANSCRIPT, (OVERLAP,), enough_own_words, barge_in_on_words),
    Rule("B3", On.TRANSCRIPT, (OVERLAP,), covered, ignore_overlap),
    Rule("B3", On.TIMER, (OVERLAP,), paused, ignore_overlap, due=final_wait_due),
    Rule("B4", On.REPLY_FINISHED, (OVERLAP,), heard_only_as_echo, ignore_echo),
    Rule("B4", On.REPLY_FINISHED, (OVERLAP,), always, take_turn),
    Rule("F1", On.TRANSCRIPT, (CHECKING,), a_word, real_interruption),
    Rule("F2", On.TRANSCRIPT, (CHECKING,), both(no_words, covered), false_interruption),
    Rule("F2", On.TIMER, (CHECKING,), always, false_interruption, due=check_due),
    Rule("F3", On.REPLY_STARTED, (CHECKING,), always, hold_for_answer),
    Rule("I1", On.TRANSCRIPT, (IGNORED,), enough_own_words, words_after_all),
    Rule("I2", On.SPEECH_STOPPED, (IGNORED,), always, close),
    Rule("Q1", On.TIMER, (SILENT,), always, idle_prompt, due=idle_due),
    Rule("E1", On.ECHO, (OVERLAP, IGNORED), bot_audible, follow_echo),
)

_ROWS: dict[On, tuple[Rule, ...]] = {
    on: tuple(rule for rule in RULES if rule.on is on) for on in On
}


# -- running them -----------------------------------------------------------------------------


def decide(floor: Floor, given: Given) -> list[TurnAction]:
    """Run the first rule for ``given`` that holds; its actions, stamped with its id."""
    for rule in _ROWS[given.on]:
        if rule.holds(floor, given):
            return _run(rule, floor, given)
    return []


def fire(floor: Floor, due: int) -> list[TurnAction]:
    """Run the timer due at ``due`` (:func:`next_due`'s; on a tie, the first in the table)."""
    given = Given(On.TIMER, at=due)
    for rule in _ROWS[On.TIMER]:
        if rule.holds(floor, given):
            return _run(rule, floor, given)
    raise AssertionError(f"no timer is due at {due}")  # pragma: no cover


def next_due(floor: Floor) -> int | None:
    """When the next timer rule is due (``None``: none is set)."""
    given = Given(On.TIMER, at=floor.now)
    times = [
        due
        for rule in _ROWS[On.TIMER]
        if rule.due is not None
        and floor.user in rule.states
        and rule.when(floor, given)
        and (due := rule.due(floor)) is not None
    ]
    return min(times) if times else None


def _run(rule: Rule, floor: Floor, given: Given) -> list[TurnAction]:
    before = floor.user
    actions = [msgspec.structs.replace(a, rule=rule.id) for a in rule.then(floor, given)]
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "%s on %s at %d: %s -> %s%s",
            rule.id,
            given.on.value,
            floor.now,
            before.value,
            floor.user.value,
            "".join(f", {type(a).__name__}" for a in actions),
        )
    return actions
