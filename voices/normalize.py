"""Written English into speakable English (pure functions, no state).

:func:`normalize` rewrites the tokens a synthesizer tends to misread, and leaves the rest of the
text alone (including its punctuation, which carries prosody):

============================  ==============================================================
written                       spoken
============================  ==============================================================
``1,234`` ``-3.5`` ``007``    one thousand two hundred thirty-four; minus three point five;
                              zero zero seven (a leading zero reads digit by digit)
``21st`` ``10%``              twenty-first; ten percent
``$42.50`` ``€5`` ``£1.01``   forty-two dollars and fifty cents; five euros; one pound and
                              one penny (also ``42 USD``, ``$1.5 million``)
``2024-03-05`` ``3/5/2024``   March fifth, twenty twenty-four (slashes: month first unless
``March 5, 2024``             ``date_order="dmy"``); ``5 March 2024``: the fifth of March, ...
``in 1999`` ``the 1990s``     in nineteen ninety-nine; the nineteen nineties
``9:05`` ``14:30`` ``3pm``    nine oh five; fourteen thirty; three p.m.
``555-0123`` ``+1 555 ...``   five five five, zero one two three (digit by digit, by group)
``Dr. Smith`` ``Main St.``    Doctor Smith; Main Street (and Mr., Mrs., Ms., etc., e.g., ...)
``www.example.com/a``         w w w dot example dot com slash a
``jo.doe@example.com``        jo dot doe at example dot com
============================  ==============================================================

:func:`say_as` reads one token the way SSML ``say-as`` asks (``cardinal``, ``ordinal``,
``digits``, ``characters``, ``date`` with a format, ``time``, ``telephone``, ``currency``) and
raises :class:`ValueError` when the token cannot be read that way. The spoken forms are chosen
for American English with espeak-based voices (``a.m.`` is read as letters, a lone ``A`` is
not, so spelled letters are separated by commas).
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = [
    "cardinal",
    "characters",
    "currency",
    "date",
    "decimal",
    "digits",
    "email",
    "normalize",
    "ordinal",
    "say_as",
    "telephone",
    "time",
    "url",
    "year",
]

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]  # fmt: skip
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
_MONTH_OF = {name.lower(): i + 1 for i, name in enumerate(MONTHS)}
_MONTH_OF.update({name[:3].lower(): i + 1 for i, name in enumerate(MONTHS)})
_MONTH_OF["sept"] = 9
_DAYS_IN = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_LIMIT = 10**15
_SYMBOLS = {
    ".": "dot", "-": "dash", "_": "underscore", "/": "slash", "@": "at", ":": "colon",
    "+": "plus", "?": "question mark", "=": "equals", "&": "and", "#": "hash", "~": "tilde",
    "%": "percent", ",": "comma", "*": "star",
}  # fmt: skip


def cardinal(n: int) -> str:
    """``n`` in words: ``-1234`` is "minus one thousand two hundred thirty-four"."""
    if n < 0:
        return f"minus {cardinal(-n)}"
    if n >= _LIMIT:
        return digits(str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {cardinal(rest)}" if rest else "")
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            return f"{cardinal(high)} {name}" + (f" {cardinal(rest)}" if rest else "")
    raise AssertionError("unreachable")  # pragma: no cover


def ordinal(n: int) -> str:
    """``n`` as an ordinal: 21 is "twenty-first"."""
    words = cardinal(n)
    head, sep, last = words.rpartition(" ")
    prefix, hyphen, word = last.rpartition("-")
    if word in _ORDINAL_WORDS:
        word = _ORDINAL_WORDS[word]
    elif word.endswith("y"):
        word = word[:-1] + "ieth"
    else:
        word += "th"
    return head + sep + prefix + hyphen + word


def digits(text: str) -> str:
    """Each digit in words: "0123" is "zero one two three" (other characters are dropped)."""
    return " ".join(_ONES[int(c)] for c in text if c.isdigit())


def decimal(text: str) -> str:
    """A written number (``-1,234.05``) in words: "minus one thousand ... point zero five"."""
    match = re.fullmatch(r"([-+\u2212]?)(\d{1,3}(?:,\d{3})+|\d+)?(?:\.(\d+))?", text.strip())
    if match is None or not (match[2] or match[3]):
        raise ValueError(f"not a number: {text!r}")
    sign, whole, fraction = match.groups()
    words = cardinal(int(whole.replace(",", ""))) if whole else "zero"
    if fraction:
        words += f" point {digits(fraction)}"
    return f"minus {words}" if sign in ("-", "\u2212") else words


def year(n: int) -> str:
    """A year as people say it: 1905 "nineteen oh five", 2000 "two thousand", 2024 "twenty
    twenty-four"."""
    if not 1000 <= n <= 9999 or 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    return f"{cardinal(high)} {'oh ' if low < 10 else ''}{cardinal(low)}"


def _plural(words: str) -> str:
    """ "nineteen ninety" -> "nineteen nineties" (decades)."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    return words + ("es" if words.endswith(("x", "s")) else "s")


def characters(text: str) -> str:
    """Spelled out: "AB1" is "A, B, one" (commas keep each letter a letter)."""
    names = []
    for c in text:
        if c.isdigit():
            names.append(_ONES[int(c)])
        elif c.isalpha():
            names.append(c.upper())
        elif c in _SYMBOLS:
            names.append(_SYMBOLS[c])
    return ", ".join(names)


def date(text: str, fmt: str = "mdy") -> str:
    """A numeric date (``2024-03-05``, ``3/5/24``) read in the field order ``fmt``.

    ``fmt`` is SSML's: ``mdy``, ``dmy``, ``ymd``, ``md``, ``dm``, ``ym``, ``my``, ``d``,
    ``m``, ``y``. Months may also be written as names (``5 Mar 2024`` with ``dmy``).
    """
    fmt = fmt.lower()
    if not fmt or set(fmt) - set("dmy") or len(set(fmt)) != len(fmt):
        raise ValueError(f"unknown date format {fmt!r}")
    parts = [p for p in re.split(r"[-/.,\s]+", text.strip()) if p]
    if len(parts) != len(fmt):
        raise ValueError(f"{text!r} does not match the date format {fmt!r}")
    fields = dict(zip(fmt, parts, strict=True))
    month = day = None
    if "m" in fields:
        raw = fields["m"]
        month = int(raw) if raw.isdigit() else _MONTH_OF.get(raw.lower().rstrip("."), 0)
        if not 1 <= month <= 12:
            raise ValueError(f"no month {raw!r}")
    if "d" in fields:
        raw = fields["d"].lower()
        raw = raw[:-2] if raw.endswith(("st", "nd", "rd", "th")) else raw
        if not raw.isdigit() or not 1 <= int(raw) <= (_DAYS_IN[month - 1] if month else 31):
            raise ValueError(f"no day {fields['d']!r}")
        day = int(raw)
    spoken_year = None
    if "y" in fields:
        if not fields["y"].isdigit():
            raise ValueError(f"no year {fields['y']!r}")
        value = int(fields["y"])
        spoken_year = year(value) if len(fields["y"]) >= 3 else _two_digits(fields["y"])
    if month is not None and day is not None:
        spoken = f"{MONTHS[month - 1]} {ordinal(day)}"
        return spoken + (f", {spoken_year}" if spoken_year else "")
    if month is not None:
        return MONTHS[month - 1] + (f" {spoken_year}" if spoken_year else "")
    if day is not None:
        return f"the {ordinal(day)}"
    assert spoken_year is not None
    return spoken_year


def _two_digits(text: str) -> str:
    return f"oh {_ONES[int(text)]}" if len(text) == 2 and text[0] == "0" else cardinal(int(text))


_TIME = re.compile(
    r"(\d{1,2})(?:[:.](\d{2}))?(?::(\d{2}))?\s*(?:([AaPp])\.?\s?[Mm]\.?)?", flags=re.ASCII
)


def time(text: str, fmt: str | None = None) -> str:
    """A clock time: "9:05" "nine oh five", "9:00 am" "nine a.m.", "14:30" "fourteen thirty".

    ``fmt="hms12"`` reads a 24-hour time on the 12-hour clock ("two thirty p.m.").
    """
    match = _TIME.fullmatch(text.strip())
    if match is None or (match[2] is None and match[4] is None):
        raise ValueError(f"not a time: {text!r}")
    hour, minute = int(match[1]), int(match[2] or 0)
    second = int(match[3]) if match[3] else 0
    half = match[4].lower() if match[4] else None
    if minute > 59 or second > 59 or hour > (12 if half else 24):
        raise ValueError(f"not a time: {text!r}")
    if half is None and fmt == "hms12" and hour <= 23:
        half = "p" if hour >= 12 else "a"
        hour = hour % 12 or 12
    spoken = cardinal(hour)
    if minute == 0 and half is None and hour <= 12:
        spoken += " o'clock"
    elif minute == 0 and half is None:
        spoken += " hundred"
    elif minute:
        spoken += f" {'oh ' if minute < 10 else ''}{cardinal(minute)}"
    if second:
        spoken += f" and {cardinal(second)} second{'s' if second > 1 else ''}"
    if half:
        spoken += f" {half}.m."
    return spoken


def telephone(text: str) -> str:
    """Digit by digit, a comma between groups: "+1 (555) 010-0123"."""
    groups = re.findall(r"\d+", text)
    if not groups or re.search(r"[^\d\s()+.\-/]", text):
        raise ValueError(f"not a telephone number: {text!r}")
    spoken = ", ".join(digits(g) for g in groups)
    return ("plus " if text.strip().startswith("+") else "") + spoken


_CURRENCIES: dict[str, tuple[str, str, str, str]] = {
    # symbol or code: unit, units, minor unit, minor units ("" when there is none)
    "$": ("dollar", "dollars", "cent", "cents"),
    "USD": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "EUR": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "GBP": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "", ""),
    "JPY": ("yen", "yen", "", ""),
    "₹": ("rupee", "rupees", "paisa", "paise"),
    "INR": ("rupee", "rupees", "paisa", "paise"),
    "CAD": ("Canadian dollar", "Canadian dollars", "cent", "cents"),
    "AUD": ("Australian dollar", "Australian dollars", "cent", "cents"),
    "CHF": ("Swiss franc", "Swiss francs", "centime", "centimes"),
}
_CODES = "|".join(k for k in _CURRENCIES if k.isalpha())
_SIGNS = "".join(re.escape(k) for k in _CURRENCIES if not k.isalpha())
_AMOUNT = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SCALE_WORDS = r"thousand|million|billion|trillion"
_MONEY = re.compile(
    rf"(?P<sign>-)?(?:(?P<pre>[{_SIGNS}]|(?:{_CODES})\s?)(?P<a1>{_AMOUNT})"
    rf"|(?P<a2>{_AMOUNT})(?:\s?(?P<post>{_CODES})\b|(?P<sign_after>[{_SIGNS}])))"
    rf"(?:\s(?P<scale>{_SCALE_WORDS})\b)?"
)


def currency(text: str) -> str:
    """An amount of money: "$42.50" is "forty-two dollars and fifty cents"."""
    match = _MONEY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an amount of money: {text!r}")
    return _say_money(match)


def _say_money(match: re.Match[str]) -> str:
    code = (match["pre"] or match["post"] or match["sign_after"]).strip()
    unit, units, minor, minors = _CURRENCIES[code]
    amount = (match["a1"] or match["a2"]).replace(",", "")
    minus = "minus " if match["sign"] else ""
    if match["scale"]:
        return f"{minus}{decimal(amount)} {match['scale']} {units}"
    whole, _, fraction = amount.partition(".")
    major = int(whole)
    if fraction and (len(fraction) != 2 or not minor):
        return f"{minus}{decimal(amount)} {units}"
    cents = int(fraction) if fraction else 0
    parts = []
    if major or not cents:
        parts.append(f"{cardinal(major)} {unit if major == 1 else units}")
    if cents:
        parts.append(f"{cardinal(cents)} {minor if cents == 1 else minors}")
    return minus + " and ".join(parts)


def url(text: str) -> str:
    """A web address read out: the scheme is dropped, symbols are named, digits spelled."""
    rest = re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", text).rstrip("/")
    return _read_out(rest)


def email(text: str) -> str:
    """An e-mail address read out: "jo.doe@example.com" is "jo dot doe at example dot com"."""
    return _read_out(text)


def _read_out(text: str) -> str:
    words = []
    for token in re.findall(r"[A-Za-z]+|\d+|\S", text):
        if token.isdigit():
            words.append(digits(token))
        elif token.isalpha():
            words.append("w w w" if token.lower() == "www" else token)
        elif token in _SYMBOLS:
            words.append(_SYMBOLS[token])
    return " ".join(words)


def say_as(text: str, interpret_as: str, fmt: str | None = None) -> str:
    """``text`` read as SSML ``say-as interpret-as=... format=...`` asks.

    Raises :class:`ValueError` for an unknown ``interpret_as`` or a token it cannot read.
    """
    kind = interpret_as.lower()
    token = text.strip()
    if kind in ("cardinal", "number"):
        return decimal(token)
    if kind == "ordinal":
        raw = token.lower().removesuffix("st").removesuffix("nd").removesuffix("rd")
        raw = raw.removesuffix("th").replace(",", "")
        if not raw.isdigit():
            raise ValueError(f"not an ordinal: {text!r}")
        return ordinal(int(raw))
    if kind == "digits":
        if not any(c.isdigit() for c in token):
            raise ValueError(f"no digits in {text!r}")
        return digits(token)
    if kind in ("characters", "spell-out", "verbatim"):
        return characters(token)
    if kind == "date":
        if fmt is None:
            fmt = "ymd" if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", token) else "mdy"
        return date(token, fmt)
    if kind == "time":
        return time(token, fmt)
    if kind == "telephone":
        return telephone(token)
    if kind == "currency":
        return currency(token)
    raise ValueError(f"say-as interpret-as={interpret_as!r} is not supported")


# -- plain text --------------------------------------------------------------------------------

_MONTH_NAMES = "|".join(
    [*MONTHS, *(m[:3] for m in MONTHS if m != "May"), "Sept"]
)  # "May" is also a verb: only its full name with a day
_TITLES = {
    "Dr": "Doctor", "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Prof": "Professor",
    "Mt": "Mount", "Gen": "General", "Capt": "Captain", "Sgt": "Sergeant", "Rev": "Reverend",
}  # fmt: skip
_SUFFIXES = {
    "Jr": "Junior", "Sr": "Senior", "Ave": "Avenue", "Blvd": "Boulevard", "Rd": "Road",
    "Inc": "Incorporated", "Ltd": "Limited", "Co": "Company", "Corp": "Corporation",
    "etc": "et cetera", "vs": "versus", "approx": "approximately", "Dept": "Department",
    "e.g": "for example", "i.e": "that is",
}  # fmt: skip
_UNITS = {  # unit: (one, many)
    "km": ("kilometer", "kilometers"), "kg": ("kilogram", "kilograms"),
    "cm": ("centimeter", "centimeters"), "mm": ("millimeter", "millimeters"),
    "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "lbs": ("pound", "pounds"), "lb": ("pound", "pounds"), "ft": ("foot", "feet"),
    "°C": ("degree Celsius", "degrees Celsius"), "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "oz": ("ounce", "ounces"),
}  # fmt: skip
_UNIT_NAMES = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
_NUMBER = r"(?<![\w.,])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w,]\d|\.\d)"
_PATTERNS = [
    ("url", r"\b(?:[a-zA-Z][a-zA-Z0-9+.-]*://|www\.)[^\s<>\"]*[^\s<>\".,;:!?)]"),
    ("email", r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    ("domain", r"\b[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*\.(?:com|org|net|io|dev|ai|edu|gov)\b"),
    (
        "phone",
        r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{3}\)\s?|\b\d{3}[-.])\d{3}[-.]\d{4}\b"
        r"|\+\d{1,3}(?:[\s.-]\d{2,4}){2,4}\b|\b\d{3}-\d{4}\b",
    ),
    ("iso_date", r"\b\d{4}-\d{2}-\d{2}\b"),
    ("slash_date", r"\b\d{1,2}/\d{1,2}/(?:\d{4}|\d{2})\b"),
    ("month_date", rf"\b(?:{_MONTH_NAMES})\.?\s\d{{1,2}}(?:st|nd|rd|th)?\b(?:,?\s\d{{4}}\b)?"),
    (
        "day_month",
        rf"(?<!\bthe )\b\d{{1,2}}(?:st|nd|rd|th)?\s(?:of\s)?(?:{_MONTH_NAMES})\b(?:,?\s\d{{4}}\b)?",
    ),
    ("month_year", rf"\b(?:{_MONTH_NAMES})\s\d{{4}}\b"),
    (
        "time",
        r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s?[AaPp]\.?[Mm]\b\.?)?|\b\d{1,2}\s?[AaPp]\.?[Mm]\b\.?"
        r"|\b\d{1,2}\.\d{2}\s?[AaPp]\.?[Mm]\b\.?",
    ),
    ("money", _MONEY.pattern),
    ("decade", r"\b1[1-9]\d0s\b|\b20\d0s\b"),
    (
        "year",
        r"\b(?:in|In|of|by|since|Since|until|from|From|year|circa|around) "
        r"(?:1[1-9]\d\d|20\d\d)\b(?!,\d|\.\d)",
    ),
    ("percent", _NUMBER + r"\s?%"),
    ("unit", _NUMBER + rf"\s?(?:{_UNIT_NAMES})(?![\w])"),
    ("ordinal", r"\b\d+(?:st|nd|rd|th)\b"),
    ("number_sign", r"#(?=\d)"),
    ("number", _NUMBER),
    ("title", r"\b(?:" + "|".join(_TITLES) + r")\.(?=\s+[A-Z])|\b(?:Mr|Mrs|Ms|Prof)\."),
    ("street", r"\b[A-Z][a-z]+ St\.(?!\s+[A-Z])"),
    ("saint", r"\bSt\.(?=\s+[A-Z])"),
    ("drive", r"\b[A-Z][a-z]+ Dr\.(?!\s+[A-Z])"),
    ("abbreviation", r"(?<![\w.])(?:" + "|".join(re.escape(k) for k in _SUFFIXES) + r")\."),
    ("no", r"\bNo\.(?=\s?\d)"),
    ("ampersand", r"(?<=\s)&(?=\s)"),
]
#: abbreviations that come before what they qualify: their dot never ends a sentence
_LEADING = frozenset({"title", "saint", "no"})
_TOKEN = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in _PATTERNS))


def normalize(text: str, *, date_order: str = "mdy") -> str:
    """``text`` with numbers, money, dates, times, abbreviations and addresses in words."""

    def replace(match: re.Match[str]) -> str:
        kind = match.lastgroup
        assert kind is not None
        token = match.group()
        handler = _HANDLERS[kind]
        try:
            spoken = handler(token, date_order)
        except ValueError:
            return token  # not what it looked like: leave it to the synthesizer
        if (
            token.endswith(".")
            and kind not in _LEADING
            and not spoken.endswith(".")
            and _ends_sentence(text, match.end())
        ):
            spoken += "."  # the dot was an abbreviation's and the sentence's
        return spoken

    return _TOKEN.sub(replace, text)


def _ends_sentence(text: str, end: int) -> bool:
    """Whether a dot consumed just before ``end`` also ended the sentence."""
    rest = text[end:]
    stripped = rest.lstrip()
    return not stripped or (len(stripped) < len(rest) and stripped[0].isupper())


def _money(token: str, _: str) -> str:
    match = _MONEY.fullmatch(token)
    if match is None:
        raise ValueError(token)
    return _say_money(match)


def _month_date(token: str, _: str) -> str:
    match = re.fullmatch(r"(\w+)\.?\s(\d{1,2})(?:st|nd|rd|th)?(?:,?\s(\d{4}))?", token)
    assert match is not None
    fields = f"{match[1]} {match[2]}" + (f" {match[3]}" if match[3] else "")
    return date(fields, "mdy" if match[3] else "md")


def _day_month(token: str, _: str) -> str:
    match = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?\s(?:of\s)?(\w+)(?:,?\s(\d{4}))?", token)
    assert match is not None
    month = _MONTH_OF[match[2].lower()]
    day = int(match[1])
    if not 1 <= day <= _DAYS_IN[month - 1]:
        raise ValueError(token)
    spoken = f"the {ordinal(day)} of {MONTHS[month - 1]}"
    return spoken + (f", {year(int(match[3]))}" if match[3] else "")


def _unit(token: str, _: str) -> str:
    match = re.fullmatch(rf"(.+?)\s?({_UNIT_NAMES})", token)
    assert match is not None
    one, many = _UNITS[match[2]]
    return f"{_number(match[1], '')} {one if match[1] in ('1', '-1') else many}"


def _number(token: str, _: str) -> str:
    bare = token.lstrip("-")
    if len(bare) > 1 and bare.startswith("0") and bare.isdigit():
        return digits(token)
    return decimal(token)


_HANDLERS: dict[str, Callable[[str, str], str]] = {
    "url": lambda t, _: url(t),
    "email": lambda t, _: email(t),
    "domain": lambda t, _: url(t),
    "phone": lambda t, _: telephone(t),
    "iso_date": lambda t, _: date(t, "ymd"),
    "slash_date": lambda t, order: date(t, order),
    "month_date": _month_date,
    "day_month": _day_month,
    "month_year": lambda t, _: date(t, "my"),
    "time": lambda t, _: time(t),
    "money": _money,
    "decade": lambda t, _: _plural(year(int(t[:-1]))),
    "year": lambda t, _: f"{t[:-5]} {year(int(t[-4:]))}",
    "percent": lambda t, _: f"{_number(t.rstrip('% '), '')} percent",
    "unit": _unit,
    "ordinal": lambda t, _: ordinal(int(t[:-2])),
    "number_sign": lambda t, _: "number ",
    "number": _number,
    "title": lambda t, _: _TITLES[t[:-1]],
    "street": lambda t, _: f"{t[:-4]} Street",
    "saint": lambda t, _: "Saint",
    "drive": lambda t, _: f"{t[:-4]} Drive",
    "abbreviation": lambda t, _: _SUFFIXES[t[:-1]],
    "no": lambda t, _: "number",
    "ampersand": lambda t, _: "and",
}
