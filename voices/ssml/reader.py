"""Hardened XML reading for SSML: text in, a flat list of element and text events out.

SSML comes from API callers, config files and LLMs, so the XML reader refuses everything an
SSML document never needs and an attacker would use, before it costs anything:

- **no DTD at all**: a ``<!DOCTYPE`` is refused where it starts, so there are no entity
  declarations to expand (billion laughs, quadratic blow-up) and no external entities or DTDs
  to fetch (XXE); parameter entity parsing is off too. Only XML's five predefined entities and
  character references remain;
- **no processing instructions** (the XML declaration itself is fine);
- **limits**: the input length is checked before parsing, and the element depth and count while
  parsing, so 10 MB of input or 100,000 nested elements are refused at once.

It uses the standard library's expat (``xml.parsers.expat``), which never touches the network
or the file system by itself, and which also has its own amplification guard. Every refusal is
an :class:`~pipeline.errors.InvalidSSML` with a 1-based line and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn
from xml.parsers import expat

from pipeline.errors import InvalidSSML


@dataclass(frozen=True, slots=True)
class Limits:
    """How much SSML one document may hold."""

    #: characters of input (checked before parsing)
    max_chars: int = 100_000
    #: nested elements, ``speak`` included
    max_depth: int = 32
    #: elements in the whole document
    max_elements: int = 10_000


@dataclass(frozen=True, slots=True)
class Start:
    name: str
    attributes: dict[str, str]
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class End:
    name: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Text:
    data: str
    line: int
    column: int


Event = Start | End | Text


def read(text: str, limits: Limits = Limits()) -> list[Event]:
    """The events of the XML document ``text``; raises :class:`InvalidSSML` on anything else."""
    if len(text) > limits.max_chars:
        raise InvalidSSML(f"{len(text)} characters of SSML (limit {limits.max_chars})", 1, 1)
    return _Reader(limits).read(text)


class _Reader:
    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._events: list[Event] = []
        self._depth = 0
        self._elements = 0
        parser = expat.ParserCreate()
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.ordered_attributes = False
        parser.StartDoctypeDeclHandler = self._doctype
        parser.EntityDeclHandler = self._entity
        parser.UnparsedEntityDeclHandler = self._entity
        parser.ExternalEntityRefHandler = self._external
        parser.SkippedEntityHandler = self._entity
        parser.NotationDeclHandler = self._entity
        parser.ProcessingInstructionHandler = self._instruction
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        self._parser = parser

    def read(self, text: str) -> list[Event]:
        try:
            self._parser.Parse(text, True)
        except expat.ExpatError as error:
            reason = expat.errors.messages[error.code]
            raise InvalidSSML(f"malformed XML: {reason}", error.lineno, error.offset + 1) from None
        return self._events

    def _position(self) -> tuple[int, int]:
        return self._parser.CurrentLineNumber, self._parser.CurrentColumnNumber + 1

    def _refuse(self, reason: str) -> NoReturn:
        raise InvalidSSML(reason, *self._position())

    def _doctype(self, *_: object) -> None:
        self._refuse("DOCTYPE declarations are not allowed in SSML")

    def _entity(self, *_: object) -> None:
        self._refuse("entity declarations and references to them are not allowed in SSML")

    def _external(self, *_: object) -> int:
        self._refuse("external entities are not allowed in SSML")

    def _instruction(self, *_: object) -> None:
        self._refuse("processing instructions are not allowed in SSML")

    def _start(self, name: str, attributes: dict[str, str]) -> None:
        self._depth += 1
        self._elements += 1
        if self._depth > self._limits.max_depth:
            self._refuse(f"elements nested deeper than {self._limits.max_depth}")
        if self._elements > self._limits.max_elements:
            self._refuse(f"more than {self._limits.max_elements} elements")
        self._events.append(Start(name, attributes, *self._position()))

    def _end(self, name: str) -> None:
        self._depth -= 1
        self._events.append(End(name, *self._position()))

    def _text(self, data: str) -> None:
        last = self._events[-1] if self._events else None
        if isinstance(last, Text):  # expat may split text: keep one event at its start
            self._events[-1] = Text(last.data + data, last.line, last.column)
        else:
            self._events.append(Text(data, *self._position()))
