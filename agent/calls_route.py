"""``POST /v1/calls``: place an outbound SIP call, as ``voxline dial`` does, from the server.

The request is JSON::

    {"to": "sip:1000@pbx.example.com[:port]",   the callee (required; ``;transport=tcp``
                                                at its end: over TCP, RFC 3263 §4.1)
     "from": "sip:desk@voxline.example.com",    our From (default: the endpoint's own URI)
     "timeout": 30}                             seconds it may ring (default:
                                                server.sip.no_answer_s; 0 < timeout <= 300)

The call is placed on the server's first SIP endpoint (``server.sip.listen``) of the callee's
transport (UDP, or TCP for ``;transport=tcp``: the first ``tcp:`` address) with the same
:class:`~agent.sip_dial.Dialing` setup as ``voxline dial`` (our offer, the agent speaks first
when answered; busy, declined, no answer are logged with their SIP status) and counts against
``server.max_sessions`` like every call. It runs under the grants of the key that placed it
(:mod:`agent.grants`), as a call that key opened over a socket would: it holds a place among
that key's ``max_sessions`` from the 201 until it is over (answered or not: given back by
:meth:`~agent.sip_dial.Dialing.close`), and its length follows that key's
``unlimited_calls`` (:func:`~agent.grants.call_settings`, through an
:class:`~agent.sip_server.ServerAdmission` of that key's own). The answer is 201 at once (the
INVITE is on its way)::

    {"id": "<the call's id>", "object": "call", "to": ..., "from": ..., "status": "calling"}

with ``Location: /v1/calls/{id}``: the call's record (agent/records/routes.py) once the
answered call has ended, under the same id. A call never answered has no session and so no
record (its outcome is in the log). Errors have OpenAI's shape (:mod:`agent.rest`):

======  =======================  ============================================================
status  code                     when
======  =======================  ============================================================
400     ``invalid_value``        a field is missing, unknown, of the wrong type or out of
                                 range, or the body is not JSON; ``param`` names the field
                                 (``to`` over TCP on a server with no ``tcp:`` address too)
413     ``body_too_large``       a body over :data:`MAX_BODY` bytes
404     ``sip_disabled``         the server has no ``server.sip.listen`` address
429     ``too_many_sessions``    the key has its ``max_sessions`` calls open (rule G3 of
                                 :mod:`agent.auth`), with ``Retry-After``
503     ``at_capacity``,         the server is at ``server.max_sessions``, going away, still
        ``draining``,            loading its models, or its SIP endpoint is not running
        ``not_ready``
======  =======================  ============================================================

Auth is the server's on every path (agent/auth.py): ``/v1/calls`` is the ``calls`` endpoint,
and each POST one of the key's ``requests_per_minute`` (429 ``rate_limit_exceeded``).
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.admission import REFUSALS
from agent.auth import TOO_MANY_SESSIONS
from agent.auth_asgi import refused
from agent.grants import caller_of
from agent.metrics import METRICS
from agent.rest import ApiError, _endpoint, limited_body
from agent.sip_dial import Dialing, resolve
from agent.sip_server import ServerAdmission, SipEndpoint, SipServer
from transports.sip.transaction import Address
from transports.sip.uri import Target, parse_target

__all__ = ["MAX_BODY", "CallRequest", "calls_routes"]

#: bytes of JSON a request may send
MAX_BODY = 4096
#: a SIP URI as this endpoint takes it: ``sip:[user@]host[:port][;transport=udp|tcp]``, no
#: other parameter, nothing a header could be broken with
_URI = re.compile(
    r"^sip:([A-Za-z0-9._~!$&'()*+=%#-]{1,64}@)?[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?"
    r"(;transport=(udp|tcp))?$",
    re.IGNORECASE,
)


class CallRequest(msgspec.Struct, forbid_unknown_fields=True, rename={"caller": "from"}):
    to: Annotated[str, msgspec.Meta(max_length=400)]
    caller: Annotated[str, msgspec.Meta(max_length=400)] | None = None
    timeout: Annotated[float, msgspec.Meta(gt=0, le=300)] | None = None


def calls_routes(sip: SipServer | None, admission: ServerAdmission) -> list[Route]:
    """The route; ``sip``: ``None`` when the server takes no SIP calls."""

    async def create(request: Request) -> Response:
        if sip is None or not sip.endpoints:
            raise ApiError(
                404, "SIP is off on this server (server.sip.listen)", code="sip_disabled"
            )
        body = await limited_body(request, MAX_BODY, _too_large).body()
        wanted = _decode(body)
        target = _target(wanted.to, "to")
        caller = _target(wanted.caller, "from").uri if wanted.caller is not None else None
        endpoint = next((e for e in sip.endpoints if e.transport == target.transport), None)
        if endpoint is None:
            why = f"to: transport={target.transport}, but server.sip.listen has no such address"
            raise ApiError(400, why, param="to", code="invalid_value")
        if (refusal := admission.refusal()) is not None:
            why = REFUSALS[refusal]
            raise ApiError(503, why, code=refusal, kind="server_error")
        placer = caller_of(request.scope)  # its key's place, taken before anything is awaited
        claim = placer.claim()
        if claim is None:
            return _too_many_sessions()
        no_answer = wanted.timeout or admission.state.config.server.sip.no_answer_s
        call_id = uuid.uuid4().hex
        try:  # once dialled, the call holds the claim: its setup gives it back at its end
            peer = await _resolve(target)
            setup = Dialing(target, peer, no_answer, caller=caller, session_id=call_id, claim=claim)
            _dial(endpoint, setup, ServerAdmission(admission.state, placer))
        except BaseException:  # no call (a 400, a 503, the request cancelled): given back
            claim.release()
            raise
        answer = {
            "id": call_id,
            "object": "call",
            "to": target.uri,
            "from": caller,
            "status": "calling",
        }
        return JSONResponse(answer, status_code=201, headers={"Location": f"/v1/calls/{call_id}"})

    return [Route("/v1/calls", _endpoint("calls.create", create), methods=["POST"])]


async def _resolve(target: Target) -> Address:
    """Where ``target`` is, or a 400 naming ``to``."""
    try:
        return await resolve(target)
    except OSError as error:
        raise ApiError(400, f"to: {target.host}: {error.strerror or error}", param="to") from None


def _dial(endpoint: SipEndpoint, setup: Dialing, admission: ServerAdmission) -> None:
    """Place the call on ``endpoint``, or a 503 when it has stopped."""
    try:
        endpoint.dial(setup, admission)
    except RuntimeError:  # stopping
        raise ApiError(
            503, "the SIP endpoint is not running", code="not_ready", kind="server_error"
        ) from None


def _too_many_sessions() -> Response:
    """Rule G3 (agent/auth.py) as this REST endpoint answers it: the guard's refusal of a
    call socket, counted as the guard counts it."""
    METRICS.error("auth", TOO_MANY_SESSIONS.code)
    return refused(TOO_MANY_SESSIONS)


def _too_large() -> ApiError:
    return ApiError(413, f"the body is over {MAX_BODY} bytes", code="body_too_large")


def _decode(body: bytes) -> CallRequest:
    """The request, or a 400 naming the field that is wrong."""
    try:
        return msgspec.json.decode(body, type=CallRequest)
    except msgspec.ValidationError as error:
        text = str(error)
        found = re.search(r"`\$\.(\w+)`|field `(\w+)`", text)
        field = next((group for group in found.groups() if group), None) if found else None
        raise ApiError(400, text, param=field, code="invalid_value") from None
    except msgspec.DecodeError as error:
        raise ApiError(400, f"the body is not JSON: {error}", code="invalid_value") from None


def _target(uri: str, field: str) -> Target:
    """A ``sip:`` URI of ``field`` that this endpoint takes, or a 400 naming it."""
    parsed = parse_target(uri)
    if isinstance(parsed, Target) and _URI.match(parsed.uri):
        return parsed
    reason = parsed.reason if not isinstance(parsed, Target) else "only transport= is taken"
    raise ApiError(
        400,
        f"{field}: {reason} (expected sip:user@host[:port][;transport=tcp])",
        param=field,
        code="invalid_value",
    )
