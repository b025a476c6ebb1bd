"""The TTS cache in a real call: the agent's greeting, pre-filled as the server does at start-up,
is played from the cache (the engine is not asked for it), and a barge-in during it reports the
text heard up to the interruption, as an uncached greeting does.

Real models (VAD, Whisper, the Piper worker) and the real intent dialogue; the engine's own
statistics count the requests that reach it.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent.config import AgentConfig, parse_config
from agent.dialogue.engine import IntentEngine
from agent.models import reply_voice
from agent.reply import ReplyVoice
from agent.responders import IntentResponder
from agent.session import Models, Session, SessionSettings
from agent.session_events import AgentText, Interrupted
from agent.tts_prefill import fixed_replies, prefill, reply_plans
from agent.turns import TurnConfig
from tests.test_session import Recorder, speak
from voices.cache import CachedEngine
from voices.catalog import load_catalog
from voices.piper_engine import PiperEngine

GREETING = (
    "Hello, and thank you for calling Chez Voxline, the little restaurant by the river. "
    "We are open every day from nine in the morning until late at night. "
    "How can I help you today?"
)
AGENT = f"""
name: cached
voice: {{name: joe, emotion: calm}}
greeting: {{text: "{GREETING}", emotion: happy}}
turns: {{idle_timeout_ms: 0}}
dialogue:
  intents:
    - name: hours
      patterns: ["open"]
      reply: "We open at nine."
"""


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"use_uvloop": True})  # the models' time dominates: one loop is enough


def agent() -> tuple[AgentConfig, ReplyVoice]:
    config = parse_config(AGENT.encode(), ".yaml")
    return config, reply_voice(config.voice, load_catalog().get(config.voice.name))


def requests(engine: PiperEngine) -> int:
    stats = engine.statistics()
    return stats.requests_done + stats.requests_failed + stats.cancelled


async def cached_call(
    vad_runner: Any, asr_runner: Any, tts_engine: PiperEngine
) -> tuple[Session, Recorder, IntentResponder, CachedEngine[PiperEngine]]:
    config, voice = agent()
    cache = CachedEngine(tts_engine, max_bytes=1 << 24)
    with anyio.fail_after(120):
        await prefill(cache, config, voice)
    responder = IntentResponder(await IntentEngine.load(config, embedder=None), config)
    settings = SessionSettings(turns=TurnConfig(idle_timeout_ms=0), voice=voice)
    sink = Recorder()
    session = Session(Models(vad_runner, asr_runner, cache), responder, sink, settings)
    return session, sink, responder, cache


@pytest.mark.anyio
async def test_the_prefilled_greeting_of_a_real_call_plays_from_the_cache(
    vad_runner: Any, asr_runner: Any, tts_engine: PiperEngine
) -> None:
    session, sink, _, cache = await cached_call(vad_runner, asr_runner, tts_engine)
    config, voice = agent()
    [*_, greeting] = fixed_replies(config)
    assert greeting.text == GREETING
    clauses = len(await reply_plans([greeting], voice))
    assert clauses > 1
    before, hits = requests(tts_engine), cache.statistics().hits
    with sink.deadline(60, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await sink.wait_for(lambda: ("end", 1) in sink.log)
            session.end_input()
    assert requests(tts_engine) == before  # not one request reached the engine
    assert cache.statistics().hits == hits + clauses
    assert len(sink.audio[1]) > 16000 * 2 * 5  # seconds of it were played
    deltas = [e.delta for e in sink.events(AgentText) if isinstance(e, AgentText)]
    assert "".join(deltas) == GREETING


@pytest.mark.anyio
async def test_a_barge_in_during_a_cached_greeting_keeps_what_was_heard(
    vad_runner: Any, asr_runner: Any, tts_engine: PiperEngine
) -> None:
    session, sink, _, cache = await cached_call(vad_runner, asr_runner, tts_engine)
    before = requests(tts_engine)
    with sink.deadline(90, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await sink.wait_for(lambda: len(sink.audio.get(1, b"")) > 16000 * 2)
            await speak(session, "Sorry, can I book a table for two people tonight?")
            await sink.wait_for(lambda: bool(sink.events(Interrupted)))
            session.end_input()
    [interrupted] = sink.events(Interrupted)
    assert isinstance(interrupted, Interrupted)
    assert interrupted.generation == 1
    assert 0 < len(interrupted.heard_text) < len(GREETING)
    assert GREETING.startswith(interrupted.heard_text)
    cleared = sink.log.index(("clear", 1))
    assert ("audio", 1) not in sink.log[cleared:]
    assert cache.statistics().hits >= 1
    assert requests(tts_engine) == before  # the greeting, and any answer, from the cache


def test_the_fixed_replies_are_those_without_placeholders_the_greeting_last() -> None:
    config = parse_config(
        b"""
name: fixed
greeting: {text: "Hello, this is {restaurant}."}
turns: {idle_prompt: "Still there?"}
dialogue:
  variables: {restaurant: Chez Voxline}
  slots:
    - {name: people, type: number, prompt: "For how many people?"}
    - {name: day, type: date, prompt: "Which day at {restaurant}?"}
  intents:
    - {name: hours, patterns: [open], reply: {text: "We open at nine.", emotion: happy}}
    - {name: book, patterns: [book], reply: "<speak>Sure.</speak>"}
    - {name: bye, patterns: [bye]}
""",
        ".yaml",
    )
    said = [(say.text, say.emotion, say.ssml) for say in fixed_replies(config)]
    assert said == [
        ("We open at nine.", "happy", False),
        ("<speak>Sure.</speak>", None, True),
        ("For how many people?", None, False),
        ("Sorry, I didn't get that. Could you say it another way?", None, False),
        ("Sorry, I didn't catch that.", None, False),
        ("I'm sorry, I couldn't put you through just now. How else can I help?", None, False),
        ("Still there?", None, False),
    ]  # the greeting and the day's prompt are templates: cached on first use
    config, _ = agent()
    assert fixed_replies(config)[-1].text == GREETING
