"""Seed inputs shared by the fuzz targets: what every parser must survive.

Each target starts from valid examples of its own format (:mod:`bench.fuzz.targets`) and these
hostile ones: nesting 10,000 levels deep (JSON and YAML flow style), numbers past every float
and past Python's 4,300-digit ``int`` conversion limit, long strings, invalid UTF-8 (a lone
continuation byte, an encoded surrogate, a truncated sequence), NUL bytes and a BOM.
"""

from __future__ import annotations

DEPTH = 10_000

#: a JSON integer of 4,001 digits (under Python's 4,300-digit limit) and one of 5,001 (over it)
BIG_INT = b"1" + b"0" * 4000
BIGGER_INT = b"1" + b"0" * 5000
HUGE_NUMBERS = (b"1e308", b"-1e309", b"1e-400", BIG_INT, BIGGER_INT, b"-" + BIGGER_INT)
INVALID_UTF8 = (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xe2\x82", b"\x80abc")


def deep_json(depth: int = DEPTH) -> tuple[bytes, ...]:
    """Arrays and objects nested ``depth`` levels."""
    return (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth)


def json_values() -> list[bytes]:
    """Hostile JSON documents (and near-JSON)."""
    return [
        *deep_json(),
        *HUGE_NUMBERS,
        b'"' + b"a" * 70_000 + b'"',
        *(b'"' + bad + b'"' for bad in INVALID_UTF8),
        b"\xef\xbb\xbf{}",
        b'{"a":"\x00"}',
        b'"\\ud800"',
        b"{}",
        b"[]",
        b"null",
    ]


def json_fields(kind: str, field: str, tag: str = "type") -> list[bytes]:
    """A ``{tag: kind, field: ...}`` message with each hostile value in ``field``."""
    head = b'{"' + tag.encode() + b'":"' + kind.encode() + b'","' + field.encode() + b'":'
    return [head + value + b"}" for value in json_values()]


def deep_yaml(depth: int = DEPTH) -> tuple[bytes, ...]:
    """YAML nested ``depth`` levels (flow style: block style would be quadratic in size)."""
    return (
        b"[" * depth + b"]" * depth,
        b"{a: " * depth + b"1" + b"}" * depth,
        b"name: x\ndialogue: " + b"[" * depth + b"]" * depth,
    )


def text_values() -> list[bytes]:
    """Hostile plain text: long, invalid UTF-8, control characters."""
    return [
        b"a" * 100_000,
        b"9" * 5000,
        *INVALID_UTF8,
        b"\x00" * 64,
        b"\xef\xbb\xbf",
        b"\r\n" * 1000,
    ]
