"""Voice to voice: spoken calls against a real ``voxline serve``, timed by the client.

The server runs as its own process (:func:`agent.server_process.running_server`); each caller is a
``websockets`` client on ``/v1/stream`` (:mod:`agent.caller`) that streams espeak-ng speech and
silence in 20 ms frames at real-time pace, all the time, and records when every frame it
receives arrived. All times are the client's; "loud" means a sample above |300|.

voice to voice
    one scripted call with the agent (greeting, then ``--turns`` of: hello, what can you do,
    leave a message, a name, the message, yes, thank you, goodbye): from sending the frame
    holding the utterance's last loud sample (its known end of speech, before the trailing
    silence) to the arrival of the first frame of the answer's generation holding a loud
    sample. p50/p95, with the server's ``turn.latency`` breakdown (median per stage).
barge-in
    another call, ``--barge-ins`` times: "What can you do?", then 0.8-2.0 s into the answer's
    audio "Hello, good morning." over it. From sending the frame holding the interruption's
    first loud sample to the arrival of the last frame of the interrupted generation (the
    server sends ``interrupted`` after it), and to ``interrupted`` itself. Repeated
    (``--unguarded``) on a second server whose agent has ``turns.echo_guard_ms: 0``, and
    (``--echo-barge-ins``) by a caller on a line without echo cancellation (the reply comes
    back in what it sends, 150 ms later, -12 dB), together with as many answers played out
    over that line with the caller silent: none should be interrupted by its own echo.
concurrency
    N calls at once (``--calls``, run in order until one does not hold; starts ``--stagger``
    apart), each: greeting, "Hello, good morning.", "What can you do?", bye. A reply frame is
    *late* when it arrives after its play time for a client that starts playing at the first
    frame with no buffer of its own (the server sends audio 60 ms ahead of real time, so late
    means the server fell more than 60 ms behind). A level holds when every turn was answered,
    no frame was late and no error came.
batched ASR and capacity (``--asr-batch-sizes 1,4 [--baseline-tree DIR]``)
    the concurrency levels instead on one server per ``profile.asr.batch_size`` (a copy of the
    agent file) and, with ``--baseline-tree``, one of the tree in DIR (reported as "baseline
    tree"), all running, the levels interleaved (N on each, then the next N). Here a level
    holds when every turn was answered with no error and the v2v p95 stayed under 1.5 s (late
    frames are reported, not counted: on a shared 2-core machine the client's own stalls make
    some); a server stops at its first level that does not hold (bench/v2v_capacity.py).
the floor (``--floor ROUNDS [--baseline-tree DIR]``, this part alone)
    the scripted call ROUNDS times (on this tree's server and, in turn, on one of the tree
    in DIR) against its floor, each server's turns reported together (bench/v2v_floor.py).
records, recordings and traces (``--observability ROUNDS``, this part alone)
    the scripted call on three servers of the same run: call records (SQLite), stereo
    recordings and traces (to an OTLP/HTTP receiver in this process) on; the same without the
    recordings; all off. ROUNDS calls each, in turn: voice to voice p50/p95 of each and the
    ratios of the p50s (bench/v2v_observability.py).
baseline (same run, same machine, no call open)
    the models alone, in this process: the final decode of each utterance with the server's
    decoder settings (Whisper base int8, 2 threads, the agent's options) and the first chunk
    of the answer's first clause as the server gets it (bench/v2v_floor.py: from the TTS cache
    for a fixed reply the server prefilled, else from the agent's engine, worker process, 1
    thread). The floor of a turn is the VAD's ``min_silence_ms`` (the silence that must pass
    before the final decode starts) + that decode + that first chunk.
client's view
    when each step of an answer reached the client (``speech.stopped``, the last
    ``transcript.final`` and ``turn.ended``, the first ``agent.text``, audio frame and loud
    frame), from the end of speech: where the voice to voice time goes, beside the server's
    ``turn.latency`` (which starts at the VAD's end of speech, not the true one).

Run: ``python -m bench.voice_to_voice`` (about 4-5 minutes on 2 cores; ``--json FILE``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import msgspec
import numpy as np
import yaml  # type: ignore[import-untyped]  # no stubs installed: used as Any

from agent.caller import RATE, Caller, Reply, Utterance, call
from agent.caller_audio import silence
from agent.config import AgentConfig, load_config
from agent.models import asr_model_config, asr_options
from agent.server_process import running_server
from bench.utterances import utterance
from bench.v2v_capacity import asr_batch_levels, measure_level, most_sessions, with_max_sessions
from bench.v2v_floor import (
    as_served,
    first_chunk,
    first_chunks,
    floor_rounds,
    tight_floors,
    tts_cache_counters,
)
from bench.v2v_observability import observability
from bench.v2v_report import (
    BargeIn,
    CallResult,
    Turn,
    arrivals,
    load,
    report_barge_ins,
    report_call,
    report_levels,
)
from pipeline.asr.decoder import DecodeOptions, DecodeRequest, WhisperDecoder, to_model_audio
from voices.chunking import ClauseChunker
from voices.engine import TTSEngine
from voices.piper_engine import PiperEngine
from voices.ssml import plan_from_text

SCRIPT = (
    "Hello, good morning.",
    "What can you do?",
    "I'd like to leave a message.",
    "It's Alice Smith.",
    "Please call me back tomorrow morning.",
    "Yes, please.",
    "Thank you.",
    "Bye, goodbye.",
)
CONCURRENT_SCRIPT = ("Hello, good morning.", "What can you do?")
TRIGGER = "What can you do?"
INTERRUPTION = "Hello, good morning."
BARGE_DELAYS = (0.8, 1.4, 2.0, 1.1, 1.7)


# -- what a caller does --------------------------------------------------------------------------


async def answer_to(caller: Caller, item: Utterance, within: float = 12.0) -> Turn:
    """Say ``item``; return once the answer's first loud frame has arrived (or not)."""
    seen, events = caller.latest(), len(caller.events)
    spoken = caller.speak(item)
    await caller.wait(spoken.done.is_set, 30)

    def answer() -> Reply | None:  # the first new generation answering a turn (an idle
        # prompt is a generation too, but only answers get a latency report)
        replies = [caller.replies[g] for g in sorted(caller.replies) if g > seen]
        return next((r for r in replies if r.latency is not None), None)

    def loud() -> bool:
        found = answer()
        return found is not None and found.first_loud() is not None

    answered = await caller.wait(loud, within)
    finals = [e["text"] for e in caller.events[events:] if e["type"] == "transcript.final"]
    stops = [e["at_ms"] for e in caller.events[events:] if e["type"] == "speech.stopped"]
    reply = answer()
    first = reply.first_loud() if reply is not None else None
    if not answered or reply is None or first is None:
        return Turn(item.text, reply, None, " / ".join(finals))
    return Turn(
        item.text,
        reply,
        first - spoken.end_sent,
        " / ".join(finals),
        vad_end_ms=stops[-1] - spoken.end * 1000 / RATE if stops else None,
        lead_in_ms=reply.lead_in_ms(),
        arrivals=arrivals(caller.events[events:], reply, spoken.end_sent),
    )


async def finish(caller: Caller, turn: Turn) -> None:
    """Wait until the answer has been played (and its latency report is in)."""
    reply = turn.reply
    if reply is not None:
        await caller.wait(lambda: reply.ended is not None or reply.interrupted is not None, 60)
        await caller.wait(lambda: reply.latency is not None, 2)
    await anyio.sleep(0.3)  # the caller's reaction time


async def greeting(caller: Caller) -> None:
    await caller.wait(lambda: any(r.ended for r in caller.replies.values()), 60)
    await anyio.sleep(0.3)


async def scripted_call(url: str, script: Sequence[Utterance]) -> tuple[list[Turn], Caller]:
    turns = []
    async with call(url) as caller:
        await greeting(caller)
        for item in script:
            turn = await answer_to(caller, item)
            await finish(caller, turn)
            turns.append(turn)
            if caller.closed:
                break
        if script and "bye" in script[-1].text:
            await caller.wait(lambda: caller.closed, 5)  # the agent hangs up
    return turns, caller


async def barge_in(
    caller: Caller, trigger: Utterance, interruption: Utterance, delay: float
) -> BargeIn | None:
    turn = await answer_to(caller, trigger)
    reply = turn.reply
    first = reply.first_loud() if reply is not None else None
    if reply is None or first is None:
        return None
    await anyio.sleep(max(0.0, first + delay - time.perf_counter()))
    heard_before = len(caller.events)
    spoken = caller.speak(interruption)
    await caller.wait(lambda: reply.interrupted is not None or reply.ended is not None, 10)
    await caller.wait(spoken.done.is_set, 10)
    onset = spoken.onset_sent
    # let the interruption's own answer play out before the next round
    following = Turn(interruption.text, None, None)
    await caller.wait(lambda: caller.latest() > reply.generation, 10)
    following.reply = caller.replies.get(caller.latest())
    await finish(caller, following)
    at = reply.interrupted
    if at is None:
        return BargeIn(delay, None, None, None, None, 0.0, "", 0)
    last = max((t for t, _, _ in reply.frames if t <= at), default=None)
    started = [e for e in caller.events[heard_before:] if e["type"] == "speech.started"]
    return BargeIn(
        delay=delay,
        to_last_frame=None if last is None else last - onset,
        to_interrupted=at - onset,
        to_speech_started=started[0]["arrived"] - onset if started else None,
        vad_onset_ms=started[0]["at_ms"] - spoken.onset * 1000 / RATE if started else None,
        played_ms=float(reply.interruption.get("played_ms", 0.0)),
        heard=str(reply.interruption.get("heard_text", "")),
        frames_after=reply.late_frames,
    )


async def barge_in_call(
    url: str, count: int, echo: tuple[float, float] | None = None
) -> list[BargeIn]:
    trigger, interruption = utterance(TRIGGER), utterance(INTERRUPTION)
    results = []
    async with call(url, echo) as caller:
        await greeting(caller)
        for index in range(count):
            delay = BARGE_DELAYS[index % len(BARGE_DELAYS)]
            result = await barge_in(caller, trigger, interruption, delay)
            if result is not None:
                results.append(result)
    return results


async def echo_only_call(url: str, count: int, echo: tuple[float, float]) -> list[bool]:
    """``count`` answers played to the end over a line that echoes them, the caller silent:
    whether each was interrupted (by its own echo)."""
    trigger = utterance(TRIGGER)
    cut = []
    async with call(url, echo) as caller:
        await greeting(caller)
        for _ in range(count):
            turn = await answer_to(caller, trigger)
            await finish(caller, turn)
            cut.append(turn.reply is not None and turn.reply.interrupted is not None)
    return cut


async def concurrent_calls(url: str, n: int, stagger: float) -> list[CallResult]:
    script = [utterance(text) for text in CONCURRENT_SCRIPT]
    results: list[CallResult] = []

    async def one(index: int) -> None:
        await anyio.sleep(index * stagger)
        async with call(url) as caller:
            await greeting(caller)
            turns = []
            for item in script:
                turn = await answer_to(caller, item)
                await finish(caller, turn)
                turns.append(turn)
        results.append(
            CallResult(turns, list(caller.replies.values()), caller.errors(), caller.send_lag)
        )

    async with anyio.create_task_group() as tg:
        for index in range(n):
            tg.start_soon(one, index)
    return results


# -- the baseline --------------------------------------------------------------------------------


def first_clause(text: str) -> str:
    chunker = ClauseChunker()
    chunks = chunker.feed(text) + chunker.flush()
    return chunks[0].text if chunks else text


def final_request(item: Utterance, options: DecodeOptions) -> DecodeRequest:
    """The final decode of ``item`` as the server's ASR stage cuts it (0.5 s of pre-roll, the
    speech, 0.2 s after it)."""
    audio = np.concatenate([silence(0.5), item.pcm[: item.end + 3200]])
    return DecodeRequest(audio=to_model_audio(audio, RATE), final=True, options=options)


def median_time(run: Callable[[], object], rounds: int = 3) -> float:
    """Median seconds of ``rounds`` calls of ``run`` (warm it first: a first call of a shape
    is slower)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decode_times(config: AgentConfig, script: Sequence[Utterance], rounds: int = 3) -> list[float]:
    """Median seconds of the final decode of each utterance (:func:`final_request`)."""
    decoder = WhisperDecoder.load(asr_model_config(config))
    options = asr_options(config)
    out = []
    for item in script:
        request = final_request(item, options)
        decoder.decode(request)  # warm (first call of a shape)
        out.append(median_time(functools.partial(decoder.decode, request), rounds))
    return out


async def first_chunk_times(
    replies: Sequence[str],
    rounds: int = 3,
    engine: AbstractContextManager[TTSEngine] | None = None,
) -> list[float]:
    """Median seconds to the first chunk of each reply's first clause: from ``engine`` (not
    started; :func:`agent.models.tts_engine`), else Piper (worker process, 1 thread)."""
    out = []
    with engine if engine is not None else PiperEngine(threads=1) as tts:
        for text in replies:
            out.append(await first_chunk(tts, plan_from_text(first_clause(text)), rounds))
    return out


# -- the report ----------------------------------------------------------------------------------


#: the echoing line of the echo parts: the reply comes back 150 ms later, 12 dB quieter
ECHO = (150.0, -12.0)


def without_echo_guard(path: str, folder: str) -> Path:
    """A copy of the agent file at ``path`` with ``turns.echo_guard_ms: 0``, in ``folder``."""
    data = yaml.safe_load(Path(path).read_text())
    data.setdefault("turns", {})["echo_guard_ms"] = 0
    out = Path(folder) / "no-echo-guard.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(args.config)
    if args.observability:  # this part alone (bench/v2v_observability.py)
        script = [utterance(text) for text in SCRIPT[: args.turns]]
        return await observability(args, script, scripted_call)
    if args.floor:  # this part alone (bench/v2v_floor.py)
        script = [utterance(text) for text in SCRIPT[: args.turns]]
        return await floor_rounds(args, script, scripted_call, decode_times)
    script = [utterance(text) for text in SCRIPT[: args.turns]]
    for text in (*CONCURRENT_SCRIPT, TRIGGER, INTERRUPTION):
        utterance(text)  # espeak before the clock runs
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    report: dict[str, Any] = {"machine": machine, "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"{machine}, {report['date']}, agent {args.config}")
    began = time.perf_counter()
    loads: dict[str, str] = {}
    levels: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="voxline-bench-") as folder,
        running_server(str(with_max_sessions(args.config, folder, most_sessions(args)))) as server,
    ):
        print(f"server ready in {time.perf_counter() - began:.0f} s")
        loads["call"] = load()
        turns, _ = await scripted_call(server.ws, script)
        cache = await tts_cache_counters(server.http)
        loads["baseline"] = load()
        asr = await anyio.to_thread.run_sync(decode_times, config, script[: len(turns)])
        answers = [t.reply.text if t.reply else "" for t in turns]
        firsts = await first_chunks(config, answers)
        tts, cached = as_served(firsts, answers, cache=config.profile.tts.cache_mb > 0)
        loads["barge_in"] = load()
        barges = await barge_in_call(server.ws, args.barge_ins) if args.barge_ins else []
        echoed: list[BargeIn] = []
        echo_only: list[bool] = []
        if args.echo_barge_ins:
            loads["echo"] = load()
            echoed = await barge_in_call(server.ws, args.echo_barge_ins, ECHO)
            echo_only = await echo_only_call(server.ws, args.echo_barge_ins, ECHO)
        for n in [] if args.asr_batch_sizes else args.calls:
            level = await measure_level(server, n, args.stagger, concurrent_calls)
            levels.append(level)
            print(
                f"{n} calls: {'held' if level['holds'] else 'did not hold'} (load {level['load']})"
            )
            if not level["holds"]:
                break
        loads["end"] = load()
    unguarded: list[BargeIn] = []
    if args.unguarded:
        with (
            tempfile.TemporaryDirectory(prefix="voxline-bench-") as folder,
            running_server(str(without_echo_guard(args.config, folder))) as server,
        ):
            loads["barge_in_no_echo_guard"] = load()
            unguarded = await barge_in_call(server.ws, args.unguarded)
    print(f"\nload average (1/5/15 min) at the start of each part: {loads}")
    report["load"] = loads
    silence, tight = config.profile.vad.min_silence_ms / 1000, tight_floors(config, asr, tts)
    report["call"] = report_call(turns, silence, asr, tts, cached, tight)
    report["call"]["server_tts_cache"] = cache
    print(f"\nthe server's TTS cache after the call (greeting included): {cache}")
    if barges:
        report["barge_in"] = report_barge_ins(barges, config, "default turns")
    if echoed:
        title = f"a line echoing the reply {ECHO[0]:.0f} ms later at {ECHO[1]:+.0f} dB"
        report["barge_in_echo"] = report_barge_ins(echoed, config, title, echoed=True)
        report["echo_only_interrupted"] = sum(echo_only)
        print(
            f"\nEcho alone (the caller silent, the same line): {sum(echo_only)} of "
            f"{len(echo_only)} answers interrupted by their own echo."
        )
    if unguarded:
        guardless = msgspec.structs.replace(config.turns, echo_guard_ms=0)
        report["barge_in_no_echo_guard"] = report_barge_ins(
            unguarded, msgspec.structs.replace(config, turns=guardless), "echo_guard_ms: 0"
        )
    if levels:
        report_levels(levels)
    report["concurrency"] = levels
    if args.asr_batch_sizes:
        report["concurrency_by_asr_batch_size"] = await asr_batch_levels(args, concurrent_calls)
    print(f"\ntotal {time.perf_counter() - began:.0f} s")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--turns", type=int, default=len(SCRIPT), help="turns of the scripted call")
    parser.add_argument("--barge-ins", type=int, default=5)
    parser.add_argument(
        "--calls",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2, 4, 6, 8],
        help="concurrency levels, run in order until one does not hold",
    )
    parser.add_argument(
        "--unguarded",
        type=int,
        default=5,
        help="barge-ins repeated on a second server with turns.echo_guard_ms: 0 (0: none)",
    )
    parser.add_argument(
        "--echo-barge-ins",
        type=int,
        default=5,
        help="barge-ins (and as many echoed answers with a silent caller) on a line that "
        "echoes the reply (0: none)",
    )
    parser.add_argument(
        "--asr-batch-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[],
        help="run the --calls levels on one server per profile.asr.batch_size instead "
        "(with --baseline-tree: and on one server of that tree)",
    )
    parser.add_argument("--stagger", type=float, default=0.5, help="seconds between call starts")
    parser.add_argument(
        "--observability",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only compare the scripted call with call records, recordings and traces on, "
        "without the recordings, and all off, "
        "ROUNDS calls each, in turn, on three servers of the same run",
    )
    parser.add_argument(
        "--floor",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only the scripted call, ROUNDS times, against its floor (with --baseline-tree: "
        "in turn with a server of that tree)",
    )
    parser.add_argument(
        "--baseline-tree",
        metavar="DIR",
        help="with --floor or --asr-batch-sizes: a copy of this repository (an older commit) "
        "whose server is compared in the same run, started with this venv",
    )
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    if args.baseline_tree and not (args.floor or args.asr_batch_sizes):
        parser.error("--baseline-tree needs --floor or --asr-batch-sizes")
    if args.baseline_tree:  # absolute: its server runs in this checkout's folder
        tree = Path(args.baseline_tree).resolve()
        if not (tree / "agent" / "cli.py").is_file():
            parser.error(f"--baseline-tree {tree}: not a copy of this repository")
        args.baseline_tree = str(tree)
    report = anyio.run(run, args, backend_options={"use_uvloop": True})
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2, default=str)


if __name__ == "__main__":
    main()
