"""How a ``/v1/realtime`` session's settings shape its replies: turn detection, output
modalities, ``max_output_tokens``, ``speed``, and what ``rate_limits.updated`` says.

- :func:`initial_config`: what ``session.created`` shows.
- :func:`turn_config`: ``turn_detection`` over the agent's turn-taking (``semantic_vad`` has no
  model behind it: its ``eagerness`` picks the end-of-turn silence). An idle session ends as
  every call does: after the agent's ``turns.idle_timeout_ms`` of silence (``server_vad``'s
  ``idle_timeout_ms``, when the client sets one), counted from the end of the client's playback
  (:mod:`agent.realtime_idle`), ``input_audio_buffer.timeout_triggered`` and the agent's idle
  prompt as a response, up to ``turns.idle_prompts`` times; then the agent hangs up (reason
  ``idle``). Without turn detection (push-to-talk) the client drives every turn: no idle
  prompt, no idle hang-up (``turns.max_call_ms`` still ends the call).
- :func:`reply_shape`: ``output_modalities`` and ``max_output_tokens`` (a response's own, else
  the session's) as the session's :class:`~agent.reply.ReplyShape`: ``["text"]`` replies are
  never synthesised; a token limit cuts the reply text (:func:`agent.reply_limit.count_tokens`),
  and an LLM engine is asked for no more than that many tokens in its requests.
- :func:`at_speed`: ``audio.output.speed`` as the voice's rate, as the agent file's ``speed``.
- :class:`SessionRateLimits`: the two limits Voxline has to show (below).

``rate_limits.updated`` follows every ``response.done``:

- ``tokens``: the response's own budget. ``limit`` is its ``max_output_tokens`` (``"inf"``:
  :data:`~transports.realtime_events.MAX_OUTPUT_TOKENS`), no more than the agent LLM's
  ``max_tokens``; ``remaining`` is what the response left of it (tokens counted as for the
  limit); ``reset_seconds`` is 0: the next response has it whole.
- ``requests``: the agent's ``limits.max_turns`` (the turns a call may take before the agent
  says goodbye) and what is left of it once every response so far is counted as a turn (so
  ``remaining`` never overstates it). It does not reset within a session: no ``reset_seconds``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from agent.config import AgentConfig
from agent.config.schema import LimitsConfig
from agent.reply import ReplyShape, ReplyVoice, Responder
from agent.reply_limit import count_tokens
from agent.responders import LLMResponder
from agent.session_control import SessionSettings
from agent.turns import TurnConfig
from transports.realtime_events import (
    EAGERNESS_SILENCE_MS,
    MAX_OUTPUT_TOKENS,
    Modality,
    RealtimeSessionConfig,
    ResponseParams,
    ServerVad,
    TurnDetection,
)

__all__ = ["SessionRateLimits", "at_speed", "initial_config", "reply_shape", "turn_config"]


def initial_config(settings: SessionSettings, voice: str = "default") -> RealtimeSessionConfig:
    """What ``session.created`` shows: the API's defaults, with the agent's end-of-turn
    silence, barge-in and voice."""
    turns = settings.turns
    detection = ServerVad(
        threshold=0.5,
        prefix_padding_ms=300,
        silence_duration_ms=turns.end_of_turn_silence_ms,
        create_response=True,
        interrupt_response=turns.barge_in,
    )
    return RealtimeSessionConfig(turn_detection=detection, voice=voice)


def turn_config(base: TurnConfig, detection: TurnDetection | None) -> tuple[TurnConfig, bool]:
    """``detection`` over the agent's turn-taking; and whether turns are answered. The idle
    timeout is the client's ``server_vad`` one, else the agent's; its prompts (then the
    hang-up) the agent's. Push-to-talk has none: the client drives every turn."""
    if detection is None:
        config = msgspec.structs.replace(base, end_of_turn=False, barge_in=False, idle_timeout_ms=0)
        return config, False
    idle: int | None = None  # the agent's
    if isinstance(detection, ServerVad):
        silence = detection.silence_duration_ms
        idle = detection.idle_timeout_ms or None  # 0 does not turn the idle end off
    else:
        silence = EAGERNESS_SILENCE_MS[detection.eagerness or "auto"]
    silence = base.end_of_turn_silence_ms if silence is None else silence
    interrupt = detection.interrupt_response
    config = msgspec.structs.replace(
        base,
        end_of_turn=True,
        end_of_turn_silence_ms=silence,
        early_end_of_turn_silence_ms=min(base.early_end_of_turn_silence_ms, silence),
        barge_in=True if interrupt is None else interrupt,
        idle_timeout_ms=base.idle_timeout_ms if idle is None else idle,
    )
    return config, detection.create_response is not False


def reply_shape(config: RealtimeSessionConfig, params: ResponseParams | None = None) -> ReplyShape:
    """How replies come out under the session ``config`` (and a response's own ``params``)."""
    modalities: tuple[Modality, ...] = config.output_modalities
    limit = config.max_output_tokens
    if params is not None:
        modalities = tuple(params.output_modalities or modalities)
        limit = limit if params.max_output_tokens is None else params.max_output_tokens
    mode: Literal["audio", "text"] = "audio" if "audio" in modalities else "text"
    return ReplyShape(mode, None if limit == "inf" else limit)


def at_speed(voice: ReplyVoice, speed: float) -> ReplyVoice:
    """``voice`` at ``speed`` times its rate (1.5: a third shorter)."""
    if speed == 1.0:
        return voice
    return msgspec.structs.replace(voice, prosody=voice.prosody.scaled(rate=speed))


class SessionRateLimits:
    """``rate_limits.updated``'s numbers for one session (the module's docstring says what they
    mean): ``max_turns`` of the agent, and its LLM's ``max_tokens`` (``None``: no LLM)."""

    def __init__(self, max_turns: int, llm_max_tokens: int | None = None) -> None:
        self.max_turns = max_turns
        self.llm_max_tokens = llm_max_tokens
        self.responses = 0

    @classmethod
    def of(cls, responder: Responder) -> SessionRateLimits:
        """The limits of the agent ``responder`` speaks for (an LLM engine's ``max_tokens``)."""
        agent = getattr(responder, "config", None)
        limits = agent.limits if isinstance(agent, AgentConfig) else LimitsConfig()
        if isinstance(responder, LLMResponder):
            return cls(limits.max_turns, responder.engine.config.max_tokens)
        return cls(limits.max_turns)

    def __call__(self, text: str, max_output_tokens: int | Literal["inf"]) -> list[dict[str, Any]]:
        self.responses += 1
        limit = MAX_OUTPUT_TOKENS if max_output_tokens == "inf" else max_output_tokens
        if self.llm_max_tokens is not None:
            limit = min(limit, self.llm_max_tokens)
        return [
            {
                "name": "requests",
                "limit": self.max_turns,
                "remaining": max(0, self.max_turns - self.responses),
            },
            {
                "name": "tokens",
                "limit": limit,
                "remaining": max(0, limit - count_tokens(text)),
                "reset_seconds": 0.0,
            },
        ]
