"""Server-sent events decoding: golden cases, and any split of the bytes gives the same events."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.dialogue.llm_sse import SSEDecoder, SSEEvent
from pipeline.errors import ModelError


def decode(*chunks: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.end()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"data: hello\n\n", [SSEEvent("hello")]),
        (b"data:hello\n\n", [SSEEvent("hello")]),
        (b"data:  two spaces\n\n", [SSEEvent(" two spaces")]),
        (b"data: a\ndata: b\n\n", [SSEEvent("a\nb")]),
        (b"data: a\r\n\r\ndata: b\r\r", [SSEEvent("a"), SSEEvent("b")]),
        (b": ping - 2024-01-01\n\ndata: x\n\n", [SSEEvent("x")]),
        (b"event: error\ndata: boom\n\n", [SSEEvent("boom", "error")]),
        (b"id: 7\ndata: x\n\ndata: y\n\n", [SSEEvent("x", id="7"), SSEEvent("y", id="7")]),
        (b"retry: 100\nfoo: bar\ndata\n\n", [SSEEvent("")]),
        (b"event: only\n\n", []),
        (b"data: not closed by a blank line", []),
        (
            "data: caf\u00e9 \u2014 \U0001f600\n\n".encode(),
            [SSEEvent("caf\u00e9 \u2014 \U0001f600")],
        ),
    ],
)
def test_decodes_the_body(body: bytes, expected: list[SSEEvent]) -> None:
    assert decode(body) == expected


def test_a_crlf_split_between_feeds_is_one_line_end() -> None:
    assert decode(b"data: a\r", b"\n", b"\r\n") == [SSEEvent("a")]


def test_a_utf8_character_split_between_feeds_is_decoded() -> None:
    raw = "data: \u00e9t\u00e9\n\n".encode()
    assert decode(raw[:7], raw[7:]) == [SSEEvent("\u00e9t\u00e9")]


def test_bytes_that_are_not_utf8_are_the_servers_error() -> None:
    with pytest.raises(ModelError, match="not UTF-8"):
        decode(b"data: \xff\n\n")


def test_a_body_ending_inside_a_character_is_the_servers_error() -> None:
    with pytest.raises(ModelError, match="UTF-8"):
        decode("data: \u00e9".encode()[:-1])


BODY = (
    b": keep-alive\r\n\r\n"
    b'data: {"choices": [{"delta": {"content": "Hi"}}]}\r\n\r\n'
    b"event: message\nid: 1\ndata: line one\ndata: line two\n\n"
    b"data: \xc3\xa9\xe2\x80\x94\r\rdata: [DONE]\n\n"
)


@given(st.lists(st.integers(min_value=0, max_value=len(BODY)), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(BODY)]
    chunks = [BODY[a:b] for a, b in itertools.pairwise(bounds)]
    assert decode(*chunks) == decode(BODY)
    assert len(decode(BODY)) == 4
