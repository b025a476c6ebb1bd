"""Metrics: what the session and the server report, read back in the Prometheus text format."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import Metrics
from pipeline.executor import ModelExecutor
from voices.cache import CacheStatistics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_turn_latency_stages_become_histograms_in_seconds() -> None:
    metrics = Metrics()
    metrics.observe_turn({"speech_end->asr_final": 180.0, "total": 950.0})
    metrics.observe_turn({"speech_end->asr_final": 20.0, "total": 4000.0})
    got = samples(metrics)
    stage = (("stage", "speech_end->asr_final"),)
    assert got[("voxline_turn_stage_seconds_count", stage)] == 2
    assert got[("voxline_turn_stage_seconds_sum", stage)] == pytest.approx(0.2)
    assert got[("voxline_turn_stage_seconds_bucket", (("le", "0.025"), *stage))] == 1
    assert got[("voxline_turn_stage_seconds_bucket", (("le", "1.0"), ("stage", "total")))] == 1


def test_counters_and_what_is_read_at_scrape_time() -> None:
    metrics = Metrics()
    metrics.interrupted()
    metrics.interrupted()
    metrics.error("rest", "invalid_audio")
    metrics.request("speech", 200)
    executor: ModelExecutor[int, int] = ModelExecutor("echo", fn=lambda x: x)
    with executor:
        metrics.watch(sessions=lambda: (3, 100), executors=lambda: [executor.statistics()])
        got = samples(metrics)
    assert got[("voxline_interruptions_total", ())] == 2
    assert got[("voxline_errors_total", (("kind", "invalid_audio"), ("where", "rest")))] == 1
    assert got[("voxline_http_requests_total", (("endpoint", "speech"), ("status", "200")))] == 1
    assert got[("voxline_sessions", ())] == 3
    assert got[("voxline_max_sessions", ())] == 100
    echo = (("executor", "echo"),)
    assert got[("voxline_executor_queue_depth", echo)] == 0
    assert got[("voxline_executor_max_queue", echo)] == 64
    assert 0 <= got[("voxline_executor_busy_fraction", echo)] <= 1
    assert got[("voxline_executor_rejected_total", echo)] == 0
    assert not any(name.endswith("_created") for name, _ in got)


def test_the_tts_cache_is_read_at_scrape_time() -> None:
    metrics = Metrics()
    cache = CacheStatistics("tts", 7, 3, entries=2, bytes=5000, max_bytes=1 << 20, evictions=1)
    metrics.watch(sessions=lambda: (0, 1), executors=lambda: [cache])
    got = samples(metrics)
    label = (("cache", "tts"),)
    assert got[("voxline_tts_cache_hits_total", label)] == 7
    assert got[("voxline_tts_cache_misses_total", label)] == 3
    assert got[("voxline_tts_cache_evictions_total", label)] == 1
    assert got[("voxline_tts_cache_entries", label)] == 2
    assert got[("voxline_tts_cache_bytes", label)] == 5000
    assert got[("voxline_tts_cache_max_bytes", label)] == 1 << 20
    assert not any(name.startswith("voxline_executor_") for name, _ in got)
