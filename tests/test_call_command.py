"""``voxline call`` against the real server process, on both protocols, and its usage errors.

The caller's WAV is espeak-ng speech written as stereo at 22.05 kHz, so the command has to mix
it down and resample it. The command runs as a user runs it (``agent.cli.main``); what it
printed and the reply WAV it wrote are checked.
"""

from __future__ import annotations

import re
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.call_command import read_wav
from agent.caller import LOUD
from agent.cli import main
from tests.audio import espeak, write_wav
from tests.server import RunningServer, free_port, running_server

QUESTION = "What time do you open?"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture(scope="module")
def question(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mono = espeak(QUESTION, rate=22050)
    path = tmp_path_factory.mktemp("call") / "question.wav"
    path.write_bytes(write_wav(np.repeat(mono, 2), 22050, channels=2))  # L and R interleaved
    return path


def words(line: str) -> str:
    return re.sub(r"[^a-z ]", "", line.lower())


@pytest.mark.parametrize(
    ("options", "rate"), [([], 16000), (["--realtime"], 24000)], ids=["native", "realtime"]
)
def test_a_wav_played_to_the_server_gets_a_spoken_reply_with_transcript_and_latency(
    server: RunningServer,
    question: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    rate: int,
) -> None:
    out = tmp_path / "reply.wav"
    argv = ["call", "--wav", str(question), "--url", server.ws, "--out", str(out), *options]
    code = main(argv)
    printed = capsys.readouterr()
    assert code == 0, printed
    lines = printed.out.splitlines()
    heard = [words(line) for line in lines if line.startswith("caller: ")]
    assert any("what time do you open" in line for line in heard), printed.out
    assert any(line.startswith("agent") and len(line) > len("agent: ") for line in lines)
    assert any(line.startswith("latency: ") and "measured here" in line for line in lines)
    if not options:  # the native protocol also carries the server's breakdown
        assert any(line.startswith("latency [") and "(server)" in line for line in lines)
    reply, reply_rate = read_wav(out)
    assert reply_rate == rate
    assert np.abs(reply.astype(np.int32)).max() > LOUD


@pytest.mark.parametrize(
    ("wav", "url", "says"),
    [
        ("missing.wav", "ws://127.0.0.1:{port}", "cannot read"),
        ("text.wav", "ws://127.0.0.1:{port}", "not a PCM WAV file"),
        ("question.wav", "ws://127.0.0.1:{port}", "cannot reach"),  # nothing listening
        ("question.wav", "http://127.0.0.1:{port}", "malformed URL"),
        ("question.wav", "127.0.0.1:{port}", "malformed URL"),
        ("question.wav", "ws://127.0.0.1:99999", "malformed URL"),
    ],
    ids=["missing-file", "not-a-wav", "nothing-listening", "http-url", "no-scheme", "bad-port"],
)
def test_a_call_that_cannot_be_made_is_one_line_on_stderr_and_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], wav: str, url: str, says: str
) -> None:
    (tmp_path / "text.wav").write_text("not audio")
    (tmp_path / "question.wav").write_bytes(write_wav(espeak(QUESTION), 16000))
    argv = ["call", "--wav", str(tmp_path / wav), "--url", url.format(port=free_port())]
    assert main([*argv, "--out", str(tmp_path / "reply.wav")]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.count("\n") == 1, printed.err
    assert says in printed.err, printed.err
    assert not (tmp_path / "reply.wav").exists()


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_pcm_wav_files_of_any_sample_width_read_as_16_bit(tmp_path: Path, width: int) -> None:
    samples = espeak(QUESTION)
    wide = samples.astype(np.int64) << 16  # 32-bit, then the top `width` bytes of each
    data = wide.astype("<i4").tobytes()
    packed = b"".join(data[i + 4 - width : i + 4] for i in range(0, len(data), 4))
    if width == 1:  # 8-bit WAV is unsigned
        packed = bytes((b + 128) % 256 for b in packed)
    path = tmp_path / "speech.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(16000)
        w.writeframes(packed)
    read, rate = read_wav(path)
    assert rate == 16000
    expected = samples if width > 1 else (samples.astype(np.int32) >> 8 << 8).astype(np.int16)
    np.testing.assert_array_equal(read, expected)
