"""What the rules of turn-taking do: one function per effect in :mod:`agent.turn_rules`' table.

Each takes the :class:`~agent.turn_state.Floor` and the :class:`~agent.turn_state.Given` input,
changes the state, and returns the actions (:func:`agent.turn_rules.decide` stamps them with
the rule's id). :func:`barge_in` is the table's barge-in rows, shared by B1, B2 and I1.
"""

from __future__ import annotations

from typing import Literal

from agent.turn_state import ECHO_TURN_MS, Floor, Given, Turn, UserState
from agent.turn_types import (
    AskEndOfTurn,
    EndOfTurn,
    EndSpeech,
    HangUp,
    IdlePrompt,
    Interrupt,
    ReAnswer,
    ResumeBot,
    StartOfTurn,
    TurnAction,
    UtteranceIgnored,
    content_words,
    is_echo,
)
from pipeline.asr.events import Transcript, TranscriptDropped


def _cut_of(given: Given) -> Transcript:
    assert isinstance(given.transcript, Transcript)
    return given.transcript


def _final_of(given: Given) -> Transcript | TranscriptDropped:
    assert given.transcript is not None
    return given.transcript


def hang_up(floor: Floor, given: Given) -> list[TurnAction]:
    floor.closed = True
    return [HangUp("max_duration", floor.now)]


def start_turn(floor: Floor, given: Given) -> list[TurnAction]:
    floor.turn = Turn(start=given.at, segment_start=given.at)
    floor.user = UserState.TURN
    return [StartOfTurn(given.at, floor.now)]


def turn_at_final(floor: Floor, given: Given) -> list[TurnAction]:
    """A final with no VAD events around it: a turn that has already paused."""
    final = _final_of(given)
    floor.turn = Turn(start=final.start, speaking=False, stop=final.end)
    floor.user = UserState.TURN
    return [StartOfTurn(final.start, floor.now)]


def start_overlap(floor: Floor, given: Given) -> list[TurnAction]:
    assert floor.reply is not None
    audible = floor.reply.playing
    floor.turn = Turn(start=given.at, segment_start=given.at, overlapped=audible)
    floor.turn.echo_only = audible and floor.echo_trusted()
    floor.user = UserState.OVERLAP
    return []


def overlap_at_final(floor: Floor, given: Given) -> list[TurnAction]:
    final = _final_of(given)
    floor.turn = Turn(start=final.start, speaking=False, stop=final.end)
    floor.user = UserState.OVERLAP
    return []


def pause(floor: Floor, given: Given) -> list[TurnAction]:
    turn = floor.open_turn
    turn.speaking = False
    turn.stop = given.at
    turn.stop_seen = floor.now
    turn.covered = False
    turn.pause = None  # stopped: T4 judges the final from here
    if turn.asked != given.at:  # the model was asked about another pause
        turn.asked = turn.done = None
    return []


def speak_again(floor: Floor, given: Given) -> list[TurnAction]:
    turn = floor.open_turn
    turn.speaking = True
    turn.covered = False
    turn.held_ready = False
    turn.segment_start = given.at
    turn.asked = turn.done = None  # the caller speaks on: the model's question is moot
    turn.pause = None
    if floor.user is UserState.OVERLAP:  # B1 counts from this segment
        turn.time_ok = False
        turn.overlapped = turn.overlapped or bool(floor.reply and floor.reply.playing)
    return []


def ask_model(floor: Floor, given: Given) -> list[TurnAction]:
    """M1: ask the end-of-turn model about the speech so far (an older question is moot)."""
    turn = floor.open_turn
    turn.asked, turn.done = given.at, None
    return [AskEndOfTurn(turn.start, given.at, floor.now)]


def take_score(floor: Floor, given: Given) -> list[TurnAction]:
    """M2: the model's answer sets when the pause ends the turn (:func:`end_of_turn_due`);
    done while the VAD still confirms the silence: it ends the speech at the pause now."""
    turn = floor.open_turn
    turn.done = given.score >= floor.config.end_of_turn_threshold
    if turn.done and turn.speaking:
        return [EndSpeech(given.at, floor.now)]
    return []


def note_pause(floor: Floor, given: Given) -> list[TurnAction]:
    """P1: the VAD's first short silence; a newer one means the caller spoke on after the
    last (the VAD reports no restart inside its speech), so it replaces it."""
    floor.open_turn.pause = given.at
    return []


def end_speech_early(floor: Floor, given: Given) -> list[TurnAction]:
    """P1: the speech so far looks complete and the caller is still silent ``early_silence``
    after the pause: the VAD ends the speech at the pause, if its silence began there, once
    it has heard that much of it (``until``: the clock runs on while a client's audio stalls,
    and speech the VAD has not heard yet must still keep the speech going). Its stop and the
    final (the ASR's speculative one, decoded at the pause) follow; T4 ends the turn on them."""
    turn = floor.open_turn
    assert turn.pause is not None
    pause, turn.pause = turn.pause, None
    return [EndSpeech(pause, floor.now, until=pause + floor.early_silence)]


def commit(floor: Floor, given: Given) -> list[TurnAction]:
    turn = floor.open_turn
    floor.user = UserState.TURN
    floor.interrupted = None
    turn.committed = True
    if turn.speaking:
        turn.speaking = False
        turn.stop = turn.stop_seen = floor.now
    return []


def end_turn(floor: Floor, given: Given) -> list[TurnAction]:
    turn = floor.open_turn
    text = turn.text(with_partial=not turn.covered)
    carry, floor.carry = floor.carry, ""
    floor.interrupted = None
    floor.close_turn(turn.stop)
    if not content_words(text):
        return [UtteranceIgnored(text, "no_words", floor.now)]
    if turn.echo_only or (
        turn.overlapped and is_echo(text, floor.last_reply_text, floor.config.echo_overlap)
    ):
        return [UtteranceIgnored(text, "echo", floor.now)]
    if carry:
        text = f"{carry} {text}"
    floor.last_turn_text = text
    floor.idle_count = 0
    early = turn.covered and turn.early and not turn.committed
    early = early and floor.early_silence < floor.silence
    return [EndOfTurn(text, turn.start, turn.stop, floor.now, early, bool(carry))]


def hold(floor: Floor, given: Given) -> list[TurnAction]:
    floor.open_turn.held_ready = True
    return []


def cut_turn(floor: Floor, given: Given) -> list[TurnAction]:
    """The ASR cut a long utterance: the turn ends at the cut; the speech after it (going on,
    or already stopped when a lagging ASR reports the cut) is the next."""
    turn, cut = floor.open_turn, _cut_of(given)
    at = cut.end
    rest = Turn(
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
    actions = end_turn(floor, given)
    floor.turn = rest
    floor.user = UserState.TURN
    return [*actions, StartOfTurn(at, floor.now)]


def talk_over_answer(floor: Floor, given: Given) -> list[TurnAction]:
    floor.user = UserState.OVERLAP
    return []


def discard(floor: Floor, given: Given) -> list[TurnAction]:
    turn = floor.open_turn
    text = turn.text(with_partial=True)
    floor.interrupted = None
    floor.carry = ""
    floor.ignore_rest(turn, floor.now)
    return [UtteranceIgnored(text, "discarded", floor.now)]


def barge_in(floor: Floor, reason: Literal["speech", "words"]) -> list[TurnAction]:
    """The table's barge-in rows: interrupt the reply if it may be, else hold the turn."""
    turn = floor.open_turn
    reply = floor.reply
    assert reply is not None
    if floor.config.barge_in_mode == "speech_and_words" and not (turn.time_ok and turn.words_ok):
        return []
    actions: list[TurnAction] = [StartOfTurn(turn.start, floor.now)]
    if not reply.interruptible:
        floor.user = UserState.TURN
        return actions
    actions.append(Interrupt(reply.generation, reply.played, floor.now, reason))
    floor.last_reply_text = reply.text
    floor.reply = None
    floor.interrupted = reply
    if reply.played == 0 and reply.kind == "answer":
        floor.carry = reply.answer_to
    if turn.words_ok:
        floor.user = UserState.TURN
    else:
        floor.user = UserState.CHECKING
        turn.interrupt_at = floor.now
    return actions


def barge_in_on_speech(floor: Floor, given: Given) -> list[TurnAction]:
    floor.open_turn.time_ok = True
    return barge_in(floor, "speech")


def barge_in_on_words(floor: Floor, given: Given) -> list[TurnAction]:
    floor.open_turn.words_ok = True
    return barge_in(floor, "words")


def ignore_overlap(floor: Floor, given: Given) -> list[TurnAction]:
    turn = floor.open_turn
    text = turn.text(with_partial=not turn.covered)
    reason: Literal["backchannel", "no_words", "echo"] = "no_words"
    if content_words(text):
        reason = "echo" if turn.echo_only or floor.words(text) == 0 else "backchannel"
    floor.close_turn(turn.stop)
    return [UtteranceIgnored(text, reason, floor.now)]


def ignore_echo(floor: Floor, given: Given) -> list[TurnAction]:
    """The bot's own voice: not a turn, and nothing joins it."""
    turn = floor.open_turn
    text = turn.text(with_partial=True)
    floor.ignore_rest(turn, floor.now)
    return [UtteranceIgnored(text, "echo", floor.now)]


def take_turn(floor: Floor, given: Given) -> list[TurnAction]:
    floor.user = UserState.TURN
    return [StartOfTurn(floor.open_turn.start, floor.now)]


def real_interruption(floor: Floor, given: Given) -> list[TurnAction]:
    floor.user = UserState.TURN
    return []


def false_interruption(floor: Floor, given: Given) -> list[TurnAction]:
    turn, reply = floor.open_turn, floor.interrupted
    assert reply is not None
    actions: list[TurnAction] = []
    policy = floor.config.false_interruption
    if policy == "reanswer" and reply.kind == "answer" and reply.answer_to:
        actions.append(ReAnswer(reply.generation, reply.answer_to, floor.now))
    elif policy != "ignore":
        actions.append(ResumeBot(reply.generation, reply.played, floor.now))
    text = turn.text(with_partial=True)
    actions.append(UtteranceIgnored(text, "false_interruption", floor.now))
    floor.interrupted = None
    floor.carry = ""
    floor.ignore_rest(turn, turn.stop)
    return actions


def hold_for_answer(floor: Floor, given: Given) -> list[TurnAction]:
    """The session answers already: the turn is held (T6)."""
    floor.user = UserState.TURN
    floor.interrupted = None
    return []


def words_after_all(floor: Floor, given: Given) -> list[TurnAction]:
    turn = floor.open_turn
    turn.words_ok = True
    turn.time_ok = True
    if floor.reply is None:
        floor.user = UserState.TURN
        return [StartOfTurn(turn.segment_start, floor.now)]
    floor.user = UserState.OVERLAP
    return barge_in(floor, "words")


def close(floor: Floor, given: Given) -> list[TurnAction]:
    floor.close_turn(given.at)
    return []


def idle_prompt(floor: Floor, given: Given) -> list[TurnAction]:
    if floor.idle_count < floor.config.idle_prompts:
        floor.idle_count += 1
        floor.idle_at = floor.now + floor.idle
        return [IdlePrompt(floor.idle_count, floor.now)]
    floor.closed = True
    return [HangUp("idle", floor.now)]


def follow_echo(floor: Floor, given: Given) -> list[TurnAction]:
    """What is heard while the bot is audible follows the verdict (after it stopped, the
    verdict only says its reference went quiet); a turn with words of its own before echo was
    found stays the caller's."""
    turn = floor.open_turn
    own = floor.words(turn.text(with_partial=True)) > 0
    was = turn.echo_only
    turn.echo_only = floor.echo_trusted() and (turn.echo_only or not own)
    if was and not turn.echo_only:  # the detector turns ~100 ms into them
        turn.echo_until = given.at - floor.ms(ECHO_TURN_MS)
    return []
