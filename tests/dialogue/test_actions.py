"""Webhooks against a real local HTTP server: results, failures, timeouts, size limits."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import anyio
import httpx
import pytest

from agent.dialogue.actions import call_webhook
from agent.dialogue.decision import WebhookCall
from tests.dialogue.webhook_server import BIG, WebhookServer


@pytest.fixture
def server() -> Iterator[WebhookServer]:
    with WebhookServer() as running:
        yield running


def call(url: str, timeout_s: float = 5.0) -> WebhookCall:
    return WebhookCall(
        id=3,
        tool="book_table",
        url=url,
        arguments={"party_size": 4, "time": "20:00"},
        headers={"x-secret": "s3"},
        timeout_s=timeout_s,
    )


@pytest.mark.anyio
async def test_a_webhook_gets_the_tool_envelope_and_returns_json(server: WebhookServer) -> None:
    with anyio.fail_after(10):
        async with httpx.AsyncClient() as client:
            result = await call_webhook(client, call(server.url("/book")))
    assert result.ok
    assert result.status == 200
    assert result.data == {"available": True, "reference": "B-1"}
    (request,) = server.requests
    assert request["tool"] == "book_table"
    assert request["arguments"] == {"party_size": 4, "time": "20:00"}
    assert request["call_id"] == "intent-3"
    assert request["headers"]["x-secret"] == "s3"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "ok", "error", "data"),
    [
        ("/text", True, None, {"text": "all good"}),
        ("/fail", False, "HTTP 500", None),
        ("/missing", False, "HTTP 404", None),
        ("/big", False, "too large", None),
        ("/big-chunked", False, "too large", None),
    ],
)
async def test_other_answers(
    server: WebhookServer, path: str, ok: bool, error: str | None, data: object
) -> None:
    with anyio.fail_after(10):
        async with httpx.AsyncClient() as client:
            result = await call_webhook(client, call(server.url(path)), max_bytes=BIG // 2)
    assert (result.ok, result.error, result.data) == (ok, error, data)


@pytest.mark.anyio
async def test_a_webhook_that_never_answers_times_out(server: WebhookServer) -> None:
    with anyio.fail_after(10):
        async with httpx.AsyncClient() as client:
            result = await call_webhook(client, call(server.url("/hang"), timeout_s=0.2))
    assert (result.ok, result.error, result.status) == (False, "timeout", None)


@pytest.mark.anyio
async def test_an_unreachable_webhook() -> None:
    with socket.socket() as probe:  # a port nobody listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with anyio.fail_after(10):
        async with httpx.AsyncClient() as client:
            result = await call_webhook(client, call(f"http://127.0.0.1:{port}/book"))
    assert (result.ok, result.error) == (False, "unreachable")
