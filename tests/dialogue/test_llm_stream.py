"""Assembling a streamed reply: what may be spoken at once, and tool calls however they come."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.dialogue.llm_stream import (
    ReplyAssembler,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
    Usage,
    decode_chunk,
)
from agent.dialogue.llm_tools import ToolCall
from pipeline.errors import ModelError
from tests.llm_server import chunk


def assembler(text_calls: bool = True) -> ReplyAssembler:
    ids = itertools.count(1)
    return ReplyAssembler(text_calls=text_calls, new_id=lambda: f"call_{next(ids)}")


def run(deltas: list[str], text_calls: bool = True) -> tuple[list[str], str, list[ToolCall]]:
    """Feed text deltas: what each feed released, the rest at the end, and the calls."""
    reply = assembler(text_calls)
    released = [reply.feed(TextDelta(delta)) for delta in deltas]
    rest, calls = reply.finish()
    return released, rest, calls


def call(name: str, arguments: str) -> ToolCall:
    return ToolCall(id="call_1", name=name, arguments=arguments, as_text=True)


TWO_TAGGED_CALLS = (
    '<tool_call>{"name": "a", "arguments": {}}</tool_call>'
    '<tool_call>{"name": "b", "arguments": {}}</tool_call>'
)


def test_plain_text_is_released_as_it_arrives() -> None:
    released, rest, calls = run(["Sure", ", we are", " open until eleven."])
    assert released == ["Sure", ", we are", " open until eleven."]
    assert (rest, calls) == ("", [])


def test_without_tools_even_json_is_released_at_once() -> None:
    released, _, calls = run(['{"name": "x", ', '"arguments": {}}'], text_calls=False)
    assert released == ['{"name": "x", ', '"arguments": {}}']
    assert calls == []


@pytest.mark.parametrize(
    ("deltas", "expected"),
    [
        (
            ['{"', 'name": "book_table", "arguments": {"party_size": 4, "time": "8pm"}}'],
            [call("book_table", '{"party_size": 4, "time": "8pm"}')],
        ),
        (
            ["<tool_", 'call>\n{"name": "hang_up", "arguments": {}}\n</tool_call>'],
            [call("hang_up", "{}")],
        ),
        (
            ['```json\n{"name": "lookup", "arguments": {"q": "hours"}}\n```'],
            [call("lookup", '{"q": "hours"}')],
        ),
        (
            ['  {"name": "lookup", "parameters": "{\\"q\\": 1}"}'],
            [call("lookup", '{"q": 1}')],
        ),
        (
            [TWO_TAGGED_CALLS],
            [call("a", "{}"), ToolCall(id="call_2", name="b", arguments="{}", as_text=True)],
        ),
        (
            ['[{"name": "a", "arguments": {}}]'],
            [call("a", "{}")],
        ),
    ],
)
def test_tool_calls_written_as_text_are_held_back_and_parsed(
    deltas: list[str], expected: list[ToolCall]
) -> None:
    released, rest, calls = run(deltas)
    assert "".join(released) == ""
    assert rest == ""
    assert calls == expected


def test_a_call_with_broken_json_still_becomes_a_call_so_the_model_hears_why() -> None:
    _, rest, calls = run(['<tool_call>{"name": "book_table", "arguments": {"party_size": }'])
    assert rest == ""
    assert [(c.name, c.as_text) for c in calls] == [("book_table", True)]
    assert calls[0].arguments.startswith('{"name": "book_table"')


def test_json_that_is_not_a_call_is_text_after_all() -> None:
    released, rest, calls = run(['{"confirmation": ', "42}"])
    assert released == ["", ""]
    assert rest == '{"confirmation": 42}'
    assert calls == []


def test_a_tag_in_the_middle_stops_the_text_there() -> None:
    released, rest, calls = run(
        ["Let me check that. <to", "ol_call>", '{"name": "lookup", "arguments": {}}']
    )
    assert released == ["Let me check that. ", "", ""]
    assert rest == ""
    assert calls == [call("lookup", "{}")]


def test_only_what_could_start_a_tag_waits() -> None:
    released, rest, _ = run(["a < b <", "tool", " but no tag"])
    assert released == ["a < b ", "", "<tool but no tag"]
    assert rest == ""


def test_text_that_could_still_become_a_call_waits_for_one_more_delta() -> None:
    released, _, _ = run(["  ", "<", "b>bold"])
    assert released == ["", "", "  <b>bold"]


def test_structured_tool_call_fragments_are_joined_by_index() -> None:
    reply = assembler()
    fragments = [
        ToolCallDelta(0, "call_a", "book_table", ""),
        ToolCallDelta(1, "call_b", "hang_up", "{}"),
        ToolCallDelta(0, None, None, '{"party_size"'),
        ToolCallDelta(0, None, None, ": 2}"),
    ]
    assert [reply.feed(fragment) for fragment in fragments] == ["", "", "", ""]
    assert reply.finish() == (
        "",
        [
            ToolCall(id="call_a", name="book_table", arguments='{"party_size": 2}'),
            ToolCall(id="call_b", name="hang_up", arguments="{}"),
        ],
    )


TEXTS = [
    "Sure, we are open until eleven. <tool_call>",
    '<tool_call>\n{"name": "book_table", "arguments": {"party_size": 4}}\n</tool_call>',
    '{"name": "lookup", "arguments": {"q": "hours"}}',
    '{"not": "a call"} and more',
    "Fine < good << better <tool",
    "",
]


@given(st.sampled_from(TEXTS), st.lists(st.integers(min_value=0, max_value=80), max_size=8))
def test_any_split_of_the_text_gives_the_same_reply(text: str, cuts: list[int]) -> None:
    bounds = [0, *sorted(min(cut, len(text)) for cut in cuts), len(text)]
    released, rest, calls = run([text[a:b] for a, b in itertools.pairwise(bounds)])
    whole_released, whole_rest, whole_calls = run([text])
    assert "".join(released) + rest == "".join(whole_released) + whole_rest
    assert calls == whole_calls


def test_decode_chunk_reads_text_tool_calls_finish_and_usage() -> None:
    fragment = {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{}"}}
    assert decode_chunk(json.dumps(chunk("Hi"))) == ([TextDelta("Hi")], None)
    assert decode_chunk(json.dumps(chunk(tool_calls=[fragment]))) == (
        [ToolCallDelta(0, "c1", "f", "{}")],
        None,
    )
    assert decode_chunk(json.dumps(chunk(finish="stop"))) == ([], StreamEnd("stop"))
    usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total": 12}}
    assert decode_chunk(json.dumps(usage)) == (
        [],
        StreamEnd(None, Usage(prompt_tokens=9, completion_tokens=3)),
    )


@pytest.mark.parametrize("data", ["{not json", '{"choices": "no"}', "[1, 2]"])
def test_a_chunk_that_is_not_a_chunk_is_the_servers_error(data: str) -> None:
    with pytest.raises(ModelError, match="malformed chunk"):
        decode_chunk(data)
