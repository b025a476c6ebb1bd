"""The HTTP/WebSocket server: one process, uvicorn on uvloop, Starlette routes.

Models load in the background at start-up; ``/health/ready`` turns 200 (and the log says
``voxline ready``) only once they are loaded and warm, and calls are refused until then.
Every route is behind the access rules of :mod:`agent.auth` (API keys, the Origin allowlist);
a WebSocket's call must start within ``server.open_timeout_s`` (:mod:`agent.ws_io`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import anyio.abc
import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from agent.admission import LOAD_WINDOW_S, REFUSALS, SCOPE_KEY, LoadCeiling, Slots
from agent.auth import AccessPolicy, ApiKeys, is_loopback, load_keys
from agent.auth_asgi import AccessGuard, close_refused
from agent.calls_route import calls_routes
from agent.client_secret_route import client_secret_routes
from agent.config import AgentConfig
from agent.config.runtime import llm_config
from agent.dialogue.engine import IntentEngine
from agent.dialogue.llm import ChatBackend, LLMEngine, make_backend
from agent.dialogue.llm_local import EmbeddedLlm
from agent.dialogue.llm_tools import Tools
from agent.drain import Draining, DrainingServer, drain
from agent.grants import Caller, call_settings, caller_of
from agent.metrics import METRICS
from agent.models import LoadedModels, load_models, session_settings
from agent.native_call import native_call
from agent.realtime_call import realtime_call
from agent.realtime_transcription import transcription_call
from agent.realtime_webrtc_route import realtime_call_routes
from agent.records import Recorder
from agent.records.routes import records_routes
from agent.reply import Responder
from agent.responders import BUILTINS, IntentResponder, LLMResponder
from agent.rest import rest_routes
from agent.rest_jobs import JobSlots
from agent.room_calls import RoomService
from agent.session import Models, SessionSettings
from agent.sip_server import ServerAdmission, SipServer
from agent.tracing_logs import install as install_call_logs
from agent.translator import TranslatorResponder, translation_llm
from agent.twilio_call import twilio_calls
from agent.twilio_signature import TOKEN_ENV as TWILIO_TOKEN_ENV
from agent.webhooks import Webhooks
from agent.webrtc_call import WebRtcCalls
from agent.webrtc_routes import webrtc_routes
from agent.ws_io import WS_MAX_SIZE
from pipeline.asr.stage import FINAL_PRIORITY
from pipeline.errors import ConfigError, StageFailed

log = logging.getLogger("voxline.server")


#: a transport adapter: serves one WebSocket call (``native_call``, ``realtime_call``, ...)
class CallAdapter(Protocol):
    async def __call__(
        self,
        ws: WebSocket,
        models: Models,
        responder: Callable[[], Responder],
        settings: SessionSettings,
        *,
        send_timeout: float = ...,
        open_timeout: float | None = ...,
    ) -> None: ...


@dataclass
class ServerState:
    config: AgentConfig
    models: LoadedModels | None = None
    intents: IntentEngine | None = None
    #: WebSockets accepted whose calls have not started (agent/admission.py)
    opening: int = 0
    failed: str | None = None
    ready: anyio.Event = field(default_factory=anyio.Event)
    #: the one definition of "going away": every admission path refuses calls once it has
    #: started (agent/drain.py)
    draining: Draining = field(default_factory=Draining)

    llm: LLMEngine | None = None
    http: httpx.AsyncClient | None = None
    #: an interpreter's two-party rooms (agent/rooms.py)
    rooms: RoomService | None = None
    _sessions: int = 0
    _changed: anyio.Event = field(default_factory=anyio.Event)
    #: admission by load (``server.max_asr_wait_ms``; ``None``: off)
    load_ceiling: LoadCeiling | None = field(init=False)

    def __post_init__(self) -> None:
        wait_ms = self.config.server.max_asr_wait_ms
        self.load_ceiling = LoadCeiling(wait_ms / 1000) if wait_ms else None

    @property
    def sessions(self) -> int:
        """Calls holding a session slot (every transport's: ``server.max_sessions``)."""
        return self._sessions

    @sessions.setter
    def sessions(self, count: int) -> None:
        self._sessions = count
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for_no_sessions(self) -> None:
        """Return once no call holds a session slot."""
        while self._sessions:
            await self._changed.wait()

    def asr_wait(self) -> float:
        """The median seconds an utterance's final has waited lately for the shared ASR model
        (:meth:`~pipeline.executor.ModelExecutor.queue_wait` over
        :data:`~agent.admission.LOAD_WINDOW_S`): what the machine could not absorb."""
        if self.models is None:
            return 0.0
        return self.models.asr.queue_wait(FINAL_PRIORITY, LOAD_WINDOW_S)

    def refusal(self) -> str | None:
        """Why a new call is refused now, by every transport (a key of
        :data:`~agent.admission.REFUSALS`): ``draining``, ``not_ready`` (loading),
        ``at_capacity`` (``server.max_sessions``), ``overloaded`` (finals wait longer than
        ``server.max_asr_wait_ms``); ``None``: calls are taken."""
        if self.draining.is_set():
            return "draining"
        if not self.ready.is_set():
            return "not_ready"
        if self.sessions >= self.config.server.max_sessions:
            return "at_capacity"
        gate = self.load_ceiling
        if gate is not None and not gate.admits(self.asr_wait(), self.sessions, time.monotonic()):
            return "overloaded"
        return None

    def responder(self) -> Responder:
        """A new call's dialogue, as the agent file's ``dialogue.engine`` says."""
        engine = self.config.dialogue.engine
        if engine == "translate":
            return TranslatorResponder(self.config, self.llm)
        llm = LLMResponder(self.llm, self.config) if self.llm is not None else None
        if engine == "llm" and llm is not None:
            return llm
        assert self.intents is not None
        return IntentResponder(self.intents, self.config, llm=llm)

    async def load(self, tasks: anyio.abc.TaskGroup | None = None) -> None:
        """Load the models and the dialogue engines (``failed`` says why when they do not);
        ``tasks`` runs what serves them meanwhile (the embedded LLM's supervisor; without
        it, the embedded LLM is not restarted if it dies)."""
        config = self.config
        try:
            self.models = await anyio.to_thread.run_sync(load_models, config)
            self.http = httpx.AsyncClient()
            self.intents = await IntentEngine.load(
                config, embedder=self.models.embedder, http=self.http
            )
            if config.dialogue.engine != "intents" and config.profile.llm is not None:
                settings = llm_config(config)
                backend: ChatBackend
                if config.profile.llm.backend == "embedded":
                    embedded = await anyio.to_thread.run_sync(EmbeddedLlm.from_config, config)
                    backend = embedded
                    if tasks is not None:
                        await tasks.start(embedded.run)  # restarted if it dies
                    else:
                        await embedded.start()
                else:
                    backend = make_backend(settings)
                    await backend.start()
                tools = Tools(settings.tools, builtins=BUILTINS, http=self.http)
                self.llm = LLMEngine(settings, backend, tools=tools if settings.tools else None)
                if config.dialogue.engine == "translate":
                    self.llm = translation_llm(self.llm, config)
            if config.dialogue.engine == "translate":
                self.rooms = RoomService(config, self.models, self.llm)
        except Exception as error:
            self.failed = f"{type(error).__name__}: {error}"
            log.exception("loading the models failed")
            return
        self.ready.set()
        log.info("voxline ready: agent %r", config.name)

    async def close(self) -> None:
        """Release what :meth:`load` opened (after the calls have ended)."""
        if self.llm is not None:
            await self.llm.backend.aclose()
        if self.intents is not None:
            await self.intents.aclose()
        if self.http is not None:
            await self.http.aclose()
        if self.models is not None:
            await anyio.to_thread.run_sync(self.models.close)


def create_app(
    config: AgentConfig, *, keys: ApiKeys | None = None, draining: Draining | None = None
) -> Starlette:
    """The server's app; ``keys`` default to those of the environment and the keys file;
    ``draining``: the drain its server starts (:class:`~agent.drain.DrainingServer`)."""
    if keys is None:
        keys = load_keys(config.server.auth, os.environ)
    policy = AccessPolicy(
        keys,
        config.server.auth,
        metrics_public=config.server.metrics_public,
        twilio_token=os.environ.get(TWILIO_TOKEN_ENV),
        twilio_url=config.server.twilio.public_url,
    )
    state = ServerState(config, draining=draining if draining is not None else Draining())
    slots = Slots(
        state, max_sessions=config.server.max_sessions, max_opening=config.server.max_opening
    )
    webrtc = WebRtcCalls(config.server.webrtc)
    # SIP calls both ways (in, and POST /v1/calls): they carry no key
    sip_admission = ServerAdmission(state, Caller(*policy.caller(None, None)))
    sip = SipServer(config.server.sip, sip_admission) if config.server.sip.listen else None
    jobs = JobSlots(config.server.max_rest_jobs)  # REST jobs', apart from calls' (agent/rest.py)
    records_config = config.server.records
    records = Recorder(records_config, config.name) if records_config is not None else None
    hooks = config.server.webhooks
    webhooks = Webhooks(hooks, config.name) if hooks else None  # the secrets read now
    install_call_logs()  # the call id on the log lines of every call
    tracing = None
    if config.server.tracing is not None:  # only then is the OpenTelemetry SDK imported
        try:
            from agent.tracing import Tracing
        except ImportError as error:
            needs = "needs the OpenTelemetry SDK: pip install 'voxline[tracing]'"
            raise ConfigError("$.server.tracing", needs) from error
        tracing = Tracing(config.server.tracing, config.name, environ=os.environ)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(state.load, tg)
            tg.start_soon(drain, state, config.server.drain_timeout_s, config.server.drain_message)
            await tg.start(webrtc.run)
            if records is not None:  # every call's record, written by its one writer
                await tg.start(records.run)
            if webhooks is not None:  # each call's start and end, POSTed (agent/webhooks.py)
                await tg.start(webhooks.run)
            if tracing is not None:  # a span per call and per turn (agent/tracing.py)
                tracing.start()
            if sip is not None:  # calls get BYE when the group is cancelled
                await tg.start(sip.run)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
        if records is not None:  # the records of the last calls, then the database closed
            await records.aclose()
        if webhooks is not None:  # the last calls' events go out, then the client closed
            await webhooks.aclose()
        if tracing is not None:  # the last calls' spans exported, then the SDK shut down
            await tracing.aclose()
        await state.close()

    async def live(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> JSONResponse:
        # every refusal but the session limit is "not ready": loading, draining, and overloaded
        # (a load balancer sends new calls to another replica); a full pod refuses with 1013
        refusal = state.refusal()
        ready = refusal in (None, "at_capacity")
        body: dict[str, object] = {
            "ready": ready,
            "agent": config.name,
            "sessions": state.sessions,
            "rest_jobs": jobs.busy,
            "asr_wait_ms": round(state.asr_wait() * 1000),
        }
        if refusal in ("draining", "overloaded"):
            body[refusal] = True
        gate = state.load_ceiling
        if gate is not None and gate.ceiling is not None:
            body["load_ceiling"] = gate.ceiling  # the calls admitted since an overload
        if state.failed:
            body["error"] = state.failed
        return JSONResponse(body, status_code=200 if ready else 503)

    async def native(
        ws: WebSocket,
        models: Models,
        responder: Callable[[], Responder],
        settings: SessionSettings,
        *,
        send_timeout: float = 10.0,
        open_timeout: float | None = None,
    ) -> None:
        await native_call(
            ws,
            models,
            responder,
            settings,
            send_timeout=send_timeout,
            open_timeout=open_timeout,
            rooms=state.rooms,
        )

    async def realtime(
        ws: WebSocket,
        models: Models,
        responder: Callable[[], Responder],
        settings: SessionSettings,
        *,
        send_timeout: float = 10.0,
        open_timeout: float | None = None,
    ) -> None:
        """A conversation; with ``?intent=transcription``, a transcription session."""
        if ws.query_params.get("intent") == "transcription":
            await transcription_call(
                ws,
                models,
                responder,
                settings,
                send_timeout=send_timeout,
                open_timeout=open_timeout,
                asr_model=config.profile.asr.model,
            )
        else:
            await realtime_call(
                ws,
                models,
                responder,
                settings,
                send_timeout=send_timeout,
                open_timeout=open_timeout,
            )

    def call(adapter: CallAdapter) -> Callable[[WebSocket], Awaitable[None]]:
        """A WebSocket endpoint serving calls with ``adapter``, once ready, within the limit."""

        async def endpoint(ws: WebSocket) -> None:
            refusal = state.refusal()
            if refusal is not None:
                if refusal != "not_ready":
                    METRICS.error("admission", refusal)
                await close_refused(ws, 1013, REFUSALS[refusal])
                return
            ticket = slots.open()  # a session slot only once the call starts (hello)
            if ticket is None:
                METRICS.error("admission", "too_many_opening")
                await close_refused(ws, 1013, "too many connections are opening")
                return
            ws.scope[SCOPE_KEY] = ticket
            assert state.models is not None
            try:
                await adapter(
                    ws,
                    state.models.session_models(),
                    state.responder,
                    call_settings(
                        session_settings(config, state.models.voice), caller_of(ws.scope)
                    ),
                    send_timeout=config.server.send_timeout_s,
                    open_timeout=config.server.open_timeout_s,
                )
            except* StageFailed:
                log.exception("session failed")
            finally:
                ticket.close()

        return endpoint

    return Starlette(
        routes=[
            Route("/health/live", live),
            Route("/health/ready", ready),
            WebSocketRoute("/v1/stream", call(native)),
            WebSocketRoute("/v1/realtime", call(realtime)),
            WebSocketRoute("/v1/telephony/twilio", call(twilio_calls(config.server.twilio))),
            *rest_routes(state, jobs),
            *client_secret_routes(policy.secrets),
            *webrtc_routes(state, webrtc),
            *realtime_call_routes(state, webrtc),
            *records_routes(records),
            *calls_routes(sip, sip_admission),
        ],
        lifespan=lifespan,
        middleware=[Middleware(AccessGuard, policy=policy)],
    )


def serve(
    config: AgentConfig,
    host: str | None = None,
    port: int | None = None,
    *,
    keys: ApiKeys | None = None,
) -> None:
    """Serve until interrupted (``voxline serve``: the exposure check is the caller's,
    :func:`agent.auth.exposure_problem`)."""
    import uvicorn

    host = host or config.server.host
    if keys is None:
        keys = load_keys(config.server.auth, os.environ)
    if keys:
        log.info("auth: an API key is required on every endpoint (%d configured)", len(keys))
    elif is_loopback(host):
        log.info("auth: off (no API key configured; listening on loopback only)")
    else:
        log.warning("auth: OFF on %s (--insecure): anyone who reaches it may call", host)

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is installed on Linux
        loop = "asyncio"
    settings = uvicorn.Config(
        create_app(config, keys=keys, draining=(draining := Draining())),
        host=host,
        port=port if port is not None else config.server.port,
        loop=loop,
        ws="websockets-sansio",  # the `websockets` library, through its sans-I/O core
        ws_ping_interval=config.server.ping_interval_s,
        ws_ping_timeout=config.server.ping_timeout_s,
        ws_max_size=WS_MAX_SIZE,  # the largest endpoint's; each has its own below it (ws_io)
        log_level="info",
        # after the drain (agent/drain.py): what is still connected has this long to close
        timeout_graceful_shutdown=5,
    )
    listening = settings.bind_socket()
    if config.server.send_buffer_kib:
        # Accepted connections inherit it: a fixed kernel send buffer per connection instead of
        # autotuning up to megabytes, so a client that stops reading is noticed in seconds.
        size = config.server.send_buffer_kib * 1024
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    DrainingServer(settings, draining).run(sockets=[listening])
