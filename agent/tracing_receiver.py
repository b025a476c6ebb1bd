"""A minimal OTLP/HTTP trace receiver on 127.0.0.1, for the tests and the benchmarks.

:class:`OtlpReceiver` is a standard-library HTTP server in a thread that takes what a real
exporter sends: ``POST /v1/traces`` with a protobuf ``ExportTraceServiceRequest`` (gzip or
not), answered 200 with an empty ``ExportTraceServiceResponse``. It keeps every span it got
(:attr:`OtlpReceiver.spans`, decoded to :class:`ReceivedSpan`) and
:meth:`OtlpReceiver.wait_for` blocks until they satisfy a condition. Needs the ``tracing``
extra (the ``opentelemetry-proto`` package the exporter depends on).
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["OtlpReceiver", "ReceivedSpan"]

Value = str | bool | int | float | None


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as received: ids in hex, times in unix nanoseconds."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Value]
    #: (name, time, attributes) of each event
    events: tuple[tuple[str, int, dict[str, Value]], ...]
    #: the resource's attributes (``service.name``)
    resource: dict[str, Value]


def _value(value: AnyValue) -> Value:
    kind = value.WhichOneof("value")
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        found: Value = getattr(value, kind)
        return found
    return None


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Value]:
    return {pair.key: _value(pair.value) for pair in pairs}


def decode(body: bytes) -> list[ReceivedSpan]:
    """The spans of an ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                events = tuple(
                    (event.name, event.time_unix_nano, _attributes(event.attributes))
                    for event in span.events
                )
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        events=events,
                        resource=resource,
                    )
                )
    return spans


class OtlpReceiver:
    """Receives spans on ``url`` while the ``with`` block runs (see the module doc)."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        #: requests received (``POST /v1/traces``), and their headers (lower-case names)
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as collectors do

            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                spans = decode(body)
                with receiver.changed:
                    receiver.requests += 1
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    receiver.spans.extend(spans)
                    receiver.changed.notify_all()
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the test or the bench says what matters

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL (``server.tracing.otlp_endpoint``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def wait_for(self, done: Callable[[list[ReceivedSpan]], bool], timeout: float) -> bool:
        """Block until ``done(spans)`` holds (``True``), or ``timeout`` seconds pass."""
        with self.changed:
            return self.changed.wait_for(lambda: done(self.spans), timeout)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
