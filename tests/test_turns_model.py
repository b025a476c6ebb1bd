"""Turn-taking with the end-of-turn model (rules M1, M2 of agent/turns.py): its answers are
input events, so these are plain synchronous scripts, exact to the sample.

Times are milliseconds; each step is ``(now_ms, input)`` or ``(now_ms, None)`` for a tick. The
VAD's ``SpeechPaused`` comes 100 ms into a silence, its ``SpeechStopped`` (min_silence) 300 ms
into it, and the final transcript just after.
"""

from __future__ import annotations

import msgspec
import pytest

from agent.turns import (
    AskEndOfTurn,
    EndOfTurn,
    EndOfTurnScore,
    EndSpeech,
    StartOfTurn,
    TurnAction,
    TurnConfig,
    TurnTaking,
    UserState,
)
from tests.turns_support import (
    Step,
    final,
    ms,
    paused,
    quiet,
    run,
    started,
    stopped,
    user_of,
)


def model(**changes: object) -> TurnConfig:
    return quiet(end_of_turn_detector="model", **changes)


def score(pause: int, probability: float) -> EndOfTurnScore:
    return EndOfTurnScore(ms(pause), probability)


def ends(actions: list[TurnAction]) -> list[tuple[str, int]]:
    """Each EndOfTurn's text and when it was decided (ms)."""
    return [(a.text, a.at // 16) for a in actions if isinstance(a, EndOfTurn)]


def test_the_first_short_pause_asks_the_model_about_the_turn_so_far() -> None:
    machine = TurnTaking(model())
    actions = run(machine, [(0, started(0)), (1100, paused(1000))])
    asks = [a for a in actions if isinstance(a, AskEndOfTurn)]
    assert asks == [AskEndOfTurn(start=0, pause=ms(1000), at=ms(1100))]
    assert asks[0].rule == "M1"


def test_done_ends_the_speech_at_the_pause_and_the_turn_as_soon_as_its_final_is_in() -> None:
    machine = TurnTaking(model())
    actions = run(
        machine,
        [
            (0, started(0)),
            (1100, paused(1000)),
            (1150, score(1000, 0.9)),  # the model: done
            (1160, stopped(1000)),  # the VAD ends the speech at the pause (EndSpeech)
            (1200, final("Book a table for two", 0, 0, 1000)),
        ],
    )
    assert [a for a in actions if isinstance(a, EndSpeech)] == [EndSpeech(ms(1000), ms(1150))]
    # at once: not after the 600 ms of silence, nor the 250 of a complete-looking sentence
    assert ends(actions) == [("Book a table for two", 1200)]


def test_not_done_waits_longer_than_the_silence_rule() -> None:
    machine = TurnTaking(model(not_done_silence_ms=2000))
    actions = run(
        machine,
        [
            (0, started(0)),
            (1100, paused(1000)),
            (1150, score(1000, 0.1)),  # not done
            (1300, stopped(1000)),
            (1350, final("I would like to book a table and, um.", 0, 0, 1000)),
            (2900, None),  # past the 600 ms silence rule (and the 250 of a "complete" final)
        ],
    )
    assert ends(actions) == []
    assert user_of(machine) is UserState.TURN
    assert ends(run(machine, [(3000, None)])) == [("I would like to book a table and, um.", 3000)]


def test_the_caller_speaking_on_after_not_done_makes_one_turn_of_both_parts() -> None:
    machine = TurnTaking(model())
    actions = run(
        machine,
        [
            (0, started(0)),
            (1100, paused(1000)),
            (1150, score(1000, 0.05)),
            (1300, stopped(1000)),
            (1350, final("I would like to, um", 0, 0, 1000)),
            (1800, started(1800)),  # an 800 ms hesitation: the silence rule had ended it
            (3100, paused(3000)),
            (3150, score(3000, 0.95)),
            (3160, stopped(3000)),
            (3200, final("leave a message.", 1, 1800, 3000)),
        ],
    )
    assert ends(actions) == [("I would like to, um leave a message.", 3200)]
    assert [type(a) for a in actions].count(StartOfTurn) == 1


def test_speech_resuming_makes_the_question_moot() -> None:
    machine = TurnTaking(model())
    actions = run(
        machine,
        [
            (0, started(0)),
            (1100, paused(1000)),
            (1400, stopped(1000)),
            (1450, final("Book a table", 0, 0, 1000)),
            (1500, started(1500)),  # speaks on before the answer came
            (1550, score(1000, 0.99)),  # the late answer about the old pause: dropped
            (2500, stopped(2400)),
            (2550, final("for two please", 1, 1500, 2400)),
        ],
    )
    assert not [a for a in actions if isinstance(a, EndSpeech)]
    assert ends(actions) == []  # the silence rule (600 ms after 2400) decides, not "done"
    assert ends(run(machine, [(3000, None)])) == [("Book a table for two please", 3000)]


def test_an_answer_about_a_pause_the_speech_went_past_is_dropped() -> None:
    # a second pause of the same speech (no SpeechStopped in between): its question replaces
    # the first one's, and the first one's answer changes nothing
    machine = TurnTaking(model())
    actions = run(
        machine,
        [
            (0, started(0)),
            (600, paused(500)),
            (1100, paused(1000)),
            (1120, score(500, 0.99)),
        ],
    )
    assert [a.pause for a in actions if isinstance(a, AskEndOfTurn)] == [ms(500), ms(1000)]
    assert not [a for a in actions if isinstance(a, EndSpeech)]


def test_no_answer_leaves_the_silence_rule_in_charge() -> None:
    # a failed or refused model sends nothing: the turn ends as it would without a model
    machine = TurnTaking(model())
    actions = run(
        machine,
        [
            (0, started(0)),
            (1100, paused(1000)),
            (1300, stopped(1000)),
            (1350, final("I would like to book a table and", 0, 0, 1000)),
            (1599, None),
        ],
    )
    assert ends(actions) == []
    assert ends(run(machine, [(1600, None)])) == [("I would like to book a table and", 1600)]


def test_an_answer_later_than_the_silence_rule_changes_nothing() -> None:
    machine = TurnTaking(model())
    actions = run(
        machine,
        [
            (0, started(0)),
            (1100, paused(1000)),
            (1300, stopped(1000)),
            (1350, final("Book a table for two.", 0, 0, 1000)),
            (1400, None),  # the complete-looking final: 250 ms after the stop
            (1500, score(1000, 0.1)),  # a slow "not done" after the turn has ended
        ],
    )
    assert ends(actions) == [("Book a table for two.", 1350)]
    assert user_of(machine) is UserState.SILENT


def test_a_not_done_answered_after_the_stop_still_holds_the_turn() -> None:
    machine = TurnTaking(model())
    actions = run(
        machine,
        [
            (0, started(0)),
            (1100, paused(1000)),
            (1300, stopped(1000)),
            (1320, score(1000, 0.2)),
            (1350, final("Book a table.", 0, 0, 1000)),
            (2999, None),
        ],
    )
    assert ends(actions) == []
    assert not [a for a in actions if isinstance(a, EndSpeech)]  # the VAD had ended it


def test_the_threshold_decides_what_done_is() -> None:
    def ended(probability: float) -> bool:
        machine = TurnTaking(model(end_of_turn_threshold=0.7))
        steps: list[Step] = [
            (0, started(0)),
            (1100, paused(1000)),
            (1150, score(1000, probability)),
            (1300, stopped(1000)),
            (1350, final("Book a table", 0, 0, 1000)),
        ]
        return bool(ends(run(machine, steps)))

    assert ended(0.7)
    assert not ended(0.69)


@pytest.mark.parametrize(
    "config",
    [quiet(), quiet(end_of_turn_detector="model", end_of_turn=False)],
    ids=["silence-detector", "end-of-turn-off"],
)
def test_nothing_is_asked_unless_the_model_decides_pauses(config: TurnConfig) -> None:
    machine = TurnTaking(config)
    actions = run(machine, [(0, started(0)), (1100, paused(1000)), (1150, score(0, 0.99))])
    assert not [a for a in actions if isinstance(a, AskEndOfTurn | EndSpeech)]


def test_not_done_silence_may_not_be_shorter_than_the_silence_rule() -> None:
    with pytest.raises(ValueError, match="not_done_silence_ms"):
        model(end_of_turn_silence_ms=800, not_done_silence_ms=700)
    # the silence detector does not read it
    assert quiet(end_of_turn_silence_ms=800, not_done_silence_ms=700)


def test_the_model_settings_decode_from_a_file_section() -> None:
    config = msgspec.convert(
        {"end_of_turn_detector": "model", "end_of_turn_threshold": 0.6}, TurnConfig
    )
    assert (config.end_of_turn_detector, config.end_of_turn_threshold) == ("model", 0.6)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"end_of_turn_detector": "llm"}, TurnConfig)
