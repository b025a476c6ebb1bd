"""The early end at a pause (rule P1 of agent/turns.py): ``early_end_of_turn_silence_ms`` counted
from the VAD's pause, since the VAD's own stop (``min_silence``, 320 ms in the default agent)
comes after it.

Times are milliseconds; each step is ``(now_ms, input)`` or ``(now_ms, None)`` for a tick. The
VAD's ``SpeechPaused`` comes 100 ms into a silence and the ASR's speculative final of the speech
so far (a partial that covers the pause) just after it; the VAD's own ``SpeechStopped`` would
come 320 ms into the silence. With the defaults, a complete-looking text ends the speech
250 ms after the pause.
"""

from __future__ import annotations

import pytest

from agent.turns import (
    AskEndOfTurn,
    EndOfTurn,
    EndSpeech,
    TurnAction,
    TurnConfig,
    TurnTaking,
    UserState,
)
from tests.turns_support import (
    Step,
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

SPOKEN: list[Step] = [(0, started(0)), (1100, paused(1000))]


def ends(actions: list[TurnAction]) -> list[EndOfTurn]:
    return [a for a in actions if isinstance(a, EndOfTurn)]


def end_speech(actions: list[TurnAction]) -> list[EndSpeech]:
    return [a for a in actions if isinstance(a, EndSpeech)]


def test_a_complete_sentence_ends_the_speech_at_the_pause_after_the_short_silence() -> None:
    machine = TurnTaking(quiet())
    actions = run(machine, [*SPOKEN, (1180, partial("Book a table for two.", 0, 0, 1100))])
    assert end_speech(actions) == []
    assert machine.next_deadline() == ms(1000 + 250)
    actions = run(machine, [(1250, None)])
    assert actions == [EndSpeech(ms(1000), ms(1250), until=ms(1250))]
    assert actions[0].rule == "P1"
    # the VAD ends the speech there and the ASR's speculative decode is the final: at once
    actions = run(
        machine, [(1250, stopped(1000)), (1250, final("Book a table for two.", 0, 0, 1100))]
    )
    assert actions == [EndOfTurn("Book a table for two.", 0, ms(1000), ms(1250), early=True)]
    assert actions[0].rule == "T5"
    assert user_of(machine) is UserState.SILENT


def test_the_turn_ends_as_soon_as_the_stop_and_final_come_back() -> None:
    machine = TurnTaking(quiet())
    script: list[Step] = [
        *SPOKEN,
        (1180, partial("Book a table for two.", 0, 0, 1100)),
        (1260, stopped(1000)),  # the VAD's answer to EndSpeech, 10 ms later
        (1290, final("Book a table for two.", 0, 0, 1100)),
    ]
    actions = run(machine, script)
    assert end_speech(actions) == [EndSpeech(ms(1000), ms(1250), until=ms(1250))]
    assert [(a.end, a.at) for a in ends(actions)] == [(ms(1000), ms(1290))]


def test_an_unfinished_sentence_waits_for_the_vads_stop_and_the_full_silence() -> None:
    machine = TurnTaking(quiet())
    script: list[Step] = [
        *SPOKEN,
        (1180, partial("Book a table for", 0, 0, 1100)),
        (1250, None),
        (1330, stopped(1000)),  # the VAD's own stop: 320 ms of silence
        (1350, final("Book a table for", 0, 0, 1200)),
        (1599, None),
    ]
    actions = run(machine, script)
    assert end_speech(actions) == []
    assert ends(actions) == []
    actions = run(machine, [(1600, None)])
    assert actions == [EndOfTurn("Book a table for", 0, ms(1000), ms(1600), early=False)]


def test_text_of_the_speech_before_the_pause_is_not_what_the_speech_so_far_says() -> None:
    machine = TurnTaking(quiet())
    # a partial decoded before the pause looked complete; the ASR has not yet heard to it
    run(machine, [(0, started(0)), (950, partial("Book a table.", 0, 0, 900))])
    run(machine, [(1100, paused(1000)), (1250, None)])
    assert machine.next_deadline() is None
    # the speculative final decodes to the same text: progress, not a new partial
    actions = run(machine, [(1260, progress(0, 0, 1100))])
    assert actions == [EndSpeech(ms(1000), ms(1260), until=ms(1250))]


def test_speech_resumed_after_the_stop_cancels_the_early_end() -> None:
    # a VAD with a short min_silence reports the stop before the deadline, then speech again
    machine = TurnTaking(quiet())
    script: list[Step] = [
        *SPOKEN,
        (1150, partial("Book a table.", 0, 0, 1100)),
        (1200, stopped(1000)),
        (1240, started(1230)),
        (1800, None),
    ]
    actions = run(machine, script)
    assert end_speech(actions) == []
    assert ends(actions) == []
    assert user_of(machine) is UserState.TURN


def test_a_newer_pause_replaces_the_one_the_caller_spoke_after() -> None:
    machine = TurnTaking(quiet())
    script: list[Step] = [
        *SPOKEN,
        (1150, partial("Book a table.", 0, 0, 1100)),
        # the caller said "and" from 1110 to 1140: the VAD's silence began again there
        (1240, paused(1140)),
        (1260, partial("Book a table and", 0, 0, 1240)),
        (1400, None),
    ]
    actions = run(machine, script)
    assert end_speech(actions) == []
    assert machine.next_deadline() is None


def test_speech_the_vad_heard_before_the_deadline_keeps_one_turn() -> None:
    # EndSpeech went out, but the caller had spoken on: the VAD's silence no longer began at
    # the pause, so it sent no stop; the turn goes on to the next pause
    machine = TurnTaking(quiet())
    script: list[Step] = [
        *SPOKEN,
        (1150, partial("Book a table.", 0, 0, 1100)),
        (1250, None),
        (1700, partial("Book a table for two", 0, 0, 1700)),
        (2100, paused(2000)),
        (2150, partial("Book a table for two.", 0, 0, 2100)),
        (2250, None),
        (2250, stopped(2000)),
        (2250, final("Book a table for two.", 0, 0, 2100)),
    ]
    actions = run(machine, script)
    assert end_speech(actions) == [
        EndSpeech(ms(1000), ms(1250), until=ms(1250)),
        EndSpeech(ms(2000), ms(2250), until=ms(2250)),
    ]
    assert ends(actions) == [EndOfTurn("Book a table for two.", 0, ms(2000), ms(2250), early=True)]


def test_a_speculative_final_later_than_the_deadline_ends_the_speech_at_once() -> None:
    machine = TurnTaking(quiet())
    actions = run(machine, [*SPOKEN, (1300, None), (1310, partial("Yes.", 0, 0, 1100))])
    assert actions[-1:] == [EndSpeech(ms(1000), ms(1310), until=ms(1250))]


def test_a_final_after_the_vads_own_stop_ends_the_turn_at_once() -> None:
    machine = TurnTaking(quiet())
    script: list[Step] = [
        *SPOKEN,
        (1330, stopped(1000)),  # the VAD's stop came before any text
        (1400, final("Yes.", 0, 0, 1200)),
    ]
    actions = run(machine, script)
    assert end_speech(actions) == []
    assert ends(actions) == [EndOfTurn("Yes.", 0, ms(1000), ms(1400), early=True)]


def test_a_final_that_does_not_look_complete_leaves_the_silence_rule() -> None:
    machine = TurnTaking(quiet())
    script: list[Step] = [
        *SPOKEN,
        (1150, partial("I want to go home.", 0, 0, 1100)),
        (1250, stopped(1000)),
        (1260, final("I want to go home and", 0, 0, 1100)),  # the final hears more
        (1599, None),
    ]
    assert ends(run(machine, script)) == []
    assert [a.at for a in ends(run(machine, [(1600, None)]))] == [ms(1600)]


@pytest.mark.parametrize(
    "config",
    [
        quiet(early_end_of_turn_silence_ms=600),  # no shorter silence to act on
        quiet(end_of_turn=False),  # only a commit ends turns
    ],
)
def test_no_early_end_without_a_shorter_silence_to_end_on(config: TurnConfig) -> None:
    machine = TurnTaking(config)
    actions = run(machine, [*SPOKEN, (1150, partial("Yes.", 0, 0, 1100)), (2000, None)])
    assert end_speech(actions) == []


def test_with_the_model_deciding_pauses_the_model_is_asked_instead() -> None:
    machine = TurnTaking(quiet(end_of_turn_detector="model"))
    actions = run(machine, [*SPOKEN, (1150, partial("Yes.", 0, 0, 1100)), (2000, None)])
    assert end_speech(actions) == []
    assert [a for a in actions if isinstance(a, AskEndOfTurn)] == [
        AskEndOfTurn(0, ms(1000), ms(1100))
    ]
