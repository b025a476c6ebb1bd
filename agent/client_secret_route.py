"""``POST /v1/realtime/client_secrets``: mint a client secret (:mod:`agent.client_secrets`).

The body is OpenAI's: ``expires_after`` (``anchor`` ``created_at``, ``seconds`` 10-7200,
600 when left out) and an optional Realtime ``session``, checked as a ``session.update``
would be. The answer: ``value``, ``expires_at`` (Unix seconds) and the effective ``session``.
Only an API key may mint (a secret is refused by rule A5 of :mod:`agent.auth`); with no keys
configured (loopback or ``--insecure``) anyone may, as anyone may call. The secret has the
grants of the key that minted it (:mod:`agent.grants`): a key that may not override the
agent's instructions and tools cannot mint a ``session`` that does (403
``override_not_allowed``, naming the param).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.client_secrets import (
    DEFAULT_TTL_S,
    MAX_TTL_S,
    MIN_TTL_S,
    ClientSecrets,
    StoreFull,
)
from agent.grants import caller_of
from agent.realtime_overrides import CODE as OVERRIDE
from agent.realtime_overrides import override_message, spec_override
from agent.rest import MAX_JSON_BYTES, ApiError, _body_too_large, _endpoint, limited_body
from transports.realtime_events import (
    RealtimeSessionConfig,
    SessionSpec,
    UpdateRejected,
    apply_update,
)

__all__ = ["PATH", "client_secret_routes"]

PATH = "/v1/realtime/client_secrets"


class ExpiresAfter(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    anchor: Literal["created_at"] = "created_at"
    seconds: Annotated[int, msgspec.Meta(ge=MIN_TTL_S, le=MAX_TTL_S)] = DEFAULT_TTL_S


class MintRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    expires_after: ExpiresAfter = ExpiresAfter()
    session: SessionSpec | None = None


def client_secret_routes(store: ClientSecrets) -> list[Route]:
    """The minting route, keeping what it mints in ``store`` (the access policy's)."""

    async def mint(request: Request) -> Response:
        body = await limited_body(request, MAX_JSON_BYTES, _body_too_large).body()
        try:
            params = msgspec.json.decode(body or b"{}", type=MintRequest)
        except msgspec.ValidationError as error:
            message, _, where = str(error).partition(" - at `$.")
            raise ApiError(
                400, message, param=where.rstrip("`") or None, code="invalid_value"
            ) from None
        except msgspec.DecodeError:
            raise ApiError(400, "the body must be a JSON object", code="invalid_json") from None
        config = RealtimeSessionConfig()
        caller = caller_of(request.scope)  # the secret gets its key's grants
        if params.session is not None and not caller.grants.overrides:
            param = spec_override(params.session, config)
            if param is not None:
                raise ApiError(403, override_message(param), param=param, code=OVERRIDE)
        if params.session is not None:
            try:
                config = apply_update(config, params.session, voice_locked=False)
            except UpdateRejected as rejected:
                raise ApiError(
                    400, rejected.message, param=rejected.param, code="invalid_value"
                ) from None
        try:
            minted = store.mint(
                params.expires_after.seconds, params.session, key=caller.key, grants=caller.grants
            )
        except StoreFull as full:
            refusal = {
                "message": f"{full}: try again when some have expired",
                "type": "rate_limit_error",
                "param": None,
                "code": "too_many_client_secrets",
            }
            return JSONResponse({"error": refusal}, status_code=429, headers={"Retry-After": "10"})
        return JSONResponse(
            {"value": minted.value, "expires_at": minted.expires_at, "session": config.to_wire()}
        )

    return [Route(PATH, _endpoint("client_secrets", mint), methods=["POST"])]
