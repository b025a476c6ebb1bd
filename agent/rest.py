"""The REST API: OpenAI-compatible transcription, translation and speech, the voice list,
metrics.

=========================================  ====================================================
``POST /v1/audio/transcriptions``          multipart ``file`` (wav, flac, mp3, ogg, webm,
                                           m4a/mp4: below), ``language``,
                                           ``prompt``, ``response_format`` (json, text, srt,
                                           vtt, verbose_json), ``timestamp_granularities[]``,
                                           ``temperature`` (accepted, 0 to 1; decoding is
                                           deterministic), ``model`` (any name)
``POST /v1/audio/translations``            the speech, in any language Whisper knows, as
                                           English text: multipart ``file``, ``prompt``
                                           (English), ``response_format``, ``temperature``,
                                           ``model``, as transcriptions take them; the
                                           language is detected (once per file)
``POST /v1/audio/speech``                  JSON ``input`` (text, or SSML when it starts with
                                           ``<speak``), ``voice``, ``response_format`` (wav,
                                           pcm, mp3, opus, flac), ``speed`` (0.25 to 4), and
                                           Voxline's ``emotion``, ``emotion_intensity`` and
                                           ``sample_rate``; the audio streams as it is made
``GET /v1/voices``                         the voice catalog, and which voices this server
                                           speaks
``GET /metrics``                           Prometheus text format (:mod:`agent.metrics`)
=========================================  ====================================================

Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400 for a bad
request (the message says what and, for SSML, where), 413 for an upload over
:data:`MAX_UPLOAD_BYTES` or a JSON body over :data:`MAX_JSON_BYTES` (refused from its
``Content-Length`` before the body is read, or as soon as a body without one grows past the
limit), 503 while the models load, when a model's queue is full, or when
``server.max_rest_jobs`` jobs (transcriptions, translations, speech: :mod:`agent.rest_jobs`)
are running, 500 (a generic message; details in the log) when our side fails.

Uploads are decoded only in the containers and codecs OpenAI takes
(:data:`pipeline.media.UPLOAD_FORMATS`, checked on what FFmpeg finds in the file, never its
name): anything else is a 400 naming the format found.

Uploads are decoded on a worker thread; audio is transcribed in windows on the executor every
call shares (:func:`pipeline.asr.batch.transcribe_file`), so the event loop never waits for a
model. A translation is Whisper's translate task on the same windows: its segments are the
windows (word times on a translation would be guesses, and OpenAI's translations give none),
its ``verbose_json`` language is ``"english"``, as OpenAI's, with the language detected in the
speech beside it as ``source_language``; the agent's configured ASR prompt is not used (it is
written for transcripts, and a prompt in the speech's language can pull Whisper into
transcribing).

``pcm`` speech is 24 kHz by default, as OpenAI's; other formats carry their rate and default
to the voice's own. OpenAI's voice names (``alloy``, ...) are accepted as the agent's
voice, so code written for OpenAI runs unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio.to_thread
import msgspec
import pydantic
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message

from agent.metrics import CONTENT_TYPE, METRICS, executor_statistics
from agent.reply import ReplyVoice
from agent.rest_jobs import HeldResponse, JobSlots
from agent.speech_stream import AudioEncoder, build_plan, split_plan, synthesize_plans
from agent.transcript_formats import Granularity, ResponseFormat, render
from pipeline.asr.batch import FileTranscript, transcribe_file
from pipeline.asr.decoder import DecodeOptions, whisper_languages
from pipeline.errors import ClientError, ConfigError, InvalidAudio, InvalidSSML, Overloaded
from pipeline.events import PIPELINE_RATE
from pipeline.media import CONTENT_TYPES, FORMATS_READ, OutputFormat, decode_audio
from voices.catalog import Catalog, Voice, load_catalog
from voices.emotion import parse_style
from voices.engine import SpeechChunk
from voices.ssml import looks_like_ssml

if TYPE_CHECKING:
    from agent.models import LoadedModels
    from agent.server import ServerState

log = logging.getLogger("voxline.rest")

#: the largest upload accepted (OpenAI's limit)
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
#: the longest audio transcribed in one request
MAX_AUDIO_SECONDS = 1800.0
#: characters of plain text, and of SSML markup, one speech request may hold
MAX_TEXT_CHARS = 4096
MAX_SSML_CHARS = 16384
#: OpenAI's built-in voice names: they speak with the agent's voice
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer"}
    | {"verse", "marin", "cedar"}
)
#: the largest JSON body accepted
MAX_JSON_BYTES = 1024 * 1024
#: a translation's low-confidence guard (:mod:`pipeline.asr.guards`; a transcript's is -1.0):
#: several English renderings fit one utterance, so each token is less certain. Measured with
#: the embedded Whisper base (greedy) on 13 espeak-ng French, German and Spanish sentences at
#: 5 rates, the 49 right translations averaged -0.4 to -1.7 per token: -1.0 dropped 12 of
#: them, -1.5 one. Nonsense still comes through at times: no guard tells a wrong
#: translation from a right one
TRANSLATION_MIN_AVG_LOGPROB = -1.5


class ApiError(Exception):
    """A request answered with an error of OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind

    def response(self) -> JSONResponse:
        error = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        headers = {"Retry-After": "1"} if self.status == 503 else None
        return JSONResponse({"error": error}, status_code=self.status, headers=headers)


def _upload_too_large() -> ApiError:
    megabytes = MAX_UPLOAD_BYTES // (1024 * 1024)
    return ApiError(
        413, f"the upload is larger than {megabytes} MiB", param="file", code="file_too_large"
    )


def _body_too_large() -> ApiError:
    kilobytes = MAX_JSON_BYTES // 1024
    return ApiError(413, f"the body is larger than {kilobytes} KiB", code="body_too_large")


# -- request bodies (pydantic: the REST boundary only) ------------------------------------------


class TranslationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompt: str | None = Field(None, max_length=2000)
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)


class TranscriptionParams(TranslationParams):
    """A translation's parameters, and the language and timings a transcript may take."""

    language: str | None = None
    timestamp_granularities: list[Granularity] | None = None
    stream: Literal[False] = False

    @pydantic.field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        if value is not None and value.lower() not in whisper_languages():
            raise ValueError(f"unknown language {value!r} (use an ISO 639-1 code such as 'en')")
        return value.lower() if value is not None else None


class VoiceRef(BaseModel):
    id: str


class SpeechParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    input: str = Field(min_length=1, max_length=MAX_SSML_CHARS)
    voice: str | VoiceRef
    response_format: OutputFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    emotion: str | None = None
    emotion_intensity: float = Field(1.0, ge=0.0, le=2.0)
    sample_rate: int | None = Field(None, ge=8000, le=48000)
    stream_format: Literal["audio"] = "audio"


M = TypeVar("M", bound=BaseModel)
P = TypeVar("P", bound=TranslationParams)


def _validated(model: type[M], data: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        if first["type"] == "extra_forbidden":
            message = f"unsupported parameter {param!r}"
        elif first["type"] == "missing":
            message = f"missing required parameter {param!r}"
        else:
            message = f"{param}: {first['msg'].removeprefix('Value error, ')}"
        raise ApiError(400, message, param=param, code="invalid_value") from None


# -- the routes -----------------------------------------------------------------------------------


def rest_routes(state: ServerState, jobs: JobSlots | None = None) -> list[Route]:
    """The REST routes of a server; ``state`` gives the models once they are loaded; ``jobs``
    are the jobs' slots (default: ``server.max_rest_jobs`` of their own)."""
    config = state.config
    if jobs is None:
        jobs = JobSlots(config.server.max_rest_jobs)
    catalog = served_catalog()
    METRICS.watch(
        sessions=lambda: (state.sessions, config.server.max_sessions),
        executors=lambda: executor_statistics(state.models) if state.models is not None else [],
        asr_wait=state.asr_wait,
    )

    def models() -> LoadedModels:
        if not state.ready.is_set() or state.models is None:
            raise ApiError(
                503, "the models are still loading", code="not_ready", kind="server_error"
            )
        return state.models

    async def transcribed(
        request: Request, kind: type[P], options: Callable[[P, DecodeOptions], DecodeOptions]
    ) -> tuple[P, FileTranscript]:
        """The upload's parameters (as ``kind``) and its audio transcribed with ``options``
        (the parameters and the agent's ASR options in, the decode's options out)."""
        asr = models()
        form, data = await _read_upload(request)
        params = _validated(kind, form)
        pcm = await anyio.to_thread.run_sync(
            functools.partial(decode_audio, data, PIPELINE_RATE, max_seconds=MAX_AUDIO_SECONDS)
        )
        return params, await transcribe_file(asr.asr, pcm, options(params, asr.asr_options))

    async def transcriptions(request: Request) -> Response:
        def options(params: TranscriptionParams, agent: DecodeOptions) -> DecodeOptions:
            return msgspec.structs.replace(
                agent,
                language=params.language or agent.language,
                initial_prompt=params.prompt or agent.initial_prompt,
                word_timestamps=True,
            )

        params, transcript = await transcribed(request, TranscriptionParams, options)
        granularities = frozenset(params.timestamp_granularities or ("segment", "word"))
        return _rendered(transcript, params.response_format, granularities)

    async def translations(request: Request) -> Response:
        def options(params: TranslationParams, agent: DecodeOptions) -> DecodeOptions:
            return msgspec.structs.replace(
                agent,
                language=None,
                task="translate",
                initial_prompt=params.prompt,
                word_timestamps=False,
                min_avg_logprob=TRANSLATION_MIN_AVG_LOGPROB,
            )

        params, transcript = await transcribed(request, TranslationParams, options)
        return _rendered(transcript, params.response_format, frozenset({"segment"}))

    async def speech(request: Request) -> Response:
        tts = models().tts
        try:
            raw = await limited_body(request, MAX_JSON_BYTES, _body_too_large).json()
        except ValueError:
            raise ApiError(400, "the body must be a JSON object", code="invalid_json") from None
        if not isinstance(raw, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        params = _validated(SpeechParams, raw)
        voice = _speakable(catalog, config.voice.name, params.voice)
        ssml = looks_like_ssml(params.input)
        limit = MAX_SSML_CHARS if ssml else MAX_TEXT_CHARS
        if len(params.input) > limit:
            raise ApiError(
                400, f"input: {len(params.input)} characters (limit {limit})", param="input"
            )
        style = None
        if params.emotion is not None:
            try:
                style = parse_style(params.emotion, params.emotion_intensity)
            except ValueError as error:
                raise ApiError(400, str(error), param="emotion", code="invalid_value") from None
        plan = build_plan(params.input, ReplyVoice.of(voice, speed=params.speed, style=style))
        if not plan.text.strip():
            raise ApiError(400, "input: there is nothing to say", param="input")
        chunks = synthesize_plans(tts, split_plan(plan))
        try:
            first = await anext(chunks)  # errors before any audio still get a status code
        except BaseException:
            await chunks.aclose()
            raise
        fmt = params.response_format
        rate = params.sample_rate or (24000 if fmt == "pcm" else tts.sample_rate)
        media_type = CONTENT_TYPES[fmt]
        if fmt == "pcm":
            media_type = f"audio/L16; rate={rate}; channels=1"
        encoder = AudioEncoder(fmt, tts.sample_rate, rate)
        return StreamingResponse(_encoded(chunks, first, encoder), media_type=media_type)

    async def voices(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": _listing(catalog, config.voice.name)})

    async def metrics(request: Request) -> Response:
        return Response(METRICS.exposition(), media_type=CONTENT_TYPE)

    return [
        Route(
            "/v1/audio/transcriptions",
            _endpoint("transcriptions", transcriptions, jobs=jobs),
            methods=["POST"],
        ),
        Route(
            "/v1/audio/translations",
            _endpoint("translations", translations, jobs=jobs),
            methods=["POST"],
        ),
        Route("/v1/audio/speech", _endpoint("speech", speech, jobs=jobs), methods=["POST"]),
        Route("/v1/voices", _endpoint("voices", voices), methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def _rendered(
    transcript: FileTranscript, fmt: ResponseFormat, granularities: frozenset[Granularity]
) -> Response:
    body, media_type = render(transcript, fmt, granularities=granularities)
    if isinstance(body, str):
        return PlainTextResponse(body, media_type=media_type)
    return JSONResponse(body)


def _endpoint(
    name: str, handler: Callable[[Request], Awaitable[Response]], *, jobs: JobSlots | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` with errors turned into OpenAI-shaped responses, and counted; with ``jobs``,
    each request holds a job slot from before its body is read until its response is sent."""

    async def answer(request: Request) -> Response:
        try:
            response = await handler(request)
        except Exception as error:  # every error becomes a response; ours are logged
            api = _as_api_error(name, error)
            METRICS.error("rest", api.code or str(api.status))
            response = api.response()
        METRICS.request(name, response.status_code)
        return response

    async def endpoint(request: Request) -> Response:
        if jobs is None:
            return await answer(request)
        if not jobs.take():
            METRICS.error("rest", "too_many_jobs")
            METRICS.request(name, 503)
            return _too_many_jobs(jobs.limit).response()
        try:
            response = await answer(request)
        except BaseException:
            jobs.give_back()
            raise
        return HeldResponse(response, jobs)  # the slot goes back once it is sent

    return endpoint


def _too_many_jobs(limit: int) -> ApiError:
    message = f"the server is running {limit} REST jobs (server.max_rest_jobs): try again shortly"
    return ApiError(503, message, code="too_many_jobs", kind="server_error")


def _as_api_error(name: str, error: Exception) -> ApiError:
    match error:
        case ApiError():
            return error
        case InvalidSSML():
            return ApiError(
                400,
                f"invalid SSML at line {error.line}, column {error.column}: {error.reason}",
                param="input",
                code="invalid_ssml",
            )
        case InvalidAudio():
            message = str(error)
            if message.startswith("cannot decode"):
                message = f"{message} (formats read: {FORMATS_READ})"
            return ApiError(400, message, param="file", code="invalid_audio")
        case ClientError():
            return ApiError(400, str(error), code="invalid_request")
        case Overloaded():
            log.warning("%s refused: %s", name, error)
            return ApiError(
                503, "the server is busy: try again shortly", code="overloaded", kind="server_error"
            )
        case _:
            log.exception("%s failed", name)
            return ApiError(500, "the server failed to answer", kind="server_error")


# -- uploads ------------------------------------------------------------------------------------


async def _read_upload(request: Request) -> tuple[dict[str, Any], bytes]:
    """The form fields (besides ``file``) and the uploaded file's bytes, within the size limit."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        raise ApiError(
            400, "send multipart/form-data with the audio in a `file` field", param="file"
        )
    limited = limited_body(request, MAX_UPLOAD_BYTES, _upload_too_large)
    try:
        async with limited.form(max_files=1, max_fields=32) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "no file: send the audio as the `file` field", param="file")
            fields: dict[str, Any] = {}
            for key in {k for k in form if k != "file"}:
                values = form.getlist(key)
                if any(not isinstance(v, str) for v in values):
                    raise ApiError(400, f"{key}: expected text, not a file", param=key)
                if key.endswith("[]"):
                    fields[key.removesuffix("[]")] = values
                else:
                    fields[key] = values[-1]
            data = await upload.read()
    except HTTPException as error:  # the multipart body itself is malformed
        raise ApiError(error.status_code, f"malformed multipart body: {error.detail}") from None
    return fields, data


def limited_body(request: Request, limit: int, too_large: Callable[[], ApiError]) -> Request:
    """``request`` with its body refused (``too_large()``, a 413) as soon as its
    ``Content-Length`` or its received size is over ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large()
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large()
        return message

    return Request(request.scope, receive)


# -- speech -------------------------------------------------------------------------------------


@functools.cache
def served_catalog() -> Catalog | None:
    """The voice catalog, read once (``None``, logged, when it does not load)."""
    try:
        return load_catalog()
    except ConfigError as error:
        log.error("the voice catalog does not load: %s", error)
        return None


def _speakable(catalog: Catalog | None, loaded: str, requested: str | VoiceRef) -> Voice | None:
    """The catalog entry of the voice asked for (``None`` if the catalog lacks the loaded one);
    a voice this server does not speak is a 400."""
    name = requested.id if isinstance(requested, VoiceRef) else requested
    if name == loaded or name.lower() in OPENAI_VOICES:
        return catalog.get(loaded) if catalog is not None and loaded in catalog else None
    if catalog is not None and name in catalog:
        message = f"voice {name!r} is in the catalog, but this server speaks only {loaded!r}"
    else:
        message = f"unknown voice {name!r} (this server speaks {loaded!r})"
    raise ApiError(400, message, param="voice", code="unknown_voice")


def _listing(catalog: Catalog | None, loaded: str) -> list[dict[str, Any]]:
    listed = []
    for info in catalog.listing() if catalog is not None else []:
        entry = msgspec.structs.asdict(info)
        entry["styles"] = list(info.styles)
        entry["available"] = entry["default"] = info.name == loaded
        listed.append(entry)
    if not any(entry["name"] == loaded for entry in listed):
        listed.append({"name": loaded, "available": True, "default": True})
    return listed


async def _encoded(
    chunks: AsyncGenerator[SpeechChunk, None], first: SpeechChunk, encoder: AudioEncoder
) -> AsyncIterator[bytes]:
    """The encoded audio of ``first`` and the chunks after it (encoding on a worker thread).

    An engine failure after the first bytes cannot change the status any more: it is logged
    and the response is cut short (the client sees an incomplete body, not a shorter file).
    """
    async with contextlib.aclosing(chunks):
        try:
            if data := await anyio.to_thread.run_sync(encoder.encode, first.pcm):
                yield data
            async for chunk in chunks:
                if data := await anyio.to_thread.run_sync(encoder.encode, chunk.pcm):
                    yield data
            if tail := await anyio.to_thread.run_sync(encoder.close):
                yield tail
        except Exception as error:
            log.error("speech failed mid-stream: %s", type(error).__name__)
            METRICS.error("rest", "speech_stream")
            raise
