"""Voice to voice: spoken calls against a real ``voxline serve``, timed by the client.

The server runs as its own process (:func:`tests.server.running_server`); each caller is a
``websockets`` client on ``/v1/stream`` (:mod:`bench.caller`) that streams espeak-ng speech and
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
baseline (same run, same machine, no call open)
    the models alone, in this process: the final decode of each utterance with the server's
    decoder settings (Whisper base int8, 2 threads, the agent's options) and Piper's first
    chunk of the reply's first clause (worker process, 1 thread, as the server). The floor of
    a turn is the VAD's ``min_silence_ms`` (the silence that must pass before the final decode
    starts) + that decode + that first chunk.

Run: ``python -m bench.voice_to_voice`` (about 4-5 minutes on 2 cores; ``--json FILE``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import msgspec
import numpy as np
import yaml  # type: ignore[import-untyped]  # no stubs installed: used as Any

from agent.config import AgentConfig, load_config
from agent.models import asr_model_config, asr_options
from bench.caller import RATE, Caller, Reply, Utterance, call, utterance
from pipeline.asr.decoder import DecodeRequest, WhisperDecoder, to_model_audio
from tests.audio import silence
from tests.server import running_server
from voices.chunking import ClauseChunker
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


@dataclass
class Turn:
    text: str
    reply: Reply | None
    latency: float | None  # seconds, end of speech -> first loud reply frame
    heard: str = ""  # the server's final transcripts of it
    vad_end_ms: float | None = None  # the VAD's end of speech minus the true end
    lead_in_ms: float | None = None  # reply audio before its first loud sample


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


@dataclass
class BargeIn:
    delay: float  # seconds into the reply's audio when the interruption began
    to_last_frame: float | None  # onset -> last frame of the interrupted reply
    to_interrupted: float | None  # onset -> `interrupted`
    to_speech_started: float | None  # onset -> the server's `speech.started`
    vad_onset_ms: float | None  # the VAD's speech start minus the true onset (input timeline)
    played_ms: float
    heard: str
    frames_after: int  # frames of the interrupted reply after `interrupted` (should be 0)


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


@dataclass
class CallResult:
    turns: list[Turn]
    replies: list[Reply]
    errors: list[dict[str, Any]]
    send_lag: list[float]


async def executor_counters(http: str) -> dict[str, float]:
    """The server's ``voxline_executor_{requests,rejected}_total`` series, from ``/metrics``."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{http}/metrics", timeout=10)).text
    counters = {}
    for line in text.splitlines():
        if line.startswith(("voxline_executor_requests_total", "voxline_executor_rejected_total")):
            series, value = line.rsplit(" ", 1)
            kind = "rejected" if "rejected" in series else "requests"
            executor = series.split('"')[1]  # the one label: executor="..."
            counters[f"{executor} {kind}"] = float(value)
    return counters


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


def decode_times(config: AgentConfig, script: Sequence[Utterance], rounds: int = 3) -> list[float]:
    """Median seconds of the final decode of each utterance, as the server's ASR stage cuts it
    (0.5 s of pre-roll, the speech, 0.2 s after it)."""
    decoder = WhisperDecoder.load(asr_model_config(config))
    options = asr_options(config)
    out = []
    for item in script:
        audio = np.concatenate([silence(0.5), item.pcm[: item.end + 3200]])
        request = DecodeRequest(audio=to_model_audio(audio, RATE), final=True, options=options)
        decoder.decode(request)  # warm (first call of a shape)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            decoder.decode(request)
            times.append(time.perf_counter() - start)
        out.append(statistics.median(times))
    return out


async def first_chunk_times(replies: Sequence[str], rounds: int = 3) -> list[float]:
    """Median seconds to Piper's first chunk of each reply's first clause."""
    out = []
    with PiperEngine(threads=1) as engine:
        for text in replies:
            plan = plan_from_text(first_clause(text))
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                async with aclosing(engine.synthesize(plan)) as chunks:
                    async for _chunk in chunks:
                        times.append(time.perf_counter() - start)
                        break
            out.append(statistics.median(times))
    return out


# -- the report ----------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "-" if value is None else f"{1000 * value:.0f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:+.0f}"


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def realtime(replies: Sequence[Reply]) -> tuple[float, int, int, float]:
    """Worst lateness (s), late frames, frames, and the lowest audio/wall ratio of ``replies``
    (interrupted ones left out)."""
    worst, late, frames, ratio = -1.0, 0, 0, float("inf")
    for reply in replies:
        if reply.interrupted is not None or len(reply.frames) < 2:
            continue
        lateness = reply.lateness()
        worst = max(worst, *lateness)
        late += sum(x > 0 for x in lateness)
        frames += len(lateness)
        audio = sum(samples for _, samples, _ in reply.frames) / RATE
        wall = reply.frames[-1][0] - reply.frames[0][0] + reply.frames[-1][1] / RATE
        ratio = min(ratio, audio / wall)
    return worst, late, frames, ratio


def stage_medians(turns: Sequence[Turn]) -> dict[str, float]:
    """The server's ``turn.latency`` breakdown, median ms per stage."""
    stages: dict[str, list[float]] = {}
    for turn in turns:
        if turn.reply and turn.reply.latency:
            for name, value in turn.reply.latency.items():
                stages.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in stages.items()}


def report_call(
    turns: Sequence[Turn], vad_silence: float, asr: Sequence[float], tts: Sequence[float]
) -> dict[str, Any]:
    print("\n### Voice to voice, one scripted call\n")
    print(
        "| # | caller said | ASR final | bot answered | v2v ms | server total ms | "
        "VAD end error ms | reply lead-in ms | baseline decode + first chunk ms | floor ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    floors = [vad_silence + a + t for a, t in zip(asr, tts, strict=True)]
    for index, turn in enumerate(turns):
        reply = turn.reply
        total = reply.latency.get("total") if reply and reply.latency else None
        print(
            f"| {index + 1} | {turn.text} | {turn.heard} | {reply.text if reply else '-'} | "
            f"{ms(turn.latency)} | {'-' if total is None else f'{total:.0f}'} | "
            f"{_num(turn.vad_end_ms)} | {_num(turn.lead_in_ms)} | "
            f"{ms(asr[index])} + {ms(tts[index])} | {ms(floors[index])} |"
        )
    latencies = [t.latency for t in turns if t.latency is not None]
    answered = [(t.latency, f) for t, f in zip(turns, floors, strict=True) if t.latency]
    medians = stage_medians(turns)
    summary: dict[str, Any] = {
        "turns": len(turns),
        "answered": len(latencies),
        "v2v_p50_ms": 1000 * pct(latencies, 50),
        "v2v_p95_ms": 1000 * pct(latencies, 95),
        "asr_final_p50_ms": 1000 * pct(asr, 50),
        "tts_first_chunk_p50_ms": 1000 * pct(tts, 50),
        "models_p50_ms": 1000 * pct([a + t for a, t in zip(asr, tts, strict=True)], 50),
        "floor_p50_ms": 1000 * pct(floors, 50),
        "ratio_to_floor_p50": pct([v / f for v, f in answered], 50),
        "over_floor_p50_ms": 1000 * pct([v - f for v, f in answered], 50),
        "server_stage_median_ms": medians,
        "vad_end_error_p50_ms": pct([t.vad_end_ms for t in turns if t.vad_end_ms is not None], 50),
        "reply_lead_in_p50_ms": pct([t.lead_in_ms for t in turns if t.lead_in_ms is not None], 50),
    }
    rows = (
        (f"voice to voice ({len(latencies)}/{len(turns)} answered)", latencies),
        ("baseline: ASR final decode", asr),
        ("baseline: Piper first chunk", tts),
        ("baseline: decode + first chunk", [a + t for a, t in zip(asr, tts, strict=True)]),
        (f"floor: VAD min silence {1000 * vad_silence:.0f} ms + decode + first chunk", floors),
    )
    print("\n| measure | p50 | p95 |\n|---|---|---|")
    for name, values in rows:
        print(f"| {name} | {1000 * pct(values, 50):.0f} ms | {1000 * pct(values, 95):.0f} ms |")
    print(
        f"\nvoice to voice / floor, median per turn: {summary['ratio_to_floor_p50']:.2f} "
        f"({summary['over_floor_p50_ms']:+.0f} ms); "
        f"/ models alone: {summary['v2v_p50_ms'] / summary['models_p50_ms']:.2f} (p50s)"
    )
    print(
        f"\nmedian VAD end error {summary['vad_end_error_p50_ms']:+.0f} ms (the VAD's end of "
        f"speech after the true one), reply lead-in {summary['reply_lead_in_p50_ms']:.0f} ms"
    )
    print("\nserver `turn.latency`, median ms per stage:")
    print("\n| " + " | ".join(medians) + " |\n|" + "---|" * len(medians))
    print("| " + " | ".join(f"{v:.0f}" for v in medians.values()) + " |")
    return summary


def report_barge_ins(results: Sequence[BargeIn], config: AgentConfig, title: str) -> dict[str, Any]:
    turns, vad = config.turns, config.profile.vad
    print(f"\n### Barge-in ({title})\n")
    print(
        "| # | into the reply | onset -> speech.started | VAD onset error | "
        "onset -> last frame | onset -> interrupted | played ms | heard | frames after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for index, b in enumerate(results, 1):
        vad_error = "-" if b.vad_onset_ms is None else f"{b.vad_onset_ms:+.0f} ms"
        print(
            f"| {index} | {b.delay:.1f} s | {ms(b.to_speech_started)} | {vad_error} | "
            f"{ms(b.to_last_frame)} | {ms(b.to_interrupted)} | {b.played_ms:.0f} | "
            f"{b.heard} | {b.frames_after} |"
        )
    cut = [b for b in results if b.to_last_frame is not None]
    # with echo detection the guard applies only while the detector hears the bot's voice in
    # the caller's audio: the bench's callers send no echo of it
    guard = 0 if turns.echo_detection else turns.echo_guard_ms
    decided = turns.barge_in_min_speech_ms + guard
    summary = {
        "barge_ins": len(results),
        "interrupted": len(cut),
        "to_last_frame_p50_ms": 1000 * pct([b.to_last_frame for b in cut if b.to_last_frame], 50),
        "to_interrupted_p50_ms": 1000
        * pct([b.to_interrupted for b in cut if b.to_interrupted], 50),
        "to_speech_started_p50_ms": 1000
        * pct([b.to_speech_started for b in cut if b.to_speech_started], 50),
        "vad_onset_error_p50_ms": pct(
            [b.vad_onset_ms for b in cut if b.vad_onset_ms is not None], 50
        ),
        "frames_after_interrupted": sum(b.frames_after for b in results),
        "barge_in_min_speech_ms": turns.barge_in_min_speech_ms,
        "echo_guard_ms": turns.echo_guard_ms,
        "echo_detection": turns.echo_detection,
        "vad_min_speech_ms": vad.min_speech_ms,
    }
    print(
        f"\n{len(cut)}/{len(results)} interrupted. p50: onset -> last frame "
        f"{summary['to_last_frame_p50_ms']:.0f} ms, -> interrupted "
        f"{summary['to_interrupted_p50_ms']:.0f} ms, -> speech.started "
        f"{summary['to_speech_started_p50_ms']:.0f} ms; VAD onset error "
        f"{summary['vad_onset_error_p50_ms']:+.0f} ms. Configured: VAD min speech "
        f"{vad.min_speech_ms} ms (counted from the onset, inside the turn machine's), "
        f"barge_in_min_speech_ms {turns.barge_in_min_speech_ms} + echo_guard_ms "
        f"{turns.echo_guard_ms} while the bot is audible"
        + (" and echo is likely (none here)" if turns.echo_detection else "")
        + f" = decision at onset + {decided} ms."
    )
    return summary


def level_summary(
    n: int, calls: Sequence[CallResult], load_at_start: str, counters: dict[str, float]
) -> dict[str, Any]:
    turns = [t for c in calls for t in c.turns]
    latencies = [t.latency for t in turns if t.latency is not None]
    worst, late, frames, ratio = realtime([r for c in calls for r in c.replies])
    lag = max((max(c.send_lag) for c in calls if c.send_lag), default=0.0)
    errors = [f"{e.get('code')} {e.get('message', '')!r}" for c in calls for e in c.errors]
    return {
        "calls": n,
        "load": load_at_start,
        "turns": len(turns),
        "answered": len(latencies),
        "v2v_p50_ms": 1000 * pct(latencies, 50),
        "v2v_p95_ms": 1000 * pct(latencies, 95),
        "worst_lateness_ms": 1000 * worst,
        "late_frames": late,
        "frames": frames,
        "lowest_audio_wall_ratio": ratio,
        "client_send_lag_max_ms": 1000 * lag,
        "errors": errors,
        "executor_counts": counters,
        "server_stage_median_ms": stage_medians(turns),
        "holds": len(calls) == n and len(latencies) == len(turns) and late == 0 and not errors,
    }


def report_levels(levels: Sequence[dict[str, Any]]) -> None:
    print("\n### Concurrent calls\n")
    print(
        "| N | load (1/5/15 min) | turns answered | v2v p50 | v2v p95 | worst frame lateness | "
        "late frames | lowest audio/wall | client send lag max | errors | holds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for level in levels:
        print(
            f"| {level['calls']} | {level['load']} | {level['answered']}/{level['turns']} | "
            f"{level['v2v_p50_ms']:.0f} ms | {level['v2v_p95_ms']:.0f} ms | "
            f"{level['worst_lateness_ms']:+.0f} ms | {level['late_frames']}/{level['frames']} | "
            f"{level['lowest_audio_wall_ratio']:.3f} | {level['client_send_lag_max_ms']:.0f} ms | "
            f"{', '.join(level['errors']) or 0} | {'yes' if level['holds'] else 'no'} |"
        )
    print("\n| N | server stages, median ms | model requests (rejected) |\n|---|---|---|")
    for level in levels:
        stages = ", ".join(f"{k} {v:.0f}" for k, v in level["server_stage_median_ms"].items())
        counts = ", ".join(f"{k} {v:.0f}" for k, v in level["executor_counts"].items() if v)
        print(f"| {level['calls']} | {stages} | {counts} |")
    held = [str(level["calls"]) for level in levels if level["holds"]]
    print(f"\nheld in real time: N = {', '.join(held) or 'none'}")


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
    script = [utterance(text) for text in SCRIPT[: args.turns]]
    for text in (*CONCURRENT_SCRIPT, TRIGGER, INTERRUPTION):
        utterance(text)  # espeak before the clock runs
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    report: dict[str, Any] = {"machine": machine, "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"{machine}, {report['date']}, agent {args.config}")
    began = time.perf_counter()
    loads: dict[str, str] = {}
    levels: list[dict[str, Any]] = []
    with running_server(args.config) as server:
        print(f"server ready in {time.perf_counter() - began:.0f} s")
        loads["call"] = load()
        turns, _ = await scripted_call(server.ws, script)
        loads["baseline"] = load()
        asr = await anyio.to_thread.run_sync(decode_times, config, script[: len(turns)])
        tts = await first_chunk_times([t.reply.text if t.reply else "" for t in turns])
        loads["barge_in"] = load()
        barges = await barge_in_call(server.ws, args.barge_ins) if args.barge_ins else []
        echoed: list[BargeIn] = []
        echo_only: list[bool] = []
        if args.echo_barge_ins:
            loads["echo"] = load()
            echoed = await barge_in_call(server.ws, args.echo_barge_ins, ECHO)
            echo_only = await echo_only_call(server.ws, args.echo_barge_ins, ECHO)
        for n in args.calls:
            at, before = load(), await executor_counters(server.http)
            calls = await concurrent_calls(server.ws, n, args.stagger)
            after = await executor_counters(server.http)
            counts = {k: v - before.get(k, 0.0) for k, v in after.items()}
            level = level_summary(n, calls, at, counts)
            levels.append(level)
            print(f"{n} calls: {'held' if level['holds'] else 'did not hold'} (load {at})")
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
    report["call"] = report_call(turns, config.profile.vad.min_silence_ms / 1000, asr, tts)
    if barges:
        report["barge_in"] = report_barge_ins(barges, config, "default turns")
    if echoed:
        title = f"a line echoing the reply {ECHO[0]:.0f} ms later at {ECHO[1]:+.0f} dB"
        report["barge_in_echo"] = report_barge_ins(echoed, config, title)
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
    report_levels(levels)
    report["concurrency"] = levels
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
    parser.add_argument("--stagger", type=float, default=0.5, help="seconds between call starts")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    report = anyio.run(run, args, backend_options={"use_uvloop": True})
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2, default=str)


if __name__ == "__main__":
    main()
