"""Speech for the benchmarks' callers: espeak-ng sentences with their loud part marked."""

from __future__ import annotations

from agent.caller import Utterance
from agent.caller_audio import espeak


def utterance(text: str) -> Utterance:
    """``text`` spoken by espeak-ng at the native protocol's rate (16 kHz)."""
    return Utterance.of(text, espeak(text))
