"""The agent file's ``limits.max_utterance_s`` in a whole call with real models: speech longer
than it is cut into turns, and the caller is told (``Notice("utterance_cut")``).

The dialogue is the scripted responder of :mod:`tests.test_session`; the VAD, ASR and TTS are
the real embedded models. ``max_reply_chars`` and ``max_turns`` are tested with the LLM engine
(``tests/dialogue/test_llm_limits.py``) and the flows (``tests/dialogue/test_flows.py``).
"""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from agent.config import parse_config
from agent.models import session_settings
from agent.reply import ReplyVoice
from agent.session import Models, Session
from agent.session_events import Notice, UserTranscript, UserTurn
from pipeline.events import PIPELINE_RATE
from tests.test_session import Recorder, Script, speak

pytestmark = pytest.mark.anyio

LONG = "I would like to book a table for four people tomorrow evening at eight near the window"


async def test_speech_longer_than_max_utterance_is_cut_into_turns(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    config = parse_config(
        b"name: x\nturns: {idle_timeout_ms: 0}\nlimits: {max_utterance_s: 2}", ".yaml"
    )
    settings = dataclasses.replace(session_settings(config, ReplyVoice()), answer_turns=False)
    assert settings.utterance.max_utterance == 2 * PIPELINE_RATE  # the file's value is used
    script, sink = Script(), Recorder()
    models = Models(vad_runner, asr_runner, tts_engine)  # type: ignore[arg-type]
    session = Session(models, script, sink, settings)
    with sink.deadline(90, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await sink.wait_for(lambda: ("end", 1) in sink.log)
            await speak(session, LONG)
            await sink.wait_for(lambda: "window" in str(sink.events(UserTurn)[-1:]))
            session.end_input()
    turns = [e for e in sink.events(UserTurn) if isinstance(e, UserTurn)]
    first = turns[0]
    assert first.end - first.start <= 2 * PIPELINE_RATE  # the turn ended at the cut
    assert "table" in first.text.lower()
    cuts = [e for e in sink.events(Notice) if isinstance(e, Notice) and e.code == "utterance_cut"]
    assert len(cuts) == len(turns) - 1 >= 1  # each cut ended a turn
    # the caller is told right after the final that was cut, before the turn it ends
    log = [v for k, v in sink.log if k == "event"]
    final = next(e for e in log if isinstance(e, UserTranscript) and e.final)
    assert log.index(final) < log.index(cuts[0]) < log.index(first)
