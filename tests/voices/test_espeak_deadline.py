"""A hung espeak-ng (voices/espeak_engine.py): each process has a deadline, as Piper's requests
do, and a circuit breaker (pipeline/breaker.py) stops starting processes after hangs in a row.

The hang is real: espeak-ng runs behind the wrapper script of tests/voices/test_espeak_engine.py,
which stops itself (SIGSTOP) while a marker file exists. Nothing sleeps: the only short time is
the deadline, the behaviour under test.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from pipeline.breaker import BreakerState, Deadline
from pipeline.errors import ModelError
from tests.voices.test_espeak_engine import collect, needs_espeak, samples, wrapper
from voices.espeak_engine import EspeakEngine

pytestmark = [pytest.mark.anyio, needs_espeak]

#: long enough for a healthy espeak-ng on a loaded machine: the requests after the hangs
HEALTHY = Deadline(30.0, 0.0)


def hanging_engine(folder: Path, *, cooldown_s: float) -> EspeakEngine:
    """An engine of the wrapper, started, whose processes hang from now on; deadline 0.5 s."""
    engine = EspeakEngine(
        "es",
        executable=str(wrapper(folder)),
        deadline_s=0.5,
        deadline_per_audio=0.0,
        breaker_failures=2,
        breaker_cooldown_s=cooldown_s,
    )
    engine.start()
    (folder / "espeak.stop").touch()
    return engine


async def hang_twice(engine: EspeakEngine) -> None:
    for _ in range(2):
        async with anyio.create_task_group() as group:

            async def timed_out() -> None:
                with pytest.raises(ModelError, match="timed out"):
                    await collect(engine.synthesize("Hola."))

            group.start_soon(timed_out)
        assert engine.processes == ()


async def test_a_hung_process_is_killed_at_its_deadline_and_the_breaker_opens(
    tmp_path: Path,
) -> None:
    engine = hanging_engine(tmp_path, cooldown_s=3600)
    with engine, anyio.fail_after(30):
        await hang_twice(engine)
        (tmp_path / "espeak.stop").unlink()  # it would speak now: the breaker does not ask it
        engine.deadline = HEALTHY
        with pytest.raises(ModelError, match="circuit breaker open"):
            await collect(engine.synthesize("Hola."))
    stats = engine.statistics()
    assert (stats.timeouts, stats.killed, stats.requests_failed) == (2, 2, 3)
    assert stats.breaker.state is BreakerState.OPEN
    assert (stats.breaker.opened, stats.breaker.refused) == (1, 1)
    assert stats.in_flight == 0


async def test_after_the_cool_down_a_request_that_speaks_closes_the_breaker(
    tmp_path: Path,
) -> None:
    engine = hanging_engine(tmp_path, cooldown_s=0.0)
    with engine, anyio.fail_after(30):
        await hang_twice(engine)
        assert engine.statistics().breaker.state is BreakerState.OPEN
        (tmp_path / "espeak.stop").unlink()
        engine.deadline = HEALTHY
        chunks = await collect(engine.synthesize("Hola. Buenos días."))  # the probe
    assert len(samples(chunks)) > 0
    stats = engine.statistics()
    assert stats.breaker.state is BreakerState.CLOSED
    assert (stats.timeouts, stats.requests_failed, stats.requests_done) == (2, 2, 1)
