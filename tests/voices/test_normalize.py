"""Plain-text normalisation: golden tables, written -> spoken."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voices import normalize as nz


@pytest.mark.parametrize(
    ("n", "spoken"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (40, "forty"),
        (42, "forty-two"),
        (100, "one hundred"),
        (123, "one hundred twenty-three"),
        (1000, "one thousand"),
        (1234, "one thousand two hundred thirty-four"),
        (1_000_001, "one million one"),
        (2_500_000_000, "two billion five hundred million"),
        (-17, "minus seventeen"),
    ],
)
def test_cardinals(n: int, spoken: str) -> None:
    assert nz.cardinal(n) == spoken


@pytest.mark.parametrize(
    ("n", "spoken"),
    [
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (5, "fifth"),
        (8, "eighth"),
        (9, "ninth"),
        (12, "twelfth"),
        (20, "twentieth"),
        (21, "twenty-first"),
        (100, "one hundredth"),
        (103, "one hundred third"),
    ],
)
def test_ordinals(n: int, spoken: str) -> None:
    assert nz.ordinal(n) == spoken


@pytest.mark.parametrize(
    ("n", "spoken"),
    [
        (1066, "ten sixty-six"),
        (1900, "nineteen hundred"),
        (1905, "nineteen oh five"),
        (1999, "nineteen ninety-nine"),
        (2000, "two thousand"),
        (2007, "two thousand seven"),
        (2024, "twenty twenty-four"),
        (999, "nine hundred ninety-nine"),
    ],
)
def test_years(n: int, spoken: str) -> None:
    assert nz.year(n) == spoken


@pytest.mark.parametrize(
    ("interpret_as", "fmt", "token", "spoken"),
    [
        ("cardinal", None, "1,234", "one thousand two hundred thirty-four"),
        ("cardinal", None, "-3.05", "minus three point zero five"),
        ("number", None, "12", "twelve"),
        ("ordinal", None, "21", "twenty-first"),
        ("ordinal", None, "3rd", "third"),
        ("digits", None, "1234", "one two three four"),
        ("characters", None, "ABC", "A, B, C"),
        ("spell-out", None, "a1", "A, one"),
        ("date", "ymd", "2024-03-05", "March fifth, twenty twenty-four"),
        ("date", None, "2024-03-05", "March fifth, twenty twenty-four"),
        ("date", "mdy", "12/25/1999", "December twenty-fifth, nineteen ninety-nine"),
        ("date", "dmy", "25.12.1999", "December twenty-fifth, nineteen ninety-nine"),
        ("date", "dm", "1/2", "February first"),
        ("date", "my", "7/2001", "July two thousand one"),
        ("date", "y", "1984", "nineteen eighty-four"),
        ("date", "m", "11", "November"),
        ("date", "d", "3", "the third"),
        ("time", None, "9:05", "nine oh five"),
        ("time", None, "9:00", "nine o'clock"),
        ("time", None, "10:30 pm", "ten thirty p.m."),
        ("time", None, "7am", "seven a.m."),
        ("time", None, "14:30", "fourteen thirty"),
        ("time", "hms12", "14:30", "two thirty p.m."),
        ("time", "hms24", "09:15:30", "nine fifteen and thirty seconds"),
        ("telephone", None, "555-0123", "five five five, zero one two three"),
        (
            "telephone",
            None,
            "+1 (800) 555-0199",
            "plus one, eight zero zero, five five five, zero one nine nine",
        ),
        ("currency", None, "$42.50", "forty-two dollars and fifty cents"),
        ("currency", None, "$1", "one dollar"),
        ("currency", None, "$0.01", "one cent"),
        ("currency", None, "€5", "five euros"),
        ("currency", None, "£2.01", "two pounds and one penny"),
        ("currency", None, "42.50 USD", "forty-two dollars and fifty cents"),
        ("currency", None, "¥1200", "one thousand two hundred yen"),
        ("currency", None, "$1.5 million", "one point five million dollars"),
    ],
)
def test_say_as(interpret_as: str, fmt: str | None, token: str, spoken: str) -> None:
    assert nz.say_as(token, interpret_as, fmt) == spoken


@pytest.mark.parametrize(
    ("interpret_as", "fmt", "token"),
    [
        ("cardinal", None, "twelve"),
        ("ordinal", None, "first"),
        ("digits", None, "abc"),
        ("date", "mdy", "13/01/2020"),
        ("date", "dmy", "31/02/2020"),
        ("date", "xyz", "1/2/3"),
        ("date", "ymd", "2020-01"),
        ("time", None, "25:00"),
        ("time", None, "9"),
        ("telephone", None, "call me"),
        ("currency", None, "42"),
        ("expletive", None, "darn"),
    ],
)
def test_say_as_refuses_what_it_cannot_read(interpret_as: str, fmt: str | None, token: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the message varies by case)
        nz.say_as(token, interpret_as, fmt)


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("It costs $42.50 today.", "It costs forty-two dollars and fifty cents today."),
        ("We owe €1,200 and 30 USD.", "We owe one thousand two hundred euros and thirty dollars."),
        ("A $1.5 million deal.", "A one point five million dollars deal."),
        ("About 1,234 people.", "About one thousand two hundred thirty-four people."),
        ("It fell to -3.5 today.", "It fell to minus three point five today."),
        ("Agent 007.", "Agent zero zero seven."),
        ("Pages 10-20.", "Pages ten-twenty."),
        ("She came 21st.", "She came twenty-first."),
        ("Save 10% now.", "Save ten percent now."),
        ("Item #5.", "Item number five."),
        ("See No. 9.", "See number nine."),
        ("On 2024-03-05.", "On March fifth, twenty twenty-four."),
        ("On 3/5/2024.", "On March fifth, twenty twenty-four."),
        ("On March 5, 2024.", "On March fifth, twenty twenty-four."),
        ("On Jan. 2 we met.", "On January second we met."),
        ("On 5 March 2024.", "On the fifth of March, twenty twenty-four."),
        ("On the 5th of March.", "On the fifth of March."),
        ("Since March 2020.", "Since March twenty twenty."),
        ("Back in 1999.", "Back in nineteen ninety-nine."),
        ("The 1990s were loud.", "The nineteen nineties were loud."),
        ("There are 2024 reasons.", "There are two thousand twenty-four reasons."),
        ("Meet at 9:05 am.", "Meet at nine oh five a.m."),
        ("Meet at 9 a.m. Then eat.", "Meet at nine a.m. Then eat."),
        ("Open until 14:30.", "Open until fourteen thirty."),
        ("Come at 3pm sharp.", "Come at three p.m. sharp."),
        ("Call 555-0123.", "Call five five five, zero one two three."),
        ("Call (555) 123-4567.", "Call five five five, one two three, four five six seven."),
        (
            "Dial +44 20 7946 0958.",
            "Dial plus four four, two zero, seven nine four six, zero nine five eight.",
        ),
        ("Dr. Smith is in.", "Doctor Smith is in."),
        ("Ask Mr. and Mrs. Lee.", "Ask Mister and Missus Lee."),
        ("Ms. Jones called.", "Miz Jones called."),
        ("Visit St. Louis.", "Visit Saint Louis."),
        ("Live on Main St.", "Live on Main Street."),
        ("Turn onto Elm Dr. now.", "Turn onto Elm Drive now."),
        ("Fruit, e.g. apples.", "Fruit, for example apples."),
        ("Apples, pears, etc. Then tea.", "Apples, pears, et cetera. Then tea."),
        ("Cats vs. dogs.", "Cats versus dogs."),
        ("Acme Inc. is here.", "Acme Incorporated is here."),
        ("It is 5 km away.", "It is five kilometers away."),
        ("Just 1 ft.", "Just one foot."),
        ("It is 20 °C.", "It is twenty degrees Celsius."),
        ("Rock & roll.", "Rock and roll."),
        (
            "Go to https://www.example.com/help now.",
            "Go to w w w dot example dot com slash help now.",
        ),
        ("See example.org.", "See example dot org."),
        ("Mail jo.doe@example.com today.", "Mail jo dot doe at example dot com today."),
        (
            "Write to help-desk_2@mail.example.co.uk.",
            "Write to help dash desk underscore two at mail dot example dot co dot uk.",
        ),
        ("Nothing to change here.", "Nothing to change here."),
        ("Version 1.2.3 is out.", "Version 1.2.3 is out."),
    ],
)
def test_plain_text(written: str, spoken: str) -> None:
    assert nz.normalize(written) == spoken


def test_slash_dates_follow_the_date_order() -> None:
    assert nz.normalize("On 5/3/2024.", date_order="dmy") == "On March fifth, twenty twenty-four."


def test_impossible_dates_are_left_alone() -> None:
    assert nz.normalize("Score 31/02/2020.", date_order="dmy") == "Score 31/02/2020."


@given(st.text())
def test_normalize_takes_any_text(text: str) -> None:
    result = nz.normalize(text)
    assert isinstance(result, str)
    assert nz.normalize(result) == nz.normalize(result)  # deterministic


@given(st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1))
def test_every_integer_is_read_in_words(n: int) -> None:
    spoken = nz.cardinal(n)
    assert not any(c.isdigit() for c in spoken)
    assert nz.decimal(str(n)) == spoken
