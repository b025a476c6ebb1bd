"""A Realtime ``session`` applied to a session's configuration, sans-I/O
(:func:`transports.realtime_events.apply_update`): what it sets, and each thing it refuses
naming the param (the session is left as it was: a new configuration or an error)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from transports.realtime_events import (
    RealtimeSessionConfig,
    SessionSpec,
    ToolChoiceFunction,
    UpdateRejected,
    apply_update,
)

TOOL = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}


def applied(**session: Any) -> RealtimeSessionConfig:
    spec = msgspec.convert({"type": "realtime", **session}, SessionSpec)
    return apply_update(RealtimeSessionConfig(), spec, voice_locked=False)


def test_model_tools_choice_tokens_and_speed_are_set() -> None:
    config = applied(
        model="gpt-realtime",
        tools=[TOOL],
        tool_choice={"type": "function", "name": "lookup"},
        max_output_tokens=200,
        audio={"output": {"speed": 1.25}},
    )
    assert config.model == "gpt-realtime"
    assert [tool.name for tool in config.tools] == ["lookup"]
    assert config.tool_choice == ToolChoiceFunction("lookup")
    assert config.max_output_tokens == 200
    assert config.speed == 1.25
    assert applied(max_output_tokens=None).max_output_tokens == "inf"


def test_a_law_in_and_out_is_shown_as_pcma() -> None:
    config = applied(audio={"input": {"format": {"type": "audio/pcma"}}})
    assert config.input_audio.encoding == "alaw"
    assert config.to_wire()["audio"]["input"]["format"] == {"type": "audio/pcma"}


def test_a_text_only_session_does_not_speak() -> None:
    assert RealtimeSessionConfig().speaks
    assert not applied(output_modalities=["text"]).speaks


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"tools": [TOOL, TOOL]}, "session.tools[1].name"),
        (
            {"tools": [{**TOOL, "parameters": {"type": "array"}}]},
            "session.tools[0].parameters",
        ),
        ({"tool_choice": {"type": "function", "name": "nothing"}}, "session.tool_choice"),
        ({"max_output_tokens": 4097}, "session.max_output_tokens"),
        ({"max_output_tokens": 0}, "session.max_output_tokens"),
        (
            {"audio": {"input": {"transcription": {"language": "xx-nowhere"}}}},
            "session.audio.input.transcription.language",
        ),
        (
            {"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 1.5}}}},
            "session.audio.input.turn_detection.threshold",
        ),
        (
            {"audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": -1}}}},
            "session.audio.input.turn_detection.idle_timeout_ms",
        ),
        ({"audio": {"output": {"speed": 2.0}}}, "session.audio.output.speed"),
        (
            {"audio": {"output": {"format": {"type": "audio/pcm", "rate": 11}}}},
            "session.audio.output.format",
        ),
    ],
)
def test_what_cannot_be_applied_is_refused_naming_the_param(
    session: dict[str, Any], param: str
) -> None:
    with pytest.raises(UpdateRejected) as refused:
        applied(**session)
    assert refused.value.param == param
    assert refused.value.code == "invalid_value"
