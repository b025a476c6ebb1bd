"""Process-wide metrics, exposed at ``GET /metrics`` in the Prometheus text format.

One :data:`METRICS` object per process, with its own registry (nothing from other libraries'
default registry leaks in). What is counted as it happens:

- ``voxline_turn_stage_seconds{stage}``: a histogram per stage of each answered turn, from the
  session's :class:`~agent.session.TurnLatency` report (``speech_end->asr_final``, ...,
  ``total``): the session calls :meth:`Metrics.observe_turn`;
- ``voxline_interruptions_total``: replies cut off by a barge-in (:meth:`Metrics.interrupted`);
- ``voxline_errors_total{where,kind}``: errors by place (``rest``, ``session``) and kind;
- ``voxline_http_requests_total{endpoint,status}``: REST requests by outcome;
- ``voxline_records_dropped_total{reason}``: call records not written (``queue_full``: the
  writer was behind; ``write_failed``: the database refused them; ``unavailable``: it never
  opened, or the call ended after the writer stopped; :mod:`agent.records`).
- ``voxline_recording_dropped_total{reason}``: chunks of call audio (20 ms frames, mostly)
  left out of a call's stereo recording (``queue_full``: the writer was behind;
  ``write_failed``: its file could not be written; ``unavailable``: the writer had stopped;
  :mod:`agent.records.recording`).
- ``voxline_webhooks_dropped_total{reason}``: call events no webhook endpoint received
  (``queue_full``: the endpoint was behind; ``failed``: every try failed; ``rejected``: it
  answered a 4xx that is not retried; ``unavailable``: the call ended after the sender stopped;
  :mod:`agent.webhooks`).

What is read when scraped (from the callables given to :meth:`Metrics.watch`, and the process):

- ``process_open_fds``, ``process_resident_memory_bytes``, ``process_cpu_seconds_total`` ...:
  the standard process metrics (prometheus-client's, from ``/proc``; Linux only), and
  ``voxline_asyncio_tasks``: the tasks of the event loop that serves the scrape (what the soak,
  bench/soak.py, checks are back where they started once the calls have ended);
- ``voxline_sessions`` and ``voxline_max_sessions``: calls open now, and the limit;
  ``voxline_asr_final_wait_seconds``: the median time an utterance's final waited for the
  Whisper model over the last 10 s (what ``server.max_asr_wait_ms`` admits calls by; the
  figure to scale replicas on);
- per executor (``executor`` label: VAD, Whisper, Piper, embeddings): ``queue_depth``,
  ``max_queue``, ``in_flight``, ``busy_fraction`` (share of time inside the model since it
  started, where the executor measures it) and the ``requests``, ``failed`` and ``rejected``
  totals;
- faults survived (:mod:`pipeline.breaker`): ``voxline_executor_restarts_total`` and
  ``voxline_executor_timeouts_total`` (a worker restarted after a crash or a hang; requests it
  did not finish by their deadline), for executors that run a worker process (Piper); and per
  circuit breaker (``breaker`` label: ``piper``, ``llm``; the LLM engine's is given with
  :meth:`Metrics.watch_breaker`) ``voxline_breaker_state`` (0 closed, 1 half open, 2 open),
  ``voxline_breaker_opened_total`` and ``voxline_breaker_refused_total`` (requests refused at
  once while open). LLM replies that got the fallback are ``voxline_errors_total{where="llm"}``
  by reason (:data:`agent.dialogue.llm.FallbackReason`);
- the TTS cache (:mod:`voices.cache`, ``cache`` label): ``voxline_tts_cache_bytes`` (PCM kept)
  and ``_max_bytes`` (its bound), ``_entries``, and the ``_hits``, ``_misses`` and
  ``_evictions`` totals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from pipeline.breaker import Breaker, BreakerStatistics
from voices.cache import CachedEngine, CacheStatistics

if TYPE_CHECKING:
    from agent.models import LoadedModels

__all__ = ["CONTENT_TYPE", "METRICS", "ExecutorStats", "Metrics", "executor_statistics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: seconds; turn stages run from a few milliseconds (end of turn) to seconds (the LLM)
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class ExecutorStats(Protocol):
    """What every executor's ``statistics()`` reports (``busy_fraction`` where measured)."""

    @property
    def name(self) -> str: ...
    @property
    def queue_depth(self) -> int: ...
    @property
    def max_queue(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def requests_done(self) -> int: ...
    @property
    def requests_failed(self) -> int: ...
    @property
    def rejected(self) -> int: ...


class Metrics:
    """The metrics of one process; see the module docstring."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._stages = Histogram(
            "voxline_turn_stage_seconds",
            "Latency of each stage of an answered turn, from the end of the caller's speech.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self._interruptions = Counter(
            "voxline_interruptions", "Replies cut off by the caller (barge-in).",
            registry=self.registry,
        )  # fmt: skip
        self._errors = Counter(
            "voxline_errors", "Errors, by where they happened and their kind.",
            ["where", "kind"], registry=self.registry,
        )  # fmt: skip
        self._requests = Counter(
            "voxline_http_requests", "REST requests, by endpoint and status code.",
            ["endpoint", "status"], registry=self.registry,
        )  # fmt: skip
        self._records_dropped = Counter(
            "voxline_records_dropped", "Call records not written, by reason.",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self._recording_dropped = Counter(
            "voxline_recording_dropped", "Call audio left out of recordings, by reason.",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self._webhooks_dropped = Counter(
            "voxline_webhooks_dropped", "Webhook events not delivered, by reason.",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self._sessions: Callable[[], tuple[int, int]] = lambda: (0, 0)
        self._executors: Callable[[], Iterable[ExecutorStats | CacheStatistics]] = list
        self._asr_wait: Callable[[], float] = float
        self._breakers: dict[str, Breaker] = {}
        self.registry.register(_Live(self))
        ProcessCollector(registry=self.registry)

    # -- what the session and the server report --------------------------------------------

    def observe_turn(self, stages: Mapping[str, float]) -> None:
        """One turn's :class:`~agent.session.TurnLatency` stages, in milliseconds."""
        for stage, ms in stages.items():
            self._stages.labels(stage).observe(max(0.0, ms) / 1000)

    def interrupted(self) -> None:
        self._interruptions.inc()

    def error(self, where: str, kind: str) -> None:
        self._errors.labels(where, kind).inc()

    def request(self, endpoint: str, status: int) -> None:
        self._requests.labels(endpoint, str(status)).inc()

    def records_dropped(self, reason: str, count: int = 1) -> None:
        self._records_dropped.labels(reason).inc(count)

    def recording_dropped(self, reason: str, count: int = 1) -> None:
        self._recording_dropped.labels(reason).inc(count)

    def webhooks_dropped(self, reason: str, count: int = 1) -> None:
        self._webhooks_dropped.labels(reason).inc(count)

    def watch(
        self,
        *,
        sessions: Callable[[], tuple[int, int]],
        executors: Callable[[], Iterable[ExecutorStats | CacheStatistics]],
        asr_wait: Callable[[], float] = float,
    ) -> None:
        """Read ``sessions()`` (open, limit), ``executors()`` (the executors' statistics, and
        the TTS cache's) and ``asr_wait()`` (seconds) at every scrape (replaces what an
        earlier call gave)."""
        self._sessions = sessions
        self._executors = executors
        self._asr_wait = asr_wait

    def watch_breaker(self, breaker: Breaker) -> None:
        """Read ``breaker`` at every scrape (replaces an earlier one of its name)."""
        self._breakers[breaker.name] = breaker

    def exposition(self) -> bytes:
        """Every metric, in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


class _Live:
    """A collector for what is read at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        open_sessions, limit = self._metrics._sessions()
        yield GaugeMetricFamily("voxline_sessions", "Calls open now.", value=open_sessions)
        yield GaugeMetricFamily(
            "voxline_max_sessions", "The most calls this process accepts.", value=limit
        )
        yield GaugeMetricFamily(
            "voxline_asr_final_wait_seconds",
            "Median wait of an utterance's final for the ASR model over the last 10 s.",
            value=self._metrics._asr_wait(),
        )
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # no event loop runs in the scraping thread: nothing to count
            pass
        else:
            yield GaugeMetricFamily("voxline_asyncio_tasks", "Tasks of the event loop.", tasks)
        gauges = {
            name: GaugeMetricFamily(f"voxline_executor_{name}", doc, labels=["executor"])
            for name, doc in (
                ("queue_depth", "Requests waiting for the model (not counting those running)."),
                ("max_queue", "Requests that may wait before new ones are refused."),
                ("in_flight", "Requests the model is running now."),
                ("busy_fraction", "Share of the time since start spent inside the model."),
            )
        }
        counters = {
            name: CounterMetricFamily(f"voxline_executor_{name}", doc, labels=["executor"])
            for name, doc in (
                ("requests", "Requests the model completed."),
                ("failed", "Requests that failed inside the model."),
                ("rejected", "Requests refused because the queue was full."),
            )
        }
        caches = _cache_families()
        faults = _FaultFamilies()
        for breaker in self._metrics._breakers.values():
            faults.add_breaker(breaker.statistics())
        for stats in self._metrics._executors():
            label = [stats.name]
            faults.add_executor(stats)
            if isinstance(stats, CacheStatistics):
                for name, family in caches.items():
                    family.add_metric(label, getattr(stats, name))
                continue
            gauges["queue_depth"].add_metric(label, stats.queue_depth)
            gauges["max_queue"].add_metric(label, stats.max_queue)
            gauges["in_flight"].add_metric(label, stats.in_flight)
            busy = getattr(stats, "busy_fraction", None)
            if busy is not None:
                gauges["busy_fraction"].add_metric(label, float(busy))
            counters["requests"].add_metric(label, stats.requests_done)
            counters["failed"].add_metric(label, stats.requests_failed)
            counters["rejected"].add_metric(label, stats.rejected)
        yield from gauges.values()
        yield from counters.values()
        yield from caches.values()
        yield from faults.families()


class _FaultFamilies:
    """Worker restarts and timeouts, and the circuit breakers (see the module docstring)."""

    def __init__(self) -> None:
        executor = ["executor"]
        self.restarts = CounterMetricFamily(
            "voxline_executor_restarts", "Worker processes restarted after a crash or a hang.",
            labels=executor,
        )  # fmt: skip
        self.timeouts = CounterMetricFamily(
            "voxline_executor_timeouts", "Requests a worker did not finish by their deadline.",
            labels=executor,
        )  # fmt: skip
        self.state = GaugeMetricFamily(
            "voxline_breaker_state", "Circuit breaker: 0 closed, 1 half open, 2 open.",
            labels=["breaker"],
        )  # fmt: skip
        self.opened = CounterMetricFamily(
            "voxline_breaker_opened", "Times the circuit breaker opened.", labels=["breaker"]
        )
        self.refused = CounterMetricFamily(
            "voxline_breaker_refused", "Requests refused at once while the breaker was open.",
            labels=["breaker"],
        )  # fmt: skip

    def add_executor(self, stats: object) -> None:
        name = getattr(stats, "name", "")
        for family, field in ((self.restarts, "restarts"), (self.timeouts, "timeouts")):
            value = getattr(stats, field, None)
            if isinstance(value, int):
                family.add_metric([name], value)
        breaker = getattr(stats, "breaker", None)
        if isinstance(breaker, BreakerStatistics):
            self.add_breaker(breaker)

    def add_breaker(self, stats: BreakerStatistics) -> None:
        self.state.add_metric([stats.name], stats.state.level)
        self.opened.add_metric([stats.name], stats.opened)
        self.refused.add_metric([stats.name], stats.refused)

    def families(self) -> list[Metric]:
        return [self.restarts, self.timeouts, self.state, self.opened, self.refused]


def _cache_families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
    """The ``voxline_tts_cache_*`` families, by :class:`CacheStatistics` field."""
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
        name: GaugeMetricFamily(f"voxline_tts_cache_{name}", doc, labels=["cache"])
        for name, doc in (
            ("bytes", "Bytes of synthesised audio (PCM) the TTS cache keeps."),
            ("max_bytes", "The most PCM bytes the TTS cache keeps (profile.tts.cache_mb)."),
            ("entries", "Syntheses the TTS cache keeps."),
        )
    }
    for name, doc in (
        ("hits", "Synthesis requests replayed from the TTS cache."),
        ("misses", "Synthesis requests the TTS cache did not hold."),
        ("evictions", "Entries the TTS cache dropped to make room."),
    ):
        families[name] = CounterMetricFamily(f"voxline_tts_cache_{name}", doc, labels=["cache"])
    return families


def executor_statistics(models: LoadedModels) -> list[ExecutorStats | CacheStatistics]:
    """The statistics of every executor in ``models``, and of its TTS cache."""
    stats: list[ExecutorStats | CacheStatistics] = [
        models.vad.statistics(),
        models.asr.statistics(),
        models.engine.statistics(),
    ]
    if models.embedder is not None:
        stats.append(models.embedder.executor.statistics())
    if models.end_of_turn is not None:
        stats.append(models.end_of_turn.statistics())
    if isinstance(models.tts, CachedEngine):
        stats.append(models.tts.statistics())
    return stats


# `*_created` timestamps per series double the output and nothing here reads them
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client
#: the metrics of this process
METRICS = Metrics()
