"""Registration end to end: a :class:`~agent.sip_server.SipEndpoint` registers with sipp
playing a registrar (tests/sip/registrar_challenges.xml) that challenges each REGISTER and
checks the digest answer itself (sipp's ``verifyauth``), then un-REGISTERs at shutdown."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent.config.schema import SipConfig, SipCredentials, SipRegister
from agent.session import Session
from agent.session_events import CallSink
from agent.sip_call import Admission
from agent.sip_server import RtpPorts, SipEndpoint
from tests.server import ARTIFACTS
from tests.test_sip_call import SCENARIOS, SIPP, free_udp_port
from transports.sip.registration import RegState

pytestmark = pytest.mark.skipif(not Path(SIPP).exists(), reason="sipp (sip-tester) is missing")

USER_ENV, PASSWORD_ENV = "VOXLINE_TEST_REGISTER_USER", "VOXLINE_TEST_REGISTER_PASSWORD"


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


class NoCalls(Admission):
    """These tests place and take no call: any INVITE would get 503."""

    def admit(self, call_id: str, dialled: str) -> int | None:
        return 503

    def new_session(self, call_id: str, sink: CallSink, session_id: str | None = None) -> Session:
        raise AssertionError("no call is admitted")

    async def release(self, call_id: str) -> None:
        raise AssertionError("no call is admitted")


def registrar(port: int, password: str, name: str) -> list[str]:
    command = ["timeout", "60", SIPP, "-sf", str(SCENARIOS / "registrar_challenges.xml")]
    command += ["-m", "1", "-i", "127.0.0.1", "-p", str(port), "-nostdin"]
    command += ["-timeout", "50s", "-timeout_error", "-trace_msg", "-trace_err"]
    command += ["-message_file", str(ARTIFACTS / f"sipp-{name}-messages.log")]
    command += ["-error_file", str(ARTIFACTS / f"sipp-{name}-errors.log")]
    return [*command, "-key", "user", "1000", "-key", "password", password]


def endpoint(port: int) -> SipEndpoint:
    config = SipConfig(
        register=SipRegister(
            registrar=f"sip:127.0.0.1:{port}", aor="sip:1000@voxline.test", expires=600
        ),
        credentials=SipCredentials(user_env=USER_ENV, password_env=PASSWORD_ENV),
    )
    ports = RtpPorts(*config.rtp_ports)
    return SipEndpoint("127.0.0.1", 0, config, NoCalls(), ports, register=config.register)


@pytest.mark.anyio
async def test_voxline_registers_with_a_checked_digest_answer_and_unregisters_at_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(USER_ENV, "1000")
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_udp_port()
    sip = endpoint(port)
    with anyio.fail_after(60):
        screen = (ARTIFACTS / "sipp-registrar-screen.log").open("wb")
        with screen:
            command = registrar(port, "s3cret", "registrar")
            async with await anyio.open_process(command, stdout=screen, stderr=screen) as sipp:
                async with anyio.create_task_group() as tg:
                    await tg.start(sip.run)
                    await sip.registered.wait()
                    registration = sip.registration
                    assert registration is not None
                    assert registration.granted == 120  # the registrar's Expires
                    assert registration.refresh_at is not None
                    tg.cancel_scope.cancel()  # shutdown: the un-REGISTER
                assert sip.registration is not None
                assert sip.registration.state is RegState.DONE
                status = await sipp.wait()
    assert status == 0, (ARTIFACTS / "sipp-registrar-errors.log").read_text(errors="replace")


@pytest.mark.anyio
async def test_a_wrong_password_is_refused_by_the_registrar_and_logged_with_a_retry(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(USER_ENV, "1000")
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    caplog.set_level(logging.INFO, logger="voxline.sip")
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_udp_port()
    sip = endpoint(port)
    with anyio.fail_after(60):
        screen = (ARTIFACTS / "sipp-registrar-wrong-screen.log").open("wb")
        with screen:
            command = registrar(port, "s3cret", "registrar-wrong")
            async with await anyio.open_process(command, stdout=screen, stderr=screen) as sipp:
                async with anyio.create_task_group() as tg:
                    await tg.start(sip.run)
                    while sip.registration is None or sip.registration.state is not (
                        RegState.WAITING
                    ):
                        await anyio.wait_all_tasks_blocked()
                    tg.cancel_scope.cancel()
                status = await sipp.wait()
    assert status != 0  # the scenario's failure branch: sipp found the answer wrong
    failed = [r.getMessage() for r in caplog.records if "registration at" in r.getMessage()]
    assert failed == [
        f"sip: registration at sip:127.0.0.1:{port} failed: 403 Forbidden"
        " (check server.sip.credentials); retrying in 5 s"
    ]
    assert "wrong" not in caplog.text
