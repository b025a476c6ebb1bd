"""The rule table of agent/turns.py as data: the docstring against agent/turn_rules.py, and one
test per rule naming the rule it expects to decide (``action.rule``, or the logged decision
for a rule that changes only the state).

Times in the scripts are milliseconds (converted to 16 kHz samples); each step is
``(now_ms, input)`` or ``(now_ms, None)`` for a clock tick.
"""

from __future__ import annotations

import itertools
import logging
import re

import msgspec
import pytest

import agent.turns
from agent.turn_rules import RULES
from agent.turns import (
    CommitTurn,
    DiscardTurn,
    EchoEstimate,
    EndOfTurn,
    EndSpeech,
    HangUp,
    IdlePrompt,
    Interrupt,
    PlayoutFinished,
    PlayoutProgress,
    ReplyStarted,
    StartOfTurn,
    TurnAction,
    TurnConfig,
    TurnTaking,
    UserState,
    UtteranceIgnored,
)
from tests.turns_support import (
    bot_echoing,
    bot_speaking,
    dropped,
    final,
    ms,
    partial,
    paused,
    progress,
    quiet,
    run,
    started,
    stopped,
    user_of,
)


@pytest.fixture(autouse=True)
def _log_decisions(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="voxline.turns")


def decided(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The ids of the rules that have decided so far, in order, as logged."""
    return [r.getMessage().split()[0] for r in caplog.records if r.name == "voxline.turns"]


def rules_of(actions: list[TurnAction]) -> list[tuple[str, str]]:
    return [(type(a).__name__, a.rule) for a in actions]


# -- the table --------------------------------------------------------------------------------


def table_ids() -> list[str]:
    """The rule ids of the table in agent/turns.py's docstring, top to bottom."""
    doc = agent.turns.__doc__
    assert doc is not None
    lines = doc.splitlines()
    borders = [n for n, line in enumerate(lines) if line.startswith("====")]
    assert len(borders) == 3, "a table: top border, header border, bottom border"
    rows = lines[borders[1] + 1 : borders[2]]
    heads = [row.split()[0] for row in rows if row and not row[0].isspace()]
    assert set(heads) - {"barge-in"} == {h for h in heads if re.fullmatch(r"[A-Z]\d+", h)}
    return [h for h in heads if h != "barge-in"]


def test_the_docstring_table_names_the_rules_of_the_data_in_their_order() -> None:
    grouped = [rule_id for rule_id, _ in itertools.groupby(rule.id for rule in RULES)]
    assert len(grouped) == len(set(grouped)), "the rows of one rule sit together"
    assert table_ids() == grouped


def test_every_rule_id_appears_once_in_the_table() -> None:
    ids = table_ids()
    assert len(ids) == len(set(ids))


def test_the_call_limit_comes_first_so_that_it_wins_a_tie_of_timers() -> None:
    assert RULES[0].id == "Q2"


def test_the_rule_an_action_names_is_not_part_of_its_equality() -> None:
    decided_by_t5 = EndOfTurn("Hello.", 0, 10, 20, rule="T5")
    assert decided_by_t5 == EndOfTurn("Hello.", 0, 10, 20)
    assert hash(decided_by_t5) == hash(EndOfTurn("Hello.", 0, 10, 20))
    assert decided_by_t5 != EndOfTurn("Hello.", 0, 10, 21, rule="T5")
    assert StartOfTurn(0, 10, rule="T1") != EndOfTurn("", 0, 10, 10, rule="T1")
    assert msgspec.structs.replace(decided_by_t5, rule="T6").rule == "T6"


def test_decisions_are_logged_without_what_the_caller_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    machine = TurnTaking(quiet())
    run(
        machine,
        [
            (1250, started(1000)),
            (2100, stopped(2000)),
            (2200, final("My PIN is 4321.", 0, 0, 2200)),
        ],
    )
    run(machine, [(4000, None)])
    assert decided(caplog) == ["T1", "T3", "T5"]
    assert not any("4321" in r.getMessage() for r in caplog.records)


# -- T: turns ---------------------------------------------------------------------------------


def test_t1_speech_with_the_bot_idle_starts_a_turn() -> None:
    machine = TurnTaking(quiet())
    actions = run(machine, [(1250, started(1000))])
    assert rules_of(actions) == [("StartOfTurn", "T1")]
    assert user_of(machine) is UserState.TURN


def test_t1_a_final_without_vad_events_starts_a_turn() -> None:
    actions = run(TurnTaking(quiet()), [(3000, final("Hello.", 0, 1000, 2800))])
    assert rules_of(actions) == [("StartOfTurn", "T1")]


def test_t2_speech_over_a_reply_is_an_overlap(caplog: pytest.LogCaptureFixture) -> None:
    machine = TurnTaking(quiet())
    assert run(machine, [*bot_speaking(7), (1250, started(1000))]) == []
    assert decided(caplog) == ["T2"]
    assert user_of(machine) is UserState.OVERLAP


def test_t2_a_final_without_vad_events_over_a_reply_is_an_overlap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    machine = TurnTaking(quiet())
    run(machine, [(0, ReplyStarted(7)), (3000, final("Hello there.", 0, 1000, 2800))])
    assert decided(caplog)[0] == "T2"


def test_t3_a_stop_pauses_the_turn_and_speech_again_ends_the_pause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    machine = TurnTaking(quiet())
    run(machine, [(1250, started(1000)), (2100, stopped(2000)), (2200, partial("So", 0, 0, 2000))])
    assert decided(caplog) == ["T1", "T3"]
    assert machine.next_deadline() == ms(2000 + 600 + 1500)
    run(machine, [(2300, started(2250))])
    assert decided(caplog) == ["T1", "T3", "T3"]
    assert machine.next_deadline() is None


def test_t4_a_covering_final_that_looks_complete_ends_the_turn_early() -> None:
    machine = TurnTaking(quiet())
    run(machine, [(1250, started(1000)), (2100, stopped(2000)), (2200, final("Yes.", 0, 0, 2200))])
    assert machine.next_deadline() == ms(2000 + 250)


def test_t4_a_commit_ends_the_turn_at_once(caplog: pytest.LogCaptureFixture) -> None:
    machine = TurnTaking(quiet(end_of_turn=False))
    run(machine, [(1250, started(1000)), (2100, stopped(2000)), (2200, final("Yes.", 0, 0, 2200))])
    actions = machine.feed(CommitTurn(), ms(5000))
    assert decided(caplog)[-2:] == ["T4", "T5"]
    assert rules_of(actions) == [("EndOfTurn", "T5")]
    assert actions[0].at == ms(5000)


def test_t5_the_turn_ends_when_due() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [(1250, started(1000)), (2100, stopped(2000)), (2200, final("Yes.", 0, 0, 2200))],
    )
    actions += machine.advance(ms(3000))
    assert rules_of(actions) == [("StartOfTurn", "T1"), ("EndOfTurn", "T5")]


def test_t5_a_turn_without_words_is_ignored() -> None:
    machine = TurnTaking(quiet())
    run(machine, [(1250, started(1000)), (1700, stopped(1600)), (1800, dropped(0, 800, 1800))])
    actions = machine.advance(ms(3000))
    assert actions == [UtteranceIgnored("", "no_words", ms(2200))]
    assert actions[0].rule == "T5"


def test_t6_a_turn_due_while_a_reply_plays_is_held_until_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    machine = TurnTaking(quiet(greeting_interruptible=False))
    run(
        machine,
        [
            *bot_speaking(1, kind="greeting"),
            (1250, started(1000)),
            (2100, stopped(2000, 1000)),
            (2200, final("Hi, I need a taxi.", 0, 800, 2200)),
            (3000, None),
        ],
    )
    assert decided(caplog)[-1] == "T6"
    actions = machine.feed(PlayoutFinished(1), ms(4000))
    assert rules_of(actions) == [("EndOfTurn", "T6")]


def test_t7_a_cut_ends_the_turn_and_the_speech_after_it_is_the_next() -> None:
    machine = TurnTaking(quiet())
    run(machine, [(1250, started(1000))])
    cut = msgspec.structs.replace(final("I would like a table", 0, 800, 3000), cut=True)
    actions = machine.feed(cut, ms(3100))
    assert rules_of(actions) == [("EndOfTurn", "T7"), ("StartOfTurn", "T7")]


def test_t7_speech_after_a_cut_talks_over_the_answer(caplog: pytest.LogCaptureFixture) -> None:
    machine = TurnTaking(quiet())
    cut = msgspec.structs.replace(final("I would like a table", 0, 800, 3000), cut=True)
    run(machine, [(1250, started(1000)), (3100, cut), (3200, ReplyStarted(1))])
    assert decided(caplog)[-1] == "T7"
    assert user_of(machine) is UserState.OVERLAP


def test_t8_a_discarded_turn_is_ignored() -> None:
    machine = TurnTaking(quiet())
    run(machine, [(1250, started(1000)), (2000, partial("never mind", 0, 800, 2000))])
    actions = machine.feed(DiscardTurn(), ms(2100))
    assert actions == [UtteranceIgnored("never mind", "discarded", ms(2100))]
    assert actions[0].rule == "T8"
    assert user_of(machine) is UserState.IGNORED


# -- P: the early end at a pause --------------------------------------------------------------


def test_p1_a_complete_text_at_a_pause_ends_the_speech_there_early(
    caplog: pytest.LogCaptureFixture,
) -> None:
    machine = TurnTaking(quiet())
    run(machine, [(1250, started(1000)), (2100, paused(2000)), (2150, partial("Yes.", 0, 0, 2100))])
    assert decided(caplog) == ["T1", "P1"]  # the pause is noted
    actions = machine.advance(ms(3000))
    assert actions == [EndSpeech(ms(2000), ms(2250), until=ms(2250))]
    assert actions[0].rule == "P1"


# -- B: barge-in ------------------------------------------------------------------------------


def test_b1_enough_speech_over_the_bot_interrupts_it() -> None:
    machine = TurnTaking(quiet())
    actions = run(machine, [*bot_speaking(7), (1250, started(1000)), (1600, None)])
    assert rules_of(actions) == [("StartOfTurn", "B1"), ("Interrupt", "B1")]


def test_b2_enough_words_over_the_bot_interrupt_it() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [*bot_speaking(4), (1250, started(1000)), (1300, partial("stop please", 0, 1000, 1300))],
    )
    assert rules_of(actions) == [("StartOfTurn", "B2"), ("Interrupt", "B2")]
    assert isinstance(actions[1], Interrupt)
    assert actions[1].reason == "words"


def test_b3_a_backchannel_over_the_bot_is_ignored() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            *bot_speaking(4),
            (1050, started(1000)),
            (1200, stopped(1150, 1000)),
            (1300, final("Yeah.", 0, 1000, 1250)),
        ],
    )
    assert actions == [UtteranceIgnored("Yeah.", "backchannel", ms(1300))]
    assert actions[0].rule == "B3"


def test_b3_a_sound_over_the_bot_whose_final_never_comes_is_ignored() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine, [*bot_speaking(4), (1050, started(1000)), (1200, stopped(1150)), (5000, None)]
    )
    assert actions == [UtteranceIgnored("", "no_words", ms(1200 + 1500))]
    assert actions[0].rule == "B3"


def test_b4_an_overlap_becomes_a_turn_when_the_reply_ends_first() -> None:
    machine = TurnTaking(quiet())
    actions = run(machine, [*bot_speaking(4), (1050, started(1000)), (1200, PlayoutFinished(4))])
    assert rules_of(actions) == [("StartOfTurn", "B4")]
    assert user_of(machine) is UserState.TURN


def test_b4_an_overlap_heard_only_as_echo_is_ignored_when_the_reply_ends() -> None:
    machine = TurnTaking(quiet(echo_detection=True))
    actions = run(
        machine,
        [
            *bot_echoing(7, "I can take a message"),
            (1250, started(1000)),
            (2100, partial("I can take a mass", 0, 1000, 2000)),
            (2200, PlayoutFinished(7)),
        ],
    )
    assert actions == [UtteranceIgnored("I can take a mass", "echo", ms(2200))]
    assert actions[0].rule == "B4"


# -- F: false interruptions -------------------------------------------------------------------


def interrupted(config: TurnConfig) -> TurnTaking:
    """The bot (generation 2) interrupted by speech alone at 1500: CHECKING."""
    machine = TurnTaking(config)
    run(machine, [*bot_speaking(2), (1250, started(1000)), (1600, None)])
    assert user_of(machine) is UserState.CHECKING
    return machine


def test_f1_a_word_makes_the_interruption_real(caplog: pytest.LogCaptureFixture) -> None:
    machine = interrupted(quiet())
    assert machine.feed(partial("What about", 0, 1000, 1700), ms(1700)) == []
    assert decided(caplog)[-1] == "F1"
    assert user_of(machine) is UserState.TURN


def test_f2_no_words_in_the_window_make_the_interruption_false() -> None:
    machine = interrupted(quiet())
    actions = run(machine, [(2500, progress(0, 800, 2500)), (3150, progress(0, 800, 3000))])
    assert rules_of(actions) == [("ResumeBot", "F2"), ("UtteranceIgnored", "F2")]
    assert user_of(machine) is UserState.IGNORED


def test_f2_a_final_without_words_makes_the_interruption_false() -> None:
    machine = interrupted(quiet(false_interruption="ignore"))
    actions = run(machine, [(1700, stopped(1650, 1000)), (1800, dropped(0, 1000, 1800))])
    assert actions == [UtteranceIgnored("", "false_interruption", ms(1800))]
    assert actions[0].rule == "F2"
    assert user_of(machine) is UserState.SILENT


def test_f3_a_reply_starting_while_checking_holds_the_turn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    machine = interrupted(quiet())
    assert machine.feed(ReplyStarted(3), ms(1700)) == []
    assert decided(caplog)[-1] == "F3"
    assert user_of(machine) is UserState.TURN


# -- I: ignored speech ------------------------------------------------------------------------


def ignoring(config: TurnConfig) -> TurnTaking:
    """A false interruption while the noise goes on (IGNORED), the bot resumed as generation 3."""
    machine = interrupted(config)
    run(machine, [(3100, progress(0, 800, 3050))])
    assert user_of(machine) is UserState.IGNORED
    return machine


def test_i1_words_after_ignored_noise_interrupt_again() -> None:
    machine = ignoring(quiet())
    run(machine, [(3100, ReplyStarted(3, "resume")), (3100, PlayoutProgress(3, 0))])
    actions = machine.feed(partial("excuse me sorry", 0, 800, 3300), ms(3300))
    assert rules_of(actions) == [("StartOfTurn", "I1"), ("Interrupt", "I1")]


def test_i1_words_after_ignored_noise_with_the_bot_idle_are_a_turn() -> None:
    machine = ignoring(quiet(false_interruption="ignore"))
    actions = machine.feed(partial("excuse me sorry", 0, 800, 3300), ms(3300))
    assert rules_of(actions) == [("StartOfTurn", "I1")]
    assert user_of(machine) is UserState.TURN


def test_i2_the_end_of_ignored_speech_closes_it(caplog: pytest.LogCaptureFixture) -> None:
    machine = ignoring(quiet())
    assert machine.feed(stopped(3200, 1000), ms(3200)) == []
    assert decided(caplog)[-1] == "I2"
    assert user_of(machine) is UserState.SILENT


# -- Q: quiet callers and the call's length ---------------------------------------------------


def test_q1_an_idle_caller_is_prompted_then_hung_up_on() -> None:
    machine = TurnTaking(TurnConfig(idle_timeout_ms=1000, idle_prompts=1, max_call_ms=0))
    actions = run(machine, [(5000, None)])
    assert actions == [IdlePrompt(1, ms(1000)), HangUp("idle", ms(2000))]
    assert [a.rule for a in actions] == ["Q1", "Q1"]


def test_q2_the_call_ends_at_its_length() -> None:
    machine = TurnTaking(TurnConfig(max_call_ms=60_000, idle_timeout_ms=0))
    actions = run(machine, [(70_000, None)])
    assert rules_of(actions) == [("HangUp", "Q2")]


def test_q2_wins_a_tie_with_the_end_of_a_turn() -> None:
    machine = TurnTaking(TurnConfig(max_call_ms=3250, idle_timeout_ms=0))
    run(machine, [(1250, started(1000)), (3100, stopped(3000)), (3200, final("Yes.", 0, 0, 3200))])
    assert machine.next_deadline() == ms(3250)  # the early end of turn, and the call's end
    assert rules_of(machine.advance(ms(4000))) == [("HangUp", "Q2")]


# -- E: echo ----------------------------------------------------------------------------------


def test_e1_speech_over_the_bot_follows_the_echo_verdict(
    caplog: pytest.LogCaptureFixture,
) -> None:
    machine = TurnTaking(quiet(echo_detection=True))
    run(machine, [*bot_speaking(7), (1250, started(1000))])
    assert machine.feed(EchoEstimate(True, ms(1100)), ms(1200)) == []
    assert decided(caplog)[-1] == "E1"
    assert machine.next_deadline() is None  # echo likely: speech alone waits
    actions = run(machine, [(2000, PlayoutFinished(7))])
    assert rules_of(actions) == [("UtteranceIgnored", "B4")]  # heard only as echo
