"""Webhooks over HTTP: the I/O half of the ``webhook`` action.

:func:`call_webhook` makes a :class:`~agent.dialogue.decision.WebhookCall` with httpx and always
returns a :class:`~agent.dialogue.decision.WebhookResult` (it never raises for the remote's
failures). The request is the one the LLM's tools send too (agent/dialogue/llm_tools.py):
``POST {"tool": name, "arguments": {...}, "call_id": "intent-N"}`` as JSON.

The whole call, connection included, is bounded by the call's ``timeout_s``; the body by
``max_bytes``. A JSON body becomes ``data``; any other body ``{"text": ...}``. Failures say
why in ``error`` (``timeout``, ``unreachable``, ``HTTP 503``, ``too large``); the details go
to the log, not into the conversation.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import httpx
import msgspec

from agent.dialogue.decision import WebhookCall, WebhookResult

__all__ = ["call_webhook"]

log = logging.getLogger(__name__)


async def call_webhook(
    client: httpx.AsyncClient, call: WebhookCall, *, max_bytes: int = 65_536
) -> WebhookResult:
    started = time.perf_counter()

    def failed(error: str, status: int | None = None) -> WebhookResult:
        return WebhookResult(id=call.id, tool=call.tool, ok=False, status=status, error=error)

    body = msgspec.json.encode(
        {"tool": call.tool, "arguments": call.arguments, "call_id": call.call_id}
    )
    headers = {"content-type": "application/json", **call.headers}
    status: int | None = None
    chunks: list[bytes] = []
    with anyio.move_on_after(call.timeout_s) as scope:
        try:
            request = client.build_request(
                "POST",
                call.url,
                content=body,
                headers=headers,
                timeout=httpx.Timeout(call.timeout_s),
            )
            response = await client.send(request, stream=True)
            try:
                status = response.status_code
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    log.warning("webhook %s: body of %s bytes", call.tool, declared)
                    return failed("too large", status)
                # Read to the end (leaving httpx's nested stream generators half-read leaks
                # them to the garbage collector), keeping at most max_bytes + 1.
                size = 0
                async for chunk in response.aiter_bytes():
                    if size <= max_bytes:
                        chunks.append(chunk)
                    size += len(chunk)
                if size > max_bytes:
                    log.warning("webhook %s: body over %d bytes", call.tool, max_bytes)
                    return failed("too large", status)
            finally:
                await response.aclose()
        except httpx.TimeoutException:
            return failed("timeout")
        except httpx.HTTPError as error:
            log.warning("webhook %s failed: %s", call.tool, type(error).__name__)
            return failed("unreachable")
    if scope.cancelled_caught:
        return failed("timeout")
    elapsed_ms = (time.perf_counter() - started) * 1000
    log.info("webhook %s: HTTP %s in %.0f ms", call.tool, status, elapsed_ms)
    raw = b"".join(chunks)
    assert status is not None
    if not 200 <= status < 300:
        return failed(f"HTTP {status}", status)
    data: Any
    try:
        data = msgspec.json.decode(raw) if raw.strip() else {}
    except msgspec.DecodeError:
        data = {"text": raw.decode("utf-8", "replace")}
    return WebhookResult(id=call.id, tool=call.tool, ok=True, status=status, data=data)
