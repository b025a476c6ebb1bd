"""What the LLM engine adds between a token leaving the server and text reaching TTS.

Two parts, both against a real HTTP server in another process:

``paced``
    ``python -m bench.llm --serve`` streams a fixed reply one token per SSE event, one every
    ``--interval-ms``, stamping each token's send time (``time.monotonic_ns``, one clock for
    every process of the machine). Two clients read the same stream, alternating round by
    round so that machine noise hits both alike:

    - **raw** (the floor): httpx reading the body bytes, noting when the bytes of a token
      arrive; that is the transport alone (loopback, kernel, httpx);
    - **voxline**: :meth:`LLMEngine.respond` through :func:`clauses_from`, noting when the
      first token comes out as text (``LLMText``) and when the first clause is handed over
      (the token that completes it is known in advance).

    Latency is measured from the send stamp of the token concerned; **added** is voxline's
    median minus raw's: SSE and JSON decoding, tool-call screening, history, clause chunking.
``real`` (``--real``)
    the embedded Qwen2.5 0.5B behind llama.cpp's server: time to the first token (raw client
    against voxline's first ``LLMText``) and to the first clause, for context. The model's
    pace varies by a few milliseconds from run to run, so only the paced part can resolve
    the engine's overhead.

Run: ``python -m bench.llm [--rounds 30] [--interval-ms 20] [--real]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import httpx
from anyio.abc import SocketAttribute

from agent.dialogue.llm import (
    Clause,
    LLMConfig,
    LLMEngine,
    LLMEvent,
    LLMText,
    clauses_from,
    make_backend,
)
from voices.chunking import ClauseChunker

REPLY = (
    "Sure, I can help with that. What day would suit you best? We have tables free tonight, "
    "tomorrow and on Saturday, inside or on the terrace."
)
TOKENS = re.findall(r"\s*\S+", REPLY)


def first_clause_token() -> int:
    """Index of the token whose arrival completes the first clause."""
    chunker = ClauseChunker()
    for i, token in enumerate(TOKENS):
        if chunker.feed(token):
            return i
    raise AssertionError("the reply has no clause before its end")


# --- the paced server (its own process) -------------------------------------------------


async def serve(interval_s: float) -> None:
    sent: list[int] = []

    async def handle(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            while True:
                head = b""
                while b"\r\n\r\n" not in head:
                    try:
                        head += await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
                head, _, body = head.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                while length and len(body) < int(length[1]):
                    body += await stream.receive()
                if head.startswith(b"GET /timings"):
                    data = json.dumps(sent).encode()
                    await stream.send(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        b"content-length: %d\r\n\r\n%s" % (len(data), data)
                    )
                    continue
                sent.clear()
                await stream.send(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                for token in TOKENS:
                    await anyio.sleep(interval_s)
                    event = {"choices": [{"index": 0, "delta": {"content": token}}]}
                    data = b"data: %s\n\n" % json.dumps(event).encode()
                    sent.append(time.monotonic_ns())
                    await stream.send(b"%x\r\n%s\r\n" % (len(data), data))
                finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                end = b"data: %s\n\ndata: [DONE]\n\n" % json.dumps(finish).encode()
                await stream.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(end), end))

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    print(listener.extra(SocketAttribute.local_port), flush=True)
    await listener.serve(handle)


# --- the clients ------------------------------------------------------------------------


@dataclass
class Path:
    name: str
    first_token_ms: list[float] = field(default_factory=list)
    first_clause_ms: list[float] = field(default_factory=list)


def ms_since(stamp_ns: int) -> float:
    return (time.monotonic_ns() - stamp_ns) / 1e6


async def timings(http: httpx.AsyncClient, url: str) -> list[int]:
    response = await http.get(url.replace("/v1", "/timings"))
    stamps: list[int] = response.json()
    return stamps


async def raw_round(http: httpx.AsyncClient, url: str, clause_token: int, path: Path) -> None:
    arrived: list[int] = []
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with http.stream("POST", url + "/chat/completions", json=body) as response:
        async for raw in response.aiter_bytes():
            now = time.monotonic_ns()
            arrived.extend([now] * raw.count(b"data: "))
    sent = await timings(http, url)
    path.first_token_ms.append((arrived[0] - sent[0]) / 1e6)
    path.first_clause_ms.append((arrived[clause_token] - sent[clause_token]) / 1e6)


async def timed_reply(engine: LLMEngine, question: str) -> tuple[int, int]:
    """One reply through ``clauses_from``: when its first text and first clause came out."""
    history = engine.config.new_history()
    history.add_user(question)
    first_text: int | None = None
    first_clause: int | None = None

    async def watched(events: AsyncGenerator[LLMEvent, None]) -> AsyncGenerator[LLMEvent, None]:
        nonlocal first_text
        async with aclosing(events):
            async for event in events:
                if first_text is None and isinstance(event, LLMText):
                    first_text = time.monotonic_ns()
                yield event

    async with aclosing(clauses_from(watched(engine.respond(history, generation=1)))) as items:
        async for item in items:
            if first_clause is None and isinstance(item, Clause):
                first_clause = time.monotonic_ns()
    assert first_text is not None
    assert first_clause is not None
    return first_text, first_clause


async def engine_round(
    engine: LLMEngine, http: httpx.AsyncClient, url: str, clause_token: int, path: Path
) -> None:
    first_text, first_clause = await timed_reply(engine, "hi")
    sent = await timings(http, url)
    path.first_token_ms.append((first_text - sent[0]) / 1e6)
    path.first_clause_ms.append((first_clause - sent[clause_token]) / 1e6)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def line(path: Path, floor: Path | None = None) -> str:
    text = f"{path.name:<9}"
    for label, values, base in (
        ("first token", path.first_token_ms, floor.first_token_ms if floor else None),
        ("first clause", path.first_clause_ms, floor.first_clause_ms if floor else None),
    ):
        p50, p95 = percentile(values, 50), percentile(values, 95)
        text += f"  {label}: p50 {p50:6.3f} ms p95 {p95:6.3f} ms"
        if base:
            text += f" (added p50 {percentile(values, 50) - percentile(base, 50):+.3f} ms)"
    return text


async def paced(args: argparse.Namespace, url: str) -> dict[str, Any]:
    clause_token = first_clause_token()
    config = LLMConfig(base_url=url, first_token_timeout_s=30.0)
    backend = make_backend(config)
    raw, ours = Path("raw"), Path("voxline")
    async with httpx.AsyncClient(timeout=30) as http:
        engine = LLMEngine(config, backend)
        await raw_round(http, url, clause_token, Path("warm-up"))
        await engine_round(engine, http, url, clause_token, Path("warm-up"))
        for _ in range(args.rounds):
            await raw_round(http, url, clause_token, raw)
            await engine_round(engine, http, url, clause_token, ours)
        await backend.aclose()
    print(f"paced server: {len(TOKENS)} tokens, one per {args.interval_ms} ms; the first clause")
    print(f"completes at token {clause_token}: {''.join(TOKENS[: clause_token + 1])!r}")
    print(line(raw))
    print(line(ours, raw))
    return {"raw": raw.__dict__, "voxline": ours.__dict__}


async def real(args: argparse.Namespace) -> dict[str, Any]:
    from agent.dialogue.llm_local import LlamaServer, embedded_gguf

    system = "You are a restaurant receptionist on the phone. Reply in one short sentence."
    questions = ["Are you open tonight?", "Do you have vegan dishes?", "Where are you?"]
    assert len(questions) % 2 == 1  # so each path gets every question
    raw, ours = Path("raw"), Path("voxline")
    with LlamaServer(embedded_gguf()) as server:
        url = server.base_url
        config = LLMConfig(
            base_url=url, system_prompt=system, temperature=0.0, max_tokens=40,
            first_token_timeout_s=60.0, stall_timeout_s=60.0,
        )  # fmt: skip
        backend = make_backend(config)
        engine = LLMEngine(config, backend)
        async with httpx.AsyncClient(timeout=60) as http:
            for i in range(args.real_rounds):
                # Consecutive requests never share a question, so llama.cpp's prompt cache
                # helps every request alike (the system prompt only).
                question = questions[2 * i % len(questions)]
                messages = [
                    {"role": "system", "content": system},
                    {"role": "user", "content": question},
                ]
                body = {"messages": messages, "stream": True, "max_tokens": 40, "temperature": 0}
                start = time.monotonic_ns()
                first: int | None = None
                async with http.stream("POST", url + "/chat/completions", json=body) as response:
                    async for raw_bytes in response.aiter_bytes():
                        if first is None and b'"content"' in raw_bytes:
                            first = time.monotonic_ns()
                assert first is not None
                raw.first_token_ms.append((first - start) / 1e6)
                start = time.monotonic_ns()
                first_text, first_clause = await timed_reply(
                    engine, questions[(2 * i + 1) % len(questions)]
                )
                ours.first_token_ms.append((first_text - start) / 1e6)
                ours.first_clause_ms.append((first_clause - start) / 1e6)
        await backend.aclose()
    print("real model (Qwen2.5 0.5B, llama.cpp server, 2 threads), from sending the request:")
    print(f"raw      first token p50 {percentile(raw.first_token_ms, 50):7.1f} ms")
    print(
        f"voxline  first token p50 {percentile(ours.first_token_ms, 50):7.1f} ms, "
        f"first clause p50 {percentile(ours.first_clause_ms, 50):7.1f} ms"
    )
    return {"raw": raw.__dict__, "voxline": ours.__dict__}


async def main_async(args: argparse.Namespace, url: str) -> dict[str, Any]:
    results = {"paced": await paced(args, url)}
    if args.real:
        results["real"] = await real(args)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--real", action="store_true", help="also time the embedded model")
    parser.add_argument("--real-rounds", type=int, default=9)
    parser.add_argument("--json", help="write the raw numbers here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        anyio.run(serve, args.interval_ms / 1000)
        return
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}, python {platform.python_version()}, "
        f"rounds={args.rounds}"
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.llm", "--serve", "--interval-ms", str(args.interval_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}/v1"
        results = anyio.run(main_async, args, url, backend_options={"use_uvloop": True})
    finally:
        server.terminate()
        server.wait()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(results, file)


if __name__ == "__main__":
    main()
