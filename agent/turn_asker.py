"""A call's questions to the end-of-turn model, and its answers back to turn-taking.

Turn-taking (:mod:`agent.turns`, rule M1) decides when to ask: :class:`~agent.turns.AskEndOfTurn`
at the caller's first short pause. The session hands each question to its :class:`TurnAsker`,
which keeps the caller's recent audio (every frame, as it arrives: :meth:`TurnAsker.push`),
cuts the question's audio out of it at once (from the turn's start, less a pre-roll, to the
newest sample; the model hears only the last 8 s) and runs it on the model's executor, shared
by every call, in its own task. The answer goes back as
:class:`~agent.turns.EndOfTurnScore` through ``answer`` (the session's control channel), so it
reaches turn-taking as an input like any other.

Channel policy: one question waits at most; a newer one replaces it (the older pause is moot:
the caller spoke on). A question already running is finished; turn-taking drops an answer
about a pause that is no longer the one going on. A failed or refused run (the model's error,
a full queue) sends no answer: turn-taking's silence rule ends the turn as it would without a
model; the failure is logged and counted in :attr:`TurnAsker.failed`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import numpy as np

from agent.turn_types import AskEndOfTurn, EndOfTurnScore
from pipeline.errors import ExecutorClosed, ModelError, Overloaded
from pipeline.events import BYTES_PER_SAMPLE, PIPELINE_RATE, Pcm
from pipeline.turn.smart_turn import WINDOW_SAMPLES, TurnEndRequest, TurnEndResult

__all__ = ["PRE_ROLL", "TurnAsker", "TurnEndRunner"]

log = logging.getLogger("voxline.turns")

#: audio before the turn's first speech sample that the model hears too (its onset)
PRE_ROLL = PIPELINE_RATE // 2
_KEEP_BYTES = WINDOW_SAMPLES * BYTES_PER_SAMPLE


class TurnEndRunner(Protocol):
    """What the asker needs from the executor (a ``ModelExecutor[TurnEndRequest, ...]``)."""

    async def run(self, request: TurnEndRequest, /) -> TurnEndResult: ...


class TurnAsker:
    """One call's end-of-turn questions: :meth:`push` audio, :meth:`ask`, :meth:`run` in the
    call's task group."""

    def __init__(
        self, model: TurnEndRunner, answer: Callable[[EndOfTurnScore], Awaitable[None]]
    ) -> None:
        self._model = model
        self._answer = answer
        self._audio = bytearray()  # PCM16: the newest samples, up to _KEEP of them
        self._end = 0  # the input position just after the newest sample kept
        self._waiting: tuple[int, Pcm] | None = None  # (pause, audio)
        self._wake = anyio.Event()
        #: questions asked, answered, and failed (no answer: the silence rule decided)
        self.asked = self.answered = self.failed = 0

    def push(self, pcm: bytes, pts: int) -> None:
        """Caller audio (PCM16 at 16 kHz) starting at input sample ``pts``."""
        if pts != self._end:  # a gap (or a restart): what was kept does not lead here
            self._audio.clear()
        self._audio += pcm
        if len(self._audio) > _KEEP_BYTES:
            del self._audio[: len(self._audio) - _KEEP_BYTES]  # cheap at a bytearray's front
        self._end = pts + len(pcm) // BYTES_PER_SAMPLE

    def ask(self, question: AskEndOfTurn) -> None:
        """Queue ``question`` (replacing one not yet run) with its audio as it is now."""
        kept = len(self._audio) // BYTES_PER_SAMPLE
        begin = max(question.start - PRE_ROLL, self._end - kept, self._end - WINDOW_SAMPLES)
        if begin >= self._end:
            return  # no audio of this turn is kept: nothing to ask about
        tail = self._audio[(begin - self._end) * BYTES_PER_SAMPLE :]
        audio = np.frombuffer(bytes(tail), dtype=np.int16)
        self._waiting = (question.pause, audio)
        self.asked += 1
        self._wake.set()

    async def run(self) -> None:
        """Run the questions one at a time until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if self._waiting is None:
                continue
            (pause, audio), self._waiting = self._waiting, None
            try:
                result = await self._model.run(TurnEndRequest(audio))
            except (ModelError, Overloaded, ExecutorClosed) as error:
                self.failed += 1
                log.warning("end-of-turn model: no answer (%s); the silence rule decides", error)
                continue
            self.answered += 1
            await self._answer(EndOfTurnScore(pause, result.probability))
