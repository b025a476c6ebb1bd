"""Turn-taking and barge-in: the rules of agent/turns.py, scenario by scenario.

Times in the scripts are milliseconds (converted to 16 kHz samples); each step is
``(now_ms, input)`` or ``(now_ms, None)`` for a clock tick.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.turns import (
    ECHO_JUDGE_MS,
    BotState,
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
    ReplyStarted,
    ResumeBot,
    StartOfTurn,
    TurnAction,
    TurnConfig,
    TurnInput,
    TurnTaking,
    UserState,
    UtteranceIgnored,
    content_words,
    is_echo,
    looks_complete,
)
from pipeline.asr.events import Transcript, TranscriptDropped
from pipeline.vad.events import SpeechStarted, SpeechStopped

MS = 16  # samples per millisecond at 16 kHz
Step = tuple[int, TurnInput | None]


def ms(value: int) -> int:
    return value * MS


def started(at: int) -> SpeechStarted:
    return SpeechStarted(session_id="s", sample=ms(at), audio_start=ms(at - 200), probability=0.9)


def stopped(at: int, start: int = 0) -> SpeechStopped:
    return SpeechStopped(session_id="s", sample=ms(at), speech_start=ms(start))


def partial(text: str, utterance: int, start: int, end: int) -> Transcript:
    return Transcript(
        session_id="s", utterance=utterance, is_final=False, text=text, start=ms(start), end=ms(end)
    )


def final(text: str, utterance: int, start: int, end: int) -> Transcript:
    return Transcript(
        session_id="s", utterance=utterance, is_final=True, text=text, start=ms(start), end=ms(end)
    )


def dropped(utterance: int, start: int, end: int) -> TranscriptDropped:
    return TranscriptDropped(
        session_id="s", utterance=utterance, reason="too_short", start=ms(start), end=ms(end)
    )


def bot_of(machine: TurnTaking) -> BotState:
    return machine.bot  # a call, so that mypy does not narrow the state across steps


def user_of(machine: TurnTaking) -> UserState:
    return machine.user


def run(machine: TurnTaking, script: list[Step]) -> list[TurnAction]:
    actions: list[TurnAction] = []
    for at, event in script:
        if event is None:
            actions += machine.advance(ms(at))
        else:
            actions += machine.feed(event, ms(at))
    return actions


def quiet(**changes: object) -> TurnConfig:
    """The defaults without the idle and call-length timers (most tests are not about them),
    and with the echo guard whenever the bot is audible (``echo_detection`` off: the barge-in
    goldens below were written for it; the detector's verdicts have their own tests)."""
    config = TurnConfig(idle_timeout_ms=0, max_call_ms=0, echo_detection=False)
    return msgspec.structs.replace(config, **changes)


def bot_speaking(generation: int = 7, at: int = 0, kind: str = "answer") -> list[Step]:
    return [(at, ReplyStarted(generation, kind)), (at, PlayoutStarted(generation))]  # type: ignore[arg-type]


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


# -- barge-in ---------------------------------------------------------------------------------


def test_speech_over_the_bot_interrupts_after_the_echo_guarded_minimum() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            *bot_speaking(7),
            (900, PlayoutProgress(7, 16000, "Our opening hours are")),
            (1250, started(1000)),
            (1499, None),
            (1600, None),
        ],
    )
    # 300 ms minimum + 200 ms echo guard, from the speech start
    assert actions == [
        StartOfTurn(ms(1000), ms(1500)),
        Interrupt(7, 16000, ms(1500), "speech"),
    ]
    assert user_of(machine) is UserState.CHECKING
    assert bot_of(machine) is BotState.IDLE
    # words follow: a real interruption, then an ordinary end of turn
    actions = run(
        machine,
        [
            (1800, partial("What about Sunday", 0, 800, 1800)),
            (2600, stopped(2500)),
            (2700, final("What about Sunday?", 0, 800, 2700)),
            (4000, None),
        ],
    )
    assert actions == [EndOfTurn("What about Sunday?", ms(1000), ms(2500), ms(2750), True)]


def test_with_no_echo_speech_over_the_bot_interrupts_at_the_minimum_speech() -> None:
    """The detector finds no echo (its verdict so far, and the default): B1 at onset + 300."""
    machine = TurnTaking(quiet(echo_detection=True))
    actions = run(
        machine,
        [
            *bot_speaking(7),
            (500, EchoEstimate(False, ms(500))),
            (900, PlayoutProgress(7, 16000, "Our opening hours are")),
            (1250, started(1000)),
            (1299, None),
            (1400, None),
        ],
    )
    assert actions == [StartOfTurn(ms(1000), ms(1300)), Interrupt(7, 16000, ms(1300), "speech")]
    assert user_of(machine) is UserState.CHECKING


def test_while_echo_is_likely_speech_alone_does_not_interrupt_but_words_do() -> None:
    machine = TurnTaking(quiet(echo_detection=True))
    actions = run(
        machine,
        [
            *bot_speaking(7),
            (500, EchoEstimate(True, ms(500))),
            (900, PlayoutProgress(7, 16000, "Our opening hours are")),
            (1250, started(1000)),
            (3000, None),  # two seconds of what may be the bot's own voice
            (3100, partial("our opening hours", 0, 1000, 3000)),  # it is: the bot's words
            (3200, None),
        ],
    )
    assert machine.echo_likely
    assert actions == []
    assert machine.next_deadline() is None
    actions = run(machine, [(3300, partial("wait, I need a table", 0, 1000, 3200))])
    assert actions == [
        StartOfTurn(ms(1000), ms(3300)),
        Interrupt(7, 16000, ms(3300), "words"),
    ]


def test_speech_at_the_start_of_a_reply_waits_until_the_detector_can_have_heard_its_echo() -> None:
    """The bot became audible at 1000; the caller starts at 1050: the detector has heard no
    echo yet (its verdict is 'not likely', but it cannot know), so B1 waits for
    audible + echo_max_delay_ms + ECHO_JUDGE_MS."""
    machine = TurnTaking(quiet(echo_detection=True))
    settled = 1000 + 500 + ECHO_JUDGE_MS
    actions = run(
        machine,
        [
            *bot_speaking(7, at=1000),
            (1300, started(1050)),
            (settled - 1, None),
            (settled + 100, None),
        ],
    )
    at = ms(settled)
    assert actions == [StartOfTurn(ms(1050), at), Interrupt(7, 0, at, "speech")]


def test_the_guard_follows_the_verdict_while_the_caller_speaks() -> None:
    """Echo likely at the onset, then the detector sees the caller above the echo: the
    deadline falls back to onset + min_speech (already past: the barge-in is at once)."""
    machine = TurnTaking(quiet(echo_detection=True))
    actions = run(
        machine,
        [
            *bot_speaking(7),
            (500, EchoEstimate(True, ms(500))),
            (1250, started(1000)),
            (1350, None),
            (1380, EchoEstimate(False, ms(1200))),
        ],
    )
    assert actions == [StartOfTurn(ms(1000), ms(1380)), Interrupt(7, 0, ms(1380), "speech")]


def test_echo_likely_before_the_bot_is_audible_adds_no_guard() -> None:
    machine = TurnTaking(quiet(echo_detection=True))
    actions = run(
        machine,
        [(0, ReplyStarted(3)), (0, EchoEstimate(True)), (1250, started(1000)), (2000, None)],
    )
    assert actions == [StartOfTurn(ms(1000), ms(1300)), Interrupt(3, 0, ms(1300), "speech")]


def test_with_echo_detection_off_the_guard_ignores_the_verdict() -> None:
    machine = TurnTaking(quiet(echo_detection=False))
    actions = run(
        machine,
        [*bot_speaking(7), (500, EchoEstimate(False)), (1250, started(1000)), (2000, None)],
    )
    assert actions == [StartOfTurn(ms(1000), ms(1500)), Interrupt(7, 0, ms(1500), "speech")]


def test_before_the_bot_is_audible_the_echo_guard_does_not_apply() -> None:
    machine = TurnTaking(quiet())
    actions = run(machine, [(0, ReplyStarted(3)), (1250, started(1000)), (2000, None)])
    assert actions == [StartOfTurn(ms(1000), ms(1300)), Interrupt(3, 0, ms(1300), "speech")]


def test_words_interrupt_before_the_minimum_speech() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [*bot_speaking(4), (1250, started(1000)), (1300, partial("Wait, stop", 0, 800, 1300))],
    )
    assert actions == [StartOfTurn(ms(1000), ms(1300)), Interrupt(4, 0, ms(1300), "words")]
    assert user_of(machine) is UserState.TURN  # words already seen: no false-interruption check


def test_one_word_over_the_bot_is_a_backchannel() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            *bot_speaking(4),
            (1250, started(1000)),
            (1400, stopped(1350, 1000)),
            (1500, final("Yeah.", 0, 800, 1500)),
            (3000, None),
        ],
    )
    assert actions == [UtteranceIgnored("Yeah.", "backchannel", ms(1500))]
    assert bot_of(machine) is BotState.SPEAKING


def test_a_short_quick_command_is_caught_by_its_final() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            *bot_speaking(4),
            (1250, started(1000)),
            (1450, stopped(1400, 1000)),  # 400 ms: under the guarded minimum
            (1600, final("Stop please.", 0, 800, 1600)),
        ],
    )
    assert actions == [StartOfTurn(ms(1000), ms(1600)), Interrupt(4, 0, ms(1600), "words")]
    assert machine.feed(PlayoutFinished(4), ms(1620)) == []  # stale: already interrupted
    actions = machine.advance(ms(3000))
    assert actions == [EndOfTurn("Stop please.", ms(1000), ms(1400), ms(1650), True)]


def test_the_bots_own_words_coming_back_are_echo_not_words() -> None:
    machine = TurnTaking(quiet(barge_in_mode="speech_and_words"))
    actions = run(
        machine,
        [
            *bot_speaking(5),
            (800, PlayoutProgress(5, 12800, "We open at nine on weekdays")),
            (1250, started(1000)),
            (1700, partial("open at nine on weekdays", 0, 800, 1700)),
            (2100, stopped(2000, 1000)),
            (2200, final("open at nine on weekdays", 0, 800, 2200)),
            (4000, None),
        ],
    )
    assert actions == [UtteranceIgnored("open at nine on weekdays", "echo", ms(2200))]
    assert bot_of(machine) is BotState.SPEAKING


@pytest.mark.parametrize(
    ("text", "bot", "echo"),
    [
        ("open at nine", "We open at nine on weekdays", True),
        ("no, at ten", "We open at nine on weekdays", False),
        ("um open at nine", "We open at nine on weekdays", True),
        ("hello", "", False),
        ("", "We open", False),
    ],
)
def test_what_counts_as_echo(text: str, bot: str, echo: bool) -> None:
    assert is_echo(text, bot) is echo


def test_content_words_leave_fillers_out() -> None:
    assert content_words("Um, I'd like... uh, TWO tables!") == ["i'd", "like", "two", "tables"]


def test_speech_and_words_mode_needs_both() -> None:
    machine = TurnTaking(quiet(barge_in_mode="speech_and_words"))
    steps: list[Step] = [
        *bot_speaking(5),
        (1250, started(1000)),
        (1300, partial("Hold on", 0, 800, 1300)),  # words, not yet enough speech
    ]
    assert run(machine, steps) == []
    actions = machine.advance(ms(1600))
    assert actions == [StartOfTurn(ms(1000), ms(1500)), Interrupt(5, 0, ms(1500), "speech")]


def test_words_mode_ignores_long_wordless_speech() -> None:
    machine = TurnTaking(quiet(barge_in_mode="words"))
    steps: list[Step] = [*bot_speaking(5), (1250, started(1000)), (5000, None)]
    assert run(machine, steps) == []
    assert user_of(machine) is UserState.OVERLAP


def test_overlap_becomes_a_turn_when_the_reply_ends_first() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            *bot_speaking(5),
            (1250, started(1000)),
            (1400, PlayoutFinished(5, 20000)),
            (2100, stopped(2000, 1000)),
            (2200, final("Thanks, bye.", 0, 800, 2200)),
            (3000, None),
        ],
    )
    assert actions == [
        StartOfTurn(ms(1000), ms(1400)),
        EndOfTurn("Thanks, bye.", ms(1000), ms(2000), ms(2250), True),
    ]


def test_a_turn_over_the_bot_that_only_repeats_it_is_echo() -> None:
    machine = TurnTaking(quiet(barge_in_mode="words"))
    actions = run(
        machine,
        [
            *bot_speaking(5),
            (900, PlayoutProgress(5, 14400, "See you on Friday then")),
            (1250, started(1000)),
            (1400, PlayoutFinished(5, 20000)),
            (2100, stopped(2000, 1000)),
            (2200, final("Friday then.", 0, 800, 2200)),
            (3000, None),
        ],
    )
    assert actions == [
        StartOfTurn(ms(1000), ms(1400)),
        UtteranceIgnored("Friday then.", "echo", ms(2250)),
    ]


# -- false interruptions ----------------------------------------------------------------------


def cough_over_the_bot(config: TurnConfig) -> tuple[TurnTaking, list[TurnAction]]:
    machine = TurnTaking(config)
    actions = run(
        machine,
        [
            (100, started(0)),
            (1000, stopped(900)),
            (1100, final("What time do you open?", 0, 0, 1100)),
            (1150, ReplyStarted(8)),
            (1400, PlayoutStarted(8)),
            (2000, PlayoutProgress(8, 9600, "We open at")),
            (2250, started(2000)),
            (2700, stopped(2600, 2000)),
            (2800, dropped(1, 1800, 2800)),
        ],
    )
    return machine, actions


def test_a_cough_interrupts_then_the_bot_resumes_where_it_was_heard() -> None:
    machine, actions = cough_over_the_bot(quiet())
    assert actions[-4:] == [
        StartOfTurn(ms(2000), ms(2500)),
        Interrupt(8, 9600, ms(2500), "speech"),
        ResumeBot(8, 9600, ms(2800)),
        UtteranceIgnored("", "false_interruption", ms(2800)),
    ]
    assert user_of(machine) is UserState.SILENT


def test_a_false_interruption_can_re_answer_instead() -> None:
    _, actions = cough_over_the_bot(quiet(false_interruption="reanswer"))
    assert actions[-2:] == [
        ReAnswer(8, "What time do you open?", ms(2800)),
        UtteranceIgnored("", "false_interruption", ms(2800)),
    ]


def test_a_false_interruption_can_be_left_alone() -> None:
    _, actions = cough_over_the_bot(quiet(false_interruption="ignore"))
    assert actions[-1] == UtteranceIgnored("", "false_interruption", ms(2800))
    assert not any(isinstance(a, ResumeBot | ReAnswer) for a in actions)


def test_long_speech_without_words_is_a_false_interruption_then_ignored() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            *bot_speaking(2),
            (1250, started(1000)),  # interrupt at 1500
            (2500, partial("", 0, 800, 2500)),
            (3100, None),  # 1500 ms after the interruption: no words
        ],
    )
    assert actions[-2:] == [
        ResumeBot(2, 0, ms(3000)),
        UtteranceIgnored("", "false_interruption", ms(3000)),
    ]
    assert user_of(machine) is UserState.IGNORED
    # the same noise going on does not interrupt the resumed reply
    actions = run(machine, [(3000, ReplyStarted(3, "resume")), (3000, PlayoutStarted(3))])
    actions += run(machine, [(5000, None), (5100, stopped(5000, 1000))])
    assert actions == []
    assert user_of(machine) is UserState.SILENT


def test_words_after_the_noise_was_ignored_interrupt_again() -> None:
    machine = TurnTaking(quiet())
    run(machine, [*bot_speaking(2), (1250, started(1000)), (3100, None)])
    run(machine, [(3100, ReplyStarted(3, "resume")), (3100, PlayoutStarted(3))])
    actions = machine.feed(partial("excuse me sorry", 0, 800, 3300), ms(3300))
    assert actions == [StartOfTurn(ms(1000), ms(3300)), Interrupt(3, 0, ms(3300), "words")]


def test_an_unheard_answer_is_replaced_by_the_continued_turn() -> None:
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            (100, started(0)),
            (1000, stopped(900)),
            (1100, final("I'd like a table.", 0, 0, 1100)),
            (1200, None),
        ],
    )
    assert actions[-1] == EndOfTurn("I'd like a table.", 0, ms(900), ms(1150), True)
    actions = run(
        machine,
        [
            (1150, ReplyStarted(9)),
            (1400, started(1300)),  # the caller goes on before the answer is heard
            (1700, partial("for four", 1, 1200, 1700)),
            (2100, stopped(2000, 1300)),
            (2200, final("For four people.", 1, 1200, 2200)),
            (3000, None),
        ],
    )
    assert actions == [
        StartOfTurn(ms(1300), ms(1600)),
        Interrupt(9, 0, ms(1600), "speech"),
        EndOfTurn(
            "I'd like a table. For four people.",
            ms(1300),
            ms(2000),
            ms(2250),
            early=True,
            replaces_previous=True,
        ),
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
    assert run(TurnTaking(config), [*merged, (25_000, None)]) == plain


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
