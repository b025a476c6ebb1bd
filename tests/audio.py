"""Audio that tests make for themselves: espeak-ng speech, read speech, noise, silence, WAVs.

The helpers are :mod:`agent.caller_audio`'s (the benchmarks' callers use them too), re-exported
where the tests import them.
"""

from __future__ import annotations

from agent.caller_audio import espeak, noise, read_speech, read_wav, resample, silence, write_wav

__all__ = [
    "espeak",
    "is_greeting",
    "noise",
    "read_speech",
    "read_wav",
    "resample",
    "silence",
    "write_wav",
]


def is_greeting(heard: str) -> bool:
    """Whether whisper heard the embedded agent's greeting ("Hi, this is Voxline. ...").

    The name alone is not enough: on some CPUs the embedded voice's "Voxline" is heard as
    "boxline" (CI, 2026-12-07), so "this is" counts as well.
    """
    return "this is" in heard or "voxline" in heard
