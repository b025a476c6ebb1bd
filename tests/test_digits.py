"""Keypad digits into turns: the sans-I/O collector's rules (agent/digits.py's table)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.digits import (
    KEYS,
    MAX_DIGITS,
    DigitCollector,
    KeyedTurn,
    Keypad,
    KeypadRule,
    check_digit,
    keypad_rule,
)
from pipeline.errors import ProtocolError

MS = 16  # samples per millisecond at 16 kHz
RULE = KeypadRule(timeout_ms=3000)


def press(
    collector: DigitCollector, keys: str, rule: KeypadRule = RULE, *, at: int = 0
) -> list[KeyedTurn]:
    """Press ``keys`` 100 ms apart from ``at``; the turns they complete."""
    turns = []
    for i, key in enumerate(keys):
        turn = collector.press(key, at + i * 100 * MS, rule)
        if turn is not None:
            turns.append(turn)
    return turns


def test_the_terminator_completes_the_digits_before_it_and_is_not_part_of_them() -> None:
    collector = DigitCollector()
    assert press(collector, "1234#") == [KeyedTurn("1234", 0, 400 * MS, "K1")]
    assert collector.digits == ""
    assert collector.deadline is None


def test_the_terminator_alone_is_a_turn_of_its_own() -> None:
    assert press(DigitCollector(), "#") == [KeyedTurn("#", 0, 0, "K2")]


def test_a_rule_without_a_terminator_collects_the_hash_key_as_a_digit() -> None:
    rule = KeypadRule(terminator="")
    collector = DigitCollector()
    assert press(collector, "12#", rule) == []
    assert collector.digits == "12#"


def test_the_expected_length_completes_the_digits_at_once() -> None:
    collector = DigitCollector()
    rule = KeypadRule(max_length=6)
    assert press(collector, "0042137", rule) == [KeyedTurn("004213", 0, 500 * MS, "K3")]
    assert collector.digits == "7"  # the next string has begun


def test_a_menu_of_one_key_choices_answers_the_first_key() -> None:
    assert press(DigitCollector(), "1", KeypadRule(max_length=1)) == [KeyedTurn("1", 0, 0, "K3")]


def test_no_string_grows_past_the_most_digits() -> None:
    turns = press(DigitCollector(), "5" * (MAX_DIGITS + 1), KeypadRule(terminator=""))
    assert [len(turn.digits) for turn in turns] == [MAX_DIGITS]


def test_a_pause_after_the_last_digit_completes_the_string_at_its_deadline() -> None:
    collector = DigitCollector()
    assert press(collector, "12", at=1000 * MS) == []
    last = 1100 * MS
    assert collector.deadline == last + 3000 * MS
    assert collector.expire(last + 2999 * MS) is None  # not yet
    assert collector.expire(last + 9000 * MS) == KeyedTurn("12", 1000 * MS, last + 3000 * MS, "K4")
    assert collector.digits == ""
    assert collector.expire(last + 9999 * MS) is None  # once


def test_each_digit_starts_the_timeout_again_with_the_rule_it_came_with() -> None:
    collector = DigitCollector()
    collector.press("1", 0, KeypadRule(timeout_ms=1000))
    collector.press("2", 900 * MS, KeypadRule(timeout_ms=5000))
    assert collector.expire(1900 * MS) is None
    assert collector.deadline == 5900 * MS


@pytest.mark.parametrize("key", ["x", "", "12", "E", " ", "٣"])
def test_a_key_that_is_not_a_dtmf_digit_is_refused_with_a_clear_error(key: str) -> None:
    with pytest.raises(ProtocolError, match="not a DTMF digit"):
        check_digit(key)
    with pytest.raises(ProtocolError):
        DigitCollector().press(key, 0, RULE)


def test_every_dtmf_key_is_accepted_and_letters_are_upper_cased() -> None:
    assert [check_digit(key) for key in KEYS] == list(KEYS)
    assert check_digit("d") == "D"


def test_a_keyed_turn_reads_as_keypad_text_and_keeps_its_digits() -> None:
    text = Keypad("0042")
    assert text == "[keypad] 0042"
    assert text.digits == "0042"
    assert isinstance(text, str)


def test_a_responder_without_a_rule_gets_the_defaults() -> None:
    assert keypad_rule(object()) == KeypadRule()


@given(st.text(alphabet="0123456789*", max_size=40), st.integers(1, 12))
def test_digits_come_out_in_order_whatever_completes_them(keys: str, length: int) -> None:
    """Property: the turns' digits, then what is still collected, are the keys pressed."""
    collector = DigitCollector()
    turns = press(collector, keys, KeypadRule(max_length=length))
    assert "".join(turn.digits for turn in turns) + collector.digits == keys
    assert all(len(turn.digits) == length for turn in turns)
