"""REST jobs' own slots (``server.max_rest_jobs``): a transcription, a translation or a
synthesis holds one from before its body is read until its response is sent.

They are counted apart from the calls' session slots (:mod:`agent.admission`): uploads never
lock out a call, and calls never lock out uploads. A request beyond the limit is refused at
once with 503 and ``Retry-After`` in OpenAI's error shape (``code`` ``too_many_jobs``), so a
burst of uploads queues at its clients, not in the server's memory.
"""

from __future__ import annotations

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["HeldResponse", "JobSlots"]


class JobSlots:
    """At most ``limit`` REST jobs at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        #: jobs holding a slot now
        self.busy = 0

    def take(self) -> bool:
        """A slot for a new job (``False``: all ``limit`` are held); give it back with
        :meth:`give_back`."""
        if self.busy >= self.limit:
            return False
        self.busy += 1
        return True

    def give_back(self) -> None:
        self.busy -= 1


class HeldResponse(Response):
    """``response``, sent whole (a stream: to its end, or until the client leaves), then
    the job's slot given back, whatever happened meanwhile."""

    def __init__(self, response: Response, slots: JobSlots) -> None:
        self._response = response
        self._slots = slots
        self.status_code = response.status_code
        self.background: BackgroundTask | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._response(scope, receive, send)
        finally:
            self._slots.give_back()
