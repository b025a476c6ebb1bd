"""Values in what people say: numbers, times, dates, yes and no.

Transcripts are lower-cased and split into :class:`Token` s, number words are merged
("twenty five" is one token worth 25), then finders return :class:`Mention` s: a value, the
tokens it spans and how sure it is. :mod:`agent.dialogue.slots` decides which slot gets which.

Times (``strength`` 2 unless said otherwise): "noon", "midnight", "19:30", "7.30 pm", "8pm",
"8 o'clock", "seven thirty", "seven oh five", "half past seven", "quarter to eight",
"ten past six"; "at 8" has strength 1 and a bare "8" strength 0. A time without am/pm keeps
``meridiem`` ``None`` unless a nearby word says so ("in the evening", "tonight": pm; "in the
morning": am). Dates (relative to an injected ``today``): "today", "tonight", "tomorrow",
"the day after tomorrow", "friday" (today if today is a Friday, else the next one), "next
friday" (the first Friday after today), "march 3rd", "the 3rd of march", "3 march 2026",
"the 15th" (the next 15th from today), "in 3 days", "in a week".
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Mention",
    "Token",
    "find_dates",
    "find_digits",
    "find_numbers",
    "find_times",
    "normalize",
    "parse_yes_no",
    "phrase_spans",
    "tokenize",
]

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_ORDINAL_UNITS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19,
}  # fmt: skip
_ORDINAL_TENS = {"twentieth": 20, "thirtieth": 30}
_MONTHS = {
    name: i + 1
    for i, names in enumerate(
        [
            ("january",),
            ("february",),
            ("march",),
            ("april",),
            ("may",),
            ("june",),
            ("july",),
            ("august",),
            ("september", "sept"),
            ("october",),
            ("november",),
            ("december",),
        ]
    )
    for name in names
}
_WEEKDAYS = {
    name: i
    for i, names in enumerate(
        [
            ("monday",),
            ("tuesday", "tues"),
            ("wednesday",),
            ("thursday", "thurs"),
            ("friday",),
            ("saturday",),
            ("sunday",),
        ]
    )
    for name in names
}
# "am" counts only right after the time ("I am free at 8" is not 8 am).
_PM_WORDS = {"pm", "evening", "tonight", "afternoon", "night"}
_AM_WORDS = {"morning"}
# After "the third" these words say it is a day ("the third at 8"); others ("the first thing")
# say it is not. "the 3rd" in digits is always a day.
_AFTER_DAY = {"", "at", "for", "please", "then", "and", "in", "is", "would", "works", "around"}
_TIME_CUES = {"at", "around", "about", "by", "before", "after", "till", "until"}


@dataclass(frozen=True, slots=True)
class Token:
    """A word of the normalized text; ``start``/``end`` index that text."""

    text: str
    start: int
    end: int
    #: a cardinal number: digits or number words (merged: "twenty five" is one token)
    number: int | None = None
    #: an ordinal: "3rd", "third", "twenty first"
    ordinal: int | None = None
    #: hours and minutes written with a separator: "19:30", "7.30"
    clock: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Mention:
    kind: Literal["time", "date", "number", "digits"]
    value: Any
    #: tokens ``first`` to ``last`` inclusive
    first: int
    last: int
    #: 2: explicit ("8pm", "march 3rd"), 1: cued ("at 8"), 0: a bare number
    strength: int = 2
    #: for times: "am", "pm" or None when not said
    meridiem: str | None = None

    def overlaps(self, used: set[int]) -> bool:
        return any(i in used for i in range(self.first, self.last + 1))

    @property
    def span(self) -> range:
        return range(self.first, self.last + 1)


_MERIDIEM = re.compile(r"\b([ap])\s?\.\s?m\b\.?")
_WORD = re.compile(r"(\d{1,2})[:.](\d{2})(?!\d)|(\d+)(st|nd|rd|th)\b|\d+|[a-z]+(?:'[a-z]+)?")


def normalize(text: str) -> str:
    """Lower-case, plain apostrophes, "p.m." as "pm", hyphens and dashes as spaces.

    Keeps the length (for ASCII text), so offsets into it are offsets into the original.
    """
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = _MERIDIEM.sub(lambda m: f"{m.group(1)}m".center(len(m.group(0))), text)
    text = re.sub(r"[-\u2013\u2014/]", " ", text)
    return text.replace("o'clock", "oclock ").replace("o clock", "oclock ")


def tokenize(text: str) -> list[Token]:
    """Tokens of :func:`normalize` d text, number words merged."""
    raw: list[Token] = []
    for match in _WORD.finditer(text):
        word = match.group(0)
        if match.group(1) is not None:
            hours, minutes = int(match.group(1)), int(match.group(2))
            if hours < 24 and minutes < 60:
                raw.append(Token(word, match.start(), match.end(), clock=(hours, minutes)))
            continue
        if match.group(3) is not None:
            raw.append(Token(word, match.start(), match.end(), ordinal=int(match.group(3))))
        elif word.isdigit():
            raw.append(Token(word, match.start(), match.end(), number=int(word)))
        else:
            raw.append(Token(word, match.start(), match.end()))
    return _merge_number_words(raw)


def _merge_number_words(tokens: list[Token]) -> list[Token]:
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        word = token.text
        nxt = tokens[i + 1].text if i + 1 < len(tokens) else ""
        if word in _TENS and (nxt in _UNITS and 0 < _UNITS[nxt] < 10):
            end = tokens[i + 1]
            value = _TENS[word] + _UNITS[nxt]
            out.append(Token(f"{word} {nxt}", token.start, end.end, number=value))
            i += 2
        elif word in _TENS and nxt in _ORDINAL_UNITS and _ORDINAL_UNITS[nxt] < 10:
            end = tokens[i + 1]
            value = _TENS[word] + _ORDINAL_UNITS[nxt]
            out.append(Token(f"{word} {nxt}", token.start, end.end, ordinal=value))
            i += 2
        elif word in _UNITS or word in _TENS:
            value = _UNITS.get(word, _TENS.get(word, 0))
            if nxt == "hundred":
                value *= 100
                end = tokens[i + 1]
                out.append(Token(f"{word} hundred", token.start, end.end, number=value))
                i += 2
                continue
            out.append(Token(word, token.start, token.end, number=value))
            i += 1
        elif word in _ORDINAL_UNITS or word in _ORDINAL_TENS:
            value = _ORDINAL_UNITS.get(word, _ORDINAL_TENS.get(word, 0))
            out.append(Token(word, token.start, token.end, ordinal=value))
            i += 1
        else:
            out.append(token)
            i += 1
    return out


@functools.lru_cache(maxsize=4096)
def _phrase_words(phrase: str) -> list[str]:
    return [token.text for token in tokenize(normalize(phrase))]


def phrase_spans(tokens: Sequence[Token], phrase: str) -> list[range]:
    """Where the words of ``phrase`` occur in ``tokens`` (token index ranges)."""
    words = _phrase_words(phrase)
    if not words:
        return []
    found: list[range] = []
    texts = [token.text for token in tokens]
    for i in range(len(texts) - len(words) + 1):
        if texts[i : i + len(words)] == words:
            found.append(range(i, i + len(words)))
    return found


# -- numbers -------------------------------------------------------------------------------


def find_numbers(tokens: Sequence[Token]) -> list[Mention]:
    return [
        Mention("number", token.number, i, i, strength=0)
        for i, token in enumerate(tokens)
        if token.number is not None
    ]


def find_digits(tokens: Sequence[Token]) -> list[Mention]:
    """Digit strings said or written one after the other ("one two three four", "0 4 2",
    "four oh six"): each run of adjacent number tokens as one string (its ``value``, leading
    zeros kept; "oh" is 0 beside another digit), strength 0."""
    found: list[Mention] = []
    run: list[str] = []
    for i, token in enumerate([*tokens, Token("", 0, 0)]):  # a sentinel ends the last run
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.number is not None:
            run.append(token.text if token.text.isdigit() else str(token.number))
        elif token.text in ("oh", "o") and (run or (nxt is not None and nxt.number is not None)):
            run.append("0")
        elif run:
            found.append(Mention("digits", "".join(run), i - len(run), i - 1, strength=0))
            run = []
    return found


# -- times ---------------------------------------------------------------------------------


def find_times(tokens: Sequence[Token]) -> list[Mention]:
    """Every time mentioned; overlapping readings are resolved longest first."""
    found: list[Mention] = []
    used: set[int] = set()
    for reader in (_clock_phrases, _spoken_times, _hour_only):
        for mention in reader(tokens):
            if not mention.overlaps(used):
                found.append(_with_meridiem(tokens, mention))
                used.update(mention.span)
    return sorted(found, key=lambda m: m.first)


def _text(tokens: Sequence[Token], i: int) -> str:
    return tokens[i].text if 0 <= i < len(tokens) else ""


def _clock_phrases(tokens: Sequence[Token]) -> list[Mention]:
    """noon, midnight, 19:30, half past seven, quarter to eight, ten past six."""
    found: list[Mention] = []
    for i, token in enumerate(tokens):
        if token.text in ("noon", "midday"):
            found.append(Mention("time", (12, 0), i, i, meridiem="pm"))
        elif token.text == "midnight":
            found.append(Mention("time", (0, 0), i, i, meridiem="am"))
        elif token.clock is not None:
            found.append(Mention("time", token.clock, i, i))
        elif token.text in ("half", "quarter") or token.number is not None:
            minutes = {"half": 30, "quarter": 15}.get(token.text, token.number)
            j = i + 1
            if _text(tokens, j) in ("minutes", "minute", "past"):
                j += _text(tokens, j).startswith("minute")
            direction = _text(tokens, j)
            hour = tokens[j + 1].number if j + 1 < len(tokens) else None
            if (
                direction in ("past", "after", "to", "before")
                and hour is not None
                and 1 <= hour <= 12
                and minutes is not None
                and 0 < minutes <= 30
                and (direction in ("past", "to") or token.text in ("half", "quarter"))
            ):
                if direction in ("past", "after"):
                    value = (hour, minutes)
                else:
                    value = ((hour - 1) % 12 or 12, 60 - minutes)
                found.append(Mention("time", value, i, j + 1))
    return found


def _spoken_times(tokens: Sequence[Token]) -> list[Mention]:
    """8 o'clock, 8pm, seven thirty, seven oh five."""
    found: list[Mention] = []
    for i, token in enumerate(tokens):
        hour = token.number
        if hour is None or hour > 24:
            continue
        nxt = _text(tokens, i + 1)
        if nxt == "oclock" or (nxt in ("am", "pm") and 1 <= hour <= 12):
            found.append(Mention("time", (hour, 0), i, i + 1))
        elif nxt == "oh" and i + 2 < len(tokens) and (tokens[i + 2].number or 10) < 10:
            minutes = tokens[i + 2].number or 0
            found.append(Mention("time", (hour, minutes), i, i + 2))
        elif i + 1 < len(tokens) and hour < 24:
            after = tokens[i + 1].number
            if after is not None and 10 <= after < 60:
                found.append(Mention("time", (hour, after), i, i + 1))
    return found


def _hour_only(tokens: Sequence[Token]) -> list[Mention]:
    """at 8 (strength 1), a bare 8 (strength 0)."""
    return [
        Mention("time", (t.number, 0), i, i, int(_text(tokens, i - 1) in _TIME_CUES))
        for i, t in enumerate(tokens)
        if t.number is not None and t.number <= 24
    ]


def _with_meridiem(tokens: Sequence[Token], mention: Mention) -> Mention:
    if mention.meridiem is not None:
        return mention
    said = {_text(tokens, j) for j in mention.span} & {"am", "pm"}
    if said:
        return Mention("time", mention.value, mention.first, mention.last, 2, said.pop())
    after = _text(tokens, mention.last + 1)
    if after in ("am", "pm"):
        return Mention("time", mention.value, mention.first, mention.last + 1, 2, after)
    meridiem = _context_meridiem(tokens, range(mention.last + 1, len(tokens)))
    if meridiem is None:
        meridiem = _context_meridiem(tokens, range(mention.first - 1, -1, -1))
    if meridiem is None:
        return mention
    strength = max(mention.strength, 1)
    return Mention("time", mention.value, mention.first, mention.last, strength, meridiem)


# Words that may stand between a time and the word that says am or pm ("8 in the evening",
# "tomorrow night at 8").
_BETWEEN = {"in", "the", "this", "at", "on", "tomorrow", "today", "around", "about", "by"}


def _context_meridiem(tokens: Sequence[Token], indices: range) -> str | None:
    for j in indices:
        word = tokens[j].text
        if word in _PM_WORDS:
            return "pm"
        if word in _AM_WORDS:
            return "am"
        if word not in _BETWEEN:
            return None
    return None


# -- dates ---------------------------------------------------------------------------------


def find_dates(tokens: Sequence[Token], today: dt.date) -> list[Mention]:
    found: list[Mention] = []
    used: set[int] = set()
    for mention in _date_readings(tokens, today):
        if not mention.overlaps(used):
            found.append(mention)
            used.update(mention.span)
    return sorted(found, key=lambda m: m.first)


def _date_readings(tokens: Sequence[Token], today: dt.date) -> list[Mention]:
    """Every reading, longest phrases first (callers keep the first non-overlapping ones)."""
    long: list[Mention] = []
    short: list[Mention] = []
    for i, token in enumerate(tokens):
        word = token.text
        if word == "day" and _text(tokens, i + 1) == "after" and _text(tokens, i + 2) == "tomorrow":
            first = i - 1 if _text(tokens, i - 1) == "the" else i
            long.append(Mention("date", today + dt.timedelta(days=2), first, i + 2))
        elif word in ("today", "tonight"):
            short.append(Mention("date", today, i, i))
        elif word in ("tomorrow", "tmrw", "tomorrows"):
            short.append(Mention("date", today + dt.timedelta(days=1), i, i))
        elif word == "this" and _text(tokens, i + 1) in ("evening", "afternoon", "morning"):
            short.append(Mention("date", today, i, i + 1))
        elif word in _WEEKDAYS:
            ahead = (_WEEKDAYS[word] - today.weekday()) % 7
            first = i
            if _text(tokens, i - 1) == "next":
                ahead = ahead or 7
                first = i - 1
            elif _text(tokens, i - 1) in ("this", "coming"):
                first = i - 1
            short.append(Mention("date", today + dt.timedelta(days=ahead), first, i))
        elif word in _MONTHS:
            mention = _month_day(tokens, i, today)
            if mention is not None:
                long.append(mention)
        elif (
            token.ordinal is not None
            and _text(tokens, i - 1) == "the"
            and (token.text[0].isdigit() or _text(tokens, i + 1) in _AFTER_DAY)
        ):
            day = token.ordinal
            date = _next_day_of_month(day, today)
            if date is not None:
                short.append(Mention("date", date, i - 1, i))
        elif word == "in" and i + 2 < len(tokens):
            count = tokens[i + 1].number if tokens[i + 1].text != "a" else 1
            unit = tokens[i + 2].text
            if count is not None and unit in ("day", "days", "week", "weeks"):
                days = count * (7 if unit.startswith("week") else 1)
                long.append(Mention("date", today + dt.timedelta(days=days), i, i + 2))
    return long + short


def _month_day(tokens: Sequence[Token], i: int, today: dt.date) -> Mention | None:
    """march 3rd, march the third, the 3rd of march, 3 march [2026]."""
    month = _MONTHS[tokens[i].text]

    def day_at(j: int) -> int | None:
        if not 0 <= j < len(tokens):
            return None
        token = tokens[j]
        value = token.ordinal if token.ordinal is not None else token.number
        return value if value is not None and 1 <= value <= 31 else None

    first, last, day = i, i, None
    if (day := day_at(i + 1)) is not None:
        last = i + 1
    elif _text(tokens, i + 1) == "the" and (day := day_at(i + 2)) is not None:
        last = i + 2
    elif _text(tokens, i - 1) == "of" and (day := day_at(i - 2)) is not None:
        first = i - 2
    elif (day := day_at(i - 1)) is not None:
        first = i - 1
    if day is None:
        return None
    if _text(tokens, first - 1) == "the":
        first -= 1
    year_token = tokens[last + 1] if last + 1 < len(tokens) else None
    year = year_token.number if year_token is not None else None
    if year is not None and 2000 <= year <= 2100:
        last += 1
    else:
        year = None
    try:
        date = dt.date(year or today.year, month, day)
    except ValueError:
        return None
    if year is None and date < today:
        try:
            date = date.replace(year=today.year + 1)
        except ValueError:
            return None
    return Mention("date", date, first, last)


def _next_day_of_month(day: int, today: dt.date) -> dt.date | None:
    year, month = today.year, today.month
    for _ in range(13):
        try:
            date = dt.date(year, month, day)
        except ValueError:
            date = None
        if date is not None and date >= today:
            return date
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return None


# -- yes and no ----------------------------------------------------------------------------

_YES = (
    "no problem", "no worries", "why not", "yes", "yeah", "yea", "yep", "yup", "sure",
    "correct", "right", "exactly", "absolutely", "definitely", "of course", "please do",
    "go ahead", "ok", "okay", "sounds good", "perfect", "great", "fine", "alright",
    "all right", "affirmative", "indeed", "that works", "book it", "do it", "confirm",
    "confirmed", "uh huh", "yes please", "don't mind", "do not mind",
)  # fmt: skip
#: phrases that say neither (and would otherwise read as a "no")
_NEITHER = ("not sure", "don't know", "do not know", "no idea")
_NO = (
    "no", "nope", "nah", "not", "don't", "do not", "wrong", "incorrect", "negative",
    "wait", "hold on", "isn't", "that's not", "never mind",
)  # fmt: skip


_BY_LENGTH = sorted(_YES + _NO + _NEITHER, key=lambda p: -len(p.split()))


def parse_yes_no(tokens: Sequence[Token]) -> bool | None:
    """True for yes, False for no, None when neither is said. A "no" outweighs a "yes"."""
    used: set[int] = set()
    yes = no = False
    for phrase in _BY_LENGTH:
        for span in phrase_spans(tokens, phrase):
            if used.isdisjoint(span):
                used.update(span)
                if phrase in _YES:
                    yes = True
                elif phrase in _NO:
                    no = True
    if no:
        return False
    return True if yes else None
