"""Calls between Voxline and baresip (Debian package ``baresip``), a real softphone, headless.

baresip's microphone is a WAV file (the ``aufile`` module: espeak-ng speech and silence, 8 kHz
mono) and what it hears is recorded by the ``sndfile`` module (``*-dec.wav`` in ``snd_path``);
its player is an ``aubridge`` device nothing reads, so no sound card is needed. When the WAV
ends, baresip hangs up: the file's length bounds the call. The test stops baresip once it says
the call terminated, and transcribes the recording with the tests' Whisper.

baresip listens on UDP and TCP at its port and TLS at the next one: :func:`free_sip_port`.
Its output is kept in artifacts/ (``baresip-*.log``).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from anyio.abc import Process

from pipeline.asr.decoder import DecodeRequest, WhisperDecoder
from tests.audio import espeak, is_greeting, read_wav, silence, write_wav
from tests.server import ARTIFACTS, ROOT, running_server

BARESIP = Path("/usr/bin/baresip")
MODULES = Path("/usr/lib/baresip/modules")
RATE = 8000  # what aufile wants for PCMU: the codec's rate, mono S16LE

pytestmark = pytest.mark.skipif(not BARESIP.exists(), reason="baresip is missing")


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


def _free(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_sip_port() -> int:
    """A port ``p`` on 127.0.0.1 with ``p`` and ``p + 1`` free for both UDP and TCP (as of now)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port < 65535 and all(
            _free(p, kind)
            for p in (port, port + 1)
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)
        ):
            return port


class Softphone:
    """baresip with a config folder of its own: account ``phone@127.0.0.1``, PCMU/PCMA only."""

    def __init__(self, folder: Path, name: str, microphone: np.ndarray[Any, Any]) -> None:
        self.folder = folder
        self.name = name
        self.port = free_sip_port()
        self.records = folder / "records"
        self.records.mkdir()
        self.output = bytearray()
        mic = folder / "microphone.wav"
        mic.write_bytes(write_wav(microphone, RATE))
        lines = [
            f"sip_listen 127.0.0.1:{self.port}",
            "net_interface 127.0.0.1",  # SDP and RTP on loopback, not the host's address
            f"module_path {MODULES}",
            "audio_path /usr/share/baresip",
            f"audio_source aufile,{mic}",
            "audio_player aubridge,nowhere",
            "audio_alert aubridge,nowhere",
            f"snd_path {self.records}",
            "call_local_timeout 30",
            *(f"module {m}.so" for m in ("g711", "aufile", "aubridge", "sndfile")),
            "module_tmp account.so",
            "module_app menu.so",  # runs -e commands, answers per answermode, hangs up at EOF
        ]
        (folder / "config").write_text("\n".join(lines) + "\n")
        (folder / "accounts").write_text("<sip:phone@127.0.0.1>;regint=0;answermode=auto\n")

    async def run(self, *commands: str, seconds: int = 60) -> _Running:
        """Start baresip (``-e`` commands, then quit after ``seconds`` at the latest)."""
        command = ["timeout", str(seconds + 15), str(BARESIP), "-f", str(self.folder)]
        command += ["-t", str(seconds)]
        for c in commands:
            command += ["-e", c]
        process = await anyio.open_process(
            command, stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        return _Running(self, process)

    def recording(self) -> np.ndarray[Any, Any]:
        """What baresip heard, as 16 kHz PCM16."""
        (heard,) = self.records.glob("*-dec.wav")
        samples, _ = read_wav(heard, 16000)
        return samples

    def keep_log(self) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"baresip-{self.name}.log").write_bytes(bytes(self.output))


class _Running:
    def __init__(self, phone: Softphone, process: Process) -> None:
        self.phone = phone
        self.process = process

    async def until(self, text: str) -> bool:
        """Read baresip's output until it has said ``text`` (False: it ended first)."""
        assert self.process.stdout is not None
        output = self.phone.output
        while text.encode() not in output:
            try:
                output += await self.process.stdout.receive()
            except anyio.EndOfStream:
                return False
        return True

    async def stop(self) -> int:
        """Stop baresip (SIGTERM: it ends its calls and quits); its exit status."""
        if self.process.returncode is None:
            self.process.terminate()
        with anyio.CancelScope(shield=True):
            assert self.process.stdout is not None
            async for chunk in self.process.stdout:
                self.phone.output += chunk
            status = await self.process.wait()
            await self.process.aclose()
            self.phone.keep_log()
        return status


def transcribe(decoder: WhisperDecoder, pcm: np.ndarray[Any, Any]) -> str:
    audio = pcm.astype(np.float32) / np.float32(32768)
    return decoder.decode(DecodeRequest(audio=audio, final=True)).text.lower()


TERMINATED = "terminated (duration"  # baresip: "Call with ... terminated (duration: N secs)"


@pytest.mark.anyio
async def test_baresip_calls_voxline_asks_and_hears_the_answer(
    tmp_path: Path, whisper_decoder: WhisperDecoder
) -> None:
    # the greeting plays out, then the question, then time for the answer; then EOF: hang up
    question = espeak("What can you do?", RATE)
    microphone = np.concatenate([silence(5, RATE), question, silence(10, RATE)])
    phone = Softphone(tmp_path, "caller", microphone)
    sip_port = free_sip_port()
    with running_server(args=["--sip", f"127.0.0.1:{sip_port}"]):
        with anyio.fail_after(90):
            baresip = await phone.run(f"/dial sip:voxline@127.0.0.1:{sip_port}")
            try:
                ended = await baresip.until(TERMINATED)
            finally:
                await baresip.stop()
    output = bytes(phone.output).decode(errors="replace")
    assert ended, output
    assert "Call established" in output, output
    heard = await anyio.to_thread.run_sync(transcribe, whisper_decoder, phone.recording())
    assert is_greeting(heard), heard  # the greeting
    assert "person" in heard or "through" in heard, heard  # the answer: only it says these


@pytest.mark.anyio
async def test_voxline_dials_baresip_which_answers_and_hears_the_greeting(
    tmp_path: Path, whisper_decoder: WhisperDecoder
) -> None:
    phone = Softphone(tmp_path, "callee", silence(7, RATE))  # answers, hangs up after 7 s
    with anyio.fail_after(150):
        baresip = await phone.run()
        try:
            assert await baresip.until("baresip is ready"), bytes(phone.output)
            dial = [sys.executable, "-m", "agent.cli", "dial"]
            dial += [f"sip:phone@127.0.0.1:{phone.port}", "--config", "configs/default.yaml"]
            result = await anyio.run_process(
                ["timeout", "120", *dial], cwd=ROOT, check=False, stderr=subprocess.STDOUT
            )
            ended = await baresip.until(TERMINATED)
        finally:
            await baresip.stop()
    dialled = result.stdout.decode()
    (ARTIFACTS / "dial-baresip.log").write_text(dialled)
    output = bytes(phone.output).decode(errors="replace")
    assert result.returncode == 0, dialled
    assert "call ended: hangup" in dialled, dialled  # baresip hung up at the end of its WAV
    assert ended, output
    heard = await anyio.to_thread.run_sync(transcribe, whisper_decoder, phone.recording())
    assert is_greeting(heard), heard
