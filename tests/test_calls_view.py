"""The demo page's Calls view in a real browser: headless Chromium (Debian's ``chromium``) reads
the record of a real call from a real server with API keys on.

A native WebSocket call is made first (a greeting, a spoken question, the answer), recorded in
stereo. The page is then opened: it asks for the API key, lists the call, and shows its
transcript, its per-turn latency chart and a player for its recording. The chart is checked in
a screenshot: each stage's colour must be painted inside the chart's box (taken from the DOM),
in proportion to the record's numbers. The screenshot is saved to ``artifacts/calls-view.png``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import numpy as np
import pytest
import websockets
import yaml  # type: ignore[import-untyped]  # no stubs installed
from PIL import Image
from playwright.async_api import ViewportSize

from tests.audio import espeak, silence, write_wav
from tests.server import ARTIFACTS, ROOT, RunningServer, running_server
from tests.test_browser import CHROMIUM, UNLABELLED, chromium
from tests.test_server import RATE, Call

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium package (make apt installs it)"
)

KEY = "calls-view-test-key-0123456789"
#: the chart's colour for each stage, by the point it ends at (agent/static/calls.js)
COLOURS = {
    "asr_final": (0x1F, 0x77, 0xB4),
    "end_of_turn": (0xFF, 0x7F, 0x0E),
    "first_text": (0x2C, 0xA0, 0x2C),
    "first_audio": (0xD6, 0x27, 0x28),
    "audio_out": (0x94, 0x67, 0xBD),
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Playwright's async API runs on asyncio


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("calls-view")
    config = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    config["server"]["records"] = {
        "url": f"sqlite:///{folder}/calls.db",
        "recording_dir": str(folder / "recordings"),
    }
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    with running_server(str(path), env={"VOXLINE_API_KEYS": KEY}) as running:
        yield running


async def one_spoken_call(server: RunningServer) -> str:
    """A native call: the greeting, "What can you do?", the answer, bye; its id once its record
    and its recording are written."""
    bearer = {"Authorization": f"Bearer {KEY}"}
    async with websockets.connect(f"{server.ws}/v1/stream", additional_headers=bearer) as ws:
        call = Call(ws)
        await ws.send(json.dumps({"type": "hello", "sample_rate": RATE}))
        started = await call.receive_until(lambda e: e["type"] == "session.started")
        await call.receive_until(lambda e: e["type"] == "audio.end")  # the greeting
        async with anyio.create_task_group() as tg:
            speech = np.concatenate([espeak("What can you do?"), silence(1.5)])
            tg.start_soon(call.stream, speech)
            await call.receive_until(lambda e: e["type"] == "audio.end")  # the answer
        await ws.send(json.dumps({"type": "bye"}))
    call_id: str = started["session_id"]
    await anyio.to_thread.run_sync(server.wait_for_log, f"call {call_id} recorded", 30)
    await anyio.to_thread.run_sync(server.wait_for_log, f"call {call_id}: recording saved", 30)
    return call_id


def painted(png: bytes, colour: tuple[int, int, int]) -> int:
    """How many pixels of the screenshot are ``colour`` (give or take blending)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(colour)).max(axis=2) <= 3).sum())


@pytest.mark.anyio
async def test_the_calls_view_shows_a_calls_transcript_latency_chart_and_recording(
    server: RunningServer, tmp_path: Path
) -> None:
    microphone = tmp_path / "silence.wav"  # the page makes no call: its microphone says nothing
    microphone.write_bytes(write_wav(silence(1.0, 48000), 48000))
    desk: ViewportSize = {"width": 1024, "height": 900}
    with anyio.fail_after(150):
        call_id = await one_spoken_call(server)
        async with chromium(tmp_path / "profile", microphone, desk) as browser:
            page = browser.pages[0] if browser.pages else await browser.new_page()
            await page.goto(f"{server.http}/")
            await page.locator("#api-key").wait_for()  # asked for, since the server said 401
            await page.locator("#api-key").fill(KEY)
            await page.keyboard.press("Tab")  # the key is taken when the field is left
            await page.wait_for_function("!document.getElementById('call').disabled")
            await page.locator("#calls-load").click()
            item = page.locator(f'.call-item[data-id="{call_id}"]')
            listed = await item.inner_text()
            await item.click()
            transcript = page.locator("#call-transcript")
            await transcript.locator(".caption.user", has_text="what can you do").wait_for()
            await transcript.locator(".caption.agent", has_text="take a message").wait_for()
            await page.locator("#call-player").wait_for()  # shown once the WAV has come
            lines = await transcript.locator(".caption").all_inner_texts()
            player = await page.evaluate(
                "document.getElementById('call-recording').src.startsWith('blob:')"
            )
            chart = page.locator("#call-chart svg")
            stages = await chart.locator("rect").evaluate_all(
                "rects => rects.map((r) => [r.dataset.stage, r.getBoundingClientRect().width])"
            )
            legend = await page.locator("#call-chart .legend").inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            await page.locator("#call-detail").scroll_into_view_if_needed()
            await page.screenshot(path=str(ARTIFACTS / "calls-view.png"), full_page=True)
            shot = await chart.screenshot()  # the chart's box in the DOM, as painted
            box = await chart.bounding_box()
            unlabelled = await page.evaluate(UNLABELLED)
            await page.set_viewport_size({"width": 390, "height": 844})
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth > window.innerWidth"
            )
            error = await page.locator("#calls-error").text_content()
    assert "native" in listed
    assert "ended: hangup" in listed
    assert len(lines) == 3
    greeting, caller, answer = lines
    assert greeting.startswith("Agent · 0:0")  # who, and when (minutes:seconds)
    assert "Voxline" in greeting
    assert caller.startswith("Caller · 0:")
    assert "take a message" in answer
    assert player
    assert box is not None
    shot_width, shot_height = Image.open(io.BytesIO(shot)).size
    assert abs(shot_width - box["width"]) <= 1
    assert abs(shot_height - box["height"]) <= 1
    assert "speech end → ASR final" in legend
    drawn: dict[str, float] = {}
    for stage, width in stages:
        drawn[stage] = drawn.get(stage, 0.0) + width
    assert "first_audio" in drawn
    for stage, width in drawn.items():  # every stage wide enough to see is painted
        if width >= 3:
            assert painted(shot, COLOURS[stage]) >= width * 5, stage
    assert unlabelled == []
    assert not overflow  # fits a phone screen
    assert not error
