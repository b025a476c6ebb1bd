"""Tool calls of the embedded model: does it call the right tool, with valid arguments?

Spoken-style requests (:data:`CASES`: order lookups, the time, transfers, goodbyes, and
requests that need no tool) go one by one, each in a fresh conversation, to the embedded
Qwen2.5 0.5B behind llama.cpp's server, through the agent's own path: :class:`LLMEngine` on
:class:`OpenAIBackend` with the tools, prompt and temperature of ``configs/assistant.yaml``.
The first round is scored:

- **success**: the expected tool, with arguments valid for its schema and right (the order
  number the caller gave; a transfer target), or, for a request that needs no tool, a spoken
  answer and no call;
- **wrong call**: a call that is not a success (another tool, invalid or wrong arguments, or
  any call when none was wanted);
- **missed**: words where a call was wanted; **spoken JSON**: a call so broken that the engine
  takes it for text, which the caller would hear; **fallback**: the engine's fallback (an
  error, or no first token within 60 s).

Each *variant* is a chat format (``default``: the GGUF's own template) and what the requests
carry: ``grammar`` is :func:`agent.dialogue.llm_local.tool_grammar`, the agent's default;
``chatml-function-calling`` needs ``tool_choice: auto``, which llama.cpp cannot stream
when the model calls a tool.

Run: ``python -m bench.tools [--variants default,grammar,chatml-function-calling]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from agent.config import load_config
from agent.config.runtime import llm_config
from agent.dialogue.llm import ChatBackend, LLMEngine, LLMFallback, LLMText, LLMToolCall
from agent.dialogue.llm_local import EmbeddedLlm, LlamaServer, embedded_gguf
from agent.dialogue.llm_openai import OpenAIBackend
from agent.dialogue.llm_tools import ToolCall, ToolResult, check_arguments

CONFIG = "configs/assistant.yaml"


def _order(number: str) -> Callable[[dict[str, Any]], bool]:
    def right(arguments: dict[str, Any]) -> bool:
        said = re.sub(r"[^0-9a-z]", "", str(arguments.get("order_number", "")).lower())
        return said == number.lower()

    return right


def _anything(arguments: dict[str, Any]) -> bool:
    return True


def _target(*words: str) -> Callable[[dict[str, Any]], bool]:
    def right(arguments: dict[str, Any]) -> bool:
        target = str(arguments.get("target", "")).lower()
        return bool(target.strip()) and (not words or any(word in target for word in words))

    return right


@dataclass(frozen=True)
class Case:
    said: str
    #: the tool the request needs (None: an answer in words), and what its arguments must be
    tool: str | None
    right: Callable[[dict[str, Any]], bool] = _anything


CASES = [
    Case("Where is my order A12?", "lookup_order", _order("A12")),
    Case("Hi, um, I'm calling about order 5532, has it shipped yet?", "lookup_order",
         _order("5532")),
    Case("Can you check the status of order B771 for me?", "lookup_order", _order("B771")),
    Case("My package hasn't arrived. The order number is 90210.", "lookup_order",
         _order("90210")),
    Case("I'd like to know when order X44 will be delivered.", "lookup_order", _order("X44")),
    Case("Yeah so order 317, where's that at?", "lookup_order", _order("317")),
    Case("What time is it?", "current_datetime"),
    Case("What's the date today?", "current_datetime"),
    Case("Could you tell me what day it is?", "current_datetime"),
    Case("Is it already past five o'clock?", "current_datetime"),
    Case("Can I talk to a real person, please?", "transfer", _target()),
    Case("Put me through to billing.", "transfer", _target("billing")),
    Case("I want to speak to your manager.", "transfer", _target("manager")),
    Case("Transfer me to sales, please.", "transfer", _target("sales")),
    Case("That's all, thanks, bye!", "end_call"),
    Case("Okay, goodbye.", "end_call"),
    Case("I'm done, you can hang up now.", "end_call"),
    Case("Bye bye.", "end_call"),
    Case("Hello there.", None),
    Case("Tell me a joke.", None),
    Case("What can you help me with?", None),
    Case("How do I reset my password?", None),
    Case("Do you have a favorite color?", None),
    Case("What's the capital of France?", None),
]  # fmt: skip


@dataclass(frozen=True)
class Variant:
    name: str
    #: llama.cpp's chat format (None: the GGUF's template) and what each request adds
    chat_format: str | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    #: through :class:`EmbeddedLlm` (the agent's backend): its tool grammar, and whether
    #: the model may call the answer-in-words tool
    embedded: bool = False
    answer_tool: bool = True


VARIANTS = {
    "default": Variant("default"),
    "chatml-function-calling": Variant(
        "chatml-function-calling", "chatml-function-calling", {"tool_choice": "auto"}
    ),
    "grammar": Variant("grammar", embedded=True, answer_tool=False),
    "grammar+answer": Variant("grammar+answer", embedded=True),
}


class _Tools:
    """The agent's tool declarations; nothing runs (the first round is what is scored)."""

    def __init__(self, schemas: list[dict[str, Any]]) -> None:
        self._schemas = schemas

    def schemas(self) -> list[dict[str, Any]]:
        return self._schemas

    async def __call__(self, call: ToolCall) -> ToolResult:
        return ToolResult(content="{}")


@dataclass
class Outcome:
    case: Case
    verdict: str  # success, wrong_call, missed, fallback
    call: str
    text: str
    seconds: float


def verdict(case: Case, call: ToolCall | None, text: str, fell_back: bool, schemas: Any) -> str:
    if call is None:
        if fell_back or not text.strip():
            return "fallback"
        if text.lstrip().startswith(("{", "<tool_call>", "functions.")):
            # a call too broken to parse (or chatml-function-calling's call marker): the
            # caller would hear it
            return "spoken_json"
        return "success" if case.tool is None else "missed"
    if call.name != case.tool:
        return "wrong_call"
    schema = next(
        tool["function"]["parameters"] for tool in schemas if tool["function"]["name"] == call.name
    )
    try:
        arguments = check_arguments(schema, call.arguments)
    except ValueError:
        return "wrong_call"
    return "success" if case.right(arguments) else "wrong_call"


async def run_variant(variant: Variant, cases: list[Case], config: str) -> list[Outcome]:
    agent = load_config(config)
    settings = msgspec.structs.replace(
        llm_config(agent), first_token_timeout_s=60.0, stall_timeout_s=60.0, max_tool_rounds=1
    )
    llama = agent.profile.llm
    assert llama is not None
    outcomes: list[Outcome] = []
    async with AsyncExitStack() as stack:
        backend: ChatBackend
        if variant.embedded:
            embedded = await anyio.to_thread.run_sync(EmbeddedLlm.from_config, agent)
            embedded.answer_tool = variant.answer_tool
            embedded.stall_timeout_s = 60.0
            tasks = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tasks.cancel_scope.cancel)
            await tasks.start(embedded.run)
            backend = embedded
        else:
            server = LlamaServer(
                embedded_gguf(),
                n_threads=llama.threads,
                n_ctx=llama.context_tokens,
                chat_format=variant.chat_format,
            )
            server.start()
            stack.callback(server.stop)
            backend = OpenAIBackend(
                server.base_url, model=settings.model, stall_timeout_s=60.0,
                extra_body=variant.extra_body,
            )  # fmt: skip
            stack.push_async_callback(backend.aclose)
        tools = _Tools([tool.schema() for tool in settings.tools])
        engine = LLMEngine(settings, backend, tools=tools)
        for case in cases:
            history = settings.new_history()
            history.add_user(case.said)
            call: ToolCall | None = None
            text, fell_back = "", False
            started = time.monotonic()
            async with aclosing(engine.respond(history, generation=1)) as events:
                async for event in events:
                    if isinstance(event, LLMText):
                        text += event.text
                    elif isinstance(event, LLMFallback):
                        fell_back = True
                        text += f"[fallback: {event.reason} {event.detail[:120]}]"
                    elif isinstance(event, LLMToolCall):
                        call = event.call
                        break
            seconds = time.monotonic() - started
            verdict_ = verdict(case, call, text, fell_back, tools.schemas())
            shown = f"{call.name}({call.arguments})" if call is not None else ""
            outcomes.append(Outcome(case, verdict_, shown, text.strip(), seconds))
            print(f"  {variant.name:>24} {verdict_:>10} {seconds:5.1f} s  {case.said!r} -> "
                  f"{shown or text.strip()[:80]!r}", flush=True)  # fmt: skip
    return outcomes


def summary(name: str, outcomes: list[Outcome]) -> dict[str, Any]:
    n = len(outcomes)
    kinds = ("success", "wrong_call", "missed", "spoken_json", "fallback")
    count = {kind: sum(o.verdict == kind for o in outcomes) for kind in kinds}
    wanted = [o for o in outcomes if o.case.tool is not None]
    return {
        "variant": name,
        "cases": n,
        "success_rate": count["success"] / n,
        "tool_success_rate": sum(o.verdict == "success" for o in wanted) / len(wanted),
        "wrong_call_rate": count["wrong_call"] / n,
        "missed_rate": count["missed"] / n,
        "spoken_json_rate": count["spoken_json"] / n,
        "fallback_rate": count["fallback"] / n,
        "median_s": statistics.median(o.seconds for o in outcomes),
    }


def machine() -> str:
    try:
        lscpu = subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        model = next(
            (line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line),
            platform.processor() or platform.machine(),
        )
    except OSError:
        model = platform.processor() or platform.machine()
    return f"{model}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help="of " + ", ".join(VARIANTS))
    parser.add_argument("--json", help="write every outcome here")
    parser.add_argument("--config", default=CONFIG, help="the agent (its prompt and tools)")
    args = parser.parse_args()
    print(machine(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    results: dict[str, Any] = {}
    for variant in [VARIANTS[name] for name in args.variants.split(",")]:
        outcomes = anyio.run(run_variant, variant, CASES, args.config)
        results[variant.name] = (summary(variant.name, outcomes), outcomes)
    print(
        "\n| variant | success | tool calls right | wrong calls | missed | spoken JSON | fallback "
        "| median |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, (line, _) in results.items():
        print(
            f"| {name} | {line['success_rate']:.0%} | {line['tool_success_rate']:.0%} | "
            f"{line['wrong_call_rate']:.0%} | {line['missed_rate']:.0%} | "
            f"{line['spoken_json_rate']:.0%} | "
            f"{line['fallback_rate']:.0%} | {line['median_s']:.1f} s |"
        )
    if args.json:
        with open(args.json, "w") as out:
            raw = {
                name: {
                    "summary": line,
                    "outcomes": [
                        {"said": o.case.said, "verdict": o.verdict, "call": o.call,
                         "text": o.text, "seconds": o.seconds}
                        for o in outcomes
                    ],
                }
                for name, (line, outcomes) in results.items()
            }  # fmt: skip
            json.dump(raw, out, indent=1)


if __name__ == "__main__":
    main()
