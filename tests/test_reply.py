"""A reply's text on its way to the voice: inline emotion tags, SSML, what the caller sees."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anyio
import pytest

from agent.dialogue.decision import Say
from agent.reply import ReplyPart, Speaker, SpokenText
from pipeline.clock import FakeClock
from pipeline.playout import Playout
from voices.piper_engine import PiperEngine
from voices.router import VoiceRouter

pytestmark = pytest.mark.anyio


def speaker(engine: PiperEngine, shown: list[str], warnings: list[str]) -> Speaker:
    playout = Playout("s", 16000, FakeClock(), max_ahead=600)  # nothing drains it here

    async def text(delta: str) -> None:
        shown.append(delta)

    async def warning(message: str) -> None:
        warnings.append(message)

    return Speaker(1, engine, playout, on_text=text, on_warning=warning)


async def test_inline_tags_change_the_style_and_are_never_shown_or_spoken(
    tts_engine: PiperEngine,
) -> None:
    async def llm() -> AsyncGenerator[ReplyPart, None]:
        for delta in ["[hap", "py] Great", " news, your table is booked! [/]See you ", "at 8."]:
            yield Say(delta, final=False)
        yield Say("", final=True)

    shown: list[str] = []
    with anyio.fail_after(60):
        spoken = await speaker(tts_engine, shown, []).speak(llm())
    assert "[" not in "".join(shown)
    assert "".join(shown).startswith("Great news, your table is booked!")
    assert "[" not in spoken.text
    assert "eight" in spoken.text  # normalised for the voice
    assert spoken.samples > 16000  # it was spoken
    assert spoken.words[-1].text_end <= len(spoken.text)


async def test_what_has_played_is_the_text_up_to_the_word_under_way(
    tts_engine: PiperEngine,
) -> None:
    """The echo reference: words whose audio has begun, never text synthesised ahead."""

    async def reply() -> AsyncGenerator[ReplyPart, None]:
        yield Say("We open at nine. Tables by the window can be booked.")

    with anyio.fail_after(60):
        spoken = await speaker(tts_engine, [], []).speak(reply())
    words = spoken.words
    assert spoken.played(0) == ""
    assert spoken.played(words[0].sample_start + 1) == spoken.text[: words[0].text_end].strip()
    under_way = (words[1].sample_start + words[1].sample_end) // 2
    assert spoken.played(under_way) == spoken.text[: words[1].text_end].strip()
    assert "window" not in spoken.played(words[3].sample_end)
    assert spoken.played(spoken.samples) == spoken.text.strip()
    # a voice without word timings: all of the text may have been heard
    assert SpokenText(text="We open at nine.").played(0) == "We open at nine."


async def test_invalid_ssml_is_spoken_without_its_markup_and_warned_about(
    tts_engine: PiperEngine,
) -> None:
    async def reply() -> AsyncGenerator[ReplyPart, None]:
        yield Say("<speak>Hello <break time='300ms'>there</speak>", ssml=True)

    shown: list[str] = []
    warnings: list[str] = []
    with anyio.fail_after(60):
        spoken = await speaker(tts_engine, shown, warnings).speak(reply())
    assert "Hello" in spoken.text
    assert "<" not in spoken.text
    assert len(warnings) == 1
    assert "invalid SSML" in warnings[0]


async def test_valid_ssml_becomes_one_plan_with_its_pause(tts_engine: PiperEngine) -> None:
    async def reply() -> AsyncGenerator[ReplyPart, None]:
        yield Say('<speak>One. <break time="800ms"/> Two.</speak>', ssml=True)

    warnings: list[str] = []
    with anyio.fail_after(60):
        spoken = await speaker(tts_engine, [], warnings).speak(reply())
    assert warnings == []
    assert spoken.samples > 16000 * 0.8  # the break alone is 0.8 s


async def test_ssml_in_a_language_no_voice_speaks_is_said_by_the_agents_voice_with_a_warning(
    tts_engine: PiperEngine,
) -> None:
    async def reply() -> AsyncGenerator[ReplyPart, None]:
        yield Say('<speak>Hello. <lang xml:lang="fr-FR">Bonjour.</lang></speak>', ssml=True)

    router = VoiceRouter(tts_engine, {}, language="en-US")  # no French voice
    warnings: list[str] = []
    with anyio.fail_after(60):
        spoken = await speaker(router, [], warnings).speak(reply())  # type: ignore[arg-type]
    assert "Bonjour" in spoken.text
    assert warnings == ["no voice for xml:lang fr-FR: the agent's voice says it"]
