"""Byte caps on what a client controls, against the real server: each cap exceeded gets a clear
error naming its limit, and the server (and every other call) goes on.

- WebSocket messages per endpoint (native and Twilio 256 KiB, Realtime 16 MiB): closed 1009;
- the Realtime API's instructions and typed text (the official SDK as the client): an
  ``error`` naming the param, the session goes on;
- SSML's total pauses (REST speech): 400;
- uploads only in the containers and codecs OpenAI takes: 400 naming the format;
- REST jobs in their own slots (``server.max_rest_jobs``): 503 + Retry-After past them, and a
  call still starts meanwhile.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import av
import httpx
import numpy as np
import openai
import pytest
import websockets
from openai import AsyncOpenAI

from tests.audio import silence, write_wav
from tests.server import RunningServer, running_server
from tests.test_auth import agent_file
from transports import realtime_caps as caps

HELLO = json.dumps({"type": "hello", "sample_rate": 16000})
SMALL = 256 * 1024  # the native and Twilio endpoints' largest message (agent.ws_io)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The server runs its own loop (uvloop); the client's loop does not matter: run once."""
    return ("asyncio", {})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("caps")
    with running_server(str(agent_file(folder, {"max_rest_jobs": 1}))) as running:
        yield running


async def _started(ws: websockets.ClientConnection) -> None:
    await ws.send(HELLO)
    while json.loads(await ws.recv())["type"] != "session.started":
        pass


async def _answered(ws: websockets.ClientConnection) -> None:
    await ws.send(json.dumps({"type": "text", "text": "What can you do?"}))
    while json.loads(await ws.recv())["type"] != "agent.text":
        pass


async def _closed(ws: websockets.ClientConnection) -> tuple[int, str]:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


# -- WebSocket messages -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_message_over_its_endpoints_limit_closes_that_socket_with_1009(
    server: RunningServer,
) -> None:
    """Native (binary and text) and Twilio: 256 KiB. The call beside it goes on."""
    twilio_start = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0"})
    with anyio.fail_after(60):
        async with websockets.connect(f"{server.ws}/v1/stream") as other:
            await _started(other)
            cases: list[tuple[str, str, str | bytes]] = [
                ("/v1/stream", HELLO, bytes(SMALL + 1)),
                ("/v1/stream", HELLO, json.dumps({"type": "text", "text": "x" * SMALL})),
                ("/v1/telephony/twilio", twilio_start, "x" * (SMALL + 1)),
            ]
            for path, opening, message in cases:
                async with websockets.connect(f"{server.ws}{path}", max_size=None) as ws:
                    await ws.send(opening)
                    await ws.send(message)
                    code, reason = await _closed(ws)
                size = len(message) if isinstance(message, bytes) else len(message.encode())
                assert code == 1009, path
                assert reason == f"message too big: {size} bytes (limit {SMALL})"
            # a message at the limit is read (and refused by the protocol, which goes on)
            await other.send(bytes(SMALL))
            await _answered(other)


@pytest.mark.anyio
async def test_a_realtime_message_over_16_mib_closes_the_socket_with_1009(
    server: RunningServer,
) -> None:
    limit = caps.MAX_MESSAGE_BYTES
    with anyio.fail_after(60):
        async with websockets.connect(f"{server.ws}/v1/realtime", max_size=None) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            await ws.send("x" * (limit + 1))
            assert await _closed(ws) == (
                1009,
                f"message too big: {limit + 1} bytes (limit {limit})",
            )


# -- the Realtime API's caps, through the official SDK ------------------------------------------


@pytest.mark.anyio
async def test_realtime_caps_refuse_the_request_naming_its_param_and_the_session_goes_on(
    server: RunningServer,
) -> None:
    client = AsyncOpenAI(api_key="x", websocket_base_url=f"{server.ws}/v1")
    long_text = "t" * (caps.MAX_TYPED_CHARS + 1)
    with anyio.fail_after(60):
        async with client.realtime.connect(model="voxline") as connection:

            async def next_of(*kinds: str) -> Any:
                while (event := await connection.recv()).type not in kinds:
                    pass
                return event

            await next_of("session.created")
            instructions = "i" * (caps.MAX_INSTRUCTIONS_CHARS + 1)
            await connection.session.update(
                session={"type": "realtime", "instructions": instructions}
            )
            error = await next_of("error", "session.updated")
            assert error.type == "error"
            assert (error.error.code, error.error.param) == (
                "value_too_large",
                "session.instructions",
            )
            assert f"the limit is {caps.MAX_INSTRUCTIONS_CHARS}" in error.error.message
            await connection.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": long_text}],
                }
            )
            error = await next_of("error", "conversation.item.added")
            assert (error.type, error.error.param) == ("error", "item.content")
            # the session goes on: at the caps, the same requests are taken
            await connection.session.update(session={"type": "realtime", "instructions": "Hi."})
            updated = await next_of("error", "session.updated")
            assert updated.type == "session.updated"
            assert updated.session.instructions == "Hi."
            await connection.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": long_text[1:]}],
                }
            )
            added = await next_of("error", "conversation.item.added")
            assert added.type == "conversation.item.added"


# -- SSML -----------------------------------------------------------------------------------------


def test_ssml_whose_pauses_add_up_past_the_cap_is_refused(server: RunningServer) -> None:
    ssml = "<speak>" + "Wait.<break time='9s'/>" * 7 + "Done.</speak>"
    with openai.OpenAI(base_url=f"{server.http}/v1", api_key="unused", max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.audio.speech.create(model="tts-1", voice="alloy", input=ssml)
        assert "the pauses add up to more than 60000 ms" in refused.value.message
        assert refused.value.body["param"] == "input"  # type: ignore[index]
        spoken = sdk.audio.speech.create(model="tts-1", voice="alloy", input="Done.")
        assert spoken.content  # the next request is served


# -- uploads --------------------------------------------------------------------------------------


def _encoded(container: str, codec: str, rate: int = 16000) -> bytes:
    """Half a second of a tone, as ``codec`` in ``container`` (PyAV, no FFmpeg binary)."""
    out = io.BytesIO()
    tone = (np.sin(np.arange(rate // 2) * 2 * np.pi * 440 / rate) * 8000).astype(np.int16)
    with av.open(out, "w", format=container) as file:
        stream = file.add_stream(codec, rate=rate)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        fmt = stream.format.name if stream.format else "s16"
        for resampled in av.AudioResampler(format=fmt, layout="mono", rate=rate).resample(frame):
            for packet in stream.encode(resampled):
                file.mux(packet)
        for packet in stream.encode(None):
            file.mux(packet)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "container", "codec", "says"),
    [
        ("a.aiff", "aiff", "pcm_s16be", "the aiff format"),
        ("a.wav", "wav", "adpcm_ms", "adpcm_ms in wav"),  # named .wav: the codec decides
        ("a.webm", "matroska", "pcm_s16le", "pcm_s16le in webm"),
        ("a.mp3", "ac3", "ac3", "the ac3 format"),  # named .mp3: the content decides
    ],
)
def test_an_upload_outside_the_allowlist_is_refused_naming_its_format(
    server: RunningServer, name: str, container: str, codec: str, says: str
) -> None:
    data = _encoded(container, codec, 44100 if codec == "ac3" else 16000)
    with openai.OpenAI(base_url=f"{server.http}/v1", api_key="unused", max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.audio.transcriptions.create(model="whisper-1", file=(name, data))
        assert f"unsupported audio: {says}" in refused.value.message
        assert "formats read: flac, m4a, mp3" in refused.value.message
        assert refused.value.body["param"] == "file"  # type: ignore[index]


# -- REST job slots -------------------------------------------------------------------------------


async def _ready(client: httpx.AsyncClient, server: RunningServer) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"{server.http}/health/ready")).json()
    return body


@pytest.mark.anyio
async def test_rest_jobs_past_their_slots_get_503_and_never_take_a_calls_slot(
    server: RunningServer,
) -> None:
    """``max_rest_jobs: 1``: an upload whose body is still coming holds the slot; a second gets
    503 + Retry-After at once, while a call starts as usual; then the first is answered."""
    boundary = "capsboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    wav = write_wav(silence(0.5), 16000)
    release = anyio.Event()

    async def slow_upload() -> AsyncIterator[bytes]:
        yield head + wav[:100]
        await release.wait()
        yield wav[100:] + tail

    url = f"{server.http}/v1/audio/transcriptions"
    sdk = AsyncOpenAI(base_url=f"{server.http}/v1", api_key="unused", max_retries=0)
    with anyio.fail_after(60):
        async with httpx.AsyncClient(timeout=60) as client, sdk:
            while (ready := await _ready(client, server))["rest_jobs"] or ready["sessions"]:
                pass  # another test's job or call is still ending
            first: list[httpx.Response] = []
            async with anyio.create_task_group() as tg:

                async def send_first() -> None:
                    kind = {"content-type": f"multipart/form-data; boundary={boundary}"}
                    first.append(await client.post(url, content=slow_upload(), headers=kind))

                tg.start_soon(send_first)
                while (await _ready(client, server))["rest_jobs"] == 0:
                    pass  # until the server holds the slot for the upload it is reading
                with pytest.raises(openai.APIStatusError) as busy:
                    await sdk.audio.transcriptions.create(model="whisper-1", file=("b.wav", wav))
                assert busy.value.status_code == 503
                assert busy.value.response.headers["retry-after"] == "1"
                error = busy.value.response.json()["error"]
                assert error["code"] == "too_many_jobs"
                assert "server.max_rest_jobs" in error["message"]
                # the job holds no call's slot: a call starts and is answered meanwhile
                assert (await _ready(client, server))["sessions"] == 0
                async with websockets.connect(f"{server.ws}/v1/stream") as call:
                    await _started(call)
                    await _answered(call)
                release.set()
            assert first[0].status_code == 200, first[0].text
            assert (await _ready(client, server))["rest_jobs"] == 0
            third = await sdk.audio.transcriptions.create(model="whisper-1", file=("c.wav", wav))
            assert isinstance(third.text, str)
