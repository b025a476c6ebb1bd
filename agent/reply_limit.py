"""The longest reply (``limits.max_reply_chars``), for every kind of reply.

:class:`ReplyCap` is sans-I/O: fed a reply's text as it comes (whole replies, or an LLM's deltas)
it says what may be spoken. :func:`capped` applies it to a reply's parts on their way to the
:class:`~agent.reply.Speaker`, so intent replies, LLM replies and prompts are bounded alike.

Rules (``N`` is the limit, in characters of reply text; markup is counted as written):

* Text that keeps the reply within ``N - LOOKAHEAD`` characters is released at once (speech
  starts on the first clause, as without a limit).
* Past that point text is held until its sentence ends (``. ! ?`` or ``…``, then a space or the
  end of a part): a sentence that ends within ``N`` is released, whole.
* The first text that takes the reply past ``N`` cuts it: held text is dropped (what was
  released stands: the reply ends at the last sentence end within ``N``, or, for one sentence
  longer than ``LOOKAHEAD`` that crosses ``N``, where its release had reached). A whole part
  (an intent reply) with no sentence end within what is left is cut at its last word within it.
* After the cut no text is spoken. A streaming source is closed at once (an LLM request is
  aborted, so no more tokens are generated); a source of whole parts is read on for its call
  actions (a goodbye's hang-up still happens). An SSML part is spoken whole or, past ``N``,
  not at all (its markup cannot be cut).

A reply may also have a limit in tokens (:class:`TokenCap`, through the same :func:`capped`: the
Realtime API's ``max_output_tokens``). Fixed text has no model tokenizer to count with, so a token
here is a word or a punctuation mark (:func:`count_tokens`: a run of letters, digits or ``_``, or
one other character that is not a space), about what an LLM's tokenizer makes of plain English
(which splits long or rare words further). The reply ends after its ``N``-th token."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Protocol

from agent.dialogue.decision import Say
from agent.reply import ReplyPart

__all__ = ["LOOKAHEAD", "Cap", "ReplyCap", "TokenCap", "capped", "count_tokens"]

#: characters before the limit from which text is held until its sentence ends
LOOKAHEAD = 200
#: a sentence's end: its mark, closing quotes or brackets, then a space or the end of the text
_SENTENCE_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*(?=\s|$)")
#: a token of reply text: a word, or a character that is neither a word character nor a space
_TOKEN = re.compile(r"\w+|[^\w\s]")
_MARKUP = re.compile(r"<[^>]*>")


class ReplyCap:
    """One reply's budget of ``limit`` characters."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: characters released so far
        self.released = 0
        self.held = ""
        #: the reply was cut (nothing more is released)
        self.cut = False
        self._streaming = False  # the text held came as deltas

    def feed(self, text: str, *, final: bool) -> str:
        """``text`` arrives (``final``: the part ends with it); returns what may be spoken now."""
        if self.cut:
            return ""
        self.held += text
        total = self.released + len(self.held)
        streaming, self._streaming = self._streaming or not final, not final
        if total <= self.limit - LOOKAHEAD:
            return self._release(len(self.held))
        ends = [m.end() for m in _SENTENCE_END.finditer(self.held)]
        room = self.limit - self.released
        fitting = [e for e in ends if e <= room]
        if total <= self.limit:
            if final:
                return self._release(len(self.held))
            return self._release(fitting[-1]) if fitting else ""
        self.cut = True
        if fitting:
            out = self._release(fitting[-1])
        elif final and not streaming and room > 0:
            space = self.held.rfind(" ", 0, room + 1)  # no sentence end at all: whole words
            out = self._release(space if space > 0 else 0)
        else:
            out = ""
        self.held = ""
        return out

    def fits_whole(self, text: str) -> bool:
        """Whether ``text``, spoken whole (SSML), stays within the limit; if not, it cuts."""
        if self.cut or self.released + len(self.held) + len(text) > self.limit:
            self.cut = True
            self.held = ""
            return False
        self.released += len(text)
        return True

    def _release(self, end: int) -> str:
        out, self.held = self.held[:end], self.held[end:]
        self.released += len(out)
        return out


class Cap(Protocol):
    """A reply's budget (:class:`ReplyCap`: characters; :class:`TokenCap`: tokens)."""

    cut: bool

    def feed(self, text: str, *, final: bool) -> str: ...

    def fits_whole(self, text: str) -> bool: ...


async def capped(
    parts: AsyncGenerator[ReplyPart, None], cap: Cap, on_cut: Callable[[], Awaitable[None]]
) -> AsyncGenerator[ReplyPart, None]:
    """``parts`` within ``cap``; ``on_cut`` is awaited once if cut (a stream is closed there;
    whole parts are read on for their call actions)."""
    async with aclosing(parts) as stream:
        async for part in stream:
            if not isinstance(part, Say):
                yield part
                continue
            was_cut = cap.cut
            out: Say | None
            if part.ssml:
                out = part if cap.fits_whole(part.text) else None
            else:
                text = cap.feed(part.text, final=part.final)
                out = Say(text, final=part.final or cap.cut, emotion=part.emotion)
                if not text and not out.final:
                    out = None
            if out is not None and not was_cut:
                yield out
            if cap.cut and not was_cut:
                await on_cut()
                if not part.final:
                    return  # a stream: closed here (aclosing), which aborts its request


def count_tokens(text: str) -> int:
    """The tokens of ``text`` (words and punctuation marks; SSML markup is not counted)."""
    return len(_TOKEN.findall(_MARKUP.sub(" ", text)))


class TokenCap:
    """One reply's budget of ``limit`` tokens (sans-I/O)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.text = ""  # the reply's text so far (released, and held)
        self.released = 0
        self.cut = False

    def feed(self, text: str, *, final: bool) -> str:
        """``text`` arrives (``final``: the part ends with it); returns what may be said now.
        A word at the end of a delta is held until the next (it may go on there)."""
        if self.cut:
            return ""
        self.text += text
        tokens = list(_TOKEN.finditer(self.text))
        if len(tokens) > self.limit:
            self.cut = True
            end = tokens[self.limit - 1].end()
        elif final or not tokens or tokens[-1].end() < len(self.text):
            end = len(self.text)
        else:
            end = tokens[-1].start()
        out = self.text[self.released : end]
        self.released = max(self.released, end)
        return out

    def fits_whole(self, text: str) -> bool:
        """Whether ``text`` (SSML, said whole or not at all) fits; if not, the reply is cut."""
        if self.cut or count_tokens(self.text) + count_tokens(text) > self.limit:
            self.cut = True
            return False
        self.text += " " + _MARKUP.sub(" ", text)
        self.released = len(self.text)
        return True
