"""Turn-taking: the end-of-turn, greeting, idle, config and property rules of agent/turns.py.

Barge-in and false interruptions are in tests/test_barge_in.py; the rule table as data, and
which rule decides what, in tests/test_turn_rules.py.

Times in the scripts are milliseconds (converted to 16 kHz samples); each step is
``(now_ms, input)`` or ``(now_ms, None)`` for a clock tick.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.turn_rules import RULES
from agent.turns import (
    NO_TEXT_WAITS,
    BotState,
    CommitTurn,
    DiscardTurn,
    EndOfTurn,
    HangUp,
    IdlePrompt,
    Interrupt,
    PlayoutFinished,
    PlayoutProgress,
    PlayoutStarted,
    ReplyStarted,
    StartOfTurn,
    TurnConfig,
    TurnInput,
    TurnTaking,
    UserState,
    UtteranceIgnored,
    content_words,
    looks_complete,
)
from pipeline.asr.events import Transcript
from tests.turns_support import (
    Step,
    bot_of,
    bot_speaking,
    dropped,
    final,
    ms,
    partial,
    paused,
    quiet,
    run,
    started,
    stopped,
    user_of,
)

# -- end of turn ------------------------------------------------------------------------------


def test_a_complete_sentence_ends_the_turn_after_the_short_silence() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            (1250, started(1000)),
            (3100, stopped(3000, 1000)),
            (3200, final("Book a table for two.", 0, 800, 3200)),
            (5000, None),
        ],
    )
    assert actions == [
        StartOfTurn(ms(1000), ms(1250)),
        EndOfTurn("Book a table for two.", ms(1000), ms(3000), ms(3250), early=True),
    ]
    assert user_of(machine) is UserState.SILENT


def cut(text: str, utterance: int, start: int, end: int) -> Transcript:
    """A final the ASR cut at its longest utterance (the speech goes on after ``end``)."""
    return msgspec.structs.replace(final(text, utterance, start, end), cut=True)


def test_an_utterance_cut_for_length_ends_the_turn_and_the_speech_after_it_is_the_next() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            (1250, started(1000)),
            (3100, cut("I would like a table", 0, 800, 3000)),
            (4100, stopped(4000, 1000)),
            (4200, final("for two.", 1, 3000, 4200)),
            (6000, None),
        ],
    )
    assert actions == [
        StartOfTurn(ms(1000), ms(1250)),
        EndOfTurn("I would like a table", ms(1000), ms(3000), ms(3100)),
        StartOfTurn(ms(3000), ms(3100)),
        EndOfTurn("for two.", ms(3000), ms(4000), ms(4250), early=True),
    ]


def test_a_cut_reported_after_the_speech_stopped_still_ends_a_turn_there() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            (1250, started(1000)),
            (4100, stopped(4000, 1000)),  # a lagging ASR: the cut's final comes later
            (4200, cut("I would like a table", 0, 800, 3000)),
            (4300, final("for two.", 1, 3000, 4200)),
            (6000, None),
        ],
    )
    assert actions == [
        StartOfTurn(ms(1000), ms(1250)),
        EndOfTurn("I would like a table", ms(1000), ms(3000), ms(4200)),
        StartOfTurn(ms(3000), ms(4200)),
        EndOfTurn("for two.", ms(3000), ms(4000), ms(4300), early=True),
    ]


def test_speech_going_on_after_a_cut_talks_over_the_answer() -> None:
    machine = TurnTaking(quiet())
    run(
        machine,
        [
            (1250, started(1000)),
            (3100, cut("I would like a table", 0, 800, 3000)),
            (3200, ReplyStarted(1)),
        ],
    )
    assert user_of(machine) is UserState.OVERLAP  # a barge-in candidate, as after a pause


def test_an_unfinished_sentence_waits_for_the_full_silence() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            (1250, started(1000)),
            (3100, stopped(3000, 1000)),
            (3200, final("I want to book a table for", 0, 800, 3200)),
            (3500, None),
            (3599, None),
            (3700, None),
        ],
    )
    assert actions[1:] == [
        EndOfTurn("I want to book a table for", ms(1000), ms(3000), ms(3600), early=False)
    ]


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("Book a table for two.", True),
        ("Is it open?", True),
        ("Stop!", True),
        ("I want to book a table for", False),
        ("I was thinking...", False),
        ("Table for two and", False),
        ("Table for two, and.", False),
        ("", False),
        ("...", False),
    ],
)
def test_what_looks_like_a_finished_sentence(text: str, complete: bool) -> None:
    assert looks_complete(text) is complete


def test_the_turn_waits_for_a_late_final_and_ends_when_it_arrives() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            (1250, started(1000)),
            (3100, stopped(3000, 1000)),
            (3400, partial("Hello there", 0, 800, 3000)),
            (4000, None),  # the silence has passed, the final is not in yet
            (4200, final("Hello there, how are you", 0, 800, 3200)),
        ],
    )
    assert actions[1:] == [EndOfTurn("Hello there, how are you", ms(1000), ms(3000), ms(4200))]


def test_a_final_that_never_comes_ends_the_turn_with_the_partial() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            (1250, started(1000)),
            (2000, partial("Hello there", 0, 800, 2000)),
            (3100, stopped(3000, 1000)),
            (10_000, None),
        ],
    )
    # silence 600 ms + final wait 1500 ms after the stop
    assert actions[1:] == [EndOfTurn("Hello there", ms(1000), ms(3000), ms(5100))]
    # the final arriving after all is stale: it belongs to a closed turn
    assert machine.feed(final("Hello there you", 0, 800, 3200), ms(10_100)) == []


def test_without_the_partial_fallback_a_late_final_is_waited_for_longer() -> None:
    machine = TurnTaking(msgspec.structs.replace(quiet(), partial_fallback=False))
    actions = run(
        machine,
        [
            (1250, started(1000)),
            (2000, partial("Hello there", 0, 800, 2000)),
            (3100, stopped(3000, 1000)),
            (5200, None),  # past silence + final wait: the partial alone does not end it
            (6500, final("Hello there you", 0, 800, 3200)),
        ],
    )
    assert actions[1:] == [EndOfTurn("Hello there you", ms(1000), ms(3000), ms(6500))]
    lost = TurnTaking(msgspec.structs.replace(quiet(), partial_fallback=False))
    actions = run(
        lost,
        [
            (1250, started(1000)),
            (2000, partial("Hello there", 0, 800, 2000)),
            (3100, stopped(3000, 1000)),
            (20_000, None),
        ],
    )
    # a lost final: silence 600 ms + NO_TEXT_WAITS x 1500 ms after the stop, then the partial
    due = 3000 + 600 + NO_TEXT_WAITS * 1500
    assert actions[1:] == [EndOfTurn("Hello there", ms(1000), ms(3000), ms(due))]


def test_a_lagging_pipeline_waits_for_the_final_from_when_the_stop_arrives() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            (1250, started(1000)),
            # the stop reaches turn-taking 3 s late (a loaded machine): long past stop +
            # silence + final wait, but the final is still on its way
            (6000, stopped(3000, 1000)),
            (6000, None),
            (7000, final("Hello there", 0, 800, 3200)),
            (7000, None),
        ],
    )
    assert actions[1:] == [EndOfTurn("Hello there", ms(1000), ms(3000), ms(7000))]


def test_a_short_pause_keeps_one_turn_and_joins_its_utterances() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            (1250, started(1000)),
            (2100, stopped(2000, 1000)),
            (2300, final("I'd like a table", 0, 800, 2200)),
            (2400, started(2300)),  # 300 ms later: the same turn
            (3600, stopped(3500, 2300)),
            (3700, final("for four people.", 1, 2400, 3700)),
            (5000, None),
        ],
    )
    assert actions == [
        StartOfTurn(ms(1000), ms(1250)),
        EndOfTurn("I'd like a table for four people.", ms(1000), ms(3500), ms(3750), True),
    ]


def test_speech_without_words_is_not_a_turn_and_says_why() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [(1250, started(1000)), (1700, stopped(1600, 1000)), (1800, dropped(0, 800, 1800))],
    )
    actions += run(machine, [(3000, None)])
    assert actions == [
        StartOfTurn(ms(1000), ms(1250)),
        UtteranceIgnored("", "no_words", ms(2200)),
    ]


def test_fillers_alone_are_not_a_turn() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [(1250, started(1000)), (1700, stopped(1600)), (1800, final("Um, hmm.", 0, 800, 1800))],
    )
    actions += machine.advance(ms(3000))
    assert actions[-1] == UtteranceIgnored("Um, hmm.", "no_words", ms(1850))


def test_a_final_without_vad_events_still_makes_a_turn() -> None:
    machine = TurnTaking(quiet())
    actions = run(machine, [(3000, final("Hello.", 0, 1000, 2800)), (4000, None)])
    assert actions == [
        StartOfTurn(ms(1000), ms(3000)),
        EndOfTurn("Hello.", ms(1000), ms(2800), ms(3050), early=True),
    ]


def test_end_of_turn_off_waits_for_a_commit() -> None:
    machine = TurnTaking(quiet(end_of_turn=False))
    actions = run(
        machine,
        [
            (1250, started(1000)),
            (3100, stopped(3000)),
            (3200, final("Hello there.", 0, 800, 3200)),
            (9000, None),
        ],
    )
    assert actions == [StartOfTurn(ms(1000), ms(1250))]
    assert machine.feed(CommitTurn(), ms(9500)) == [
        EndOfTurn("Hello there.", ms(1000), ms(3000), ms(9500))
    ]


def test_a_commit_while_speaking_ends_the_turn_when_its_final_is_in() -> None:
    machine = TurnTaking(quiet(end_of_turn=False))
    run(machine, [(1250, started(1000)), (2000, CommitTurn())])
    actions = machine.feed(final("Push to talk.", 0, 800, 2000), ms(2300))
    assert actions == [EndOfTurn("Push to talk.", ms(1000), ms(2000), ms(2300))]


def test_a_discarded_turn_is_reported() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            (1250, started(1000)),
            (2000, partial("never mind", 0, 800, 2000)),
            (2100, DiscardTurn()),
            (2500, stopped(2400)),
            (2600, final("never mind", 0, 800, 2600)),
            (5000, None),
        ],
    )
    assert actions == [
        StartOfTurn(ms(1000), ms(1250)),
        UtteranceIgnored("never mind", "discarded", ms(2100)),
    ]


# -- greeting, barge-in off -------------------------------------------------------------------


def test_an_uninterruptible_greeting_holds_the_turn_until_it_ends() -> None:
    machine = TurnTaking(quiet(greeting_interruptible=False))
    actions = run(
        machine,
        [
            *bot_speaking(1, kind="greeting"),
            (1250, started(1000)),
            (1500, partial("Hi I need", 0, 800, 1500)),
            (2100, stopped(2000, 1000)),
            (2200, final("Hi, I need a taxi.", 0, 800, 2200)),
            (3000, None),
        ],
    )
    assert actions == [StartOfTurn(ms(1000), ms(1500))]
    assert machine.feed(PlayoutFinished(1, 64000), ms(4000)) == [
        EndOfTurn("Hi, I need a taxi.", ms(1000), ms(2000), ms(4000), True)
    ]


def test_the_greeting_is_interruptible_by_default() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [*bot_speaking(1, kind="greeting"), (1250, started(1000)), (1600, None)],
    )
    assert Interrupt(1, 0, ms(1500), "speech") in actions


def test_with_barge_in_off_speech_over_the_bot_waits_its_turn() -> None:
    machine = TurnTaking(quiet(barge_in=False))
    actions = run(
        machine,
        [
            *bot_speaking(6),
            (1250, started(1000)),
            (2100, stopped(2000, 1000)),
            (2200, final("Can I ask something?", 0, 800, 2200)),
            (3000, PlayoutFinished(6)),
        ],
    )
    assert actions == [
        StartOfTurn(ms(1000), ms(1500)),
        EndOfTurn("Can I ask something?", ms(1000), ms(2000), ms(3000), True),
    ]


# -- idle and call length ---------------------------------------------------------------------


def test_an_idle_caller_is_prompted_then_hung_up_on() -> None:
    machine = TurnTaking(TurnConfig(idle_timeout_ms=8000, idle_prompts=1, max_call_ms=0))
    assert machine.next_deadline() == ms(8000)
    actions = run(machine, [(9000, None)])
    assert actions == [IdlePrompt(1, ms(8000))]
    actions = run(
        machine, [(9000, ReplyStarted(1, "prompt")), (9100, PlayoutStarted(1)), (11_000, None)]
    )
    assert actions == []
    actions = run(machine, [(12_000, PlayoutFinished(1)), (30_000, None)])
    assert actions == [HangUp("idle", ms(20_000))]
    assert machine.closed
    assert machine.feed(started(31_000), ms(31_000)) == []
    assert machine.next_deadline() is None


def test_a_turn_resets_the_idle_prompts() -> None:
    machine = TurnTaking(TurnConfig(idle_timeout_ms=1000, idle_prompts=1, max_call_ms=0))
    assert run(machine, [(1000, None)]) == [IdlePrompt(1, ms(1000))]
    actions = run(
        machine,
        [
            (1500, started(1400)),
            (2100, stopped(2000)),
            (2200, final("Sorry, yes.", 0, 1300, 2200)),
            (2300, None),
        ],
    )
    assert isinstance(actions[-1], EndOfTurn)
    assert run(machine, [(4000, None)]) == [IdlePrompt(1, ms(3250))]


def test_the_call_ends_at_its_maximum_length() -> None:
    machine = TurnTaking(TurnConfig(max_call_ms=60_000, idle_timeout_ms=0))
    actions = run(machine, [(1250, started(1000)), (70_000, None)])
    assert actions == [StartOfTurn(ms(1000), ms(1250)), HangUp("max_duration", ms(60_000))]
    assert machine.feed(stopped(70_000), ms(70_000)) == []


def test_next_deadline_names_the_end_of_turn() -> None:
    machine = TurnTaking(quiet())
    run(machine, [(1250, started(1000)), (3100, stopped(3000))])
    # no final yet, and no partial to fall back on: NO_TEXT_WAITS final waits
    assert machine.next_deadline() == ms(3000 + 600 + 4 * 1500)
    run(machine, [(3150, partial("So", 0, 800, 3000))])
    assert machine.next_deadline() == ms(3000 + 600 + 1500)  # a partial: one final wait
    run(machine, [(3200, final("So", 0, 800, 3200))])
    assert machine.next_deadline() == ms(3600)


def test_playout_of_an_unannounced_reply_counts_as_a_reply() -> None:
    machine = TurnTaking(quiet())
    run(machine, [(0, PlayoutStarted(3))])
    assert bot_of(machine) is BotState.SPEAKING
    run(machine, [(100, PlayoutFinished(3))])
    assert bot_of(machine) is BotState.IDLE
    run(machine, [(200, PlayoutStarted(2))])  # older than one already seen: stale
    assert bot_of(machine) is BotState.IDLE


# -- config -----------------------------------------------------------------------------------


def test_turn_config_decodes_strictly() -> None:
    config = msgspec.convert({"end_of_turn_silence_ms": 700}, TurnConfig)
    assert config.end_of_turn_silence_ms == 700
    with pytest.raises(msgspec.ValidationError, match="end_of_turn_silenc"):
        msgspec.convert({"end_of_turn_silenc_ms": 700}, TurnConfig)


@pytest.mark.parametrize(
    "changes",
    [
        {"end_of_turn_silence_ms": -1},
        {"early_end_of_turn_silence_ms": 900},
        {"echo_overlap": 0.0},
        {"barge_in_mode": "words", "barge_in_min_words": 0},
    ],
)
def test_turn_config_rejects_nonsense(changes: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(changes, TurnConfig)


# -- properties -------------------------------------------------------------------------------


def _inputs(max_ms: int = 20_000) -> st.SearchStrategy[list[tuple[int, TurnInput]]]:
    at = st.integers(0, max_ms)
    generation = st.integers(1, 4)
    texts = st.sampled_from(["", "yeah", "um", "stop please", "What time is it?", "and then"])
    event: st.SearchStrategy[TurnInput] = st.one_of(
        at.map(started),
        st.builds(stopped, at),
        st.builds(paused, at),
        st.builds(partial, texts, st.integers(0, 3), at, at),
        st.builds(final, texts, st.integers(0, 3), at, at),
        st.builds(dropped, st.integers(0, 3), at, at),
        st.builds(ReplyStarted, generation, st.sampled_from(["answer", "greeting", "resume"])),
        st.builds(PlayoutStarted, generation),
        st.builds(PlayoutProgress, generation, st.integers(0, 50_000), texts),
        st.builds(PlayoutFinished, generation),
        st.just(CommitTurn()),
        st.just(DiscardTurn()),
    )
    return st.lists(st.tuples(at, event), max_size=40).map(
        lambda steps: sorted(steps, key=lambda step: step[0])
    )


CONFIGS = st.sampled_from(
    [
        TurnConfig(idle_timeout_ms=3000, max_call_ms=18_000),
        TurnConfig(barge_in_mode="speech_and_words", idle_timeout_ms=0),
        TurnConfig(greeting_interruptible=False, false_interruption="reanswer"),
        TurnConfig(end_of_turn=False, barge_in=False),
    ]
)


@settings(max_examples=300, deadline=None)
@given(CONFIGS, _inputs(), st.lists(st.integers(0, 25_000), max_size=30))
def test_ticks_in_between_never_change_the_actions(
    config: TurnConfig, steps: list[tuple[int, TurnInput]], ticks: list[int]
) -> None:
    plain = run(TurnTaking(config), [*steps, (25_000, None)])
    ticked: list[Step] = [(t, None) for t in ticks]
    merged = sorted([*steps, *ticked], key=lambda step: step[0])  # stable: events keep order
    with_ticks = run(TurnTaking(config), [*merged, (25_000, None)])
    assert with_ticks == plain
    assert [a.rule for a in with_ticks] == [a.rule for a in plain]  # decided by the same rules


@settings(max_examples=300, deadline=None)
@given(CONFIGS, _inputs())
def test_actions_keep_their_promises(
    config: TurnConfig, steps: list[tuple[int, TurnInput]]
) -> None:
    machine = TurnTaking(config)
    actions = run(machine, [*steps, (25_000, None)])
    interrupted = [a.generation for a in actions if isinstance(a, Interrupt)]
    assert len(interrupted) == len(set(interrupted)), "a reply is interrupted at most once"
    times = [a.at for a in actions if not isinstance(a, StartOfTurn)]
    assert times == sorted(times), "actions come in time order"
    for action in actions:
        if isinstance(action, EndOfTurn):
            assert content_words(action.text)
    hangups = [n for n, a in enumerate(actions) if isinstance(a, HangUp)]
    assert hangups in ([], [len(actions) - 1]), "nothing follows a hang-up"
    assert {a.rule for a in actions} <= {rule.id for rule in RULES}, "each names its rule"
