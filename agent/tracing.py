"""Traces: a span per call and per turn, exported over OTLP/HTTP (``server.tracing``).

::

    run_call (every transport)                           the server's lifespan
    ├─ Tracing.started(session): the call span starts;   ├─ Tracing(config): the SDK's provider,
    │    a WatchingSink (agent/call_watch.py) wraps the   │    batch processor and OTLP/HTTP
    │    session's sink: what it says goes on unchanged,  │    exporter (protobuf), on its thread
    │    and into CallSpans (agent/tracing_spans.py):     │
    │    each finished turn becomes spans at once         │
    └─ at the end: turns still open end, then the call    └─ Tracing.aclose(): what waits is
       span (its end reason)                                   exported, then the SDK shuts down

The span shape, attributes and events are :mod:`agent.tracing_spans`' (docs/config.md
"Traces"); the call span has ``voxline.call.id``, ``voxline.call.transport``,
``voxline.agent``, ``voxline.call.end_reason`` and ``voxline.call.turns``, and every span the
call id. Spans are made from what the session tells its transport, by a watcher
(:data:`agent.call_loop.WATCHERS`): the pipeline has no tracing calls, and a server without
``server.tracing`` never imports this module nor the SDK (:func:`agent.server.create_app`).

Queue policy: the SDK's :class:`BatchSpanProcessor`. Ending a span appends it to a deque of
``queue`` spans, never waiting; the SDK's own thread exports batches (512 spans, or every 5 s)
and, when the deque is full, the OLDEST waiting span is dropped (the SDK logs "Queue full,
dropping Span"). An export that fails is retried by the exporter with back-off within
``timeout_s``, then dropped (the SDK logs it). A collector that is slow or gone never holds
up a call. A call not sampled (``sample_ratio``) costs its call span's sampling decision only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, Status, StatusCode, format_trace_id

from agent import call_loop
from agent.call_watch import WatchingSink, transport_of
from agent.config.schema import TracingConfig
from agent.records.recorder import end_reason
from agent.session import Session
from agent.session_events import SessionEvent
from agent.tracing_logs import TRACE_ID
from agent.tracing_spans import Attributes, CallEvent, CallSpans, TurnSpan
from pipeline.errors import ConfigError

__all__ = ["SpanListener", "Tracing", "headers_from", "traces_url"]

log = logging.getLogger("voxline.tracing")

TRACES_PATH = "/v1/traces"
#: spans in one export at most (the SDK's default, or the queue when it is smaller)
BATCH = 512


def traces_url(endpoint: str) -> str:
    """Where spans are POSTed: ``endpoint`` + ``/v1/traces``, unless it ends so already."""
    if urlsplit(endpoint).path.rstrip("/").endswith(TRACES_PATH):
        return endpoint
    return endpoint.rstrip("/") + TRACES_PATH


def headers_from(config: TracingConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The headers for the collector, from the variable ``headers_env`` names (``key=value``
    pairs separated by commas, values URL-encoded). A :class:`ConfigError` names the key and
    the variable when it is unset or malformed (never its value: it holds secrets)."""
    name = config.headers_env
    if name is None:
        return {}
    where = "$.server.tracing.headers_env"
    value = environ.get(name)
    if value is None:
        raise ConfigError(where, f"the environment variable {name} is not set")
    headers = {}
    for number, pair in enumerate(value.split(","), 1):
        if not pair.strip():
            continue
        key, equals, text = pair.partition("=")
        key = unquote(key).strip().lower()
        if not equals or not key or any(c.isspace() or c in '()<>@,;:\\"/[]?={}' for c in key):
            reason = f"pair {number} of {name} is not key=value (with a header name as key)"
            raise ConfigError(where, reason)
        headers[key] = unquote(text).strip()
    return headers


class SpanListener:
    """A :class:`~agent.call_watch.CallListener` that tells ``spans`` what the session says;
    each finished turn or call event goes to ``finished`` at once."""

    def __init__(
        self, spans: CallSpans, finished: Callable[[list[TurnSpan | CallEvent]], None]
    ) -> None:
        self.spans = spans
        self._finished = finished

    def event(self, event: SessionEvent, at: float) -> None:
        self.spans.event(event, at)
        self._take()

    def audio_started(self, generation: int, at: float) -> None:
        self.spans.audio(generation, at)
        self._take()

    def audio_ended(self, generation: int, at: float) -> None:
        self.spans.audio_ended(generation, at)
        self._take()

    def audio_cleared(self, generation: int, played: int | None, at: float) -> None:
        self.audio_ended(generation, at)

    def _take(self) -> None:
        if done := self.spans.take():
            self._finished(done)


class Tracing:
    """One server's traces (see the module doc): ``agent`` names its calls; ``environ``
    holds the variable ``headers_env`` names. A :class:`ConfigError` if that is unset or
    malformed."""

    def __init__(self, config: TracingConfig, agent: str, *, environ: Mapping[str, str]) -> None:
        self.config = config
        self.agent = agent
        exporter = OTLPSpanExporter(
            endpoint=traces_url(config.otlp_endpoint),
            headers=headers_from(config, environ),
            timeout=config.timeout_s,
            compression=Compression.NoCompression,
        )
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": config.service_name}),
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        )
        processor = BatchSpanProcessor(
            exporter, max_queue_size=config.queue, max_export_batch_size=min(BATCH, config.queue)
        )
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("voxline")

    def start(self) -> None:
        """Trace every call of this process from now on (first among the watchers, so that
        the others' log lines about a call carry its trace id)."""
        call_loop.WATCHERS.insert(0, self.started)

    async def aclose(self) -> None:
        """No more calls are traced; what waits is exported (``timeout_s`` and a second at
        most), then the SDK shuts down."""
        if self.started in call_loop.WATCHERS:
            call_loop.WATCHERS.remove(self.started)
        with anyio.move_on_after(self.config.timeout_s + 1, shield=True):
            await anyio.to_thread.run_sync(self.provider.shutdown, abandon_on_cancel=True)

    def started(self, session: Session) -> Callable[[Exception | None], None]:
        """A call has started (:data:`agent.call_loop.WATCHERS`): its span; returns what
        ends it."""
        try:
            clock = session.clock
            offset = time.time_ns() - round(clock.now() * 1e9)  # the session clock to epoch

            def ns(at: float) -> int:
                return offset + round(at * 1e9)

            call_id = session.id
            call = self.tracer.start_span(
                "call",
                context=Context(),  # a root, whatever span may be current
                start_time=ns(clock.now()),
                attributes={
                    "voxline.call.id": call_id,
                    "voxline.call.transport": transport_of(session.outbox.sink),
                    "voxline.agent": self.agent,
                },
            )
            if not call.is_recording():  # not sampled
                TRACE_ID.set("")
                return lambda failure: None
            TRACE_ID.set(format_trace_id(call.get_span_context().trace_id))
            parent = trace.set_span_in_context(call)
            spans = CallSpans(caller_time=session.input.wall_time_of)

            def finished(done: list[TurnSpan | CallEvent]) -> None:
                for item in done:
                    if isinstance(item, CallEvent):
                        attributes = {"voxline.call.id": call_id, **item.attributes}
                        call.add_event(item.name, attributes, timestamp=ns(item.at))
                    else:
                        self._turn(item, parent, call_id, ns)

            outbox = session.outbox
            listener = SpanListener(spans, finished)
            outbox.sink = WatchingSink(
                outbox.sink, listener, clock.now, call_id=call_id, what="tracing", log=log
            )
        except Exception:
            log.exception("call %s: not traced", session.id)
            return lambda failure: None

        def ended(failure: Exception | None) -> None:
            try:
                at = clock.now()
                finished(spans.close(at))
                call.set_attribute("voxline.call.turns", spans.turns)
                call.set_attribute(
                    "voxline.call.end_reason", spans.reason or end_reason(session, failure)
                )
                if failure is not None:
                    call.set_status(Status(StatusCode.ERROR, type(failure).__name__))
                call.end(end_time=ns(at))
            except Exception:
                log.exception("call %s: its trace was lost", session.id)

        return ended

    def _turn(
        self, turn: TurnSpan, parent: Context, call_id: str, ns: Callable[[float], int]
    ) -> None:
        """``turn`` as a span under the call's, with a child span per latency stage."""
        attributes: Attributes = {"voxline.call.id": call_id, **turn.attributes()}
        span: Span = self.tracer.start_span(
            "turn", context=parent, start_time=ns(turn.start), attributes=attributes
        )
        within = trace.set_span_in_context(span)
        for stage in turn.stages:
            child = self.tracer.start_span(
                stage.name,
                context=within,
                start_time=ns(stage.start),
                attributes={"voxline.call.id": call_id},
            )
            child.end(end_time=ns(stage.end))
        span.end(end_time=ns(turn.end if turn.end is not None else turn.start))
