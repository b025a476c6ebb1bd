"""Voice to voice with call records and traces on against both off, in the same run.

``python -m bench.voice_to_voice --observability ROUNDS --turns N`` (bench/voice_to_voice.py
says how a call is timed): two servers run side by side, one with ``server.records`` (SQLite in
a temporary folder) and ``server.tracing`` (spans to an OTLP/HTTP receiver in this process,
:class:`agent.tracing_receiver.OtlpReceiver`) and one with neither; the same scripted call goes
to each in turn, ROUNDS times. The rounds' p50s show the noise; the ratio of the p50s and the
on-off difference per utterance show the cost.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
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


def observed(path: str, folder: str, endpoint: str | None) -> Path:
    """A copy of the agent file at ``path`` in ``folder``: with call records (SQLite there)
    and traces (to ``endpoint``) on, or (``None``) both off."""
    data = yaml.safe_load(Path(path).read_text())
    server = data.setdefault("server", {})
    server["records"] = None if endpoint is None else {"url": f"sqlite:///{folder}/calls.db"}
    server["tracing"] = None if endpoint is None else {"otlp_endpoint": endpoint}
    out = Path(folder) / ("observed.yaml" if endpoint else "unobserved.yaml")
    out.write_text(yaml.safe_dump(data))
    return out


async def observability(
    args: argparse.Namespace, script: Sequence[Utterance], scripted_call: ScriptedCall
) -> dict[str, Any]:
    """``--observability ROUNDS``: ``script`` said by ``scripted_call`` on two servers of the
    same run, records and traces off and on, ROUNDS times each (each first in turn): voice to
    voice, with each round's p50 (the noise) and the on-off difference of each utterance's
    median."""
    from agent.tracing_receiver import OtlpReceiver  # the tracing extra: only for this part

    #: per configuration, per round: the utterance's voice to voice (ms), for those timed
    timed: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with (
        tempfile.TemporaryDirectory(prefix="voxline-bench-") as folder,
        OtlpReceiver() as receiver,
        running_server(str(observed(args.config, folder, None))) as off,
        running_server(str(observed(args.config, folder, receiver.url))) as on,
    ):
        for index in range(args.observability):
            pair = [("off", off), ("on", on)]
            for name, server in pair if index % 2 == 0 else pair[::-1]:  # neither always first
                turns, _ = await scripted_call(server.ws, script)
                got = {t.text: 1000 * t.latency for t in turns if t.latency is not None}
                timed[name].append(got)
                print(f"round {index + 1}, {name}: {len(got)}/{len(script)} turns timed")
        on.stop()  # its lifespan exports what waits
    report: dict[str, Any] = {"load": load(), "spans": len(receiver.spans)}
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
            f"records and traces {name}: {len(values)} turns, p50 {p50:.0f} ms, "
            f"p95 {p95:.0f} ms; each round's p50 {per_round}"
        )
    differences = []
    for item in script:
        both = [[got[item.text] for got in timed[name] if item.text in got] for name in timed]
        if all(both):
            differences.append(statistics.median(both[1]) - statistics.median(both[0]))
    report["utterance_differences_ms"] = [round(d) for d in differences]
    ratio = report["on"]["p50_ms"] / report["off"]["p50_ms"]
    report["p50_ratio"] = round(ratio, 3)
    print(
        f"on/off p50 ratio {ratio:.3f}; on-off per utterance (median of each) "
        f"{report['utterance_differences_ms']} ms; {report['spans']} spans received; "
        f"load {report['load']}"
    )
    return report
