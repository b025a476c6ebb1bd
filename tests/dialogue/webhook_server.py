"""A real HTTP server for webhook tests: standard library, a thread, a port of its own.

The socket is bound and listening when :class:`WebhookServer` is made, so a client can connect
at once (no waiting for the thread). Each path has a behaviour; every request's JSON body is
kept in :attr:`WebhookServer.requests`.

- ``/book``: a booking system: ``{"available": false}`` for 21:00, else ``{"available": true,
  "reference": "B-<n>"}``;
- ``/echo``: answers ``{"received": <the body>}``;
- ``/text``: a plain-text body; ``/fail``: HTTP 500; ``/big``: a body of ``BIG`` bytes;
- ``/hang``: never answers until the server closes (for timeouts).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

BIG = 200_000


class WebhookServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                owner.requests.append({"path": self.path, "headers": dict(self.headers), **body})
                owner.answer(self, body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        path = handler.path
        if path == "/hang":
            self.release.wait()
            return
        status, content_type, payload = 200, "application/json", b""
        if path == "/book":
            arguments = body.get("arguments", {})
            bookings = sum(1 for r in self.requests if r["path"] == "/book")
            if arguments.get("time") == "21:00":
                payload = json.dumps({"available": False}).encode()
            else:
                payload = json.dumps({"available": True, "reference": f"B-{bookings}"}).encode()
        elif path == "/echo":
            payload = json.dumps({"received": body}).encode()
        elif path == "/text":
            content_type, payload = "text/plain", b"all good"
        elif path == "/fail":
            status, payload = 500, b'{"detail": "boom"}'
        elif path == "/big":
            payload = b"x" * BIG
        elif path == "/big-chunked":  # no content-length: the client must count
            handler.send_response(200)
            handler.send_header("transfer-encoding", "chunked")
            handler.end_headers()
            for _ in range(BIG // 10_000):
                handler.wfile.write(b"%x\r\n%s\r\n" % (10_000, b"x" * 10_000))
            handler.wfile.write(b"0\r\n\r\n")
            return
        else:
            status = 404
        handler.send_response(status)
        handler.send_header("content-type", content_type)
        handler.send_header("content-length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
