"""The hardened XML reader: well-formed SSML passes, hostile XML is refused quickly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import InvalidSSML
from voices.ssml import parse_ssml
from voices.ssml.reader import End, Limits, Start, Text, read

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<speak>&lol9;</speak>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE speak [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<speak>&secret;</speak>"""

EXTERNAL_DTD = """<!DOCTYPE speak SYSTEM "http://example.com/evil.dtd"><speak>Hi</speak>"""

PARAMETER_ENTITY = """<!DOCTYPE speak [<!ENTITY % p SYSTEM "http://example.com/p.dtd"> %p;]>
<speak>Hi</speak>"""


def test_events_carry_names_attributes_text_and_positions() -> None:
    events = read('<speak>Hi <break time="1s"/>\nthere</speak>')
    assert events == [
        Start("speak", {}, 1, 1),
        Text("Hi ", 1, 8),
        Start("break", {"time": "1s"}, 1, 11),
        End("break", 1, 29),  # an empty element ends after its "/>"
        Text("\nthere", 1, 29),
        End("speak", 2, 6),
    ]


def test_predefined_entities_and_character_references_are_text() -> None:
    plan = parse_ssml("<speak>Fish &amp; chips &lt;b&gt; &#8364;5 &#x41;</speak>")
    assert plan.text == "Fish and chips <b> five euros A"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (BILLION_LAUGHS, "DOCTYPE"),
        (EXTERNAL_ENTITY, "DOCTYPE"),
        (EXTERNAL_DTD, "DOCTYPE"),
        (PARAMETER_ENTITY, "DOCTYPE"),
        ("<speak>&undefined;</speak>", "undefined entity"),
        ('<?xml-stylesheet href="x"?><speak>Hi</speak>', "processing instructions"),
    ],
)
def test_dtds_entities_and_instructions_are_refused(document: str, reason: str) -> None:
    with pytest.raises(InvalidSSML, match=reason):
        parse_ssml(document)


def test_the_doctype_is_refused_where_it_starts() -> None:
    with pytest.raises(InvalidSSML) as caught:
        parse_ssml(BILLION_LAUGHS)
    assert caught.value.line == 2


def test_ten_megabytes_are_refused_before_parsing() -> None:
    huge = "<speak>" + "a" * (10 * 1024 * 1024) + "</speak>"
    with pytest.raises(InvalidSSML, match=r"characters of SSML \(limit 100000\)"):
        parse_ssml(huge)


def test_a_hundred_thousand_nested_elements_are_refused_at_the_depth_limit() -> None:
    nested = "<speak>" + "<s>" * 100_000 + "x" + "</s>" * 100_000 + "</speak>"
    with pytest.raises(InvalidSSML, match="nested deeper than 32") as caught:
        parse_ssml(nested, limits=Limits(max_chars=len(nested)))
    assert caught.value.column == 1 + len("<speak>") + 3 * 31  # the 33rd element


def test_a_hundred_thousand_elements_in_a_row_are_refused_at_the_count_limit() -> None:
    flat = "<speak>" + '<mark name="m"/>' * 100_000 + "</speak>"
    with pytest.raises(InvalidSSML, match="more than 10000 elements"):
        parse_ssml(flat, limits=Limits(max_chars=len(flat)))


@pytest.mark.parametrize(
    ("document", "line", "column", "reason"),
    [
        ("<speak>Hi", 1, 10, "malformed XML: no element found"),
        ("<speak>Hi</spek>", 1, 12, "malformed XML: mismatched tag"),
        ("<speak>\n  <break time='1s'>\n</speak>", 3, 3, "malformed XML: mismatched tag"),
        ("", 1, 1, "malformed XML: no element found"),
        ("plain text", 1, 1, "malformed XML: syntax error"),
    ],
)
def test_malformed_xml_says_where(document: str, line: int, column: int, reason: str) -> None:
    with pytest.raises(InvalidSSML) as caught:
        parse_ssml(document)
    assert (caught.value.line, caught.value.column, caught.value.reason) == (line, column, reason)
    assert str(caught.value) == f"SSML line {line}, column {column}: {reason}"


@given(st.text(alphabet=st.sampled_from(list("<>/=\"'&;! speakbrmtxy:-?[]#0123\n")), max_size=80))
def test_any_input_is_a_plan_or_invalid_ssml(document: str) -> None:
    refused: InvalidSSML | None = None
    try:
        parse_ssml(document)
    except InvalidSSML as error:
        refused = error
    if refused is not None:
        assert refused.line >= 1
        assert refused.column >= 1


ELEMENTS = st.sampled_from(
    ["s", "p", "emphasis", "prosody", "voice", "lang", "say-as", "sub", "w", "mark", "foo"]
)
ATTRIBUTES = st.sampled_from(
    ["", ' rate="slow"', ' pitch="+10%"', ' name="x"', ' xml:lang="en"', ' alias="y"',
     ' interpret-as="digits"', ' time="2s"', ' level="strong"', ' volume="loud"']
)  # fmt: skip


@st.composite
def ssml_trees(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        if depth < 4 and draw(st.booleans()):
            name = draw(ELEMENTS)
            attributes = draw(ATTRIBUTES)
            parts.append(f"<{name}{attributes}>{draw(ssml_trees(depth + 1))}</{name}>")
        else:
            parts.append(draw(st.sampled_from(["Hello", " 42 ", "$5", " and ", "1999", "&amp;"])))
    return "".join(parts)


@given(ssml_trees())
def test_any_tree_of_ssml_elements_is_a_plan_or_invalid_ssml(body: str) -> None:
    try:
        plan = parse_ssml(f"<speak>{body}</speak>")
    except InvalidSSML:
        return
    assert "<" not in plan.text or "&" in body
