"""The HTTP/WebSocket server: health checks and calls, on Starlette + uvicorn (uvloop)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from agent.config import AgentConfig
from agent.tone_call import tone_call
from pipeline.errors import StageFailed

log = logging.getLogger("voxline.server")


class ServerState:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.ready = False
        self.sessions = 0


def create_app(config: AgentConfig) -> Starlette:
    state = ServerState(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.ready = True
        log.info("voxline ready: agent %r", config.name)
        yield
        state.ready = False

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> JSONResponse:
        body = {"ready": state.ready, "agent": config.name, "sessions": state.sessions}
        return JSONResponse(body, status_code=200 if state.ready else 503)

    async def stream(ws: WebSocket) -> None:
        if state.sessions >= config.server.max_sessions:
            await ws.close(code=1013, reason="server is at its session limit")
            return
        state.sessions += 1
        try:
            await tone_call(ws, config.tone)
        except StageFailed:
            log.exception("session failed")
        finally:
            state.sessions -= 1

    return Starlette(
        routes=[
            Route("/health/live", live),
            Route("/health/ready", ready),
            WebSocketRoute("/v1/stream", stream),
        ],
        lifespan=lifespan,
    )


def serve(config: AgentConfig, host: str | None = None, port: int | None = None) -> None:
    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is installed on Linux
        loop = "asyncio"
    uvicorn.run(
        create_app(config),
        host=host or config.server.host,
        port=port if port is not None else config.server.port,
        loop=loop,
        ws="websockets-sansio",  # the `websockets` library, through its sans-I/O core
        log_level="info",
    )
