"""``GET /v1/calls``, ``GET /v1/calls/{id}`` and its recording: the call records, behind the
server's keys.

================================  ===============================================================
``GET /v1/calls``                 newest first: ``{"object": "list", "data": [record ...],
                                  "has_more", "next_cursor"}``. Filters: ``agent``,
                                  ``transport`` (exact), ``since`` (started at or after),
                                  ``until`` (started before), each an ISO 8601 time (UTC unless
                                  it says) or unix seconds; ``limit`` (1 to 100, 20 by default);
                                  ``cursor``: the previous page's ``next_cursor``
``GET /v1/calls/{id}``            one record (404 ``call_not_found`` when there is none)
``GET /v1/calls/{id}/recording``  its stereo WAV (``audio/wav``); 404 ``recording_not_found``
                                  when the call was not recorded, or its file is not finished
                                  yet or is gone
================================  ===============================================================

Errors have OpenAI's shape (:mod:`agent.rest`): 400 for a bad parameter (``param`` names it),
404 ``records_disabled`` on a server with ``server.records: null``, 503
``records_unavailable`` while the database cannot be reached.
"""

from __future__ import annotations

import datetime as dt
import math

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from agent.records.model import MAX_PAGE, CallQuery, CallRecord, decode_cursor
from agent.records.recorder import Recorder, RecordsUnavailable
from agent.rest import ApiError, _endpoint

__all__ = ["records_routes"]

#: characters of a filter value or an id accepted
MAX_VALUE = 200


def records_routes(recorder: Recorder | None) -> list[Route]:
    """The routes; ``recorder``: ``None`` when records are off."""

    def available() -> Recorder:
        if recorder is None:
            raise ApiError(
                404,
                "call records are off on this server (server.records)",
                code="records_disabled",
            )
        return recorder

    async def calls(request: Request) -> Response:
        records = available()
        query = _query(request)
        try:
            page = await records.read(lambda store: store.search(query))
        except RecordsUnavailable as error:
            raise _unavailable(error) from None
        return _json(page)

    async def found(request: Request) -> tuple[Recorder, CallRecord]:
        """The recorder and the record of the call the path names (404 if there is none)."""
        records = available()
        call_id = str(request.path_params["id"])
        if len(call_id) > MAX_VALUE:
            raise ApiError(404, "no call has this id", param="id", code="call_not_found")
        try:
            record = await records.read(lambda store: store.get(call_id))
        except RecordsUnavailable as error:
            raise _unavailable(error) from None
        if record is None:
            raise ApiError(404, "no call has this id", param="id", code="call_not_found")
        return records, record

    async def call(request: Request) -> Response:
        return _json((await found(request))[1])

    async def recording(request: Request) -> Response:
        records, record = await found(request)
        name, recordings = record.recording, records.recordings
        path = None if name is None or recordings is None else recordings.directory / name
        if path is None or path.name != name or not await anyio.Path(path).is_file():
            raise ApiError(
                404, "this call has no recording (yet)", param="id", code="recording_not_found"
            )
        return FileResponse(path, media_type="audio/wav", filename=path.name)

    return [
        Route("/v1/calls", _endpoint("calls", calls), methods=["GET"]),
        Route("/v1/calls/{id}", _endpoint("call", call), methods=["GET"]),
        Route("/v1/calls/{id}/recording", _endpoint("recording", recording), methods=["GET"]),
    ]


def _query(request: Request) -> CallQuery:
    params = request.query_params
    for name in params:
        if name not in ("agent", "transport", "since", "until", "limit", "cursor"):
            raise ApiError(400, f"unknown parameter {name[:40]!r}", param=name[:40])
    values: dict[str, str] = {}
    for name in ("agent", "transport", "since", "until", "limit", "cursor"):
        value = params.get(name)
        if value is None or value == "":
            continue
        if len(value) > MAX_VALUE:
            raise ApiError(400, f"{name}: longer than {MAX_VALUE} characters", param=name)
        values[name] = value
    limit = 20
    if "limit" in values:
        try:
            limit = int(values["limit"])
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_PAGE:
            raise ApiError(400, f"limit: a whole number from 1 to {MAX_PAGE}", param="limit")
    after = None
    if "cursor" in values:
        try:
            after = decode_cursor(values["cursor"])
        except ValueError as error:
            raise ApiError(400, f"cursor: {error}", param="cursor") from None
    return CallQuery(
        agent=values.get("agent"),
        transport=values.get("transport"),
        since=_time(values, "since"),
        until=_time(values, "until"),
        limit=limit,
        after=after,
    )


def _time(values: dict[str, str], name: str) -> float | None:
    """A time parameter: unix seconds, or ISO 8601 (UTC unless it names a zone)."""
    value = values.get(name)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ApiError(400, f"{name}: not a time", param=name)
        return seconds
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, f"{name}: an ISO 8601 time or unix seconds expected", param=name
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _unavailable(error: RecordsUnavailable) -> ApiError:
    return ApiError(503, str(error), code="records_unavailable", kind="server_error")


def _json(value: object) -> Response:
    return Response(msgspec.json.encode(value), media_type="application/json")
