"""Voice to voice with call records, stereo recordings and traces on against all off, in the
same run.

``python -m bench.voice_to_voice --observability ROUNDS --turns N`` (bench/voice_to_voice.py
says how a call is timed): three servers run side by side: ``on`` with ``server.records``
(SQLite in a temporary folder, each call recorded in stereo there: ``records.recording_dir``)
and ``server.tracing`` (spans to an OTLP/HTTP receiver in this process,
:class:`agent.tracing_receiver.OtlpReceiver`), ``records+traces`` the same without the
recordings, and ``off`` with none of them; the same scripted call goes to each in turn,
ROUNDS times. The rounds' p50s show the noise; the ratios of the p50s and the differences per
utterance show the cost, of all three and of the recordings alone.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import wave
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml  # type: ignore[import-untyped]  # no stubs installed: used as Any

from agent.caller import Caller, Utterance
from agent.server_process import running_server
from bench.v2v_report import Turn, load

#: :func:`bench.voice_to_voice.scripted_call`: a call to a URL saying a script
ScriptedCall = Callable[[str, Sequence[Utterance]], Awaitable[tuple[list[Turn], Caller]]]


#: the servers compared, each a configuration: records (and traces) on, recordings on
SERVERS = {"off": (False, False), "records+traces": (True, False), "on": (True, True)}


def observed(path: str, folder: str, endpoint: str | None, *, recording: bool = True) -> Path:
    """A copy of the agent file at ``path`` in ``folder``: with call records (SQLite there),
    traces (to ``endpoint``) and, with ``recording``, recordings (in ``folder``/recordings)
    on, or (``None``) all off."""
    data = yaml.safe_load(Path(path).read_text())
    server = data.setdefault("server", {})
    name = "unobserved" if endpoint is None else "recorded" if recording else "observed"
    records: dict[str, str] = {"url": f"sqlite:///{folder}/{name}.db"}
    if recording:
        records["recording_dir"] = f"{folder}/recordings"
    server["records"] = None if endpoint is None else records
    server["tracing"] = None if endpoint is None else {"otlp_endpoint": endpoint}
    out = Path(folder) / f"{name}.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


async def observability(
    args: argparse.Namespace, script: Sequence[Utterance], scripted_call: ScriptedCall
) -> dict[str, Any]:
    """``--observability ROUNDS``: ``script`` said by ``scripted_call`` on three servers of
    the same run (:data:`SERVERS`: all off; records and traces; records, traces and
    recordings), ROUNDS times each (each first in turn): voice to voice, with each round's
    p50 (the noise), the ratios of the p50s and the differences of each utterance's median."""
    from agent.tracing_receiver import OtlpReceiver  # the tracing extra: only for this part

    #: per configuration, per round: the utterance's voice to voice (ms), for those timed
    timed: dict[str, list[dict[str, float]]] = {name: [] for name in SERVERS}
    with (
        tempfile.TemporaryDirectory(prefix="voxline-bench-") as folder,
        OtlpReceiver() as receiver,
        contextlib.ExitStack() as stack,
    ):
        servers = {
            name: stack.enter_context(
                running_server(
                    str(observed(args.config, folder, receiver.url if on else None, recording=rec))
                )
            )
            for name, (on, rec) in SERVERS.items()
        }
        order = list(servers)
        for index in range(args.observability):
            shift = index % len(order)  # each first in turn
            for name in order[shift:] + order[:shift]:
                turns, _ = await scripted_call(servers[name].ws, script)
                got = {t.text: 1000 * t.latency for t in turns if t.latency is not None}
                timed[name].append(got)
                print(f"round {index + 1}, {name}: {len(got)}/{len(script)} turns timed")
        for name in ("records+traces", "on"):
            servers[name].stop()  # its lifespan exports what waits, and finishes recordings
        recorded = recordings(Path(folder) / "recordings")
    report: dict[str, Any] = {"load": load(), "spans": len(receiver.spans), **recorded}
    for name, rounds in timed.items():
        values = [ms for got in rounds for ms in got.values()]
        p50, p95 = statistics.median(values), float(np.percentile(values, 95))
        per_round = [round(statistics.median(got.values())) for got in rounds if got]
        report[name] = {
            "turns": len(values),
            "p50_ms": round(p50, 1),
            "p95_ms": round(p95, 1),
            "round_p50s_ms": per_round,
        }
        print(
            f"{name}: {len(values)} turns, p50 {p50:.0f} ms, p95 {p95:.0f} ms; "
            f"each round's p50 {per_round}"
        )
    for on, off in (("on", "off"), ("records+traces", "off"), ("on", "records+traces")):
        differences = []
        for item in script:
            both = [
                [got[item.text] for got in timed[name] if item.text in got] for name in (off, on)
            ]
            if all(both):
                differences.append(statistics.median(both[1]) - statistics.median(both[0]))
        ratio = report[on]["p50_ms"] / report[off]["p50_ms"]
        key = f"{on} / {off}"
        report[key] = {
            "p50_ratio": round(ratio, 3),
            "utterance_differences_ms": [round(d) for d in differences],
        }
        print(
            f"{key}: p50 ratio {ratio:.3f}; per utterance (median of each) "
            f"{report[key]['utterance_differences_ms']} ms"
        )
    print(
        f"{report['spans']} spans received; {report['recordings']} recordings, "
        f"{report['recorded_s']} s; load {report['load']}"
    )
    return report


def recordings(folder: Path) -> dict[str, Any]:
    """How many stereo WAVs the "on" server wrote, and their seconds in all."""
    seconds = 0.0
    files = sorted(folder.glob("*.wav"))
    for path in files:
        with wave.open(str(path)) as wav:
            assert (wav.getnchannels(), wav.getframerate()) == (2, 16000), path
            seconds += wav.getnframes() / wav.getframerate()
    return {"recordings": len(files), "recorded_s": round(seconds, 1)}
