"""The demo page in a real browser: headless Chromium (Debian's ``chromium``) calls the agent.

Chromium's fake microphone plays a WAV file of espeak-ng speech; the page's captions, agent
state and latency are read from the DOM, and the agent's audio as the browser received it is
recorded in the page (MediaRecorder), decoded and transcribed. A screenshot of the call, on a
phone-sized screen, is saved to ``artifacts/browser-call.png``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest
from playwright.async_api import BrowserContext, Page, ViewportSize, async_playwright
from playwright.async_api import Error as PlaywrightError

from pipeline.asr.decoder import DecodeRequest, WhisperDecoder
from pipeline.media import decode_audio
from tests.audio import espeak, silence, write_wav
from tests.server import ROOT, RunningServer, running_server
from tests.webrtc_client import wait_until_idle, webrtc_agent

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium package (make apt installs it)"
)

#: Chromium's flags for an unattended call (each one is needed on this machine)
FLAGS = [
    "--headless",
    "--disable-gpu",
    "--no-sandbox",  # root in a container
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",  # grant the microphone without asking
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",  # a loopback-only network namespace
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Playwright's async API runs on asyncio; the server runs on uvloop


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(str(webrtc_agent(tmp_path_factory.mktemp("browser")))) as running:
        yield running


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the fake microphone says (Chromium loops it): silence while the greeting plays,
    then a question, then silence while the agent answers."""
    rate = 48000
    speech = np.concatenate(
        [silence(6.0, rate), espeak("What can you do?", rate), silence(14.0, rate)]
    )
    path = tmp_path_factory.mktemp("microphone") / "question.wav"
    path.write_bytes(write_wav(speech, rate))
    return path


@contextlib.asynccontextmanager
async def chromium(
    profile: Path, microphone: Path, viewport: ViewportSize
) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),  # a fresh profile for each browser
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={microphone}"],
            viewport=viewport,
        )
        try:
            yield context
        finally:
            with contextlib.suppress(PlaywrightError):  # a killed browser is already gone
                await context.close()


async def call_with_the_keyboard(page: Page, server: RunningServer) -> None:
    """Open the page and start the call from the keyboard: Tab to the button, Enter."""
    await page.goto(f"{server.http}/")
    await page.wait_for_function("!document.getElementById('call').disabled")
    for _ in range(3):
        await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "call"
    await page.keyboard.press("Enter")


RECORD = """() => new Promise((resolve) => {
  const wait = () => {
    const stream = document.getElementById("remote-audio").srcObject;
    if (!stream) { setTimeout(wait, 20); return; }
    const recorder = new MediaRecorder(stream, { mimeType: "audio/webm;codecs=opus" });
    window.recorded = [];
    recorder.ondataavailable = (event) => window.recorded.push(event.data);
    recorder.start(250);
    window.recorder = recorder;
    resolve();
  };
  wait();
})"""

RECORDING = """() => new Promise((resolve) => {
  window.recorder.onstop = async () => {
    const bytes = new Uint8Array(await new Blob(window.recorded).arrayBuffer());
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    resolve(btoa(text));
  };
  window.recorder.stop();
})"""

UNLABELLED = """() => [...document.querySelectorAll("select, input, meter, button")]
  .filter((e) => (e.labels ? e.labels.length === 0 : true) && !e.textContent.trim())
  .map((e) => e.id)"""


@pytest.mark.anyio
async def test_a_browser_calls_the_agent_and_sees_and_hears_the_answer(
    server: RunningServer, microphone: Path, whisper_decoder: WhisperDecoder, tmp_path: Path
) -> None:
    phone: ViewportSize = {"width": 390, "height": 844}
    with anyio.fail_after(90):
        async with chromium(tmp_path / "profile", microphone, phone) as browser:
            page = browser.pages[0] if browser.pages else await browser.new_page()
            await call_with_the_keyboard(page, server)
            await page.evaluate(RECORD)
            await page.wait_for_function(
                "document.getElementById('connection').textContent === 'connected'"
            )
            user = page.locator(".caption.user[data-final=true]", has_text="what can you do")
            await user.first.wait_for()
            speaking = page.locator(".caption.agent", has_text="take a message")
            await speaking.first.wait_for()  # the answer is playing (a partial caption)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "browser-call.png"), full_page=True)
            agent = page.locator(".caption.agent[data-final=true]", has_text="take a message")
            await agent.first.wait_for()
            latency = await page.locator("#latency").text_content()
            state = await page.locator("#agent-state").text_content()
            mic_peak = await page.locator("#mic-level").get_attribute("data-peak")
            agent_peak = await page.locator("#agent-level").get_attribute("data-peak")
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth > window.innerWidth"
            )
            unlabelled = await page.evaluate(UNLABELLED)
            recording = base64.b64decode(await page.evaluate(RECORDING))
            await page.locator("#call").click()  # hang up
            await page.wait_for_function("document.getElementById('call').textContent === 'Call'")
            error = await page.locator("#error").text_content()
    with anyio.fail_after(10):
        await wait_until_idle(server)
    assert latency is not None
    assert latency.endswith(" ms")
    assert state in ("listening", "speaking", "thinking")
    assert float(mic_peak or 0) > 0.01  # the meters moved
    assert float(agent_peak or 0) > 0.01
    assert not overflow  # fits a phone screen
    assert unlabelled == []
    assert not error
    audio = decode_audio(recording, 16000).astype(np.float32) / np.float32(32768)
    heard = whisper_decoder.decode(DecodeRequest(audio=audio, final=True)).text.lower()
    assert "put you through" in heard  # the answer, as the browser received it
    assert any("ended: bye" in line for line in server.log)


def browser_pids(profile: Path) -> list[int]:
    """Processes of the Chromium running with ``profile`` (its command line names it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(profile).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


@pytest.mark.anyio
async def test_a_browser_that_vanishes_mid_call_is_hung_up_on(
    server: RunningServer, microphone: Path, tmp_path: Path
) -> None:
    profile = tmp_path / "profile"
    with anyio.fail_after(60):
        async with chromium(profile, microphone, ViewportSize(width=1024, height=768)) as browser:
            page = browser.pages[0] if browser.pages else await browser.new_page()
            await call_with_the_keyboard(page, server)
            await page.wait_for_function(
                "document.getElementById('agent-state').textContent === 'speaking'"
            )
            for pid in browser_pids(profile):  # no goodbye: the process is just gone
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        await wait_until_idle(server)
    assert any("ended: media_timeout" in line for line in server.log)


@pytest.fixture(scope="module")
def interpreter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    path = webrtc_agent(tmp_path_factory.mktemp("interpreter"), "interpreter.yaml")
    with running_server(str(path)) as running:
        yield running


@pytest.mark.anyio
async def test_the_interpreter_captions_the_callers_language_and_the_translation(
    interpreter: RunningServer, tmp_path: Path
) -> None:
    rate = 48000
    spanish = espeak("¿Dónde está la estación?", rate, voice="es", wpm=120)
    speech = np.concatenate([silence(7.0, rate), spanish, silence(14.0, rate)])
    microphone = tmp_path / "spanish.wav"  # silence while the greeting plays, then the question
    microphone.write_bytes(write_wav(speech, rate))
    ARTIFACTS.mkdir(exist_ok=True)
    with anyio.fail_after(90):
        async with chromium(tmp_path / "profile", microphone, {"width": 390, "height": 844}) as b:
            page = b.pages[0] if b.pages else await b.new_page()
            await page.goto(f"{interpreter.http}/")
            await page.wait_for_function("!document.getElementById('call').disabled")
            room_shown = await page.locator("#room").is_visible()
            languages = await page.locator("#language option").all_inner_texts()
            await page.locator("#call").click()  # no room: the interpreter alone
            user = page.locator(".caption.user[data-final=true][data-language=es]")
            await user.first.wait_for()
            agent = page.locator(".caption.agent[data-final=true]", has_text="station")
            await agent.first.wait_for()
            tag = await user.first.locator(".lang").text_content()
            label = await agent.first.locator(".who").text_content()
            unlabelled = await page.evaluate(UNLABELLED)
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth > window.innerWidth"
            )
            await page.screenshot(path=str(ARTIFACTS / "browser-interpreter.png"), full_page=True)
            await page.locator("#call").click()  # hang up
            await page.wait_for_function("document.getElementById('call').textContent === 'Call'")
            error = await page.locator("#error").text_content()
    with anyio.fail_after(10):
        await wait_until_idle(interpreter)
    assert room_shown
    assert languages == ["English (en)"]  # the whisper engine translates into English only
    assert tag == "ES"
    assert label == "Interpreter"
    assert unlabelled == []
    assert not overflow  # fits a phone screen
    assert not error
