"""The session's turn machine and echo detector, made for a call's settings, or anew when a
client changes them mid-call."""

from __future__ import annotations

from collections.abc import Mapping

from agent.reply_run import ReplyRun
from agent.turns import (
    EchoEstimate,
    PlayoutStarted,
    ReplyStarted,
    TurnAction,
    TurnConfig,
    TurnTaking,
)
from pipeline.echo import EchoConfig, EchoDetector
from pipeline.events import PIPELINE_RATE
from pipeline.playout import PlayoutBuffer


def echo_detector(config: TurnConfig) -> EchoDetector | None:
    """The call's echo detector (none when the guard does not depend on it)."""
    if not config.echo_detection:
        return None
    return EchoDetector(
        EchoConfig(max_delay_ms=config.echo_max_delay_ms), sample_rate=PIPELINE_RATE
    )


def new_turns(
    config: TurnConfig,
    now: int,
    echo: EchoDetector | None,
    live: Mapping[int, ReplyRun],
    playout: PlayoutBuffer,
) -> tuple[TurnTaking, EchoDetector | None, list[TurnAction]]:
    """A new turn machine (its timers count from the call's start, so transcripts of audio
    already sent still count), told about the echo and the reply in progress (if any); the
    echo detector kept, or a new one where its settings changed."""
    turns = TurnTaking(config)
    turns.idle_from(now)  # else a change past two idle timeouts in hangs up at once
    actions = turns.advance(now)
    if echo is None or echo.config.max_delay_ms != config.echo_max_delay_ms:
        echo = echo_detector(config)
    elif not config.echo_detection:
        echo = None
    elif echo.likely:
        actions += turns.feed(EchoEstimate(True, echo.verdict.sample), now)
    playing = [generation for generation in live if playout.active(generation)]
    if playing:
        generation = max(playing)
        actions += turns.feed(ReplyStarted(generation), now)
        if live[generation].frames:
            actions += turns.feed(PlayoutStarted(generation), now)
    return turns, echo, actions
