"""The shared ASR executor as one session sees it: its decodes carry the session's language,
initial prompt and hotwords in place of the agent's.

A Realtime client sets them with ``audio.input.transcription`` (``language``, ``prompt``;
a transcription session also ``keywords``): :class:`SessionDecoding` stands in front of the
executor every session shares (one model, one queue) and rewrites the options of the requests
the session's ASR stage makes with the agent's own options; other requests (a translation's
second decode) pass unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import msgspec

from pipeline.asr.decoder import Decoded, DecodeOptions, DecodeRequest
from pipeline.asr.stage import AsrRunner

__all__ = ["SessionDecoding"]


class SessionDecoding:
    """An :class:`~pipeline.asr.stage.AsrRunner` for one session (see the module doc)."""

    def __init__(self, runner: AsrRunner, base: DecodeOptions) -> None:
        self.runner = runner
        self.base = base
        self.options = base

    def set(self, language: str | None, prompt: str | None, keywords: Sequence[str] = ()) -> None:
        """Decode from now on in ``language`` with ``prompt`` and ``keywords`` (``None`` or
        empty: the agent's own)."""
        base = self.base
        self.options = msgspec.structs.replace(
            base,
            language=language if language is not None else base.language,
            initial_prompt=prompt or base.initial_prompt,
            hotwords=", ".join(keywords) or base.hotwords,
        )

    async def run(self, request: DecodeRequest, /, *, priority: int = 0) -> Decoded:
        if request.options is self.base:  # the stage's own options (a translation's are not)
            request = dataclasses.replace(request, options=self.options)
        return await self.runner.run(request, priority=priority)
