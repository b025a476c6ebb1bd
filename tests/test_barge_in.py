"""Barge-in and false interruptions: the B, F, I and E rules of agent/turns.py.

Times in the scripts are milliseconds (converted to 16 kHz samples); each step is
``(now_ms, input)`` or ``(now_ms, None)`` for a clock tick.
"""

from __future__ import annotations

import pytest

from agent.turns import (
    ECHO_JUDGE_MS,
    NO_TEXT_WAITS,
    BotState,
    EchoEstimate,
    EndOfTurn,
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
    TurnTaking,
    UserState,
    UtteranceIgnored,
    content_words,
    is_echo,
)
from pipeline.asr.events import Transcript, TranscriptWord
from tests.turns_support import (
    Step,
    bot_echoing,
    bot_of,
    bot_speaking,
    dropped,
    final,
    ms,
    partial,
    progress,
    quiet,
    run,
    started,
    stopped,
    user_of,
)

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


def test_while_echo_is_likely_neither_speech_nor_words_interrupt() -> None:
    """What the ASR makes of the echo need not be the bot's words ("mass" for "message"): while
    the detector hears only echo, words wait too; once it hears the caller, words count."""
    machine = TurnTaking(quiet(echo_detection=True))
    actions = run(
        machine,
        [
            *bot_echoing(7, "I can take a message"),
            (1250, started(1000)),
            (3000, None),  # two seconds of what may be the bot's own voice
            (3100, partial("I can take a mass", 0, 1000, 3000)),  # misheard echo
            (3200, None),
        ],
    )
    assert machine.echo_likely
    assert actions == []
    assert machine.next_deadline() is None
    actions = run(
        machine,
        [
            (3250, EchoEstimate(False, ms(3240))),
            (3300, partial("I can take a mass wait I need a table", 0, 1000, 3200)),
        ],
    )
    assert actions == [
        StartOfTurn(ms(1000), ms(3300)),
        Interrupt(7, 16000, ms(3300), "words"),
    ]


def test_a_turn_heard_only_as_echo_is_ignored_whatever_the_asr_made_of_it() -> None:
    machine = TurnTaking(quiet(echo_detection=True))
    actions = run(
        machine,
        [
            *bot_echoing(7, "I can take a message"),
            (1250, started(1000)),
            (2100, partial("I can take a mass", 0, 1000, 2000)),
            (2200, PlayoutFinished(7)),
            (2400, stopped(2300, 1000)),
            (2500, final("I can take a mass", 0, 1000, 2300)),
            (4000, None),
        ],
    )
    assert not any(isinstance(a, (Interrupt, EndOfTurn)) for a in actions)
    ignored = [(a.text, a.reason) for a in actions if isinstance(a, UtteranceIgnored)]
    assert ignored == [("I can take a mass", "echo")]


def test_the_echo_a_barge_in_began_with_is_not_part_of_the_callers_turn() -> None:
    """The VAD heard the echo from 1000 and the caller from 2000 in one stretch of speech; the
    detector turned at 2100. The final's words before the caller are the echo's."""
    machine = TurnTaking(quiet(echo_detection=True))
    words = [("I", 1000, 1100), ("can", 1100, 1300), ("take", 1300, 1600), ("Hello", 2050, 2400)]
    heard = Transcript(
        session_id="s",
        utterance=0,
        is_final=True,
        text="I can take. Hello.",
        words=tuple(
            TranscriptWord(word=w, start=ms(a), end=ms(b), probability=0.9) for w, a, b in words
        ),
        start=ms(1000),
        end=ms(2500),
    )
    actions = run(
        machine,
        [
            *bot_echoing(7),
            (1250, started(1000)),
            (2110, EchoEstimate(False, ms(2100))),
            (2500, None),  # 300 ms after the verdict turned: barge-in
            (2700, stopped(2600, 1000)),
            (2800, heard),
            (6000, None),
        ],
    )
    assert any(isinstance(a, Interrupt) for a in actions)
    turns = [a for a in actions if isinstance(a, EndOfTurn)]
    assert [t.text for t in turns] == ["Hello"]


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
    """Echo likely at the onset, then the detector sees the caller above the echo at 1200: what
    the VAD heard before was the echo, so the speech counts from 1200 (barge-in at 1500)."""
    machine = TurnTaking(quiet(echo_detection=True))
    actions = run(
        machine,
        [
            *bot_echoing(7),
            (1250, started(1000)),
            (1350, None),
            (1380, EchoEstimate(False, ms(1200))),
            (1499, None),
        ],
    )
    assert actions == []
    assert machine.next_deadline() == ms(1500)
    actions = run(machine, [(1600, None)])
    assert actions == [StartOfTurn(ms(1000), ms(1500)), Interrupt(7, 0, ms(1500), "speech")]


def test_a_short_sound_over_the_echo_does_not_interrupt() -> None:
    """The verdict turns at 1200 and the speech ends at 1400: under min_speech after the turn."""
    machine = TurnTaking(quiet(echo_detection=True))
    actions = run(
        machine,
        [
            *bot_echoing(7),
            (1250, started(1000)),
            (1260, EchoEstimate(False, ms(1200))),
            (1450, stopped(1400, 1000)),
            (3000, None),
        ],
    )
    assert not any(isinstance(a, Interrupt) for a in actions)


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
            (2500, progress(0, 800, 2500)),
            (3050, None),  # 1500 ms after the interruption, but the ASR has not heard that far
            (3150, progress(0, 800, 3000)),  # now it has: no words
        ],
    )
    assert actions[-2:] == [
        ResumeBot(2, 0, ms(3150)),
        UtteranceIgnored("", "false_interruption", ms(3150)),
    ]
    assert user_of(machine) is UserState.IGNORED
    # the same noise going on does not interrupt the resumed reply
    actions = run(machine, [(3150, ReplyStarted(3, "resume")), (3150, PlayoutStarted(3))])
    actions += run(machine, [(5000, None), (5100, stopped(5000, 1000))])
    assert actions == []
    assert user_of(machine) is UserState.SILENT


def test_a_lagging_asr_never_makes_an_interruption_false() -> None:
    """Under load the ASR reports on the caller's audio late: the words said right after the
    interruption arrive after its false-interruption window has passed on the clock. They were
    said inside it, so the interruption is real: the bot is not resumed over the caller (which
    cut the resumed reply again when the words came: two replies cancelled for one turn)."""
    machine = TurnTaking(quiet())
    actions = run(
        machine,
        [
            *bot_speaking(2),
            (1250, started(1000)),  # interrupt at 1500; no words yet: CHECKING
            (3100, None),  # the window has passed on the clock, and the ASR has said nothing
        ],
    )
    assert actions == [StartOfTurn(ms(1000), ms(1500)), Interrupt(2, 0, ms(1500), "speech")]
    assert user_of(machine) is UserState.CHECKING
    actions = run(
        machine,
        [
            (3400, partial("I would like to leave a", 0, 800, 2600)),
            (4100, stopped(4000, 1000)),
            (4700, final("I would like to leave a message.", 0, 800, 4200)),
            (6000, None),
        ],
    )
    assert not any(isinstance(a, ResumeBot | ReAnswer | UtteranceIgnored) for a in actions)
    assert actions == [
        EndOfTurn("I would like to leave a message.", ms(1000), ms(4000), ms(4700), True)
    ]


def test_an_asr_that_never_reports_runs_out_the_wait() -> None:
    """A lost report does not hold the bot forever: ``NO_TEXT_WAITS`` final waits more."""
    machine = TurnTaking(quiet())
    run(machine, [*bot_speaking(2), (1250, started(1000)), (1600, None)])  # interrupted
    due = 3000 + NO_TEXT_WAITS * 1500
    assert machine.advance(ms(due - 1)) == []
    assert machine.advance(ms(due)) == [
        ResumeBot(2, 0, ms(due)),
        UtteranceIgnored("", "false_interruption", ms(due)),
    ]


def test_words_after_the_noise_was_ignored_interrupt_again() -> None:
    machine = TurnTaking(quiet())
    run(machine, [*bot_speaking(2), (1250, started(1000)), (3100, progress(0, 800, 3050))])
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
