"""Filling slots from an utterance: which value goes to which slot, and is it allowed.

:meth:`SlotFiller.extract` reads one utterance for the slots of a flow. The slot being asked
for (``expected``) and slots the utterance names ("change the *time* to 9") are *addressed*:
they take weak evidence, such as a bare number. Other slots take only what is unmistakably
theirs, so a caller may give several values at once or correct one at any time:

1. a slot's own ``patterns`` (the group ``value``, or group 1, parsed as the slot's type);
2. dates ("tomorrow", "march 3rd");
3. times: explicit ("8pm", "half past seven") or cued ("at 8") for any time slot, a bare
   number only for an addressed one; a number that a number slot claims by its units or cues
   ("4 people", "table for 4") is never a bare time;
4. one-of choices, by the value's name or a synonym;
5. numbers: claimed by the slot's units/cues, or any free number for an addressed slot;
6. digit strings ("one two three four", "0 4 2 9", "four oh six"; leading zeros kept): only
   for an addressed ``digits`` slot, the longest run of digits said one after the other;
7. yes/no and free text: only for an addressed slot. Free text takes the whole answer, less
   the slot's ``strip`` prefixes, when nothing else was filled and it is not a question
   (flagged :attr:`Extraction.free_text`: the conversation makes sure it is no request).

With ``loose`` (reading a correction while confirming, when nothing is asked), a bare number
goes to the flow's only number slot (or, with none, its only time slot): "no, make it three".
Several mentions for one slot: the strongest wins, then the last ("four, no, five people").

Values are validated (number ``min``/``max``, time ``earliest``/``latest``, date not past and
``max_days_ahead``): a value heard but not allowed lands in :attr:`Extraction.rejected`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.config.dialogue import (
    ChoiceSlot,
    DateSlot,
    DigitsSlot,
    NumberSlot,
    Slot,
    TextSlot,
    TimeSlot,
    YesNoSlot,
)
from agent.dialogue.parsing import (
    Mention,
    Token,
    find_dates,
    find_digits,
    find_numbers,
    find_times,
    normalize,
    parse_yes_no,
    phrase_spans,
    tokenize,
)

__all__ = ["Extraction", "SlotFiller", "resolve_time"]


@dataclass(slots=True)
class Extraction:
    #: slot name -> value (int, datetime.time, datetime.date, bool or str)
    filled: dict[str, Any] = field(default_factory=dict)
    #: slot name -> the value heard but not allowed
    rejected: dict[str, Any] = field(default_factory=dict)
    #: what the utterance says to a yes/no question (None: neither)
    yes_no: bool | None = None
    #: the only value is the whole utterance taken as the expected free-text slot's answer
    #: (the conversation checks first that it is not a request instead)
    free_text: bool = False
    #: slots the utterance names without giving a value ("no, the time")
    mentioned: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.filled or self.rejected)


@dataclass(slots=True)
class _Reading:
    text: str
    normalized: str
    tokens: list[Token]
    today: dt.date
    used: set[int] = field(default_factory=set)
    out: Extraction = field(default_factory=Extraction)


class SlotFiller:
    """The slots of one agent, compiled once; :meth:`extract` reads an utterance."""

    def __init__(self, slots: Iterable[Slot]) -> None:
        self.slots: dict[str, Slot] = {slot.name: slot for slot in slots}
        self._patterns = {
            slot.name: [re.compile(p, re.IGNORECASE) for p in slot.patterns]
            for slot in self.slots.values()
        }

    def extract(
        self,
        text: str,
        names: Sequence[str],
        *,
        today: dt.date,
        expected: str | None = None,
        loose: bool = False,
    ) -> Extraction:
        """The values ``text`` gives for the slots ``names`` (a flow's slots)."""
        normalized = normalize(text)
        reading = _Reading(text, normalized, tokenize(normalized), today)
        specs = [self.slots[name] for name in names]
        addressed = {expected} if expected else set()
        for spec in specs:
            if any(phrase_spans(reading.tokens, mention) for mention in spec.mentions):
                addressed.add(spec.name)
        if loose and expected is None:
            addressed |= _lone_bare_number_slot(specs)
        self._patterns_first(reading, specs)
        self._dates(reading, [s for s in specs if isinstance(s, DateSlot)])
        claimed = _claimed_numbers(reading.tokens, [s for s in specs if isinstance(s, NumberSlot)])
        self._times(reading, [s for s in specs if isinstance(s, TimeSlot)], addressed, claimed)
        self._choices(reading, [s for s in specs if isinstance(s, ChoiceSlot)])
        self._numbers(reading, [s for s in specs if isinstance(s, NumberSlot)], addressed)
        self._digits(reading, [s for s in specs if isinstance(s, DigitsSlot)], addressed)
        for spec in specs:
            if isinstance(spec, YesNoSlot) and spec.name in addressed:
                answer = parse_yes_no(reading.tokens)
                if answer is not None:
                    _put(reading, spec, answer, range(len(reading.tokens)))
        for spec in specs:
            if isinstance(spec, TextSlot) and spec.name not in reading.out.filled:
                self._text(reading, spec, expected, addressed)
        reading.out.yes_no = parse_yes_no(reading.tokens)
        reading.out.mentioned = [
            spec.name
            for spec in specs
            if spec.name in addressed
            and spec.name != expected
            and spec.mentions
            and not _taken(reading, spec)
            and any(phrase_spans(reading.tokens, mention) for mention in spec.mentions)
        ]
        return reading.out

    # -- one kind at a time --------------------------------------------------------------------

    def _patterns_first(self, reading: _Reading, specs: Sequence[Slot]) -> None:
        for spec in specs:
            for pattern in self._patterns[spec.name]:
                for match in pattern.finditer(reading.normalized):
                    group = "value" if "value" in pattern.groupindex else int(pattern.groups > 0)
                    fragment = match.group(group)
                    if not fragment:
                        continue
                    start, end = match.span(group)
                    span = [
                        i for i, t in enumerate(reading.tokens) if t.start < end and t.end > start
                    ]
                    if isinstance(spec, TextSlot):
                        same = len(reading.text) == len(reading.normalized)
                        original = reading.text[start:end] if same else fragment
                        _put(reading, spec, original.strip(" .,!?"), span)
                        continue
                    inner = self.extract(
                        fragment, [spec.name], today=reading.today, expected=spec.name
                    )
                    if spec.name in inner.filled:
                        _put(reading, spec, inner.filled[spec.name], span)
                    elif spec.name in inner.rejected:
                        reading.out.rejected[spec.name] = inner.rejected[spec.name]
                        reading.used.update(span)

    def _dates(self, reading: _Reading, specs: Sequence[DateSlot]) -> None:
        mentions = find_dates(reading.tokens, reading.today)
        for spec in specs:
            if _taken(reading, spec):
                continue
            choice = _best([m for m in mentions if not m.overlaps(reading.used)])
            if choice is not None:
                _put(reading, spec, choice.value, choice.span)

    def _times(
        self,
        reading: _Reading,
        specs: Sequence[TimeSlot],
        addressed: set[str],
        claimed: set[int],
    ) -> None:
        mentions = find_times(reading.tokens)
        for spec in specs:
            if _taken(reading, spec):
                continue
            usable = [
                m
                for m in mentions
                if not m.overlaps(reading.used)
                and (m.strength == 2 or m.first not in claimed)
                and (m.strength > 0 or spec.name in addressed)
            ]
            choice = _best(usable)
            if choice is not None:
                hours, minutes = choice.value
                value = resolve_time(hours, minutes, choice.meridiem, spec)
                _put(reading, spec, value, choice.span)

    def _choices(self, reading: _Reading, specs: Sequence[ChoiceSlot]) -> None:
        for spec in specs:
            if _taken(reading, spec):
                continue
            found: list[tuple[range, str]] = []
            for value, synonyms in spec.choices.items():
                for phrase in (value.replace("_", " "), *synonyms):
                    found.extend(
                        (span, value)
                        for span in phrase_spans(reading.tokens, phrase)
                        if reading.used.isdisjoint(span)
                    )
            if found:
                span, value = max(found, key=lambda item: (item[0].start, len(item[0])))
                _put(reading, spec, value, span)

    def _numbers(self, reading: _Reading, specs: Sequence[NumberSlot], addressed: set[str]) -> None:
        mentions = find_numbers(reading.tokens)
        for spec in specs:
            if _taken(reading, spec):
                continue
            mine = _claimed_numbers(reading.tokens, [spec])
            usable = [
                Mention("number", m.value, m.first, m.last, 1 if m.first in mine else 0)
                for m in mentions
                if not m.overlaps(reading.used) and (m.first in mine or spec.name in addressed)
            ]
            choice = _best(usable)
            if choice is not None:
                _put(reading, spec, choice.value, choice.span)

    def _digits(self, reading: _Reading, specs: Sequence[DigitsSlot], addressed: set[str]) -> None:
        mentions = find_digits(reading.tokens)
        for spec in specs:
            if _taken(reading, spec) or spec.name not in addressed:
                continue
            usable = [m for m in mentions if not m.overlaps(reading.used)]
            if usable:
                choice = max(usable, key=lambda m: (len(m.value), m.first))
                _put(reading, spec, choice.value, choice.span)

    def _text(
        self, reading: _Reading, spec: TextSlot, expected: str | None, addressed: set[str]
    ) -> None:
        if spec.name == expected and not reading.out.any:
            if reading.text.rstrip().endswith("?"):
                return  # a question, not an answer
            value = _strip(reading.text, spec.strip)
            reading.out.free_text = True
        elif spec.name in addressed and spec.name != expected:
            ends = [
                span.stop
                for mention in spec.mentions
                for span in phrase_spans(reading.tokens, mention)
            ]
            if not ends:
                return
            rest = reading.text[_original_offset(reading, max(ends)) :]
            value = _strip(rest, ("is", "to", "should be", "as", "will be", *spec.strip))
        else:
            return
        words = value.split()[: spec.max_words]
        if words:
            _put(reading, spec, " ".join(words), range(len(reading.tokens)))


def resolve_time(hours: int, minutes: int, meridiem: str | None, slot: TimeSlot) -> dt.time:
    """The 24-hour time meant: "8" is 20:00 when only that reading is in the slot's range."""
    hours %= 24
    if meridiem == "pm" and hours < 12:
        hours += 12
    elif meridiem == "am" and hours == 12:
        hours = 0
    elif meridiem is None and 1 <= hours <= 11 and (slot.earliest or slot.latest):
        for candidate in (hours, hours + 12):
            if _in_range(dt.time(candidate, minutes), slot):
                hours = candidate
                break
    return dt.time(hours, minutes)


def _in_range(value: dt.time, slot: TimeSlot) -> bool:
    if slot.earliest and value < dt.time.fromisoformat(_padded(slot.earliest)):
        return False
    return not (slot.latest and value > dt.time.fromisoformat(_padded(slot.latest)))


def _padded(clock: str) -> str:
    hours, minutes = clock.split(":")
    return f"{int(hours):02d}:{minutes}"


def _allowed(spec: Slot, value: Any, today: dt.date) -> bool:
    if isinstance(spec, NumberSlot):
        return (spec.min is None or value >= spec.min) and (spec.max is None or value <= spec.max)
    if isinstance(spec, TimeSlot):
        return _in_range(value, spec)
    if isinstance(spec, DigitsSlot):
        return spec.fits(value)
    if isinstance(spec, DateSlot):
        if not spec.allow_past and value < today:
            return False
        return spec.max_days_ahead is None or (value - today).days <= spec.max_days_ahead
    return True


def _put(reading: _Reading, spec: Slot, value: Any, span: Iterable[int]) -> None:
    reading.used.update(span)
    if _allowed(spec, value, reading.today):
        reading.out.filled[spec.name] = value
        reading.out.rejected.pop(spec.name, None)
    else:
        reading.out.rejected[spec.name] = value


def _taken(reading: _Reading, spec: Slot) -> bool:
    return spec.name in reading.out.filled or spec.name in reading.out.rejected


def _best(mentions: Sequence[Mention]) -> Mention | None:
    """The strongest mention; among equals the last (a correction comes after)."""
    if not mentions:
        return None
    return max(mentions, key=lambda m: (m.strength, m.first))


def _claimed_numbers(tokens: Sequence[Token], specs: Sequence[NumberSlot]) -> set[int]:
    """Number tokens right before a unit ("4 people") or right after a cue ("party of 4")."""
    claimed: set[int] = set()
    for spec in specs:
        for unit in spec.units:
            for span in phrase_spans(tokens, unit):
                if span.start > 0 and tokens[span.start - 1].number is not None:
                    claimed.add(span.start - 1)
        for cue in spec.cues:
            for span in phrase_spans(tokens, cue):
                if span.stop < len(tokens) and tokens[span.stop].number is not None:
                    claimed.add(span.stop)
    return claimed


def _lone_bare_number_slot(specs: Sequence[Slot]) -> set[str]:
    numbers = [s.name for s in specs if isinstance(s, NumberSlot)]
    if len(numbers) == 1:
        return set(numbers)
    times = [s.name for s in specs if isinstance(s, TimeSlot)]
    return set(times) if not numbers and len(times) == 1 else set()


def _strip(text: str, prefixes: Iterable[str]) -> str:
    value = " ".join(text.split()).strip(" .,!?;:")
    ordered = sorted(prefixes, key=len, reverse=True)
    changed = True
    while changed and value:
        changed = False
        for prefix in ordered:
            if re.match(rf"{re.escape(prefix)}\b", value, re.IGNORECASE):
                value = value[len(prefix) :].strip(" .,!?;:")
                changed = True
                break
    return value


def _original_offset(reading: _Reading, token_index: int) -> int:
    """Where the token ``token_index`` starts in the original text (end when past the last)."""
    if token_index >= len(reading.tokens):
        return len(reading.text)
    if len(reading.text) == len(reading.normalized):
        return reading.tokens[token_index].start
    # Lower-casing changed the length (rare scripts): find the word instead.
    found = reading.text.lower().find(reading.tokens[token_index].text.split()[0])
    return found if found >= 0 else len(reading.text)
