"""Helpers for the turn-taking tests: scripts in milliseconds, events, a quiet config."""

from __future__ import annotations

import msgspec

from agent.turns import (
    BotState,
    EchoEstimate,
    PlayoutProgress,
    PlayoutStarted,
    ReplyStarted,
    TurnAction,
    TurnConfig,
    TurnInput,
    TurnTaking,
    UserState,
)
from pipeline.asr.events import Transcript, TranscriptDropped, TranscriptProgress
from pipeline.vad.events import SpeechPaused, SpeechStarted, SpeechStopped

MS = 16  # samples per millisecond at 16 kHz
Step = tuple[int, TurnInput | None]


def ms(value: int) -> int:
    return value * MS


def started(at: int) -> SpeechStarted:
    return SpeechStarted(session_id="s", sample=ms(at), audio_start=ms(at - 200), probability=0.9)


def stopped(at: int, start: int = 0) -> SpeechStopped:
    return SpeechStopped(session_id="s", sample=ms(at), speech_start=ms(start))


def paused(at: int) -> SpeechPaused:
    """The VAD's first short silence (100 ms) of a pause that began at ``at``."""
    return SpeechPaused(session_id="s", sample=ms(at))


def partial(text: str, utterance: int, start: int, end: int) -> Transcript:
    return Transcript(
        session_id="s", utterance=utterance, is_final=False, text=text, start=ms(start), end=ms(end)
    )


def final(text: str, utterance: int, start: int, end: int) -> Transcript:
    return Transcript(
        session_id="s", utterance=utterance, is_final=True, text=text, start=ms(start), end=ms(end)
    )


def progress(utterance: int, start: int, end: int) -> TranscriptProgress:
    """A partial decode up to ``end`` with nothing new to say."""
    return TranscriptProgress(session_id="s", utterance=utterance, start=ms(start), end=ms(end))


def dropped(utterance: int, start: int, end: int) -> TranscriptDropped:
    return TranscriptDropped(
        session_id="s", utterance=utterance, reason="too_short", start=ms(start), end=ms(end)
    )


def bot_of(machine: TurnTaking) -> BotState:
    return machine.bot  # a call, so that mypy does not narrow the state across steps


def user_of(machine: TurnTaking) -> UserState:
    return machine.user


def run(machine: TurnTaking, script: list[Step]) -> list[TurnAction]:
    actions: list[TurnAction] = []
    for at, event in script:
        if event is None:
            actions += machine.advance(ms(at))
        else:
            actions += machine.feed(event, ms(at))
    return actions


def quiet(**changes: object) -> TurnConfig:
    """The defaults without the idle and call-length timers (most tests are not about them),
    and with the echo guard whenever the bot is audible (``echo_detection`` off: the barge-in
    goldens below were written for it; the detector's verdicts have their own tests)."""
    config = TurnConfig(idle_timeout_ms=0, max_call_ms=0, echo_detection=False)
    return msgspec.structs.replace(config, **changes)


def bot_speaking(generation: int = 7, at: int = 0, kind: str = "answer") -> list[Step]:
    return [(at, ReplyStarted(generation, kind)), (at, PlayoutStarted(generation))]  # type: ignore[arg-type]


def bot_echoing(generation: int = 7, text: str = "") -> list[Step]:
    """The bot audible from 0 and its echo likely from 500 ms; ``text`` played by 900 ms."""
    steps = [*bot_speaking(generation), (500, EchoEstimate(True, ms(500)))]
    if text:
        steps.append((900, PlayoutProgress(generation, 16000, text)))
    return steps
