"""The speech endpoint's parts: plans from text or SSML, sentence-sized requests, encoding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.reply import ReplyVoice
from agent.speech_stream import AudioEncoder, build_plan, split_plan
from pipeline.errors import InvalidSSML
from pipeline.media import OutputFormat, decode_audio
from voices.catalog import load_catalog
from voices.engine import PhonemeSpan, Prosody, SpeechPlan, SpeechSegment, Style


def test_plain_text_gets_the_voice_defaults_the_speed_and_the_emotion() -> None:
    joe = load_catalog().get("joe")
    plan = build_plan("Hello there.", ReplyVoice.of(joe, speed=1.5, style=Style("happy", 0.5)))
    (segment,) = plan.segments
    assert segment.text == "Hello there."
    assert segment.prosody.rate == pytest.approx(1.5 * joe.prosody.rate)
    assert segment.style == Style("happy", 0.5)
    assert build_plan("Hi.", ReplyVoice.of(joe)).segments[0].style == joe.style


def test_inline_tags_and_numbers_in_plain_text() -> None:
    plan = build_plan("[sad] I lost 2 cats.", ReplyVoice())
    assert plan.text == "I lost two cats."
    assert plan.segments[0].style == Style("sad", 1.0)


def test_ssml_is_parsed_with_the_speed_applied_on_top() -> None:
    plan = build_plan(
        '<speak>Hi. <break time="300ms"/><prosody rate="50%">Slowly.</prosody></speak>',
        ReplyVoice.of(None, speed=2.0),
    )
    assert [s.text for s in plan.segments] == ["Hi. ", "Slowly."]
    assert plan.segments[0].pause_ms == 300
    assert plan.segments[1].prosody.rate == pytest.approx(1.0)


def test_invalid_ssml_says_where() -> None:
    with pytest.raises(InvalidSSML) as caught:
        build_plan('<speak>Hi <break time="soon"/></speak>', ReplyVoice())
    assert (caught.value.line, caught.value.column) == (1, 11)


def test_a_long_text_becomes_one_request_per_sentence() -> None:
    plan = SpeechPlan((SpeechSegment("Hello there. How are you? Fine, thanks.", Prosody(1.1)),))
    plans = split_plan(plan)
    assert [p.text for p in plans] == ["Hello there. ", "How are you? ", "Fine, thanks."]
    assert all(p.segments[0].prosody == Prosody(1.1) for p in plans)


def test_marks_stay_first_pauses_last_and_phonemes_move_with_their_text() -> None:
    segment = SpeechSegment(
        "First one. Say tomato now.",
        pause_ms=400,
        marks=("m",),
        phonemes=(PhonemeSpan(15, 21, "tomeito"),),
    )
    first, second = split_plan(SpeechPlan((segment,)))
    assert first.segments[0].marks == ("m",)
    assert first.segments[0].pause_ms == 0
    assert second.segments[0].marks == ()
    assert second.segments[0].pause_ms == 400
    (span,) = second.segments[0].phonemes
    assert second.segments[0].text[span.start : span.end] == "tomato"


sentences = st.lists(
    st.sampled_from(["Hello there.", "How are you?", "Well, that is one way", "Okay!", "  "]),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(segments=st.lists(st.tuples(sentences, st.integers(0, 500)), min_size=1, max_size=4))
def test_the_requests_say_exactly_what_the_plan_says(
    segments: list[tuple[list[str], int]],
) -> None:
    plan = SpeechPlan(
        tuple(
            SpeechSegment(" ".join(texts), pause_ms=pause, marks=(f"m{i}",))
            for i, (texts, pause) in enumerate(segments)
        )
    )
    plans = split_plan(plan, max_chars=40)
    pieces = [segment for p in plans for segment in p.segments]
    assert "".join(p.text for p in plans) == plan.text
    assert [m for s in pieces for m in s.marks] == [m for s in plan.segments for m in s.marks]
    assert sum(s.pause_ms for s in pieces) == sum(s.pause_ms for s in plan.segments)


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus", "flac"])
def test_encoded_audio_decodes_to_the_same_length(fmt: OutputFormat) -> None:
    tone = (np.sin(np.arange(22050) * 2 * np.pi * 220 / 22050) * 8000).astype("<i2")
    encoder = AudioEncoder(fmt, 22050, 24000)
    data = b"".join(encoder.encode(part.tobytes()) for part in np.array_split(tone, 7))
    data += encoder.close()
    decoded = decode_audio(data, 24000)
    assert len(decoded) == pytest.approx(24000, abs=2400)  # codec delay and padding: 100 ms at most


def test_pcm_is_resampled_exactly() -> None:
    encoder = AudioEncoder("pcm", 22050, 24000)
    data = encoder.encode(np.zeros(22050, "<i2").tobytes()) + encoder.close()
    assert len(data) == 2 * 24000
