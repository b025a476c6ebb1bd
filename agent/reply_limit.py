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
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing

from agent.dialogue.decision import Say
from agent.reply import ReplyPart

__all__ = ["LOOKAHEAD", "ReplyCap", "capped"]

#: characters before the limit from which text is held until its sentence ends
LOOKAHEAD = 200
#: a sentence's end: its mark, closing quotes or brackets, then a space or the end of the text
_SENTENCE_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*(?=\s|$)")


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


async def capped(
    parts: AsyncGenerator[ReplyPart, None], limit: int, on_cut: Callable[[], Awaitable[None]]
) -> AsyncGenerator[ReplyPart, None]:
    """``parts`` within ``limit`` characters of text; ``on_cut`` is awaited once if cut."""
    cap = ReplyCap(limit)
    async with aclosing(parts) as stream:
        async for part in stream:
            if not isinstance(part, Say):
                yield part
                continue
            was_cut = cap.cut
            if part.ssml:
                keep = cap.fits_whole(part.text)
                out = part if keep else None
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
