"""Reply templates: ``{slot}`` and ``{var.path}`` placeholders, spoken values, SSML escaping.

``{name}`` is replaced by the value of a slot or variable, ``{booking.reference}`` looks inside a
webhook result, ``{{`` and ``}}`` are literal braces. Values are written the way they are said:
a time as "8 PM" or "7:30 PM", a date as "Friday, March 3", a yes/no as "yes" or "no". In an
SSML reply the values are XML-escaped, so a caller's name cannot break the markup.

:func:`json_value` gives the same values as JSON for webhooks: a time as ``"20:00"``, a date as
``"2025-03-03"``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

__all__ = [
    "MISSING",
    "Template",
    "TemplateError",
    "is_ssml",
    "json_value",
    "lookup",
    "placeholders",
    "spoken",
]

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}|[{}]")


class TemplateError(ValueError):
    """A template with a stray brace or an empty placeholder."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: what :func:`lookup` returns for a name that has no value
MISSING: Any = _Missing()


@dataclass(frozen=True, slots=True)
class _Field:
    path: str


def _parse(text: str) -> tuple[str | _Field, ...]:
    parts: list[str | _Field] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif match.group(1) is not None:
            if any(literal):
                parts.append("".join(literal))
            literal = []
            parts.append(_Field(match.group(1)))
        else:
            raise TemplateError(
                f"stray {token!r} at character {match.start()} (write {token * 2} for a brace, "
                "{name} for a value)"
            )
    literal.append(text[position:])
    if any(literal):
        parts.append("".join(literal))
    return tuple(parts)


def placeholders(text: str) -> list[str]:
    """The dotted names a template uses, in order. Raises :class:`TemplateError`."""
    return [part.path for part in _parse(text) if isinstance(part, _Field)]


def is_ssml(text: str) -> bool:
    return text.lstrip().startswith("<speak")


class Template:
    """A parsed template. ``render`` writes values as spoken; ``value`` keeps the JSON type."""

    __slots__ = ("_parts", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._parts = _parse(text)

    def render(self, values: Mapping[str, Any], *, ssml: bool = False) -> str:
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            else:
                said = spoken(lookup(values, part.path))
                out.append(escape(said, {'"': "&quot;", "'": "&apos;"}) if ssml else said)
        return "".join(out)

    def value(self, values: Mapping[str, Any]) -> Any:
        """A template that is exactly one ``{name}`` gives that value as JSON; others a string."""
        if len(self._parts) == 1 and isinstance(self._parts[0], _Field):
            found = lookup(values, self._parts[0].path)
            return None if found is MISSING else json_value(found)
        return self.render(values)


def lookup(values: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (into dicts and lists), or :data:`MISSING`."""
    head, *rest = path.split(".")
    current: Any = values.get(head, MISSING)
    for key in rest:
        if isinstance(current, Mapping):
            current = current.get(key, MISSING)
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            return MISSING
    return current


def spoken(value: Any) -> str:
    """A value written as it is said."""
    if value is MISSING or value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return f"{spoken(value.date())} at {spoken(value.time())}"
    if isinstance(value, dt.date):
        return f"{value:%A}, {value:%B} {value.day}"
    if isinstance(value, dt.time):
        return _spoken_time(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _spoken_time(value: dt.time) -> str:
    if (value.hour, value.minute) == (12, 0):
        return "noon"
    if (value.hour, value.minute) == (0, 0):
        return "midnight"
    hour = value.hour % 12 or 12
    suffix = "AM" if value.hour < 12 else "PM"
    return f"{hour} {suffix}" if value.minute == 0 else f"{hour}:{value.minute:02d} {suffix}"


def json_value(value: Any) -> Any:
    """A value as JSON: times ``"HH:MM"``, dates ISO, everything else unchanged."""
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="minutes")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return f"{value.hour:02d}:{value.minute:02d}"
    return value
