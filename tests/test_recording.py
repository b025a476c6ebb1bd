"""Stereo call recordings (agent/records/recording.py): the writer against a fake clock and a
real directory, then real native WebSocket calls to a real server, the WAVs heard by Whisper.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import numpy as np
import pytest
import websockets
import yaml  # type: ignore[import-untyped]  # no stubs installed

from agent.config import parse_config
from agent.config.schema import RecordsConfig
from agent.metrics import METRICS
from agent.records import Recorder
from agent.records.recording import QUEUE_BYTES, RATE, Recordings, RecordingSink
from agent.server_process import ROOT
from pipeline.asr.decoder import DecodeRequest, WhisperDecoder
from pipeline.clock import FakeClock
from pipeline.errors import ConfigError
from tests.audio import espeak, is_greeting, silence
from tests.server import RunningServer, running_server
from tests.test_server import Call
from tests.test_session import Recorder as KeptSink

FRAME_S = 0.02


def dropped(reason: str) -> float:
    for line in METRICS.exposition().decode().splitlines():
        if line.startswith(f'voxline_recording_dropped_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


def tone(seconds: float, rate: int, hz: float = 440.0, level: float = 8000.0) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * level).astype("<i2").tobytes()


def read_stereo(data: bytes) -> tuple[tuple[int, int, int], np.ndarray[Any, Any]]:
    """(channels, sample width, rate) and the frames as an (n, 2) int16 array."""
    with wave.open(io.BytesIO(data)) as wav:
        params = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate())
        pcm = wav.readframes(wav.getnframes())
    return params, np.frombuffer(pcm, dtype="<i2").reshape(-1, params[0])


def rms(samples: np.ndarray[Any, Any]) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


class Sink24k(KeptSink):
    """A transport whose audio goes out at 24 kHz (the Realtime API's rate)."""

    output_rate = 24000


# -- the writer ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_both_sides_are_laid_on_the_calls_clock_and_a_cut_silences_the_agent(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    recordings = Recordings(tmp_path)
    audio = recordings.open("call-1", clock.now, lead=0.06)
    transport = Sink24k()
    sink = RecordingSink(transport, audio)
    reply = tone(1.0, 24000)
    caller = tone(0.5, RATE, hz=300)
    with anyio.fail_after(30):
        clock.advance(0.1)
        for n in range(30):  # 0.6 s of the reply, paced as the playout sends it
            await sink.send_audio(1, reply[n * 960 : (n + 1) * 960])
            clock.advance(FRAME_S)
        assert await sink.clear_audio(1) is None  # a barge-in at 0.7 s
        clock.advance(0.3)  # the caller's audio arrives from 1.0 s on
        for n in range(25):
            clock.advance(FRAME_S)
            audio.heard(caller[n * 640 : (n + 1) * 640])
        await recordings.flush()  # written as it goes: the file is not finished yet
        assert (tmp_path / "call-1.wav.part").is_file()
        assert not (tmp_path / "call-1.wav").exists()
        audio.end()
        await recordings.flush()
    assert transport.log[:2] == [("audio", 1), ("clear", 1)]  # the transport got it all
    assert len(transport.audio[1]) == 30 * 960
    assert not (tmp_path / "call-1.wav.part").exists()
    params, frames = read_stereo((tmp_path / "call-1.wav").read_bytes())
    assert params == (2, 2, RATE)
    left, right = frames[:, 0], frames[:, 1]
    heard_at = round(1.0 * RATE)  # its first frame arrived at 1.02 s, 20 ms long
    assert not left[:heard_at].any()
    assert left[heard_at : heard_at + len(caller) // 2].tobytes() == caller
    plays_at, cut_at = round(0.16 * RATE), round(0.7 * RATE)  # sent at 0.1 s, 60 ms ahead
    assert not right[: plays_at - 1].any()
    assert rms(right[plays_at + 400 : cut_at - 400]) > 4000  # resampled to 16 kHz, whole
    assert not right[cut_at:].any()  # the barge-in: nothing after the cut
    assert len(frames) == heard_at + len(caller) // 2


@pytest.mark.anyio
async def test_the_far_sides_answer_places_the_cut(tmp_path: Path) -> None:
    clock = FakeClock()
    recordings = Recordings(tmp_path)
    audio = recordings.open("call-2", clock.now, lead=0.0)
    reply = tone(1.0, RATE)
    with anyio.fail_after(30):
        for n in range(50):
            audio.played(1, reply[n * 640 : (n + 1) * 640], RATE)
            clock.advance(FRAME_S)
        audio.cut(1, played=round(0.4 * RATE), rate=RATE)  # it played only 0.4 s of it
        audio.end()
        await recordings.flush()
    _, frames = read_stereo((tmp_path / "call-2.wav").read_bytes())
    right = frames[:, 1]
    assert right[: round(0.4 * RATE)].tobytes() == reply[: round(0.4 * RATE) * 2]
    assert not right[round(0.4 * RATE) :].any()


@pytest.mark.anyio
async def test_audio_beyond_the_calls_queue_is_dropped_and_counted(tmp_path: Path) -> None:
    before = dropped("queue_full")
    clock = FakeClock()
    recordings = Recordings(tmp_path)
    audio = recordings.open("call-3", clock.now, lead=0.0)
    chunk = bytes(QUEUE_BYTES // 2)
    audio.heard(chunk)
    audio.heard(chunk)
    audio.heard(bytes(640))  # the writer is behind (it has not run): dropped, never waited
    assert dropped("queue_full") == before + 1
    with anyio.fail_after(30):
        audio.end()
        await recordings.flush()
    _, frames = read_stereo((tmp_path / "call-3.wav").read_bytes())
    assert len(frames) == QUEUE_BYTES // 2  # the two chunks, the second one laid after the first


@pytest.mark.anyio
async def test_a_recording_that_cannot_be_written_stops_and_the_call_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    before = dropped("write_failed")
    clock = FakeClock()
    recordings = Recordings(folder)
    broken = recordings.open("broken", clock.now, lead=0.0)
    shutil.rmtree(folder)  # the disk went away under it
    with anyio.fail_after(30):
        broken.heard(bytes(640))
        await recordings.flush()
        broken.heard(bytes(640))  # told nothing more, never raising
        folder.mkdir()
        fine = recordings.open("fine", clock.now, lead=0.0)
        fine.heard(tone(0.1, RATE))
        broken.end()
        fine.end()
        await recordings.flush()
    assert dropped("write_failed") == before + 2
    assert any("call broken: recording failed" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in folder.iterdir()) == ["fine.wav"]


@pytest.mark.anyio
async def test_the_writer_finishes_the_open_recordings_when_it_stops(tmp_path: Path) -> None:
    clock = FakeClock()
    recordings = Recordings(tmp_path, batch_s=0)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(recordings.run)
            audio = recordings.open("open", clock.now, lead=0.0)
            clock.advance(FRAME_S)
            audio.heard(tone(FRAME_S, RATE))
            tg.cancel_scope.cancel()  # the server stops mid-call
    assert (tmp_path / "open.wav").is_file()
    late = recordings.open("late", clock.now, lead=0.0)
    assert late.ended  # a call after the writer stopped keeps nothing
    assert not (tmp_path / "late.wav.part").exists()


@pytest.mark.anyio
async def test_a_bad_recording_dir_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as empty:
        parse_config(b"server: {records: {recording_dir: ''}}\n", ".yaml")
    assert empty.value.path == "$.server.records.recording_dir"
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for bad in (a_file, a_file / "below"):
        with pytest.raises(ConfigError) as error:
            Recorder(RecordsConfig(url="sqlite:///:memory:", recording_dir=str(bad)), "default")
        assert error.value.path == "$.server.records.recording_dir"
        assert str(bad) in error.value.reason
    created = tmp_path / "new" / "recordings"
    recorder = Recorder(RecordsConfig(url="sqlite:///:memory:", recording_dir=str(created)), "x")
    assert created.is_dir()
    assert recorder.recordings is not None
    with anyio.fail_after(30):
        await recorder.aclose()


def test_voxline_serve_refuses_a_recording_dir_it_cannot_write(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    config = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    config["server"]["records"] = {"recording_dir": str(a_file)}
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    serve = [sys.executable, "-m", "agent.cli", "serve", "--config", str(path), "--port", "0"]
    result = subprocess.run(
        ["timeout", "120", *serve], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "$.server.records.recording_dir" in result.stderr
    assert "not a directory" in result.stderr


# -- real calls ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recording")


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[RunningServer]:
    config = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    config["server"]["records"] = {
        "url": f"sqlite:///{folder}/calls.db",
        "recording_dir": str(folder / "recordings"),
    }
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    with running_server(str(path)) as running:
        yield running


def heard(decoder: WhisperDecoder, samples: np.ndarray[Any, Any]) -> str:
    audio = samples.astype(np.float32) / np.float32(32768)
    return decoder.decode(DecodeRequest(audio=audio, final=True)).text.lower()


def loud(samples: np.ndarray[Any, Any], level: float = 300.0) -> np.ndarray[Any, Any]:
    """The start (seconds) of each 20 ms frame of ``samples`` louder than ``level``."""
    size = round(FRAME_S * RATE)
    count = len(samples) // size
    frames = samples[: count * size].astype(np.float64).reshape(count, size)
    levels = np.sqrt(np.mean(frames**2, axis=1))
    return np.flatnonzero(levels > level) * FRAME_S


async def recorded(server: RunningServer, call_id: str) -> tuple[dict[str, Any], bytes]:
    """The call's record and its recording, once both are written."""
    await anyio.to_thread.run_sync(server.wait_for_log, f"call {call_id}: recording saved", 30)
    await anyio.to_thread.run_sync(server.wait_for_log, f"call {call_id} recorded", 30)
    async with httpx.AsyncClient(base_url=server.http) as http:
        record = (await http.get(f"/v1/calls/{call_id}")).json()
        wav = await http.get(f"/v1/calls/{call_id}/recording")
        missing = await http.get("/v1/calls/no-such-call/recording")
    assert wav.status_code == 200
    assert wav.headers["content-type"] == "audio/wav"
    assert missing.json()["error"]["code"] == "call_not_found"
    return record, wav.content


@pytest.mark.anyio
async def test_a_spoken_call_is_recorded_in_stereo_the_caller_left_the_agent_right(
    server: RunningServer, folder: Path, whisper_decoder: WhisperDecoder
) -> None:
    with anyio.fail_after(120):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = Call(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            started = await call.receive_until(lambda e: e["type"] == "session.started")
            await call.receive_until(lambda e: e["type"] == "audio.end")  # the greeting
            async with anyio.create_task_group() as tg:  # then the caller speaks
                speech = np.concatenate([espeak("What can you do?"), silence(1.5)])
                tg.start_soon(call.stream, speech)
                await call.receive_until(lambda e: e["type"] == "audio.end")  # the answer
            await ws.send(json.dumps({"type": "bye"}))
        call_id = started["session_id"]
        record, wav = await recorded(server, call_id)
    assert record["recording"] == f"{call_id}.wav"
    assert wav == (folder / "recordings" / f"{call_id}.wav").read_bytes()
    params, frames = read_stereo(wav)
    assert params == (2, 2, RATE)  # stereo, 16 kHz PCM16
    left, right = frames[:, 0], frames[:, 1]
    greeting, caller, answer = record["lines"]
    spoke = loud(left)[0]  # the caller's first word
    agent = loud(right)
    gap = int(np.argmax(np.diff(agent)))  # the agent's longest silence: between its replies
    greeting_end, answered = agent[gap], agent[gap + 1]
    greeting_heard = heard(whisper_decoder, right[: round(answered * RATE)])
    assert is_greeting(greeting_heard), greeting_heard
    assert "what can you do" in heard(whisper_decoder, left)
    assert "message" in heard(whisper_decoder, right[round(answered * RATE) :])
    # the test spoke once the greeting had played, and the agent answered after: so it is
    # laid out, the caller's words in the agent's silence between its two replies
    assert greeting_end < spoke < answered
    # and both sides line up with the record's times
    assert abs(agent[0] - greeting["start_s"]) < 0.3
    assert abs(spoke - caller["start_s"]) < 0.6
    assert abs(answered - answer["start_s"]) < 0.3


@pytest.mark.anyio
async def test_a_barge_in_shows_as_the_agent_stopping_where_it_was_cut(
    server: RunningServer, whisper_decoder: WhisperDecoder
) -> None:
    with anyio.fail_after(120):
        async with websockets.connect(f"{server.ws}/v1/stream") as ws:
            call = Call(ws)
            await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
            started = await call.receive_until(lambda e: e["type"] == "session.started")
            async with anyio.create_task_group() as tg:  # speaks over the greeting
                speech = [silence(1.5), espeak("What can you do?"), silence(1.5)]
                tg.start_soon(call.stream, np.concatenate(speech))
                await call.receive_until(lambda e: e["type"] == "interrupted")
                await call.receive_until(lambda e: e["type"] == "audio.end" and e["generation"] > 1)
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(json.dumps({"type": "bye"}))
        record, wav = await recorded(server, started["session_id"])
    greeting, *_, answer = record["lines"]
    assert greeting["interrupted"]
    _, frames = read_stereo(wav)
    right = frames[:, 1]
    cut, answered = greeting["end_s"], answer["start_s"]
    assert answered - cut > 0.5
    # the greeting plays until the cut (give or take a pause between its words) ...
    assert loud(right[: round(cut * RATE)])[-1] > cut - 0.6
    # ... and from there nothing of it plays: silence until the answer
    assert not right[round((cut + 0.05) * RATE) : round(answered * RATE)].any()
    said = heard(whisper_decoder, right[: round(answered * RATE)])  # only its first words
    assert "this is" in said
    assert "message" not in said  # "Hi, this is Voxline. You can leave a message, ..."
