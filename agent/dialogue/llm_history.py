"""The conversation one session holds with its LLM, kept to what the caller actually heard.

A *reply* is everything after the last user message: assistant messages (text, tool calls)
and tool results, as many rounds as the tools took. Its *text* is the content of its
assistant messages joined by :func:`join_text` (a space between two rounds unless one is
there already), which is exactly the text the engine streams out.

When the caller barges in, the session learns how much of the reply was heard (playout
position, then word alignment) and calls :meth:`History.truncate_last_assistant` with that
text: the reply is cut there and its assistant messages are marked ``interrupted``. Tool calls
stay (they ran); text the caller never heard goes. The model then sees the reply as the caller
heard it, followed by ``interrupted_suffix`` (so it knows it was cut off, and does not assume
the rest was said).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import msgspec

from agent.dialogue.llm_tools import ToolCall, ToolResult

Role = Literal["system", "user", "assistant", "tool"]

#: how the result of a call written as text is shown to the model (``{name}``, ``{result}``)
TOOL_RESULT_NOTE = (
    "Result of the {name} tool: {result}\nTell the caller the outcome in one short spoken sentence."
)


class Message(msgspec.Struct, frozen=True, kw_only=True):
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    #: on a tool result: the call it answers, the tool's name, whether the call was text
    tool_call_id: str | None = None
    name: str | None = None
    as_text: bool = False
    #: an assistant message cut short by the caller (``content`` is what they heard)
    interrupted: bool = False
    #: the conversation item it belongs to (see the module docstring); ``None``: none yet
    item: str | None = None


class History:
    """One session's messages, oldest first, after an optional system prompt."""

    def __init__(self, system: str = "", *, max_messages: int = 64) -> None:
        self.system = system
        #: how many messages :meth:`render` sends at most (whole turns, oldest dropped first)
        self.max_messages = max_messages
        self._messages: list[Message] = []

    @property
    def messages(self) -> Sequence[Message]:
        return tuple(self._messages)

    def add_user(self, text: str, *, item: str | None = None) -> None:
        """A new turn. Turns older than what :meth:`render` sends are dropped once twice that
        many messages are held: they are never sent again, and a long call's memory stays
        bounded (``max_messages`` bounds the messages; the reply and typed-text caps their
        size)."""
        if len(self._messages) >= 2 * self.max_messages:
            self._messages = list(self._window())
        self._messages.append(Message(role="user", content=text, item=item))

    def add_assistant(
        self, text: str, tool_calls: Sequence[ToolCall] = (), *, item: str | None = None
    ) -> None:
        self._messages.append(
            Message(role="assistant", content=text, tool_calls=tuple(tool_calls), item=item)
        )

    def add_tool_result(
        self, call: ToolCall, result: ToolResult, *, item: str | None = None
    ) -> None:
        self._messages.append(tool_message(call, result.content, item=item))

    # -- items (see the module docstring) ------------------------------------------------------

    def add(self, message: Message) -> None:
        """``message`` at the end."""
        self._messages.append(message)

    def copy(self) -> History:
        """A history holding the same messages, to be changed apart from this one."""
        copy = History(self.system, max_messages=self.max_messages)
        copy._messages = list(self._messages)
        return copy

    def insert(self, message: Message, after: str | None) -> None:
        """``message`` after the last message of item ``after`` (``None``, or an item with no
        message here: first)."""
        at = 0
        for i, held in enumerate(self._messages):
            if after is not None and held.item == after:
                at = i + 1
        self._messages.insert(at, message)

    def holds(self, item: str) -> bool:
        return any(m.item == item for m in self._messages)

    def remove(self, item: str) -> bool:
        """Forget the messages of ``item``; whether there were any."""
        kept = [m for m in self._messages if m.item != item]
        removed = len(kept) != len(self._messages)
        self._messages = kept
        return removed

    def remove_call(self, call_id: str) -> bool:
        """Forget the tool call ``call_id`` (an assistant message left empty goes too)."""
        kept: list[Message] = []
        removed = False
        for message in self._messages:
            calls = tuple(c for c in message.tool_calls if c.id != call_id)
            if len(calls) != len(message.tool_calls):
                removed = True
                if not calls and not message.content:
                    continue
                message = msgspec.structs.replace(message, tool_calls=calls)
            kept.append(message)
        self._messages = kept
        return removed

    def find_call(self, call_id: str) -> ToolCall | None:
        for message in reversed(self._messages):
            for call in message.tool_calls:
                if call.id == call_id:
                    return call
        return None

    def tag(self, item: str, *, user: str | None = None) -> None:
        """Messages that belong to no item yet are ``item``'s (the user's: ``user``'s)."""
        self._messages = [
            msgspec.structs.replace(m, item=user if m.role == "user" else item)
            if m.item is None
            else m
            for m in self._messages
        ]

    def reply_text(self) -> str:
        """The text of the last reply (see the module docstring)."""
        return join_text(m.content for m in self._reply() if m.role == "assistant")

    def truncate_last_assistant(self, heard_text: str, *, item: str | None = None) -> bool:
        """Cut the last reply to ``heard_text`` (a prefix of :meth:`reply_text`, as spoken);
        ``item``: the reply of that item's messages instead.

        ``heard_text`` is matched as a prefix of the reply's text; if it is not one (the TTS
        normalised it), as its number of words. The message where the cut falls, and every
        later one that had text, is marked ``interrupted``. Returns whether anything was cut
        (``False`` when there is no reply, or the caller heard all of it).
        """
        indices = self._reply_indices() if item is None else self._item_indices(item)
        full = join_text(
            self._messages[i].content for i in indices if self._messages[i].role == "assistant"
        )
        heard = heard_text.strip()
        keep = len(heard) if full.startswith(heard) else _word_prefix(full, heard)
        text = ""
        cut = False
        for i in indices:
            message = self._messages[i]
            if message.role != "assistant" or not message.content:
                continue
            text += separator(text, message.content)
            start = len(text)
            text += message.content
            if not cut and len(text) <= keep:
                continue
            kept = "" if cut else message.content[: max(keep - start, 0)].rstrip()
            cut = True
            self._messages[i] = msgspec.structs.replace(message, content=kept, interrupted=True)
        return cut

    def render(
        self,
        *,
        interrupted_suffix: str = "…",
        tool_result_note: str = TOOL_RESULT_NOTE,
        calls_as_text: bool = False,
    ) -> list[dict[str, Any]]:
        """The messages in the OpenAI chat format, system prompt first; ``calls_as_text``:
        every tool call is shown as a call written as text is (a note with its result)."""
        rendered: list[dict[str, Any]] = []
        if self.system:
            rendered.append({"role": "system", "content": self.system})
        for message in self._window():
            if message.role == "tool" and (message.as_text or calls_as_text):
                note = tool_result_note.format(name=message.name, result=message.content)
                rendered.append({"role": "system", "content": note})
            elif message.role == "tool":
                rendered.append(
                    {
                        "role": "tool",
                        "tool_call_id": message.tool_call_id,
                        "name": message.name,
                        "content": message.content,
                    }
                )
            elif message.role == "assistant":
                content = message.content
                if message.interrupted:
                    content += interrupted_suffix
                calls = [c for c in message.tool_calls if not (c.as_text or calls_as_text)]
                if not content and not calls:
                    continue
                entry: dict[str, Any] = {"role": "assistant", "content": content}
                if calls:
                    entry["tool_calls"] = [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments},
                        }
                        for call in calls
                    ]
                rendered.append(entry)
            else:
                rendered.append({"role": message.role, "content": message.content})
        return rendered

    def _item_indices(self, item: str) -> list[int]:
        return [i for i, m in enumerate(self._messages) if m.item == item]

    def _reply_indices(self) -> range:
        start = len(self._messages)
        while start > 0 and self._messages[start - 1].role != "user":
            start -= 1
        return range(start, len(self._messages))

    def _reply(self) -> list[Message]:
        return [self._messages[i] for i in self._reply_indices()]

    def _window(self) -> list[Message]:
        """The newest whole turns within ``max_messages`` (at least the last turn)."""
        messages = self._messages
        if len(messages) <= self.max_messages:
            return messages
        start = len(messages) - self.max_messages
        while start < len(messages) and messages[start].role != "user":
            start += 1
        if start == len(messages):  # the last turn alone is longer: keep it whole
            start = len(messages) - self.max_messages
            while start > 0 and messages[start].role != "user":
                start -= 1
        return messages[start:]


def tool_message(call: ToolCall, content: str, *, item: str | None = None) -> Message:
    """The result of ``call``, as the history holds it."""
    return Message(
        role="tool",
        content=content,
        tool_call_id=call.id,
        name=call.name,
        as_text=call.as_text,
        item=item,
    )


def separator(before: str, after: str) -> str:
    """What goes between two rounds' texts: a space, unless either side already has one."""
    if not before or not after or before[-1].isspace() or after[0].isspace():
        return ""
    return " "


def join_text(parts: Iterable[str]) -> str:
    text = ""
    for part in parts:
        text += separator(text, part) + part
    return text


def _word_prefix(text: str, heard: str) -> int:
    """Where the first ``len(heard.split())`` words of ``text`` end."""
    words = len(heard.split())
    end = 0
    for _ in range(words):
        while end < len(text) and text[end].isspace():
            end += 1
        if end >= len(text):
            break
        while end < len(text) and not text[end].isspace():
            end += 1
    return end
