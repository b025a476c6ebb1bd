"""SSML elements into speech plans: golden tables, and errors that say where and why."""

from __future__ import annotations

import pytest

from pipeline.errors import InvalidSSML
from voices.engine import PhonemeSpan, Prosody, SpeechPlan, SpeechSegment, Style
from voices.ssml import parse_ssml

DEFAULT = Prosody()


def plan(body: str, **options: object) -> SpeechPlan:
    return parse_ssml(f"<speak>{body}</speak>", **options)  # type: ignore[arg-type]


def test_plain_content_is_one_normalised_segment() -> None:
    assert plan("  Hello,\n   it costs $5   today.  ") == SpeechPlan(
        (SpeechSegment("Hello, it costs five dollars today."),)
    )


def test_normalisation_can_be_turned_off() -> None:
    assert plan("It costs $5.", normalize=False).text == "It costs $5."


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        (
            'Hello <break time="500ms"/> world.',
            [SpeechSegment("Hello ", pause_ms=500), SpeechSegment("world.")],
        ),
        (
            'Hello<break time="1.5s"/>world',
            [SpeechSegment("Hello ", pause_ms=1500), SpeechSegment("world")],
        ),
        (
            'Hi <break strength="weak"/>there',
            [SpeechSegment("Hi ", pause_ms=250), SpeechSegment("there")],
        ),
        ("Hi <break/>there", [SpeechSegment("Hi ", pause_ms=400), SpeechSegment("there")]),
        ('<break time="300ms"/>Hi', [SpeechSegment("", pause_ms=300), SpeechSegment("Hi")]),
        ('Hi <break time="1s"/><break time="200ms"/>', [SpeechSegment("Hi", pause_ms=1200)]),
        ('Hi <break strength="none"/>there', [SpeechSegment("Hi there")]),
    ],
)
def test_breaks_become_pauses(body: str, segments: list[SpeechSegment]) -> None:
    assert plan(body).segments == tuple(segments)


@pytest.mark.parametrize(
    ("attributes", "rate", "pitch", "volume"),
    [
        ('rate="slow"', 0.8, 1.0, 1.0),
        ('rate="x-fast"', 1.5, 1.0, 1.0),
        ('rate="150%"', 1.5, 1.0, 1.0),
        ('rate="-20%"', 0.8, 1.0, 1.0),
        ('rate="1.25"', 1.25, 1.0, 1.0),
        ('pitch="+20%"', 1.0, 1.2, 1.0),
        ('pitch="-10%"', 1.0, 0.9, 1.0),
        ('pitch="high"', 1.0, 1.1, 1.0),
        ('pitch="+12st"', 1.0, 2.0, 1.0),
        ('pitch="+30Hz"', 1.0, 1.25, 1.0),
        ('pitch="180Hz"', 1.0, 1.5, 1.0),
        ('volume="loud"', 1.0, 1.0, 10 ** (6 / 20)),
        ('volume="-6dB"', 1.0, 1.0, 10 ** (-6 / 20)),
        ('volume="silent"', 1.0, 1.0, 0.0),
        ('volume="+50%"', 1.0, 1.0, 1.5),
        ('volume="80%"', 1.0, 1.0, 0.8),
        ('rate="fast" pitch="low" volume="soft"', 1.25, 0.9, 10 ** (-6 / 20)),
    ],
)
def test_prosody_values(attributes: str, rate: float, pitch: float, volume: float) -> None:
    (segment,) = plan(f"<prosody {attributes}>Hi</prosody>", base_pitch_hz=120).segments
    assert segment.prosody.rate == pytest.approx(rate)
    assert segment.prosody.pitch == pytest.approx(pitch)
    assert segment.prosody.volume == pytest.approx(volume)


def test_nested_prosody_multiplies_and_ends_with_its_element() -> None:
    result = plan(
        'A <prosody rate="slow">b <prosody rate="50%" pitch="+10%">c</prosody> d</prosody> e'
    )
    assert [(s.text, s.prosody.rate, s.prosody.pitch) for s in result.segments] == [
        ("A ", 1.0, 1.0),
        ("b ", 0.8, 1.0),
        ("c ", 0.4, pytest.approx(1.1)),
        ("d ", 0.8, 1.0),
        ("e", 1.0, 1.0),
    ]


def test_nested_emphasis_stays_within_the_limits() -> None:
    body = "<emphasis level='strong'>" * 5 + "x" + "</emphasis>" * 5
    with pytest.raises(InvalidSSML, match=r"the volume would be 5\.38 times"):
        plan(body)


def test_the_request_prosody_is_where_the_document_starts() -> None:
    start = Prosody(length_scale=1.1, rate=1.2)
    (segment,) = plan('<prosody rate="fast">Hi</prosody>', prosody=start).segments
    assert segment.prosody == Prosody(length_scale=1.1, rate=1.5)


@pytest.mark.parametrize(
    ("level", "factors"),
    [("strong", (0.85, 1.1, 1.4)), ("reduced", (1.1, 0.95, 0.8)), (None, (0.92, 1.05, 1.2))],
)
def test_emphasis_changes_rate_pitch_and_volume(
    level: str | None, factors: tuple[float, float, float]
) -> None:
    attribute = f' level="{level}"' if level else ""
    _, segment = plan(f"Say <emphasis{attribute}>this</emphasis>").segments
    assert (segment.prosody.rate, segment.prosody.pitch, segment.prosody.volume) == factors


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (
            'Total <say-as interpret-as="cardinal">1234</say-as>.',
            "Total one thousand two hundred thirty-four.",
        ),
        ('<say-as interpret-as="ordinal">3</say-as> place', "third place"),
        ('Code <say-as interpret-as="digits">0042</say-as>', "Code zero zero four two"),
        ('<say-as interpret-as="characters">ssml</say-as>', "S, S, M, L"),
        ('<say-as interpret-as="spell-out">R2</say-as>', "R, two"),
        (
            'On <say-as interpret-as="date" format="dmy">1/2/2003</say-as>',
            "On February first, two thousand three",
        ),
        ('At <say-as interpret-as="time" format="hms12">18:45</say-as>.', "At six forty-five p.m."),
        ('Dial <say-as interpret-as="telephone">911</say-as>', "Dial nine one one"),
        (
            'Pay <say-as interpret-as="currency">€12.30</say-as>',
            "Pay twelve euros and thirty cents",
        ),
        (
            '<sub alias="World Wide Web Consortium">W3C</sub> rules',
            "World Wide Web Consortium rules",
        ),
        ('<sub alias="number 5">No. 5</sub>', "number five"),
        ("<s>One</s><s>Two!</s>", "One. Two!"),
        ("<p><s>One</s></p><p>Two</p>", "One. Two."),
        ("A<w>b</w><token>c</token>", "Abc"),
        ('<audio src="https://example.com/x.wav">fallback text</audio>', "fallback text"),
        ('<audio src="x.wav"><desc>a bell</desc>ding</audio>', "ding"),
        ('<meta name="a" content="b"/><metadata><x/></metadata>Hi', "Hi"),
    ],
)
def test_text_elements(body: str, text: str) -> None:
    assert plan(body).text == text


def test_phonemes_keep_their_text_and_say_how_to_read_it() -> None:
    ipa = "təˈmɑːtoʊ"  # noqa: RUF001 (IPA letters, not look-alikes)
    (segment,) = plan(f'I say <phoneme alphabet="ipa" ph="{ipa}">tomato</phoneme>.').segments
    assert segment.text == "I say tomato."
    assert segment.phonemes == (PhonemeSpan(6, 12, ipa),)


def test_marks_fire_at_the_start_of_the_next_segment_in_document_order() -> None:
    result = plan(
        '<mark name="a"/>One <mark name="b"/>two<mark name="c"/><break time="200ms"/>'
        '<mark name="d"/>three<mark name="e"/>'
    )
    assert [(s.marks, s.text, s.pause_ms) for s in result.segments] == [
        (("a",), "One ", 0),
        (("b",), "two ", 0),
        (("c",), "", 200),
        (("d",), "three", 0),
        (("e",), "", 0),
    ]
    assert result.text == "One two three"


def test_voice_lang_and_style_apply_to_their_content() -> None:
    result = plan(
        '<voice name="amy">Hi <lang xml:lang="fr-FR">bonjour</lang></voice> '
        '<express-as style="excited" intensity="0.5">wow</express-as>',
        lang="en-US",
        style=Style("calm"),
    )
    assert [(s.text, s.voice, s.lang, s.style) for s in result.segments] == [
        ("Hi ", "amy", "en-US", Style("calm")),
        ("bonjour ", "amy", "fr-FR", Style("calm")),
        ("wow", None, "en-US", Style("excited", 0.5)),
    ]


def test_speak_sets_the_language() -> None:
    (segment,) = parse_ssml('<speak xml:lang="en-GB" version="1.1">Hi</speak>').segments
    assert segment.lang == "en-GB"


def test_whitespace_between_differently_spoken_words_stays_with_the_text() -> None:
    result = plan('<prosody rate="slow">Hi</prosody> <prosody rate="fast">there</prosody>')
    assert [s.text for s in result.segments] == ["Hi ", "there"]


def test_an_empty_document_is_an_empty_plan() -> None:
    assert plan("") == SpeechPlan(())
    assert plan("   ") == SpeechPlan(())


@pytest.mark.parametrize(
    ("document", "line", "column", "reason"),
    [
        ("<say>Hi</say>", 1, 1, "the root element must be speak, not say"),
        ("<speak><speak/></speak>", 1, 8, "speak can only be the root element"),
        ("<speak><audio2/></speak>", 1, 8, "unsupported element <audio2>"),
        ("<speak><lexicon uri='x'/></speak>", 1, 8, "unsupported element <lexicon>"),
        ("<speak>\n <break tme='1s'/></speak>", 2, 2, "<break> has no attribute 'tme'"),
        (
            "<speak><break time='soon'/></speak>",
            1,
            8,
            "break time 'soon' is not a duration like 500ms or 1.5s",
        ),
        ("<speak><break time='11s'/></speak>", 1, 8, "break time '11s' is longer than 10000 ms"),
        ("<speak><break strength='huge'/></speak>", 1, 8, "unknown break strength 'huge'"),
        (
            "<speak><break time='6s'/><break time='6s'/></speak>",
            1,
            26,
            "pauses in a row add up to more than 10000 ms",
        ),
        (  # pauses apart, each within the limit in a row: the document's total is capped too
            "<speak>" + "a<break time='9s'/>" * 7 + "</speak>",
            1,
            123,
            "the pauses add up to more than 60000 ms",
        ),
        (  # a slow rate over a long text: hours of audio from a short document
            "<speak><prosody rate='25%'>" + "a" * 2300 + "</prosody></speak>",
            1,
            28,
            "the document would speak for more than 600 s (about 15 characters a second at"
            " rate 1, pauses included)",
        ),
        ("<speak><break>x</break></speak>", 1, 15, "<break> must be empty"),
        ("<speak><prosody rate='warp'>x</prosody></speak>", 1, 8, "unknown rate 'warp'"),
        ("<speak><prosody pitch='+20'>x</prosody></speak>", 1, 8, "unknown pitch '+20'"),
        ("<speak><prosody volume='max'>x</prosody></speak>", 1, 8, "unknown volume 'max'"),
        (
            "<speak><prosody rate='-100%'>x</prosody></speak>",
            1,
            8,
            "rate '-100%' leaves nothing to speak",
        ),
        (
            "<speak><prosody rate='500%'>x</prosody></speak>",
            1,
            8,
            "the rate would be 5 times the voice's (allowed 0.25-4.0)",
        ),
        (
            "<speak><emphasis level='loud'>x</emphasis></speak>",
            1,
            8,
            "unknown emphasis level 'loud'",
        ),
        ("<speak><say-as>1</say-as></speak>", 1, 8, "<say-as> needs a interpret-as attribute"),
        (
            "<speak><say-as interpret-as='ordinal'>first</say-as></speak>",
            1,
            8,
            "say-as: not an ordinal: 'first'",
        ),
        (
            "<speak><say-as interpret-as='date' format='mdy'>13/13/2020</say-as></speak>",
            1,
            8,
            "say-as: no month '13'",
        ),
        (
            "<speak><say-as interpret-as='cardinal'><b/></say-as></speak>",
            1,
            40,
            "<say-as> can only hold text, not <b>",
        ),
        ("<speak><sub>x</sub></speak>", 1, 8, "<sub> needs a alias attribute"),
        (
            "<speak><phoneme ph='x' alphabet='x-sampa'>x</phoneme></speak>",
            1,
            8,
            "phoneme alphabet 'x-sampa' is not supported (use ipa)",
        ),
        ("<speak><mark/></speak>", 1, 8, "<mark> needs a name attribute"),
        ("<speak><lang>x</lang></speak>", 1, 8, "<lang> needs a xml:lang attribute"),
        (
            "<speak><express-as style='bored'>x</express-as></speak>",
            1,
            8,
            "unknown emotion 'bored' (known: neutral, happy, sad, angry, excited, calm, whisper, "
            "serious)",
        ),
        (
            "<speak><express-as style='happy' intensity='3'>x</express-as></speak>",
            1,
            8,
            "intensity '3' is above 2",
        ),
    ],
)
def test_errors_say_where_and_why(document: str, line: int, column: int, reason: str) -> None:
    with pytest.raises(InvalidSSML) as caught:
        parse_ssml(document)
    assert (caught.value.line, caught.value.column, caught.value.reason) == (line, column, reason)
