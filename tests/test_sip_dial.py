"""Outbound SIP calls: ``voxline dial`` (a real process with the real models) calls sipp,
which plays the callee's signalling (tests/sip/callee_*.xml), over UDP, or over TCP (``-t t1``)
for a ``;transport=tcp`` callee; its SDP points the media at a UDP socket of the test's
(:class:`tests.test_sip_call.Phone`), whose recording of the agent's greeting is transcribed
with the tests' Whisper."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from pipeline.asr.decoder import WhisperDecoder
from tests.audio import is_greeting
from tests.server import ARTIFACTS, ROOT, free_port
from tests.test_sip_call import SCENARIOS, SIPP, Phone, assert_one_clean_stream, free_udp_port
from tests.test_sip_call import transcribe as transcribe_mulaw

pytestmark = pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


class Dialled:
    def __init__(self, status: int, output: str, sipp_status: int) -> None:
        self.status = status
        self.output = output
        self.sipp_status = sipp_status


def callee_command(
    scenario: str, port: int, phone_port: int, *, pause_ms: int = 0, tcp: bool = False
) -> list[str]:
    """sipp as the callee of ``scenario`` on ``port`` (one call; its SDP's media at
    ``phone_port``; ``tcp``: it listens on TCP, ``-t t1``); its messages and errors go to
    artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    name = Path(scenario).stem + ("-tt1" if tcp else "")
    callee = ["timeout", "120", SIPP, "-sf", str(SCENARIOS / scenario), "-m", "1"]
    callee += ["-t", "t1"] if tcp else []
    callee += ["-i", "127.0.0.1", "-p", str(port), "-nostdin", "-timeout", "110s"]
    callee += ["-timeout_error", "-trace_msg", "-trace_err"]
    callee += ["-message_file", str(ARTIFACTS / f"sipp-{name}-messages.log")]
    callee += ["-error_file", str(ARTIFACTS / f"sipp-{name}-errors.log")]
    callee += ["-key", "rtp_ip", "127.0.0.1", "-key", "rtp_port", str(phone_port)]
    return callee + (["-d", str(pause_ms)] if pause_ms else [])


async def dial(
    scenario: str,
    phone_port: int,
    *,
    pause_ms: int = 0,
    args: tuple[str, ...] = (),
    tcp: bool = False,
) -> Dialled:
    """sipp waits as the callee of ``scenario`` (over TCP with ``tcp``: the URI dialled says
    ``;transport=tcp``); ``voxline dial`` calls it. Both run to their end; what they printed
    is kept in artifacts/."""
    name = Path(scenario).stem + ("-tt1" if tcp else "")
    port = free_port() if tcp else free_udp_port()
    callee = callee_command(scenario, port, phone_port, pause_ms=pause_ms, tcp=tcp)
    caller = ["timeout", "120", sys.executable, "-m", "agent.cli", "dial"]
    target = f"sip:callee@127.0.0.1:{port}" + (";transport=tcp" if tcp else "")
    caller += [target, "--config", "configs/default.yaml", *args]
    screen = (ARTIFACTS / f"sipp-{name}-screen.log").open("wb")
    with screen:
        sipp = await anyio.open_process(callee, stdout=screen, stderr=screen)
        async with sipp:
            result = await anyio.run_process(caller, cwd=ROOT, check=False, stderr=-2)
            sipp_status = await sipp.wait()
    output = result.stdout.decode()
    (ARTIFACTS / f"dial-{name}.log").write_text(output)
    return Dialled(result.returncode, output, sipp_status)


@pytest.mark.anyio
async def test_dial_calls_a_phone_that_answers_and_hears_the_greeting(
    whisper_decoder: WhisperDecoder,
) -> None:
    with anyio.fail_after(150):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = Phone(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)
                dialled = await dial("callee_answers.xml", phone.port, pause_ms=5000)
                tg.cancel_scope.cancel()
    assert dialled.sipp_status == 0, dialled.output
    assert dialled.status == 0, dialled.output
    assert "call ended: hangup" in dialled.output
    assert 200 <= len(phone.packets) <= 300  # 5 s of 20 ms packets
    assert_one_clean_stream(phone.packets)
    greeting = transcribe_mulaw(whisper_decoder, bytes(phone.audio))
    assert is_greeting(greeting), greeting


@pytest.mark.anyio
async def test_dial_calls_over_tcp_when_the_uri_says_transport_tcp(
    whisper_decoder: WhisperDecoder,
) -> None:
    with anyio.fail_after(150):
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            phone = Phone(sock)
            async with anyio.create_task_group() as tg:
                tg.start_soon(phone.listen)
                tg.start_soon(phone.talk)
                dialled = await dial("callee_answers.xml", phone.port, pause_ms=4000, tcp=True)
                tg.cancel_scope.cancel()
    assert dialled.sipp_status == 0, dialled.output  # INVITE, ACK and the BYE's 200 over TCP
    assert dialled.status == 0, dialled.output
    assert "from tcp:127.0.0.1:" in dialled.output
    assert "call ended: hangup" in dialled.output  # the callee's BYE came on the connection
    assert_one_clean_stream(phone.packets)
    greeting = transcribe_mulaw(whisper_decoder, bytes(phone.audio))
    assert is_greeting(greeting), greeting
    # sipp over TCP took every message from one connection: our INVITE's Via and Contact say so
    messages = (ARTIFACTS / "sipp-callee_answers-tt1-messages.log").read_text()
    invite = messages[messages.index("INVITE sip:") :].replace("\r", "").split("\n\n")[0]
    headers = dict(line.split(": ", 1) for line in invite.split("\n")[1:])
    assert headers["Via"].startswith("SIP/2.0/TCP 127.0.0.1:"), invite
    assert headers["Contact"].endswith(";transport=tcp>"), invite


@pytest.mark.anyio
async def test_dial_reports_a_busy_callee_with_its_status() -> None:
    with anyio.fail_after(150):
        dialled = await dial("callee_busy.xml", free_udp_port())
    assert dialled.sipp_status == 0, dialled.output
    assert dialled.status == 1
    assert "486 Busy Here" in dialled.output


@pytest.mark.anyio
async def test_dial_cancels_a_call_nobody_answers() -> None:
    with anyio.fail_after(150):
        dialled = await dial("callee_never_answers.xml", free_udp_port(), args=("--timeout", "1"))
    assert dialled.sipp_status == 0, dialled.output  # CANCEL, 200, 487, ACK
    assert dialled.status == 1
    assert "408 No Answer" in dialled.output


def test_dial_refuses_what_is_not_a_sip_uri(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    assert main(["dial", "tel:+15551234"]) == 2
    assert "tel: URIs are not supported" in capsys.readouterr().err
    assert main(["dial", "sip:bob@host:99999"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["dial", "sip:bob@127.0.0.1", "--timeout", "0"]) == 2
    assert "--timeout" in capsys.readouterr().err
    assert main(["dial", "sip:bob@127.0.0.1;transport=tls"]) == 2
    assert "transport=tls is not supported" in capsys.readouterr().err
