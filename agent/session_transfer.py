"""The transfer a call waits on, and its deadline on the session's clock.

A dialogue's transfer is carried out once the reply that announces it has played: the session
asks its transport (``TransferRequested``) and waits, without blocking anything, for the
transport's :meth:`~agent.session_control.CallControls.transfer_result`. At most one transfer
waits at a time. :meth:`TransferWait.run` is one task of the call: it sleeps on the session's
clock (a test's fake clock moves it) until the waiting transfer's deadline, then reports
:class:`~agent.session_control.TransferExpired` with its number, so an outcome that came first
makes a late expiry stale (the session drops it by number).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from pipeline.clock import WallClock

log = logging.getLogger("voxline.session")


@dataclass(frozen=True)
class PendingTransfer:
    """A transfer under way: its number in the call, where to, and when it has failed."""

    number: int
    target: str
    deadline: float


class TransferWait:
    """The call's waiting transfer (none, or one) and the task that expires it."""

    def __init__(
        self, clock: WallClock, timeout: float, expire: Callable[[int], Awaitable[None]]
    ) -> None:
        self.clock = clock
        self.timeout = timeout
        self.pending: PendingTransfer | None = None
        #: told the number of a transfer whose deadline passed
        self.expire = expire
        self._count = 0
        self._changed = anyio.Event()
        self._sleeping: anyio.CancelScope | None = None

    def start(self, target: str) -> PendingTransfer | None:
        """Wait for a transfer to ``target`` (``None``: one is waiting already)."""
        if self.pending is not None:
            return None
        self._count += 1
        self.pending = PendingTransfer(self._count, target, self.clock.now() + self.timeout)
        self._wake()
        return self.pending

    def settle(self, number: int | None = None) -> PendingTransfer | None:
        """The waiting transfer is over (``number``: only if it is that one); returns it
        (``None``: none was waiting, or another one)."""
        pending = self.pending
        if pending is None or (number is not None and number != pending.number):
            return None
        self.pending = None
        self._wake()
        return pending

    async def run(self) -> None:
        """Report a waiting transfer's expiry at its deadline, until cancelled."""
        while True:
            changed, pending = self._changed, self.pending
            if pending is None:
                await changed.wait()
                continue
            expired = False
            with anyio.CancelScope() as self._sleeping:
                await self.clock.sleep_until(pending.deadline)
                expired = True
            self._sleeping = None
            if expired:
                log.info("transfer %d had no outcome within %g s", pending.number, self.timeout)
                await self.expire(pending.number)
                await changed.wait()  # until the session settles it (or it was settled)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
        if self._sleeping is not None:
            self._sleeping.cancel()
