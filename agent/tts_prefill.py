"""The agent's fixed replies, synthesised at start-up so that calls play them from the TTS
cache (:class:`voices.cache.CachedEngine`).

Fixed replies: the greeting, intents' replies, slots' prompts, the fallback replies, flows'
``deny``, ``turns.idle_prompt`` and ``dialogue.transfer_failed``, each one only when it has no
``{placeholder}`` (a template's words are known only during the call; it is cached on first
use instead).

A cache hit needs the very plan a call asks for, so nothing here builds plans of its own:

- :func:`fixed_replies` turns each reply into a :class:`~agent.dialogue.decision.Say` with the
  function the call's responder uses (:meth:`Script.say` for the intent engine,
  :func:`~agent.responders.say_reply` for the LLM and the interpreter);
- :func:`reply_plans` runs each through a real :class:`~agent.reply.Speaker` (its clause
  splitting, inline tags, emotions, SSML and normalisation) with the agent's voice, speaking
  into an engine that only records the plans it is asked for.

Each reply is planned as a reply of its own. A fixed reply spoken after another one with an
``emotion`` in the same turn (an intent's reply, then a slot's prompt) takes on that emotion in
the call: another key, cached on its first use.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing

from agent.config import AgentConfig, Reply, ReplyConfig
from agent.config.base import reply_text
from agent.dialogue.decision import Say
from agent.dialogue.script import Script
from agent.dialogue.templates import placeholders
from agent.reply import ReplyPart, ReplyVoice, Speaker
from agent.responders import say_reply
from pipeline.clock import MonotonicClock
from pipeline.errors import VoxlineError
from pipeline.playout import Playout
from voices.engine import Prosody, SpeechChunk, SpeechPlan, TTSEngine, as_plan

__all__ = ["fixed_replies", "prefill", "reply_plans"]

log = logging.getLogger("voxline.models")


def fixed_replies(config: AgentConfig) -> list[Say]:
    """The replies of ``config`` known before any call, as its calls' responders say them;
    the greeting last."""
    dialogue = config.dialogue
    engine = dialogue.engine
    scripted = engine in ("intents", "mixed") or (engine == "llm" and config.profile.llm is None)
    greeting: ReplyConfig | None = None
    if config.greeting.text:
        greeting = ReplyConfig(
            text=config.greeting.text, ssml=config.greeting.ssml, emotion=config.greeting.emotion
        )
    replies: list[Say] = []
    script = Script(config) if scripted else None
    if script is not None:
        written: list[Reply | None] = [
            *(intent.reply for intent in dialogue.intents),
            *(slot.prompt for slot in dialogue.slots),
            dialogue.fallback.reply,
            dialogue.fallback.reprompt,
            dialogue.fallback.final_reply,
            *(flow.deny for flow in dialogue.flows),
            dialogue.transfer_failed,
        ]
        replies += (script.say(reply, {}) for reply in _fixed(written))
    elif engine == "llm":
        replies += (say_reply(reply) for reply in _fixed([dialogue.transfer_failed]))
    replies += (say_reply(reply) for reply in _fixed([config.turns.idle_prompt]))
    if greeting is not None and not placeholders(greeting.text):
        replies.append(script.say(greeting, {}) if script is not None else say_reply(greeting))
    return list(dict.fromkeys(replies))


def _fixed(replies: Iterable[Reply | None]) -> list[Reply]:
    return [r for r in replies if r is not None and not placeholders(reply_text(r))]


class _PlanRecorder:
    """A TTS engine that says nothing and keeps the plans it is asked to say."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.plans: list[SpeechPlan] = []

    async def synthesize(
        self, text: str | SpeechPlan, prosody: Prosody | None = None
    ) -> AsyncGenerator[SpeechChunk, None]:
        self.plans.append(as_plan(text, prosody))
        nothing: tuple[SpeechChunk, ...] = ()
        for chunk in nothing:
            yield chunk


async def reply_plans(replies: Iterable[Say], voice: ReplyVoice) -> list[SpeechPlan]:
    """The plans a call's :class:`~agent.reply.Speaker` asks its engine for when it says each
    of ``replies`` (as a reply of its own) in ``voice``, each plan once, in order."""
    recorder = _PlanRecorder(16000)
    playout = Playout("prefill", recorder.sample_rate, MonotonicClock())  # nothing reaches it
    for say in replies:
        await Speaker(0, recorder, playout, voice=voice).speak(_parts(say))
    return list(dict.fromkeys(recorder.plans))


async def _parts(say: Say) -> AsyncGenerator[ReplyPart, None]:
    yield say


async def prefill(engine: TTSEngine, config: AgentConfig, voice: ReplyVoice) -> int:
    """Say every fixed reply of ``config`` in ``voice`` through ``engine`` (the cache),
    greeting last (so it is the most recently used entry); returns how many plans were said.
    A plan the engine cannot say is logged and skipped: the call that needs it will fail
    as it would have without a cache."""
    plans = await reply_plans(fixed_replies(config), voice)
    for plan in plans:
        try:
            async with aclosing(engine.synthesize(plan)) as chunks:
                async for _ in chunks:
                    pass
        except VoxlineError as error:
            log.warning("a fixed reply was not cached: %s", type(error).__name__)
    return len(plans)
