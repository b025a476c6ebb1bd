"""A call's questions to the end-of-turn model, and its answers back to turn-taking.

Turn-taking (:mod:`agent.turns`, rule M1) decides when to ask: :class:`~agent.turns.AskEndOfTurn`
at the caller's first short pause. The session hands each question to its :class:`TurnAsker`,
which keeps the caller's recent audio (every frame, as it arrives: :meth:`TurnAsker.push`),
cuts the question's audio out of it at once (:func:`question_span`: from the turn's start, less
a pre-roll, to :data:`HEARD_PAUSE` into the pause; the model hears only the last 8 s) and runs
it on the model's executor, shared by every call, in its own task. The answer goes back as
:class:`~agent.turns.EndOfTurnScore` through ``answer`` (the session's control channel), so it
reaches turn-taking as an input like any other.

The model hears the pause as the VAD heard it when it announced it, never the newest audio:
by the time a question is asked the caller's audio has run on by however much the network and
a busy VAD lagged, and the answer moved with it (the comma pause of espeak-ng's "I would like
to, um," scored 0.49 through a real server, 0.22 cut at the pause: a little more lag and it
was "done", and the VAD ended the speech at the comma). Cut at the pause, the answer is the
same however late the question comes.

Channel policy: one question waits at most; a newer one replaces it (the older pause is moot:
the caller spoke on). A question already running is finished; turn-taking drops an answer
about a pause that is no longer the one going on. A failed or refused run (the model's error,
a full queue) sends no answer: turn-taking's silence rule ends the turn as it would without a
model; the failure is logged and counted in :attr:`TurnAsker.failed`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import numpy as np

from agent.turn_types import AskEndOfTurn, EndOfTurnScore
from pipeline.errors import ExecutorClosed, ModelError, Overloaded
from pipeline.events import BYTES_PER_SAMPLE, PIPELINE_RATE, Pcm
from pipeline.turn.smart_turn import WINDOW_SAMPLES, TurnEndRequest, TurnEndResult
from pipeline.vad.stage import PAUSE_SAMPLES

__all__ = ["HEARD_PAUSE", "PRE_ROLL", "TurnAsker", "TurnEndRunner", "question_span"]

log = logging.getLogger("voxline.turns")

#: audio before the turn's first speech sample that the model hears too (its onset)
PRE_ROLL = PIPELINE_RATE // 2
#: the silence of a pause that the model hears: what the VAD had heard of it when it announced
#: it (its ``SpeechPaused``), all of it judged silent
HEARD_PAUSE = PAUSE_SAMPLES
_KEEP_BYTES = WINDOW_SAMPLES * BYTES_PER_SAMPLE


def question_span(question: AskEndOfTurn, heard: int = HEARD_PAUSE) -> tuple[int, int]:
    """The input samples ``[begin, end)`` the model hears for ``question``: from the turn's
    start less :data:`PRE_ROLL` (its last 8 s at most) to ``heard`` into the pause (the
    silence the VAD needs to announce one: :data:`HEARD_PAUSE`)."""
    end = question.pause + heard
    return max(question.start - PRE_ROLL, end - WINDOW_SAMPLES), end


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
        """Queue ``question`` (replacing one not yet run) with its audio (:func:`question_span`,
        as far as it has come)."""
        first = self._end - len(self._audio) // BYTES_PER_SAMPLE  # the oldest sample kept
        begin, end = question_span(question)
        begin, end = max(begin, first), min(end, self._end)
        if begin >= end:
            return  # no audio of this turn is kept: nothing to ask about
        span = self._audio[(begin - first) * BYTES_PER_SAMPLE : (end - first) * BYTES_PER_SAMPLE]
        audio = np.frombuffer(bytes(span), dtype=np.int16)
        self._waiting = (question.pause, audio)
        self.asked += 1
        log.debug(
            "end-of-turn model asked: pause at %d, audio received up to %d",
            question.pause,
            self._end,
        )
        self._wake.set()

    async def run(self) -> None:
        """Run the questions one at a time until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if self._waiting is None:
                continue
            (pause, audio), self._waiting = self._waiting, None
            began = time.perf_counter()
            try:
                result = await self._model.run(TurnEndRequest(audio))
            except (ModelError, Overloaded, ExecutorClosed) as error:
                self.failed += 1
                log.warning("end-of-turn model: no answer (%s); the silence rule decides", error)
                continue
            self.answered += 1
            log.debug(
                "end-of-turn model: pause at %d, %d samples heard: %.3f in %.0f ms",
                pause,
                len(audio),
                result.probability,
                (time.perf_counter() - began) * 1000,
            )
            await self._answer(EndOfTurnScore(pause, result.probability))
