"""A whole call through the session with real models: greeting, a turn, an answer, barge-in.

The dialogue here is a scripted responder (the session's collaborator, faked for this unit);
the VAD, ASR and TTS are the real embedded models. End-to-end tests over real sockets with
the real dialogue engines live with the transports.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import anyio
import numpy as np
import pytest

from agent.config import parse_config
from agent.dialogue.decision import Say
from agent.models import reply_voice, session_settings
from agent.reply import ReplyPart, ReplyVoice
from agent.session import Models, Session, SessionEvent, SessionSettings
from agent.session_events import (
    AgentText,
    Interrupted,
    MarkReached,
    Notice,
    TurnLatency,
    UserTranscript,
    UserTurn,
)
from agent.turns import TurnConfig
from pipeline.asr.decoder import DecodeRequest, WhisperDecoder
from tests.audio import espeak, silence
from voices.catalog import load_catalog
from voices.emotion import expression
from voices.engine import Prosody, SpeechChunk, SpeechPlan, Style

pytestmark = pytest.mark.anyio

LONG_REPLY = (
    "We are open every day from nine in the morning until late at night. "
    "On weekends we also serve brunch, with pancakes, eggs and fresh juice. "
    "Tables by the window can be booked up to a month ahead."
)


@dataclass
class Script:
    """Answers every turn with ``answer``; records what the session said was heard."""

    answer: str = "We open at nine."
    ssml: bool = False
    turns: list[str] = field(default_factory=list)
    reports: list[tuple[int, str, bool]] = field(default_factory=list)

    async def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        self.turns.append(text)
        yield Say(self.answer, ssml=self.ssml)

    async def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        if kind == "greeting":
            yield Say("Hello.")

    async def transfer_failed(self, target: str, reason: str) -> AsyncGenerator[ReplyPart, None]:
        yield Say(f"I could not put you through to {target}.")

    def heard(self, generation: int, text: str, *, interrupted: bool) -> None:
        self.reports.append((generation, text, interrupted))


class Recorder:
    """A CallSink that keeps everything, in order."""

    output_rate = 16000

    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []
        self.audio: dict[int, bytearray] = {}
        self._changed = anyio.Event()

    async def send_audio(self, generation: int, pcm: bytes) -> None:
        self.audio.setdefault(generation, bytearray()).extend(pcm)
        self._note("audio", generation)

    async def end_audio(self, generation: int) -> None:
        self._note("end", generation)

    async def clear_audio(self, generation: int) -> None:
        self._note("clear", generation)

    async def send_event(self, event: SessionEvent) -> None:
        self._note("event", event)

    def _note(self, kind: str, value: object) -> None:
        if kind != "audio" or not self.log or self.log[-1] != (kind, value):
            self.log.append((kind, value))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, check: Callable[[], bool]) -> None:
        while not check():
            await self._changed.wait()

    @contextlib.contextmanager
    def deadline(self, seconds: float, session: Session) -> Iterator[None]:
        """``fail_after``, reporting the last things the session did if it stalls."""
        try:
            with anyio.fail_after(seconds):
                yield
        except TimeoutError:
            summary = [(k, v) for k, v in self.log if k != "audio"][-12:]
            turns = session.turns
            state = (turns.user, turns.bot, turns.next_deadline(), session.input.now())
            raise AssertionError(f"the call stalled in {state}; last: {summary}") from None

    def events(self, kind: type) -> list[object]:
        return [v for k, v in self.log if k == "event" and isinstance(v, kind)]


def words(decoder: WhisperDecoder, pcm: bytes) -> str:
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768)
    return decoder.decode(DecodeRequest(audio=audio, final=True)).text.lower()


def settings() -> SessionSettings:
    return SessionSettings(turns=TurnConfig(idle_timeout_ms=0))


async def speak(session: Session, text: str, trailing: float = 1.0) -> None:
    audio = np.concatenate([espeak(text), silence(trailing)]).tobytes()
    for start in range(0, len(audio), 640):  # 20 ms frames, as fast as they go
        await session.push_audio(audio[start : start + 640])


async def test_a_call_greets_hears_a_turn_and_answers_it(
    vad_runner: object, asr_runner: object, tts_engine: object, whisper_decoder: WhisperDecoder
) -> None:
    script, sink = Script(), Recorder()
    session = Session(Models(vad_runner, asr_runner, tts_engine), script, sink, settings())  # type: ignore[arg-type]
    with sink.deadline(60, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await sink.wait_for(lambda: ("end", 1) in sink.log)
            await speak(session, "What time do you open tomorrow?")
            await sink.wait_for(lambda: ("end", 2) in sink.log)
            session.end_input()
    assert "open" in script.turns[0].lower()
    assert "hello" in words(whisper_decoder, bytes(sink.audio[1]))
    assert {"nine", "9"} & set(re.findall(r"\w+", words(whisper_decoder, bytes(sink.audio[2]))))
    finals = [e for e in sink.events(UserTranscript) if isinstance(e, UserTranscript) and e.final]
    assert "open" in finals[0].text.lower()
    [turn] = sink.events(UserTurn)
    assert isinstance(turn, UserTurn)
    assert turn.rule in {"T4", "T5"}  # the end of turn names the rule of the table that ended it
    [latency] = sink.events(TurnLatency)
    assert isinstance(latency, TurnLatency)
    assert {"total", "end_of_turn->first_text", "first_audio->audio_out"} <= set(latency.stages)
    assert [text for _, text, _ in script.reports] == ["Hello.", "We open at nine."]
    assert [e.delta for e in sink.events(AgentText) if isinstance(e, AgentText)] == [
        "Hello.",
        "We open at nine.",
    ]


async def talk_over_the_answer(
    models: Models, script: Script, sink: Recorder, words: str, *, until: Callable[[], bool]
) -> None:
    """A call: the greeting, a question, a second or so of its answer, then ``words`` over it;
    the input ends once ``until`` holds."""
    session = Session(models, script, sink, settings())
    with sink.deadline(90, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await sink.wait_for(lambda: ("end", 1) in sink.log)
            await speak(session, "When are you open?")
            await sink.wait_for(lambda: len(sink.audio.get(2, b"")) > 16000 * 2)
            await speak(session, words)
            await sink.wait_for(until)
            session.end_input()


async def test_speaking_over_a_reply_interrupts_it_and_keeps_only_what_was_heard(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    script, sink = Script(answer=LONG_REPLY), Recorder()
    models = Models(vad_runner, asr_runner, tts_engine)  # type: ignore[arg-type]
    await talk_over_the_answer(
        models,
        script,
        sink,
        "Sorry, can I book a table for two people tonight?",
        until=lambda: bool(sink.events(Interrupted)),
    )
    [interrupted] = sink.events(Interrupted)
    assert isinstance(interrupted, Interrupted)
    assert interrupted.generation == 2
    assert 0 < len(interrupted.heard_text) < len(LONG_REPLY)
    assert LONG_REPLY.startswith(interrupted.heard_text)
    assert (2, interrupted.heard_text, True) in script.reports
    cleared = sink.log.index(("clear", 2))
    assert ("audio", 2) not in sink.log[cleared:]  # not a frame of it after the clear
    assert len(sink.audio[2]) < 16000 * 2 * 12  # far less than the whole answer


async def test_words_the_bot_has_not_played_yet_are_the_callers_own(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    """Echo can only be of what has played. A caller who cuts in with words the reply was about
    to say ("until late at night?" a second into "We are open every day from nine in the morning
    until late at night") is heard: the interruption is real and their turn is answered. Judged
    against the text synthesised ahead of playout, their words were the bot's own: no words, a
    false interruption, and the bot resumed over them."""
    script, sink = Script(answer=LONG_REPLY), Recorder()

    def decided() -> bool:
        notices = [e for e in sink.events(Notice) if isinstance(e, Notice)]
        return len(script.turns) == 2 or any(
            n.code == "ignored.false_interruption" for n in notices
        )

    models = Models(vad_runner, asr_runner, tts_engine)  # type: ignore[arg-type]
    await talk_over_the_answer(models, script, sink, "Until late at night?", until=decided)
    notices = [e.code for e in sink.events(Notice) if isinstance(e, Notice)]
    assert "ignored.false_interruption" not in notices
    assert "late at night" in script.turns[1].lower()
    [interrupted] = sink.events(Interrupted)
    assert isinstance(interrupted, Interrupted)
    assert interrupted.generation == 2
    assert "late at night" not in interrupted.heard_text


class Plans:
    """The real TTS engine, keeping every plan it is asked to speak."""

    def __init__(self, engine: object) -> None:
        self.engine = engine
        self.plans: list[SpeechPlan] = []

    @property
    def sample_rate(self) -> int:
        rate: int = self.engine.sample_rate  # type: ignore[attr-defined]
        return rate

    async def synthesize(
        self, text: str | SpeechPlan, prosody: Prosody | None = None
    ) -> AsyncGenerator[SpeechChunk, None]:
        assert isinstance(text, SpeechPlan)
        self.plans.append(text)
        async for chunk in self.engine.synthesize(text):  # type: ignore[attr-defined]
            yield chunk


async def test_the_session_voice_reaches_every_synthesis_request(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    """A voice set mid-call speaks the replies started after it: its name, prosody and style
    are in the plan the engine gets (and it sounds different: faster)."""
    script, sink, tts = Script(), Recorder(), Plans(tts_engine)
    session = Session(Models(vad_runner, asr_runner, tts), script, sink, settings())  # type: ignore[arg-type]
    voice = ReplyVoice("joe-quick", Prosody(rate=1.5), Style("happy"))
    with sink.deadline(60, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await sink.wait_for(lambda: ("end", 1) in sink.log)
            session.set_voice(voice)
            session.respond_now()  # the greeting again, in the new voice
            await sink.wait_for(lambda: ("end", 2) in sink.log)
            session.end_input()
    first, second = tts.plans
    assert {s.voice for s in first.segments} == {None}
    assert {s.voice for s in second.segments} == {"joe-quick"}
    assert {s.prosody.rate for s in second.segments} == {1.5}
    assert {s.style for s in second.segments} == {Style("happy")}
    assert len(sink.audio[2]) < 0.85 * len(sink.audio[1])


@dataclass
class Expressive(Script):
    """A greeting with an inline tag; an answer in SSML, then a reply with its own emotion."""

    async def respond(self, text: str, *, generation: int) -> AsyncGenerator[ReplyPart, None]:
        yield Say('<speak>One, <prosody rate="50%">two.</prosody></speak>', ssml=True)
        yield Say("Three.", emotion="sad")

    async def prompt(
        self, kind: Literal["greeting", "idle"], count: int = 0
    ) -> AsyncGenerator[ReplyPart, None]:
        yield Say("Hello. [happy] Nice to meet you.")


@pytest.mark.parametrize(
    ("voice", "style", "speed"),
    [
        ("{emotion: calm, speed: 1.3}", Style("calm"), 1.3),
        ("{}", Style("neutral"), 1.0),  # the defaults: joe's own style (neutral) and rate
    ],
)
async def test_the_agent_files_voice_speaks_every_reply_and_spans_still_override_it(
    vad_runner: object,
    asr_runner: object,
    tts_engine: object,
    voice: str,
    style: Style,
    speed: float,
) -> None:
    """The agent file's ``voice.emotion`` and ``voice.speed`` (through the settings the server
    builds) are in every segment the engine is asked to speak, greeting and answers alike; an
    inline tag, SSML prosody and a reply's own emotion change their spans as before."""
    config = parse_config(
        f"name: x\nvoice: {voice}\nturns: {{idle_timeout_ms: 0}}".encode(), ".yaml"
    )
    own = reply_voice(config.voice, load_catalog().get(config.voice.name))
    script, sink, tts = Expressive(), Recorder(), Plans(tts_engine)
    models = Models(vad_runner, asr_runner, tts)  # type: ignore[arg-type]
    session = Session(models, script, sink, session_settings(config, own))
    with sink.deadline(60, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await sink.wait_for(lambda: ("end", 1) in sink.log)
            session.respond_now("Count to three.")
            await sink.wait_for(lambda: ("end", 2) in sink.log)
            session.end_input()
    segments = [s for plan in tts.plans for s in plan.segments]
    assert [(s.text.strip(), s.style, s.prosody.rate) for s in segments] == [
        ("Hello.", style, speed),
        ("Nice to meet you.", Style("happy"), speed),
        ("One,", style, speed),
        ("two.", style, pytest.approx(speed * 0.5)),
        ("Three.", Style("sad"), speed),
    ]
    assert {s.voice for s in segments} == {"joe"}
    assert {s.prosody.speaker_id for s in segments} == {None}  # joe has one speaker
    if speed == 1.0:  # the defaults sound as the engine's own voice does
        assert expression(style) == expression(None)


async def test_a_commit_ends_the_turn_without_trailing_silence(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    """Push-to-talk (turns end only on a commit): speech, no silence after it, a commit, and
    no more audio: the turn is answered. A commit with nothing said is an empty turn."""
    script, sink = Script(), Recorder()
    turns = TurnConfig(end_of_turn=False, idle_timeout_ms=0)
    session = Session(
        Models(vad_runner, asr_runner, tts_engine),  # type: ignore[arg-type]
        script,
        sink,
        SessionSettings(turns=turns, greeting=False),
    )
    with sink.deadline(60, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await session.started.wait()
            await speak(session, "What time do you open tomorrow?", trailing=0.0)
            await session.commit_turn()
            await sink.wait_for(lambda: ("end", 1) in sink.log)
            await session.push_audio(silence(0.5).tobytes())
            await session.commit_turn()
            await sink.wait_for(lambda: bool(sink.events(Notice)))
            session.end_input()
    [turn] = sink.events(UserTurn)
    assert isinstance(turn, UserTurn)
    assert "open tomorrow" in turn.text.lower()
    assert script.turns == [turn.text]
    [empty] = sink.events(Notice)
    assert empty == Notice(code="ignored.no_words", message="")


async def test_ssml_marks_reach_the_client_in_order_as_their_audio_plays(
    vad_runner: object, asr_runner: object, tts_engine: object
) -> None:
    answer = (
        '<speak>We open at nine. <mark name="hours"/>On weekends we open at ten, '
        '<mark name="weekend"/>and we close at midnight.</speak>'
    )
    script, sink = Script(answer=answer, ssml=True), Recorder()
    session = Session(Models(vad_runner, asr_runner, tts_engine), script, sink, settings())  # type: ignore[arg-type]
    with sink.deadline(60, session):
        async with anyio.create_task_group() as tg:
            tg.start_soon(session.run)
            await sink.wait_for(lambda: ("end", 1) in sink.log)
            await speak(session, "When are you open?")
            await sink.wait_for(lambda: ("end", 2) in sink.log)
            session.end_input()
    marks = [e for e in sink.events(MarkReached) if isinstance(e, MarkReached)]
    assert [(m.generation, m.name) for m in marks] == [(2, "hours"), (2, "weekend")]
    assert 0 < marks[0].at_ms < marks[1].at_ms < 1000 * len(sink.audio[2]) / 2 / 16000
    sent = [(k, v) for k, v in sink.log if k != "event" or isinstance(v, MarkReached)]
    first_audio = sent.index(("audio", 2))
    assert first_audio < sent.index(("event", marks[0])) < sent.index(("end", 2))
