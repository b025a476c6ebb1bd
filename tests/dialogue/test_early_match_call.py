"""``dialogue.early_match`` in a real call: the session shows the intent engine the caller's
partial transcripts, so the final decision keeps a previewed intent instead of embedding again.

Real models throughout: Silero VAD, Whisper, Piper, and the intent engine on all-MiniLM-L6-v2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import msgspec
import numpy as np
import pytest
from anyio import wait_all_tasks_blocked

from agent.config import load_config
from agent.dialogue.embeddings import SentenceEmbedder
from agent.dialogue.engine import IntentEngine
from agent.responders import IntentResponder
from agent.session import Models, Session, SessionSettings
from agent.session_events import SessionEvent, UserTranscript, UserTurn
from agent.turns import TurnConfig
from tests.audio import espeak, silence

pytestmark = pytest.mark.anyio

CONFIG = load_config(Path(__file__).parents[2] / "configs" / "receptionist.yaml")


class Watched:
    """A model executor, watched: :meth:`wait_idle` returns once no request is running. A
    caller that waits for it after each frame hears every partial the ASR schedules (none is
    replaced by a newer one, as when audio comes faster than it is decoded), at any CPU speed.
    """

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.running = 0
        self._idle = anyio.Event()

    async def run(self, request: Any, /, **options: Any) -> Any:
        self.running += 1
        try:
            return await self.runner.run(request, **options)
        finally:
            self.running -= 1
            if not self.running:
                self._idle.set()
                self._idle = anyio.Event()

    async def wait_idle(self) -> None:
        while self.running:
            await self._idle.wait()


async def settle(*models: Watched) -> None:
    """Every task of the call is blocked and no model is running."""
    while True:
        await wait_all_tasks_blocked()
        busy = [model for model in models if model.running]
        if not busy:
            return
        for model in busy:
            await model.wait_idle()


class Events:
    output_rate = 16000

    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        self.ended: set[int] = set()
        self.changed = anyio.Event()

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        pass

    async def end_audio(self, generation: int) -> None:
        self.ended.add(generation)
        self._note()

    async def clear_audio(self, generation: int) -> None:
        return None

    async def send_event(self, event: SessionEvent) -> None:
        self.events.append(event)
        self._note()

    def _note(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


async def booking_call(
    vad: Watched, asr: Watched, tts: Any, embedder: SentenceEmbedder, *, early: bool
) -> bool:
    """The caller asks to book a table; returns whether the decision kept a previewed intent."""
    dialogue = CONFIG.dialogue
    early_match = msgspec.structs.replace(dialogue.early_match, enabled=early)
    config = msgspec.structs.replace(
        CONFIG, dialogue=msgspec.structs.replace(dialogue, early_match=early_match)
    )
    sink = Events()
    async with await IntentEngine.load(config, embedder=embedder) as engine:
        responder = IntentResponder(engine, config)
        settings = SessionSettings(turns=TurnConfig(idle_timeout_ms=0))
        session = Session(Models(vad, asr, tts), responder, sink, settings)
        speech = espeak("Hello, I would like to book a table for two people tomorrow evening.")
        audio = np.concatenate([speech, silence(1.0)]).tobytes()
        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.run)
                while 1 not in sink.ended:  # the greeting
                    await sink.changed.wait()
                for start in range(0, len(audio), 640):
                    await session.push_audio(audio[start : start + 640])
                    await settle(vad, asr)
                while 2 not in sink.ended:  # the answer
                    await sink.changed.wait()
                session.end_input()
    partials = [e for e in sink.events if isinstance(e, UserTranscript) and not e.final]
    assert len(partials) >= 3
    [turn] = [e for e in sink.events if isinstance(e, UserTurn)]
    assert "book" in turn.text.lower()
    assert responder.session.conversation.flow is not None  # the booking flow began
    return responder.session.reused_preview


async def test_partials_are_previewed_so_the_final_keeps_the_intent(
    vad_runner: object, asr_runner: object, tts_engine: object, embedder: SentenceEmbedder
) -> None:
    vad, asr = Watched(vad_runner), Watched(asr_runner)
    assert await booking_call(vad, asr, tts_engine, embedder, early=True)


async def test_with_early_match_off_the_final_is_decided_afresh(
    vad_runner: object, asr_runner: object, tts_engine: object, embedder: SentenceEmbedder
) -> None:
    vad, asr = Watched(vad_runner), Watched(asr_runner)
    assert not await booking_call(vad, asr, tts_engine, embedder, early=False)
