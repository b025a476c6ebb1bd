"""Registration with a registrar or trunk (RFC 3261 §10), the client side, sans-I/O.

One :class:`Registration` keeps one binding (our Contact for an address of record) alive at
one registrar. The adapter resolves the registrar's host, passes its address in, feeds the
responses it :meth:`~Registration.owns` to :meth:`~Registration.receive`, calls
:meth:`~Registration.on_timer` when :meth:`~Registration.next_timer` is due and sends what
:meth:`~Registration.data_to_send` returns. Time is ``now`` in seconds, passed in; the REGISTER
requests go through their own :class:`~transports.sip.transaction.TransactionLayer` (timers
E and F: retransmitted over UDP, given up after 64*T1).

=====  ===================  =================================================  ===============
rule   state                event                                              next state
=====  ===================  =================================================  ===============
R1     Idle                 :meth:`~Registration.start`: REGISTER, Expires N   Registering
R2     Registering          401/407 with a challenge we can answer, not        Registering
                            answered yet in this attempt (or ``stale=true``):
                            REGISTER again with a new CSeq and digest
R3     Registering          2xx: :class:`Registered` with the granted          Registered
                            expiry (our Contact's ``expires``, else Expires,
                            else N); refresh due at half of it
R4     Registering          423 with Min-Expires above N: REGISTER again       Registering
                            asking for Min-Expires
R5     Registering          any other final, a second challenge, no            Waiting
                            credentials, timeout (F, as 408):
                            :class:`RegistrationFailed`; retry after a
                            backoff (``retry_s``, doubling to ``max_retry_s``)
R6     Registered           the refresh is due: REGISTER (R2-R5 again)         Registering
R7     Waiting              the backoff is over: REGISTER                      Registering
R8     any but Idle/Done    :meth:`~Registration.stop`: REGISTER with          Unregistering
                            Expires 0 (only when a binding may exist; else
                            straight to Done)
R9     Unregistering        401/407: answered once as R2; any other final,     Done
                            or timeout: :class:`Unregistered`
=====  ===================  =================================================  ===============

Responses are matched by Call-ID (one for the life of the registration, RFC 3261 §10.2) and
a CSeq method of REGISTER; the CSeq goes up by one for each request. A response to an
attempt that was superseded (its transaction is gone) is ignored. Nothing here raises on peer
input.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from typing import TypeGuard

import msgspec

from transports.sip.digest import Credentials, authorization, pick_challenge
from transports.sip.message import MAGIC_COOKIE, SipRequest, SipResponse
from transports.sip.transaction import (
    Address,
    Outgoing,
    ResponseReceived,
    Timers,
    TransactionLayer,
    TransactionTimeout,
)

__all__ = [
    "RegState",
    "Registered",
    "Registration",
    "RegistrationEvent",
    "RegistrationFailed",
    "Unregistered",
]


class RegState(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    WAITING = "waiting"  # failed: a retry is due at retry_at
    UNREGISTERING = "unregistering"
    DONE = "done"


class Registered(msgspec.Struct, frozen=True):
    """The registrar took the binding for ``expires`` seconds (refreshed at half of it)."""

    expires: int


class RegistrationFailed(msgspec.Struct, frozen=True):
    """An attempt failed with ``status`` (408: no answer); retried in ``retry_in`` seconds."""

    status: int
    reason: str
    retry_in: float


class Unregistered(msgspec.Struct, frozen=True):
    """The un-REGISTER ended with ``status`` (408: no answer): the registration is over."""

    status: int


RegistrationEvent = Registered | RegistrationFailed | Unregistered


class Registration:
    """Keeps ``contact`` bound to ``aor`` at the registrar ``registrar_uri`` (reached at
    ``peer``); ``via`` is our ``host:port`` as the Via's sent-by."""

    def __init__(
        self,
        registrar_uri: str,
        aor: str,
        contact: str,
        peer: Address,
        *,
        via: str,
        transport: str = "UDP",
        expires: int = 3600,
        credentials: Credentials | None = None,
        timers: Timers | None = None,
        retry_s: float = 5.0,
        max_retry_s: float = 300.0,
        new_id: Callable[[], str] = lambda: secrets.token_hex(8),
    ) -> None:
        self.registrar_uri, self.aor, self.contact, self.peer = registrar_uri, aor, contact, peer
        self.via, self.transport = via, transport
        self.reliable = transport.upper() != "UDP"
        self.expires = expires
        self.credentials = credentials
        self.transactions = TransactionLayer(timers)
        self.retry_s, self.max_retry_s = retry_s, max_retry_s
        self._id = new_id
        self.call_id = new_id()
        self.tag = new_id()
        self.cseq = 0
        self.state = RegState.IDLE
        self.granted: int | None = None  # the expiry of the binding we hold
        self.refresh_at: float | None = None
        self.retry_at: float | None = None
        self._backoff = retry_s
        self._asked = expires  # the Expires of the attempt in flight
        self._current: SipRequest | None = None  # the attempt in flight
        self._auth_tries = 0

    # -- from the adapter ------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Register (R1); nothing if already started."""
        if self.state is RegState.IDLE:
            self._attempt(self.expires, now)

    def stop(self, now: float) -> None:
        """Remove the binding (R8): :attr:`done` once the registrar answered or gave up."""
        if self.state in (RegState.IDLE, RegState.DONE, RegState.UNREGISTERING):
            if self.state is RegState.IDLE:
                self.state = RegState.DONE
            return
        if self.state is RegState.WAITING and self.granted is None:
            self.state = RegState.DONE  # no binding was ever made
            return
        self.refresh_at = self.retry_at = None
        self.state = RegState.UNREGISTERING
        self._send(0, now, reset_auth=True)

    @property
    def done(self) -> bool:
        return self.state is RegState.DONE

    def owns(self, message: object) -> TypeGuard[SipResponse]:
        """Whether ``message`` is a response to one of our REGISTERs."""
        return (
            isinstance(message, SipResponse)
            and message.call_id == self.call_id
            and message.cseq.method == "REGISTER"
        )

    def receive(
        self, response: SipResponse, source: Address, now: float
    ) -> list[RegistrationEvent]:
        events: list[RegistrationEvent] = []
        for event in self.transactions.receive(response, source, self.reliable, now):
            if isinstance(event, ResponseReceived) and event.request is not None:
                events += self._on_response(event.response, event.request, now)
        return events

    def next_timer(self) -> float | None:
        times = [t for t in (self.refresh_at, self.retry_at) if t is not None]
        if (when := self.transactions.next_timer()) is not None:
            times.append(when)
        return min(times, default=None)

    def on_timer(self, now: float) -> list[RegistrationEvent]:
        events: list[RegistrationEvent] = []
        for event in self.transactions.on_timer(now):
            if isinstance(event, TransactionTimeout) and event.request is self._current:
                events += self._final(408, "Request Timeout", now)
        if self.refresh_at is not None and now >= self.refresh_at:  # R6
            self.refresh_at = None
            self._attempt(self.expires, now)
        if self.retry_at is not None and now >= self.retry_at:  # R7
            self.retry_at = None
            self._attempt(self.expires, now)
        return events

    def data_to_send(self) -> list[Outgoing]:
        return self.transactions.data_to_send()

    # -- the machine -----------------------------------------------------------------------

    def _attempt(self, expires: int, now: float) -> None:
        self.state = RegState.REGISTERING
        self._send(expires, now, reset_auth=True)

    def _send(
        self, expires: int, now: float, *, reset_auth: bool, auth: tuple[str, str] | None = None
    ) -> None:
        if reset_auth:
            self._auth_tries = 0
        self.cseq += 1
        self._asked = expires
        branch = f"{MAGIC_COOKIE}{self._id()}"
        headers = [
            ("Via", f"SIP/2.0/{self.transport} {self.via};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{self.aor}>;tag={self.tag}"),
            ("To", f"<{self.aor}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", f"{self.contact};expires={expires}"),
            ("Expires", str(expires)),
            *([auth] if auth else []),
        ]
        request = SipRequest(headers=tuple(headers), method="REGISTER", uri=self.registrar_uri)
        self._current = request
        self.transactions.send_request(request, self.peer, self.reliable, now)

    def _on_response(
        self, response: SipResponse, request: SipRequest, now: float
    ) -> list[RegistrationEvent]:
        status = response.status
        if request is not self._current or status < 200:
            return []  # a provisional, or an attempt superseded
        if status in (401, 407) and self._authorize(response, request, now):  # R2, R9
            return []
        if status == 423 and self.state is RegState.REGISTERING:  # R4
            minimum = response.get("Min-Expires").strip()
            if minimum.isdigit() and int(minimum) > self._asked:
                self._send(int(minimum), now, reset_auth=True)
                return []
        if 200 <= status < 300 and self.state is RegState.REGISTERING:  # R3
            self._current = None
            self.granted = self._granted(response)
            self.state = RegState.REGISTERED
            self._backoff = self.retry_s
            self.refresh_at = now + max(self.granted / 2, 1.0)  # a 0 would spin
            return [Registered(self.granted)]
        return self._final(status, response.reason, now)

    def _final(self, status: int, reason: str, now: float) -> list[RegistrationEvent]:
        self._current = None
        if self.state is RegState.UNREGISTERING:  # R9
            self.state = RegState.DONE
            self.granted = None
            return [Unregistered(status)]
        if self.state is not RegState.REGISTERING:
            return []
        retry_in = self._backoff  # R5
        self._backoff = min(2 * self._backoff, self.max_retry_s)
        self.state = RegState.WAITING
        self.retry_at = now + retry_in
        return [RegistrationFailed(status, reason, retry_in)]

    def _authorize(self, response: SipResponse, request: SipRequest, now: float) -> bool:
        proxy = response.status == 407
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        challenge = pick_challenge(response.get_all(name), proxy=proxy)
        if self.credentials is None or challenge is None:
            return False
        if self._auth_tries and not challenge.stale:
            return False  # our answer was refused: wrong credentials
        if self._auth_tries >= 2:
            return False
        self._auth_tries += 1
        answer = authorization(
            challenge, self.credentials, "REGISTER", self.registrar_uri, cnonce=self._id()
        )
        self._send(self._asked, now, reset_auth=False, auth=(challenge.header, answer))
        return True

    def _granted(self, response: SipResponse) -> int:
        """Our Contact's ``expires`` in the 2xx, else its Expires, else what we asked."""
        ours = self.contact.strip().strip("<>").split(";")[0]
        for value in response.get_all("Contact"):
            for binding in value.split(","):
                uri, _, params = binding.strip().partition(">")
                if uri.strip().strip("<") != ours:
                    continue
                for param in params.split(";"):
                    name, _, number = param.strip().partition("=")
                    if name.lower() == "expires" and number.strip().isdigit():
                        return int(number)
        expires = response.get("Expires").strip()
        return int(expires) if expires.isdigit() else self._asked
