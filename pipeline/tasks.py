"""A call's tasks end without keeping their frames alive: :func:`shed_frames`.

When a call ends, its task group is cancelled and every task ends with a ``CancelledError``
whose traceback holds each frame the cancellation went through; those frames hold their
locals: the session, its stages, their channels and buffers. anyio keeps that exception in a
reference cycle with a frame of its own (``TaskGroup._spawn.<locals>.task_done`` keeps it in a
local, ``exc``, and its traceback holds that frame), so the frames, and the whole call with
them, would live until the garbage collector's next full collection instead of going when the
call does (BENCHMARKS.md, "Soak": tens of MB of ended calls' buffers at a time). A task that
runs in :func:`shed_frames` lets its cancellation out with no traceback of what it went
through: anyio's cycle is still there, but it holds only anyio's own small objects.

Only cancellation is shed: a failure keeps its traceback, which is what its log shows.
"""

from __future__ import annotations

from collections.abc import Awaitable

import anyio

__all__ = ["shed_frames"]


async def shed_frames(work: Awaitable[object]) -> None:
    """Await ``work``; a cancellation leaves without the traceback of the frames it ended
    (``work`` is created by the caller, so this frame holds nothing of the call)."""
    try:
        await work
    except anyio.get_cancelled_exc_class() as cancelled:
        # what the cancellation interrupted (an exception being handled) would keep frames too
        cancelled.__context__ = None
        raise cancelled.with_traceback(None)  # noqa: B904 - the same exception, re-raised
