"""``/v1/realtime`` driven by Pipecat's stock ``OpenAIRealtimeLLMService`` (a real third-party
client, pipecat-ai 1.14) against a real ``voxline serve`` of the default agent.

The pipeline is the one Pipecat's realtime examples build, with no transport: the test queues
``InputAudioRawFrame``s of espeak-ng speech at 24 kHz, paced in real time, into
``user aggregator -> OpenAIRealtimeLLMService -> speaker -> assistant aggregator``. The speaker
stands where the output transport would: it keeps what reaches it and says when the bot starts
and stops speaking, as a transport does (its playout is instantaneous). One conversation holds
a text turn (the context's user message, answered on ``LLMRunFrame``), a spoken exchange, and
an interruption: the caller talks over the bot, Pipecat turns the server's ``speech_started``
into an ``InterruptionFrame``, the reply's audio stops, and the caller's words are answered.
No ``ErrorFrame`` is pushed anywhere in the pipeline at any point.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
import pytest

from tests.audio import espeak, silence
from tests.server import RunningServer, running_server

with warnings.catch_warnings():
    # pipecat.audio.utils imports audioop, deprecated since Python 3.11 (Pipecat depends on
    # audioop-lts from Python 3.13 on); nothing else in Pipecat's import warns.
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    from pipecat.frames.frames import (
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        EndFrame,
        ErrorFrame,
        Frame,
        InputAudioRawFrame,
        InterruptionFrame,
        LLMFullResponseEndFrame,
        LLMRunFrame,
        TTSAudioRawFrame,
        TTSStartedFrame,
        TTSTextFrame,
    )
    from pipecat.observers.base_observer import BaseObserver, FramePushed
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
    from pipecat.workers.runner import WorkerRunner

RATE = 24000  # what the service sends and receives
CHUNK = RATE // 25  # 40 ms

HELLO = "Hello! How can I help?"
HELP = "I can take a message, or put you through to a person. What would you like?"
WHO = "Sure. Who is the message from?"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with running_server() as running:
        yield running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The server runs its own loop; Pipecat runs on asyncio: run once."""
    return ("asyncio", {})


@dataclass
class Reply:
    """What reached the speaker between two ends of a response (or an interruption)."""

    frames: list[Frame] = field(default_factory=list)
    end: Frame | None = None  # LLMFullResponseEndFrame, or the InterruptionFrame that cut it

    @property
    def audio(self) -> bytes:
        return b"".join(f.audio for f in self.frames if isinstance(f, TTSAudioRawFrame))

    @property
    def first_audio(self) -> TTSAudioRawFrame:
        return next(f for f in self.frames if isinstance(f, TTSAudioRawFrame))

    @property
    def text(self) -> str:
        return "".join(f.text for f in self.frames if isinstance(f, TTSTextFrame)).strip()


class Heard:
    """Every frame the speaker got, in order, and every ErrorFrame pushed anywhere."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.errors: list[ErrorFrame] = []
        self._changed = anyio.Event()

    def add(self, frame: Frame) -> None:
        if isinstance(frame, ErrorFrame):
            self.errors.append(frame)
        else:
            self.frames.append(frame)
        self._changed.set()
        self._changed = anyio.Event()

    def position(self, frame: Frame) -> int:
        return next(i for i, f in enumerate(self.frames) if f is frame)

    def replies(self) -> list[Reply]:
        """The bot's replies with audio, split at response ends and interruptions; the last
        one may still be going on (``end`` None)."""
        replies, current = [], Reply()
        for frame in self.frames:
            if isinstance(frame, LLMFullResponseEndFrame | InterruptionFrame):
                current.end = frame
                replies.append(current)
                current = Reply()
            else:
                current.frames.append(frame)
        replies.append(current)
        return [reply for reply in replies if reply.audio]

    async def wait_for(self, done: Callable[[], bool]) -> None:
        while not done():
            assert not self.errors, self.errors
            await self._changed.wait()
        assert not self.errors, self.errors

    async def wait_for_replies(self, count: int) -> list[Reply]:
        """Until ``count`` replies are over (ended, or cut by an interruption)."""
        await self.wait_for(lambda: sum(r.end is not None for r in self.replies()) >= count)
        return self.replies()


class Speaker(FrameProcessor):
    """Where the output transport would be: hears the bot, and tells the pipeline when it
    starts and stops speaking (``BotStarted/StoppedSpeakingFrame``, both ways, as a transport
    does; the service forgets its current audio item on the stop)."""

    def __init__(self, heard: Heard) -> None:
        super().__init__(name="speaker")
        self.heard = heard
        self.speaking = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if direction is not FrameDirection.DOWNSTREAM:
            return
        self.heard.add(frame)
        if isinstance(frame, TTSAudioRawFrame) and not self.speaking:
            self.speaking = True
            await self.broadcast_frame(BotStartedSpeakingFrame)
        elif isinstance(frame, LLMFullResponseEndFrame | InterruptionFrame) and self.speaking:
            self.speaking = False
            await self.broadcast_frame(BotStoppedSpeakingFrame)


class Errors(BaseObserver):
    """Every ErrorFrame pushed in the pipeline, whichever way it goes."""

    def __init__(self, heard: Heard) -> None:
        super().__init__(observe_every_push=False)
        self.heard = heard

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, ErrorFrame):
            self.heard.add(data.frame)


async def say(worker: PipelineWorker, pcm: np.ndarray[Any, Any]) -> None:
    """Queue the audio as a transport would: 40 ms frames at real-time pace."""
    data = pcm.astype("<i2").tobytes()
    start = time.perf_counter()
    for index, offset in enumerate(range(0, len(data), CHUNK * 2)):
        frame = InputAudioRawFrame(
            audio=data[offset : offset + CHUNK * 2], sample_rate=RATE, num_channels=1
        )
        await worker.queue_frame(frame)
        await anyio.sleep(max(0.0, start + (index + 1) * 0.04 - time.perf_counter()))


@pytest.mark.anyio
async def test_pipecat_holds_a_text_turn_a_spoken_exchange_and_an_interruption(
    server: RunningServer,
) -> None:
    heard = Heard()
    llm = OpenAIRealtimeLLMService(api_key="x", base_url=f"{server.ws}/v1/realtime")
    context = LLMContext([{"role": "user", "content": "Hello"}])
    aggregators = LLMContextAggregatorPair(context)
    speaker = Speaker(heard)
    pipeline = Pipeline([aggregators.user(), llm, speaker, aggregators.assistant()])
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
        observers=[Errors(heard)],
        idle_timeout_secs=None,
        enable_rtvi=False,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)

    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)

            # (c) A text turn: the context's user message, answered when the LLM runs. (This is
            # how Pipecat 1.14 sends a user's text as a user item: a later LLMMessagesAppendFrame
            # stops at the user aggregator, and one pushed past it goes as a system item.)
            await worker.queue_frame(LLMRunFrame())
            [text_turn] = await heard.wait_for_replies(1)
            assert isinstance(text_turn.end, LLMFullResponseEndFrame)
            assert text_turn.text == HELLO

            # (a) A spoken exchange.
            await say(worker, np.concatenate([espeak("What can you do?", RATE), silence(1, RATE)]))
            spoken = (await heard.wait_for_replies(2))[1]
            assert isinstance(spoken.end, LLMFullResponseEndFrame)
            assert spoken.text == HELP

            # (b) The same question, and the caller talks over the answer.
            await say(worker, np.concatenate([espeak("What can you do?", RATE), silence(1, RATE)]))
            await heard.wait_for(lambda: len(heard.replies()) == 3)  # its first audio came
            speech = espeak("I would like to leave a message please.", RATE)
            await say(worker, np.concatenate([silence(0.5, RATE), speech, silence(1, RATE)]))
            replies = await heard.wait_for_replies(4)
            cut, answer = replies[2], replies[3]
            assert isinstance(answer.end, LLMFullResponseEndFrame)
            assert answer.text == WHO

            await worker.queue_frame(EndFrame())

    assert not heard.errors, heard.errors
    assert len(replies) == 4, [r.text for r in replies]
    # What the Pipecat app keeps: Voxline's transcripts of the caller, and the bot's replies.
    said = [
        (m["role"], str(m.get("content")).lower())
        for m in context.get_messages()
        if isinstance(m, dict)
    ]
    assert [role for role, _ in said] == ["user", "assistant"] * 4, said
    caller, bot = (
        [t for r, t in said if r == "user"],
        [t for r, t in said if r != "user"],
    )
    assert caller[0] == "hello"
    assert ["what can you do" in t for t in caller[1:3]] == [True, True]
    assert "leave a message" in caller[3]
    assert bot[:2] + bot[3:] == [HELLO.lower(), HELP.lower(), WHO.lower()]
    # The caller's speech interrupted the reply: less of its audio came than of the same reply
    # heard in full, and after the interruption no audio came until the next reply began.
    assert len(cut.audio) < len(spoken.audio)
    between = heard.frames[heard.position(cut.first_audio) : heard.position(answer.first_audio)]
    [interruption] = [i for i, f in enumerate(between) if isinstance(f, InterruptionFrame)]
    assert not [f for f in between[interruption:] if isinstance(f, TTSAudioRawFrame)]
    assert [f for f in between[interruption:] if isinstance(f, TTSStartedFrame)]
