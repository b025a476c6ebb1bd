"""Webhooks: each call's start and end POSTed, signed, to the endpoints ``server.webhooks`` names.

::

    run_call (every transport)                     the server's task group
    ├─ Webhooks.started(session)                   └─ Webhooks.run: one sender per endpoint,
    │    call.started ─► each endpoint's queue ──►      its events one at a time, in order:
    │    record_call: the call's CallLog is fed         sign, POST, retry with backoff
    │    as the records feed theirs
    └─ at the end: call.ended (its CallRecord) ───►     (agent/webhooks_protocol.py)

:meth:`Webhooks.started` is a :data:`agent.call_loop.WATCHERS` entry while :meth:`Webhooks.run`
runs, so every transport's calls are seen the same way; ``call.ended`` carries the call's
record, built as the call records build it (:func:`agent.records.recorder.record_call`: a
:class:`~agent.records.call_log.CallLog` fed by a :class:`~agent.call_watch.WatchingSink`).

Queue policy, per endpoint: DROP NEWEST, counted (``voxline_webhooks_dropped_total{reason=
"queue_full"}``) and logged: an event is offered without waiting, so a slow or unreachable
endpoint never holds up a call. Each endpoint's sender delivers its events in the order they
came, so a call's ``call.started`` reaches it before its ``call.ended``; an endpoint that is
slow holds up only its own later events, never a call or another endpoint. Each try is bounded
by ``timeout_s``; an event that fails ``max_attempts`` times, or is refused with a 4xx that is
not retried, is dropped and counted (``failed``, ``rejected``). At shutdown what is queued has
:data:`FLUSH_S` to go out; what is left then is counted (``unavailable``).

Secrets come from the environment variables the config names: one missing is a
:class:`~pipeline.errors.ConfigError` naming its key. URLs are not logged (they may hold a
token): an endpoint is ``webhook N (host)``; neither are the events (they hold transcripts).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import anyio
import anyio.abc
import httpx
import msgspec

from agent import call_loop
from agent.call_watch import transport_of, transport_sink
from agent.config.schema import WebhookConfig
from agent.metrics import METRICS
from agent.records.recorder import record_call
from agent.session import Session
from agent.webhooks_protocol import (
    CallEndedEvent,
    CallStarted,
    CallStartedEvent,
    Delivered,
    Event,
    GiveUp,
    Retry,
    event_type,
    headers,
    next_step,
    retry_after,
)
from pipeline.errors import ConfigError

__all__ = ["FLUSH_S", "Endpoint", "Parties", "Webhooks", "load_secrets"]

log = logging.getLogger("voxline.webhooks")

#: seconds the events still queued at shutdown have to go out
FLUSH_S = 10.0


@runtime_checkable
class Parties(Protocol):
    """A transport's sink that knows who called whom (``call.started``'s ``caller`` and
    ``called``): a sink with these two attributes gives them."""

    caller: str | None
    called: str | None


def load_secrets(configs: Sequence[WebhookConfig], environ: Mapping[str, str]) -> list[bytes]:
    """Each endpoint's signing secret, from the environment variable its ``secret_env`` names;
    :class:`ConfigError` naming the key when one is unset or empty (or a URL that httpx cannot
    use)."""
    secrets = []
    for index, config in enumerate(configs):
        try:
            httpx.URL(config.url)
        except httpx.InvalidURL as error:
            raise ConfigError(f"$.server.webhooks[{index}].url", str(error)) from None
        secret = environ.get(config.secret_env, "")
        if not secret:
            raise ConfigError(
                f"$.server.webhooks[{index}].secret_env",
                f"the environment variable {config.secret_env} (the signing secret) is not set",
            )
        secrets.append(secret.encode())
    return secrets


class Endpoint:
    """One endpoint: its bounded queue and its sender (see the module doc)."""

    def __init__(
        self,
        index: int,
        config: WebhookConfig,
        secret: bytes,
        client: Callable[[], httpx.AsyncClient],
        *,
        clock: Callable[[], float],
        jitter: Callable[[], float],
    ) -> None:
        self.config = config
        self.name = f"webhook {index} ({httpx.URL(config.url).host})"
        self._secret = secret
        self._client = client
        self._clock = clock
        self._jitter = jitter
        self._send, self._receive = anyio.create_memory_object_stream[Event](config.queue)
        self._current: Event | None = None  # being delivered
        self.delivered = 0
        self.dropped = 0

    def offer(self, event: Event) -> bool:
        """Queue ``event`` without waiting; ``False``: dropped (counted, logged)."""
        if event_type(event) not in self.config.events:
            return False
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self._drop("queue_full", event)
            return False
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._drop("unavailable", event)
            return False
        return True

    async def run(self) -> None:
        """Deliver what comes, in order, until the queue is closed and empty."""
        async with self._receive.clone() as receive:
            async for event in receive:
                await self._deliver(event)

    def close(self) -> None:
        """No more events (what is queued still goes out)."""
        self._send.close()

    async def flush(self) -> None:
        """Deliver what is left: the event a cancelled sender was on, then the queue."""
        if self._current is not None:
            await self._deliver(self._current)
        while True:
            try:
                event = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            await self._deliver(event)

    def abandon(self) -> None:
        """Count what is still undelivered as dropped (``unavailable``), and close."""
        if self._current is not None:
            self._drop("unavailable", self._current)
            self._current = None
        while True:
            try:
                self._drop("unavailable", self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        self._receive.close()

    async def _deliver(self, event: Event) -> None:
        self._current = event
        body = msgspec.json.encode(event)
        attempt = 0
        while True:
            attempt += 1
            signed = headers(self._secret, event.id, int(self._clock()), attempt, body)
            status, wait = await self._post(body, signed)
            step = next_step(
                status,
                attempt,
                max_attempts=self.config.max_attempts,
                backoff_s=self.config.backoff_s,
                jitter=self._jitter(),
                retry_after_s=retry_after(wait, self._clock()),
            )
            answer = f"HTTP {status}" if status is not None else "no answer"
            match step:
                case Delivered():
                    self.delivered += 1
                    log.info("%s: %s %s delivered", self.name, event_type(event), event.id)
                    break
                case Retry(delay_s=delay):
                    log.info(
                        "%s: %s %s: %s (try %d); again in %.3g s",
                        self.name, event_type(event), event.id, answer, attempt, delay,
                    )  # fmt: skip
                    await anyio.sleep(delay)
                case GiveUp(reason=reason):
                    self._drop(reason, event, f"{answer} (try {attempt})")
                    break
        self._current = None

    async def _post(self, body: bytes, signed: dict[str, str]) -> tuple[int | None, str | None]:
        """One try: the status and ``Retry-After`` (``None``: no answer in ``timeout_s``)."""
        timeout = self.config.timeout_s
        with anyio.move_on_after(timeout):
            try:
                request = self._client().stream(
                    "POST", self.config.url, content=body, headers=signed, timeout=timeout
                )
                async with request as response:  # the body is not read
                    return response.status_code, response.headers.get("retry-after")
            except httpx.HTTPError as error:
                log.info("%s: %s", self.name, type(error).__name__)
                return None, None
            except Exception:  # our error, not the endpoint's: a failed try, the server goes on
                log.exception("%s: the request failed", self.name)
                return None, None
        log.info("%s: no answer in %g s", self.name, timeout)
        return None, None

    def _drop(self, reason: str, event: Event, why: str = "") -> None:
        self.dropped += 1
        METRICS.webhooks_dropped(reason)
        log.warning(
            "%s: %s %s dropped: %s%s",
            self.name, event_type(event), event.id, reason, f", {why}" if why else "",
        )  # fmt: skip


class Webhooks:
    """A server's webhooks (see the module doc): ``agent`` names its calls; ``environ`` holds
    the secrets; ``clock`` (unix seconds) signs, ``jitter`` spreads the retries."""

    def __init__(
        self,
        configs: Sequence[WebhookConfig],
        agent: str,
        *,
        environ: Mapping[str, str] = os.environ,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.agent = agent
        self._clock = clock
        secrets = load_secrets(configs, environ)
        self._http: httpx.AsyncClient | None = None
        self.endpoints = [
            Endpoint(n, config, secret, self._client, clock=clock, jitter=jitter)
            for n, (config, secret) in enumerate(zip(configs, secrets, strict=True))
        ]
        self._ended_wanted = any("call.ended" in config.events for config in configs)
        self._running = False
        self._stopped = anyio.Event()

    # -- the calls' side (never waits) -------------------------------------------------------

    def started(self, session: Session) -> Callable[[Exception | None], None]:
        """A call has started (:data:`agent.call_loop.WATCHERS`): ``call.started`` now, and
        what sends ``call.ended`` with its record."""
        try:
            inner = transport_sink(session.outbox.sink)  # under the watchers' sinks
            started_at = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
            parties = inner if isinstance(inner, Parties) else None
            data = CallStarted(
                id=session.id,
                agent=self.agent,
                transport=transport_of(inner),
                started_at=started_at,
                caller=parties.caller if parties is not None else None,
                called=parties.called if parties is not None else None,
            )
            self.submit(CallStartedEvent(id=_event_id(), created_at=started_at, data=data))
            if not self._ended_wanted:
                return lambda failure: None
            recording = record_call(session, self.agent, started_at)
        except Exception:
            log.exception("call %s: no webhooks", session.id)
            return lambda failure: None

        def ended(failure: Exception | None) -> None:
            try:
                now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
                record = recording.record(now, failure)
                self.submit(CallEndedEvent(id=_event_id(), created_at=now, data=record))
            except Exception:
                log.exception("call %s: its call.ended webhook was lost", session.id)

        return ended

    def submit(self, event: Event) -> None:
        """Queue ``event`` for every endpoint that takes its type (never waits)."""
        for endpoint in self.endpoints:
            endpoint.offer(event)

    # -- the senders -------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The senders: observe the calls and deliver their events, until cancelled (or
        :meth:`aclose`)."""
        self._running = True
        call_loop.WATCHERS.append(self.started)
        try:
            async with anyio.create_task_group() as tg:
                for endpoint in self.endpoints:
                    tg.start_soon(endpoint.run, name=endpoint.name)
                task_status.started()
        finally:
            call_loop.WATCHERS.remove(self.started)
            self._running = False
            self._stopped.set()

    async def aclose(self) -> None:
        """No more events: what is queued goes out (:data:`FLUSH_S` at most, then what is left
        is counted as dropped), and the HTTP client is closed."""
        for endpoint in self.endpoints:
            endpoint.close()
        with anyio.move_on_after(FLUSH_S, shield=True):
            if self._running:
                await self._stopped.wait()  # the senders deliver what is queued, then stop
            async with anyio.create_task_group() as tg:
                for endpoint in self.endpoints:
                    tg.start_soon(endpoint.flush)
        for endpoint in self.endpoints:
            endpoint.abandon()
        if self._http is not None:
            with anyio.CancelScope(shield=True):
                await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http


def _event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"
