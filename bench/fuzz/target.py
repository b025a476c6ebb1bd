"""What a fuzz target is, and the helpers the targets share.

A target's ``run`` takes one input (bytes) and gives the *kinds* of rejection the parser
answered with (``[]``: it accepted everything). A rejection is the parser's documented clear
error (``ClientError`` and its subclasses, ``PeerError``/``SdpError``/``ParseError``/
``RtpError`` values, ...), named by its type and a stable part of its reason. Anything else
the parser raises leaves ``run`` as it is: that is a crash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Target", "check_json_frames", "kind", "split_frames", "wire_text"]

#: quoted values, markup, numbers: what varies between two rejections of the same kind
_VARIABLE = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`|<[^>]*>|(?<![\w-])\d+(\.\d+)?|\$[\w.\[\]]*")


@dataclass(frozen=True)
class Target:
    """One parser under fuzzing: its contract in words, the harness, the seeds."""

    name: str
    contract: str
    run: Callable[[bytes], list[str]]
    seeds: Callable[[], Sequence[bytes]]
    #: the largest input libFuzzer makes (the parser's own limit, or a little over it)
    max_len: int = 4096


def kind(error: str | type, reason: str = "") -> str:
    """``"InvalidSSML malformed XML: …"``: a rejection's type and its reason, the variable
    parts (numbers, quoted values, key paths) replaced, cut at 60 characters."""
    name = error if isinstance(error, str) else error.__name__
    stable = _VARIABLE.sub("…", reason.split("\n", 1)[0]).strip()
    return f"{name} {stable}"[:60].rstrip()


def split_frames(data: bytes) -> list[bytes]:
    """One input as WebSocket frames: split at newlines."""
    return data.split(b"\n")


def wire_text(frame: bytes) -> str | None:
    """The frame as a text frame, or ``None`` when it is not valid UTF-8 (a WebSocket
    library refuses such a text frame before the protocol sees it, so it goes in as binary)."""
    if frame[:1] == b"\x00":
        return None
    try:
        return frame.decode("utf-8")
    except UnicodeDecodeError:
        return None


def check_json_frames(frames: Iterable[str | bytes]) -> None:
    """Every text frame a protocol queued is one JSON object (binary frames are audio)."""
    for frame in frames:
        if isinstance(frame, str):
            message = json.loads(frame)
            if not isinstance(message, dict):
                raise AssertionError(f"a text frame that is not a JSON object: {frame[:80]!r}")
