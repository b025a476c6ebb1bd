"""``SpeechPlan.after``: what is left to say of a plan from a text offset on."""

from __future__ import annotations

from voices.engine import PhonemeSpan, Prosody, SpeechPlan, SpeechSegment, Style

SLOW = Prosody(rate=0.8)
HAPPY = Style(emotion="happy")
PLAN = SpeechPlan(
    (
        SpeechSegment("Your table is booked ", SLOW, marks=("start",)),
        SpeechSegment(
            "for tomato soup,",
            SLOW,
            pause_ms=300,
            style=HAPPY,
            phonemes=(PhonemeSpan(4, 10, "t@mAt@U"),),
        ),
        SpeechSegment(" see you soon.", style=HAPPY, marks=("last",)),
    )
)


def test_the_rest_keeps_each_segments_prosody_style_and_pause() -> None:
    rest = PLAN.after(len("Your table is "))
    assert rest is not None
    assert rest.text == "booked for tomato soup, see you soon."
    first, second, third = rest.segments
    assert (first.text, first.prosody, first.marks) == ("booked ", SLOW, ())  # its mark was reached
    assert second == PLAN.segments[1]
    assert third == PLAN.segments[2]


def test_a_phoneme_span_cut_by_the_offset_is_read_as_text() -> None:
    rest = PLAN.after(len("Your table is booked for tom"))
    assert rest is not None
    assert rest.segments[0].text == "ato soup,"
    assert rest.segments[0].phonemes == ()
    assert rest.segments[0].pause_ms == 300
    kept = PLAN.after(len("Your table is booked for "))
    assert kept is not None
    assert kept.segments[0].phonemes == (PhonemeSpan(0, 6, "t@mAt@U"),)


def test_nothing_is_left_at_the_end() -> None:
    assert PLAN.after(len(PLAN.text)) is None
    assert PLAN.after(len(PLAN.text) - 1) == SpeechPlan((SpeechSegment(".", style=HAPPY),))
    assert PLAN.after(0) == PLAN
