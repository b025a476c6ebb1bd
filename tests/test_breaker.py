"""The circuit breaker and the restart backoff (pipeline/breaker.py): tables on a given clock."""

from __future__ import annotations

import re

import pytest

import pipeline.breaker
from pipeline.breaker import RULES, Breaker, BreakerState, backoff_delay

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN

#: (time, event, admitted for an ``admit``, state after, the rule that decided); one breaker
#: that opens after 3 failures in a row and cools down for 10 s
LIFE = [
    (0.0, "admit", True, CLOSED, "C1"),
    (0.0, "failure", None, CLOSED, "C3"),
    (1.0, "failure", None, CLOSED, "C3"),
    (2.0, "success", None, CLOSED, "C2"),  # the count starts over
    (3.0, "failure", None, CLOSED, "C3"),
    (4.0, "failure", None, CLOSED, "C3"),
    (5.0, "failure", None, OPEN, "C4"),  # the third in a row
    (6.0, "admit", False, OPEN, "O1"),
    (14.999, "admit", False, OPEN, "O1"),
    (15.0, "admit", True, HALF, "O2"),  # the cool-down is over: this one probes
    (15.0, "admit", False, HALF, "H1"),  # one probe at a time
    (16.0, "release", None, HALF, "H5"),  # the probe was cancelled
    (16.0, "admit", True, HALF, "H2"),  # so the next request probes
    (17.0, "failure", None, OPEN, "H4"),  # a new cool-down, from now
    (26.9, "admit", False, OPEN, "O1"),
    (27.0, "admit", True, HALF, "O2"),
    (28.0, "success", None, CLOSED, "H3"),
    (29.0, "admit", True, CLOSED, "C1"),
    (29.0, "release", None, CLOSED, "R1"),
    (30.0, "failure", None, CLOSED, "C3"),  # counted from zero again
]

#: requests let in before it opened end while it is open
LATE = [
    (0.0, "failure", None, OPEN, "C4"),
    (1.0, "failure", None, OPEN, "O4"),  # changes nothing: still cooling from 0
    (10.0, "admit", True, HALF, "O2"),
    (10.0, "failure", None, OPEN, "H4"),
    (11.0, "success", None, CLOSED, "O3"),  # one that went through: the engine works
    (11.0, "admit", True, CLOSED, "C1"),
]


def apply(breaker: Breaker, now: float, event: str) -> bool | None:
    match event:
        case "admit":
            return breaker.admit(now)
        case "success":
            breaker.succeeded(now)
        case "failure":
            breaker.failed(now)
        case "release":
            breaker.released(now)
    return None


@pytest.mark.parametrize(
    ("failures", "steps"), [(3, LIFE), (1, LATE)], ids=["a whole life", "late outcomes"]
)
def test_the_breaker_follows_its_rules_step_by_step(
    failures: int, steps: list[tuple[float, str, bool | None, BreakerState, str]]
) -> None:
    breaker = Breaker("test", failures=failures, cooldown_s=10.0)
    for now, event, admitted, state, rule in steps:
        assert (apply(breaker, now, event), breaker.state, breaker.last_rule) == (
            admitted,
            state,
            rule,
        ), f"at {now} s, {event}"


def test_the_statistics_count_openings_and_refusals() -> None:
    breaker = Breaker("llm", failures=3, cooldown_s=10.0)
    for now, event, *_ in LIFE:
        apply(breaker, now, event)
    stats = breaker.statistics()
    assert (stats.name, stats.state, stats.failures_in_a_row) == ("llm", CLOSED, 1)
    assert (stats.opened, stats.refused) == (2, 4)


def test_an_open_breaker_says_when_it_lets_a_probe_through() -> None:
    breaker = Breaker("piper", failures=1, cooldown_s=10.0)
    assert breaker.retry_in(0.0) == 0.0
    breaker.failed(5.0)
    assert (breaker.retry_in(7.5), breaker.retry_in(20.0)) == (7.5, 0.0)


def test_every_rule_is_in_the_docstring_table_and_used_by_a_test() -> None:
    doc = pipeline.breaker.__doc__ or ""
    documented = re.findall(r"^([A-Z]\d)\s", doc, re.MULTILINE)
    assert documented == [rule.id for rule in RULES]
    used = {rule for *_, rule in LIFE + LATE}
    assert used == {rule.id for rule in RULES}


@pytest.mark.parametrize(("failures", "cooldown_s"), [(0, 10.0), (1, -1.0)])
def test_a_breaker_needs_a_failure_count_and_a_cooldown(failures: int, cooldown_s: float) -> None:
    with pytest.raises(ValueError, match="at least 1 failure"):
        Breaker("x", failures=failures, cooldown_s=cooldown_s)


@pytest.mark.parametrize(
    ("attempt", "jitter", "delay"),
    [
        (0, 1.0, 0.25),
        (0, 0.0, 0.125),  # jitter takes it down to half
        (1, 1.0, 0.5),
        (3, 0.5, 1.5),  # 2 s, three quarters of it
        (7, 1.0, 30.0),  # 32 s: capped
        (10_000, 0.0, 15.0),  # no overflow however many
    ],
)
def test_restart_delays_double_up_to_the_cap_with_jitter(
    attempt: int, jitter: float, delay: float
) -> None:
    assert backoff_delay(attempt, base_s=0.25, cap_s=30.0, jitter=jitter) == delay


def test_jitter_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        backoff_delay(0, base_s=1.0, cap_s=2.0, jitter=1.5)
