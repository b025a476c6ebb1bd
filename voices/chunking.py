"""Streaming text into speakable chunks (sans-I/O).

An LLM produces a reply a few characters at a time; synthesis should start as soon as there is
something worth saying. :class:`ClauseChunker` takes the text deltas (:meth:`~ClauseChunker.feed`)
and hands back :class:`TextChunk` objects as soon as they are complete;
:meth:`~ClauseChunker.flush` ends the text and returns the rest.

Rules, in the order they are checked at each character:

1. **Sentence ends** (``.``, ``!``, ``?``, ``…``, with any run of them and closing quotes or
   brackets after) end a chunk when whitespace follows and the next word does not start with a
   lower-case letter. ``.`` does not end a sentence after a known abbreviation (``Dr.``,
   ``e.g.``: :data:`ABBREVIATIONS`) or a single-letter initial (``J. R. R. Tolkien``); decimals
   (``3.5``) and addresses (``example.com``) have no whitespace after the dot.
2. **A line break** ends a chunk (lists, paragraphs).
3. **Clause ends** (``,``, ``;``, ``:``, a spaced dash) followed by whitespace end the *first*
   chunk once it holds at least ``min_clause_chars`` characters, so the first audio starts
   early; later chunks wait for the sentence end, which sounds more natural.
4. **Long sentences** are cut once a chunk reaches ``max_chars``: at its last clause end, or
   else its last whitespace (or else at ``max_chars``).

Every decision depends only on the text, never on how it was split into deltas: a candidate
end that needs more text to decide (the next word's first letter) waits for it. Chunks are
stripped of surrounding whitespace, carry their offsets in the whole text
(``text[chunk.start:chunk.end] == chunk.text``), and together hold every non-whitespace
character of the text, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

#: lower-case words (without the final dot) after which ``.`` does not end a sentence
ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "lt", "col", "gen",
        "capt", "sgt", "rev", "hon", "gov", "sen", "rep", "pres", "vs", "etc", "e.g", "i.e",
        "approx", "dept", "est", "fig", "no", "vol", "inc", "ltd", "co", "corp", "jan", "feb",
        "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "a.m", "p.m",
    }
)  # fmt: skip

_SENTENCE_END = frozenset(".!?…")
_CLOSERS = frozenset("\"')]}\u201d\u2019\u00bb")
_OPENERS = frozenset("\"'([{\u201c\u2018\u00ab")
_CLAUSE_END = frozenset(",;:")
_DASHES = frozenset("-\u2013\u2014")
_CLOSER_CHARS = "".join(sorted(_CLOSERS))
#: what a candidate end returns when the text so far cannot decide it
_UNDECIDED = -1


@dataclass(frozen=True, slots=True)
class TextChunk:
    """``text`` is ``whole_text[start:end]``, stripped of surrounding whitespace."""

    text: str
    start: int
    end: int


class ClauseChunker:
    """Feed text deltas, get speakable chunks; see the module docstring for the rules."""

    def __init__(self, *, min_clause_chars: int = 12, max_chars: int = 250) -> None:
        if max_chars < 2:
            raise ValueError("max_chars must be at least 2")
        self.min_clause_chars = min_clause_chars
        self.max_chars = max_chars
        self._text = ""
        #: where the pending chunk starts, and where scanning resumes (all before is decided)
        self._start = 0
        self._scan = 0
        #: the last clause end and whitespace seen in the pending chunk (for long sentences)
        self._last_clause = -1
        self._last_space = -1
        self._emitted = 0
        self._flushed = False

    @property
    def pending(self) -> str:
        """Text fed but not yet returned in a chunk."""
        return self._text[self._start :]

    def feed(self, delta: str) -> list[TextChunk]:
        """Add ``delta`` to the text; return the chunks it completes."""
        if self._flushed:
            raise RuntimeError("feed() after flush()")
        self._text += delta
        return self._run(final=False)

    def flush(self) -> list[TextChunk]:
        """End the text: return every chunk still pending."""
        if self._flushed:
            return []
        chunks = self._run(final=True)
        chunks.extend(self._cut(len(self._text)))
        self._flushed = True
        return chunks

    def _run(self, *, final: bool) -> list[TextChunk]:
        chunks: list[TextChunk] = []
        text = self._text
        while self._scan < len(text):
            i = self._scan
            if i - self._start >= self.max_chars and text[self._start : i].strip():
                chunks.extend(self._cut(self._long_cut(i)))
                continue
            c = text[i]
            clause = False
            end: int | None
            if c in _SENTENCE_END:
                end = self._sentence_end(i, final)
            elif c == "\n":
                end = i + 1
            elif c in _CLAUSE_END or c in _DASHES:
                end, clause = self._clause_end(i, final), True
            else:
                end = None
                if c.isspace():
                    self._last_space = i
            if end == _UNDECIDED:
                break
            if end is None or (clause and not self._take_clause(end)):
                self._scan = i + 1
                continue
            chunks.extend(self._cut(end))
        return chunks

    def _sentence_end(self, i: int, final: bool) -> int | None:
        """Where a sentence ending at ``i`` ends: ``None`` if not, ``_UNDECIDED`` if unknown yet."""
        text = self._text
        j = i
        while j < len(text) and (text[j] in _SENTENCE_END or text[j] in _CLOSERS):
            j += 1
        after = _next_visible(text, j)
        if after is None and not final:
            return _UNDECIDED
        if j < len(text) and not text[j].isspace():
            return None  # 3.5, example.com, "e.g.," ...
        if after is None:
            return j
        if text[after].islower():
            return None  # "Wait... what?", "e.g. this"
        if text[i:j].rstrip(_CLOSER_CHARS) == ".":
            word = text[self._word_start(i) : i].lower()
            if word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                return None
        return j

    def _clause_end(self, i: int, final: bool) -> int | None:
        """Where a clause ending at ``i`` ends: ``None`` if none, ``_UNDECIDED`` if unknown yet."""
        text = self._text
        j = i + 1
        while j < len(text) and text[j] in _CLOSERS:
            j += 1
        if j >= len(text):
            return j if final else _UNDECIDED
        if not text[j].isspace():
            return None  # 3,000 or well-known
        if text[i] in _DASHES and (i == 0 or not text[i - 1].isspace()):
            return None  # only a dash with spaces around it parts clauses
        self._last_clause = j
        return j

    def _take_clause(self, end: int) -> bool:
        """Whether a clause end at ``end`` ends the pending chunk now (only the first chunk)."""
        return self._emitted == 0 and len(self._text[self._start : end].strip()) >= (
            self.min_clause_chars
        )

    def _long_cut(self, i: int) -> int:
        """Where to cut a pending chunk that reached ``max_chars`` at ``i``."""
        for candidate in (self._last_clause, self._last_space):
            if self._start < candidate <= i and self._text[self._start : candidate].strip():
                return candidate
        return i

    def _word_start(self, i: int) -> int:
        k = i
        while k > self._start and not self._text[k - 1].isspace():
            k -= 1
        while k < i and self._text[k] in _OPENERS:
            k += 1
        return k

    def _cut(self, end: int) -> list[TextChunk]:
        raw = self._text[self._start : end]
        stripped = raw.strip()
        start = self._start + (len(raw) - len(raw.lstrip()))
        self._start = self._scan = end
        self._last_clause = self._last_space = -1
        if not stripped:
            return []
        self._emitted += 1
        return [TextChunk(stripped, start, start + len(stripped))]


def _next_visible(text: str, j: int) -> int | None:
    """Index of the first non-whitespace character at or after ``j``, if there is one yet."""
    while j < len(text):
        if not text[j].isspace():
            return j
        j += 1
    return None
