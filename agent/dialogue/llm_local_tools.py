"""Tool calls the embedded 0.5B model gets right: a grammar, and a way to say "no tool".

llama.cpp's server has no tool-call parser for the GGUF's own chat template (Qwen's, which
lists the tools in the system prompt): the model writes its calls as text, which
:mod:`agent.dialogue.llm_stream` reads. Left alone, the small model breaks them (a missing
brace, which would be spoken), invents tools, and calls one for nearly every request, a
greeting included (BENCHMARKS.md, "Tool calls of the embedded model"). So each request that
offers tools carries :func:`tool_grammar`, a GBNF grammar (llama.cpp's ``grammar`` request
field) that allows exactly:

- a spoken reply (text that does not start like a call and holds no ``<``);
- one or more calls ``{"name": N, "arguments": A}`` (bare, or in ``<tool_call>`` tags), N
  one of the offered tools and A valid for its JSON schema;
- the call of :data:`ANSWER_TOOL`, a tool offered alongside the agent's whose description
  says "answer in words", then a spoken reply. The model, biased to call *something*, calls
  it when nothing else fits; :class:`AnswerFilter` removes the call from the stream, so the
  engine and the caller see only the reply. It is one request either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ANSWER_TOOL", "AnswerFilter", "offered_tools", "tool_grammar"]

#: the tool the model calls to answer in words (not one of the agent's: never run)
ANSWER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "answer_in_words",
        "description": (
            "Answer the caller in words when no other tool fits: greetings, small talk, "
            "jokes, general questions."
        ),
        "parameters": {"type": "object", "properties": {}},
    },
}
_ANSWER_NAME = ANSWER_TOOL["function"]["name"]
#: the call exactly as the grammar lets the model write it, bare or tagged, before its reply
_ANSWER_CALL = '{"name": "' + _ANSWER_NAME + '", "arguments": {}}'
_ANSWER_PREFIXES = (f"{_ANSWER_CALL}\n", f"<tool_call>\n{_ANSWER_CALL}\n</tool_call>\n")


def offered_tools(tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``tools`` and :data:`ANSWER_TOOL` (its name is reserved: a tool of that name is
    taken for it)."""
    if any(tool["function"]["name"] == _ANSWER_NAME for tool in tools):
        return list(tools)
    return [*tools, ANSWER_TOOL]


def tool_grammar(tools: Sequence[Mapping[str, Any]]) -> str:
    """The GBNF grammar of a reply to a request offering ``tools`` (OpenAI ``tools``
    entries; :data:`ANSWER_TOOL` among them adds its call-then-reply form)."""
    from llama_cpp.llama_grammar import SchemaConverter

    # llama.cpp's own JSON-schema-to-grammar converter (untyped)
    converter = SchemaConverter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    objects = []
    answer = False
    for tool in tools:
        function = tool["function"]
        name = str(function["name"])
        if name == _ANSWER_NAME:
            answer = True
            continue
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        rule = converter.visit(parameters, f"{name}-arguments")  # type: ignore[no-untyped-call]
        head = '{"name": ' + json.dumps(name) + ', "arguments": '
        objects.append(f'"{_escape(head)}" {rule} "}}"')
    if not objects:
        raise ValueError("a tool grammar needs at least one tool")
    root = "root ::= tool-calls | reply-text"
    rules = [
        converter.format_grammar(),  # type: ignore[no-untyped-call]
        # (names the converter's rules never take: theirs are words, or end in -arguments)
        "tool-object ::= " + " | ".join(objects),
        'tool-call ::= tool-object | "<tool_call>\\n" tool-object "\\n</tool_call>"',
        'tool-calls ::= tool-call ("\\n" tool-call)*',
        "reply-text ::= [^<{[`\\x20\\t\\n] [^<]*",
    ]
    if answer:
        prefixes = " | ".join(f'"{_escape(prefix)}"' for prefix in _ANSWER_PREFIXES)
        rules.append(f"answer-call ::= {prefixes}")
        root += " | answer-call reply-text"
    return "\n".join([*rules, root])


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class AnswerFilter:
    """Removes the :data:`ANSWER_TOOL` call from the start of a reply's text (sans-I/O).

    Feed the text deltas in order; each :meth:`feed` returns what may go on now: nothing while
    the text so far could still be that call, the reply after it once it is complete, and
    everything as it comes once the text is anything else. :meth:`finish` returns what is
    still held when the stream ends.
    """

    def __init__(self) -> None:
        self._held = ""
        self._deciding = True

    def feed(self, text: str) -> str:
        if not self._deciding:
            return text
        self._held += text
        if any(prefix.startswith(self._held) for prefix in _ANSWER_PREFIXES):
            return ""  # still possibly the call (or exactly it, the reply not begun)
        return self._release()

    def finish(self) -> str:
        return self._release() if self._deciding else ""

    def _release(self) -> str:
        self._deciding = False
        held, self._held = self._held, ""
        for prefix in _ANSWER_PREFIXES:
            if held.startswith(prefix):
                return held[len(prefix) :]
        return held
