"""What bench.voice_to_voice records per turn, barge-in and call, and how it prints them.

The tables of BENCHMARKS.md come from here: medians and percentiles, the scripted call with
its floor, the barge-ins, the concurrency levels.
"""

from __future__ import annotations

import itertools
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.caller import RATE, Reply
from agent.config import AgentConfig


@dataclass
class Turn:
    text: str
    reply: Reply | None
    latency: float | None  # seconds, end of speech -> first loud reply frame
    heard: str = ""  # the server's final transcripts of it
    vad_end_ms: float | None = None  # the VAD's end of speech minus the true end
    lead_in_ms: float | None = None  # reply audio before its first loud sample
    #: when each step of the answer reached the client, seconds after the end of speech was
    #: sent (:data:`CLIENT_POINTS`; a step the client did not see is left out)
    arrivals: dict[str, float] = field(default_factory=dict)


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


@dataclass
class CallResult:
    turns: list[Turn]
    replies: list[Reply]
    errors: list[dict[str, Any]]
    send_lag: list[float]


#: what the client sees of an answer, in order: ``speech.stopped`` (the VAD confirmed the end of
#: speech), the last ``transcript.final`` and ``turn.ended`` before the answer, its first
#: ``agent.text``, its first audio frame, its first frame holding a loud sample
CLIENT_POINTS = ("vad_stop", "final", "turn", "text", "audio", "loud")


def client_stages(arrivals: dict[str, float]) -> dict[str, float]:
    """Milliseconds between the steps of :data:`CLIENT_POINTS` that ``arrivals`` holds, from the
    end of speech (``end``); together they make the turn's voice to voice time."""
    known = [("end", 0.0), *((p, arrivals[p]) for p in CLIENT_POINTS if p in arrivals)]
    return {f"{a}->{b}": 1000 * (tb - ta) for (a, ta), (b, tb) in itertools.pairwise(known)}


def arrivals(events: Sequence[dict[str, Any]], reply: Reply, end_sent: float) -> dict[str, float]:
    """When each step of the answer ``reply`` reached the client (``events``: what came since
    the utterance was queued), seconds after ``end_sent`` (:data:`CLIENT_POINTS`)."""
    out: dict[str, float] = {}
    if reply.frames:
        out["audio"] = reply.frames[0][0]
    if (loud := reply.first_loud()) is not None:
        out["loud"] = loud
    texts = [e for e in events if e["type"] == "agent.text" and e["generation"] == reply.generation]
    if texts:
        out["text"] = texts[0]["arrived"]
    answered_at = out.get("text", out.get("audio"))
    before = [e for e in events if answered_at is None or e["arrived"] <= answered_at]
    for point, kind in (("turn", "turn.ended"), ("final", "transcript.final")):
        found = [e["arrived"] for e in before if e["type"] == kind]
        if found:
            out[point] = found[-1]
    ended = out.get("turn", answered_at)
    stops = [e["arrived"] for e in before if e["type"] == "speech.stopped"]
    stops = [at for at in stops if ended is None or at <= ended]
    if stops:
        out["vad_stop"] = stops[-1]
    return {point: at - end_sent for point, at in out.items()}


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
    turns: Sequence[Turn],
    vad_silence: float,
    asr: Sequence[float],
    tts: Sequence[float],
    cached: Sequence[bool] = (),
    tight: Sequence[float] = (),
) -> dict[str, Any]:
    """The scripted call: each turn, the floor (``vad_silence`` + ``asr`` + ``tts``, seconds
    per turn; ``cached``: which first chunks came from the TTS cache), the ratio to it, the
    server's and the client's breakdown of a turn; ``tight``: each turn's floor with the
    speculative final (:func:`bench.v2v_floor.tight_floors`), with the ratio to it too."""
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
        memo = " (cached)" if index < len(cached) and cached[index] else ""
        print(
            f"| {index + 1} | {turn.text} | {turn.heard} | {reply.text if reply else '-'} | "
            f"{ms(turn.latency)} | {'-' if total is None else f'{total:.0f}'} | "
            f"{_num(turn.vad_end_ms)} | {_num(turn.lead_in_ms)} | "
            f"{ms(asr[index])} + {ms(tts[index])}{memo} | {ms(floors[index])} |"
        )
    latencies = [t.latency for t in turns if t.latency is not None]
    answered = [(t.latency, f) for t, f in zip(turns, floors, strict=True) if t.latency]
    medians = stage_medians(turns)
    client = client_medians(turns)
    summary: dict[str, Any] = {
        "turns": len(turns),
        "answered": len(latencies),
        "v2v_p50_ms": 1000 * pct(latencies, 50),
        "v2v_p95_ms": 1000 * pct(latencies, 95),
        "asr_final_p50_ms": 1000 * pct(asr, 50),
        "tts_first_chunk_p50_ms": 1000 * pct(tts, 50),
        "tts_first_chunks_cached": sum(cached),
        "models_p50_ms": 1000 * pct([a + t for a, t in zip(asr, tts, strict=True)], 50),
        "floor_p50_ms": 1000 * pct(floors, 50),
        "ratio_to_floor_p50": pct([v / f for v, f in answered], 50),
        "over_floor_p50_ms": 1000 * pct([v - f for v, f in answered], 50),
        "server_stage_median_ms": medians,
        "client_stage_median_ms": client,
        "client_stages_ms": [client_stages(t.arrivals) for t in turns],
        "vad_end_error_p50_ms": pct([t.vad_end_ms for t in turns if t.vad_end_ms is not None], 50),
        "reply_lead_in_p50_ms": pct([t.lead_in_ms for t in turns if t.lead_in_ms is not None], 50),
    }
    first = "first chunk" + (f" ({sum(cached)} from the TTS cache)" if any(cached) else "")
    rows: tuple[tuple[str, Sequence[float]], ...] = (
        (f"voice to voice ({len(latencies)}/{len(turns)} answered)", latencies),
        ("baseline: ASR final decode", asr),
        (f"baseline: {first}", tts),
        ("baseline: decode + first chunk", [a + t for a, t in zip(asr, tts, strict=True)]),
        (f"floor: VAD min silence {1000 * vad_silence:.0f} ms + decode + first chunk", floors),
    )
    if tight:
        rows += (("floor with the speculative final (bench/v2v_floor.py)", tight),)
        near = [(t.latency, f) for t, f in zip(turns, tight, strict=True) if t.latency]
        summary["tight_floor_p50_ms"] = 1000 * pct(tight, 50)
        summary["ratio_to_tight_floor_p50"] = pct([v / f for v, f in near], 50)
        summary["over_tight_floor_p50_ms"] = 1000 * pct([v - f for v, f in near], 50)
    print("\n| measure | p50 | p95 |\n|---|---|---|")
    for name, values in rows:
        print(f"| {name} | {1000 * pct(values, 50):.0f} ms | {1000 * pct(values, 95):.0f} ms |")
    print(
        f"\nvoice to voice / floor, median per turn: {summary['ratio_to_floor_p50']:.2f} "
        f"({summary['over_floor_p50_ms']:+.0f} ms); "
        f"/ models alone: {summary['v2v_p50_ms'] / summary['models_p50_ms']:.2f} (p50s)"
    )
    if tight:
        print(
            f"\nvoice to voice / floor with the speculative final, median per turn: "
            f"{summary['ratio_to_tight_floor_p50']:.2f} "
            f"({summary['over_tight_floor_p50_ms']:+.0f} ms)"
        )
    print(
        f"\nmedian VAD end error {summary['vad_end_error_p50_ms']:+.0f} ms (the VAD's end of "
        f"speech after the true one), reply lead-in {summary['reply_lead_in_p50_ms']:.0f} ms"
    )
    print("\nserver `turn.latency`, median ms per stage:")
    print("\n| " + " | ".join(medians) + " |\n|" + "---|" * len(medians))
    print("| " + " | ".join(f"{v:.0f}" for v in medians.values()) + " |")
    print("\nthe client's view (arrival times), ms per turn and median:")
    print("\n| # | " + " | ".join(client) + " |\n|---|" + "---|" * len(client))
    for index, turn in enumerate(turns):
        stages = client_stages(turn.arrivals)
        cells = (f"{stages[name]:.0f}" if name in stages else "-" for name in client)
        print(f"| {index + 1} | " + " | ".join(cells) + " |")
    print("| median | " + " | ".join(f"{v:.0f}" for v in client.values()) + " |")
    return summary


def client_medians(turns: Sequence[Turn]) -> dict[str, float]:
    """:func:`client_stages` of every turn, median ms per stage (in the order of the steps)."""
    stages: dict[str, list[float]] = {}
    for turn in turns:
        for name, value in client_stages(turn.arrivals).items():
            stages.setdefault(name, []).append(value)
    order = sorted(stages, key=lambda name: CLIENT_POINTS.index(name.split("->")[1]))
    return {name: statistics.median(stages[name]) for name in order}


def report_barge_ins(
    results: Sequence[BargeIn], config: AgentConfig, title: str, *, echoed: bool = False
) -> dict[str, Any]:
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
    # the caller's audio: over echo, the speech counts from when it hears the caller instead
    # (80-120 ms after their onset, measured offline); else no guard
    if not turns.echo_detection:
        guard, how = turns.echo_guard_ms, f"echo_guard_ms {turns.echo_guard_ms} while audible"
    elif echoed:
        guard, how = 100, "~100 ms until the echo detector hears the caller over the echo"
    else:
        guard, how = 0, "no echo guard (no echo here)"
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
        f"barge_in_min_speech_ms {turns.barge_in_min_speech_ms} + {how} "
        f"= decision at onset + {decided} ms."
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
