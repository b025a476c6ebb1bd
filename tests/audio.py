"""Audio that tests make for themselves: espeak-ng speech, read speech, noise, silence, WAVs.

The helpers are :mod:`agent.caller_audio`'s (the benchmarks' callers use them too), re-exported
where the tests import them.
"""

from __future__ import annotations

from agent.caller_audio import espeak, noise, read_speech, read_wav, resample, silence, write_wav

__all__ = ["espeak", "noise", "read_speech", "read_wav", "resample", "silence", "write_wav"]
