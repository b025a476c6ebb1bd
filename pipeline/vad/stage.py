"""The VAD stage: 16 kHz audio in; audio and speech started/stopped events out.

It re-frames incoming :class:`~pipeline.events.AudioFrame` events of any size into the model's
512-sample frames, asks the shared executor (one ONNX call for the frames of many sessions)
for each frame's speech probability, and feeds the probabilities to a
:class:`~pipeline.vad.detector.SpeechDetector`. Every other event, control or data, passes
through untouched and in order.

What audio goes on (``forward``):

``"speech"`` (default)
    only speech: at :class:`~pipeline.vad.events.SpeechStarted` the stage sends the pre-roll it
    kept in a small ring buffer (the audio from ``SpeechStarted.audio_start``, so the first
    syllable is never cut), then the audio as it comes, up to the point where the end of speech
    is confirmed, then :class:`~pipeline.vad.events.SpeechStopped`. A recogniser downstream
    gets exactly one utterance between the two events, with its trailing silence.
``"all"``
    every frame, unchanged and at once; the speech events follow the audio they describe.

While speech goes on, a silence of ``pause_samples`` (100 ms) sends
:class:`~pipeline.vad.events.SpeechPaused` (once per silence run, after the audio up to that
point): the speech may have ended where the silence began, and a recogniser can start its final
decode then, while the end is still being confirmed.

A *stream* is a run of contiguous frames (:meth:`AudioFrame.follows`). A frame that does not
continue the stream (a gap in ``pts``, another generation) ends it: open speech is closed with
:class:`SpeechStopped`, and the model state and detector start afresh. The same happens when
the inbox ends; the last partial frame (under 512 samples) is forwarded but not scored.
``EndOfInput`` is passed on and changes nothing: it is a control event and may overtake audio.

:class:`~pipeline.events.Flush` (a client's commit) ends the stream where it stands, as if the
inbox ended there: open speech is forwarded up to the last sample received (the partial frame
included) and closed with :class:`SpeechStopped`, then the ``Flush`` is passed on. It is a data
event, so it comes after every frame sent before it; audio after it starts a new stream.
A ``Flush`` with ``discard`` drops the stream instead: nothing more of it is sent (no
:class:`SpeechStopped` for open speech: the ASR and the session forget it on the ``Flush``).

:class:`~pipeline.vad.events.EndSpeechAt` (turn-taking's end-of-turn model says the caller is
done) ends open speech at its sample at once, if the silence going on began there: the audio
scored so far and :class:`SpeechStopped` go out as at a confirmed end, and the stream goes on.
With ``until`` it waits until the silence has been scored up to that sample (dropped if
speech comes first). It is consumed here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from pipeline.errors import InvalidAudio
from pipeline.events import BYTES_PER_SAMPLE, PIPELINE_RATE, AudioFrame, Flush
from pipeline.vad.detector import DetectorConfig, SpeechDetector, SpeechEnd, SpeechStart
from pipeline.vad.events import EndSpeechAt, SpeechPaused, SpeechStarted, SpeechStopped
from pipeline.vad.silero import FRAME_SAMPLES, SileroState, VadRequest, VadResult

if TYPE_CHECKING:
    from pipeline.channels import Channel

Forward = Literal["speech", "all"]

_FRAME_BYTES = FRAME_SAMPLES * BYTES_PER_SAMPLE
#: silence inside speech that is worth a :class:`SpeechPaused` (100 ms: longer than the dips
#: between words, well short of the end of speech)
PAUSE_SAMPLES = 1600


class VadRunner(Protocol):
    """What the stage needs from the executor (a ``ModelExecutor[VadRequest, VadResult]``)."""

    async def run(self, request: VadRequest, /) -> VadResult: ...


class VadStage:
    """One session's VAD: ``await VadStage(executor)(inbox, outbox)``."""

    name = "vad"

    def __init__(
        self,
        executor: VadRunner,
        config: DetectorConfig | None = None,
        *,
        forward: Forward = "speech",
        pause_samples: int = PAUSE_SAMPLES,
    ) -> None:
        self.executor = executor
        self.config = config if config is not None else DetectorConfig()
        self.forward = forward
        #: silence this long inside speech sends :class:`SpeechPaused` (0: never)
        self.pause_samples = pause_samples

    async def __call__(self, inbox: Channel, outbox: Channel) -> None:
        stream: _Stream | None = None
        async for event in inbox:
            if isinstance(event, EndSpeechAt):
                if stream is not None:
                    await stream.end_at(event.sample, event.until)
                continue
            if not isinstance(event, AudioFrame):
                if isinstance(event, Flush) and stream is not None:
                    if not event.discard:
                        await stream.finish()  # the commit point ends the utterance
                    stream = None
                await outbox.send(event)
                continue
            if event.sample_rate != PIPELINE_RATE:
                raise InvalidAudio(
                    f"the VAD takes {PIPELINE_RATE} Hz audio, not {event.sample_rate}"
                )
            if len(event.pcm) % BYTES_PER_SAMPLE:
                raise InvalidAudio("PCM16 audio must have an even number of bytes")
            if stream is None or not stream.continued_by(event):
                if stream is not None:
                    await stream.finish()
                stream = _Stream(self, event, outbox)
            await stream.push(event)
        if stream is not None:
            await stream.finish()


class _Stream:
    """The state of one contiguous stream: re-framing, model state, detector, pre-roll."""

    def __init__(self, stage: VadStage, first: AudioFrame, outbox: Channel) -> None:
        self._executor = stage.executor
        self._gated = stage.forward == "speech"
        self._outbox = outbox
        self._session_id = first.session_id
        self._generation = first.generation
        self._detector = SpeechDetector(stage.config, start=first.pts)
        self._state = SileroState.initial()
        self._last: AudioFrame | None = None
        #: samples not scored yet; the first one is at ``_position``
        self._pending = bytearray()
        self._position = first.pts
        #: the scored samples just before ``_position`` (the pre-roll ring buffer)
        self._history = bytearray()
        config = stage.config
        self._history_limit = _FRAME_BYTES + BYTES_PER_SAMPLE * (
            config.pre_roll_samples + config.min_speech_samples
        )
        #: audio forwarded so far ends here (speech mode)
        self._forwarded = first.pts
        self._out = bytearray()
        self._out_start = first.pts
        pause = stage.pause_samples
        self._pause_samples = pause if 0 < pause < stage.config.min_silence_samples else None
        self._paused_at: int | None = None  # the silence run SpeechPaused was sent for
        #: an EndSpeechAt waiting for its silence to be heard: (pause, until)
        self._end_at: tuple[int, int] | None = None

    def continued_by(self, frame: AudioFrame) -> bool:
        return self._last is not None and frame.follows(self._last)

    async def push(self, frame: AudioFrame) -> None:
        self._last = frame
        if not self._gated:
            await self._outbox.send(frame)
        self._pending += frame.pcm
        while len(self._pending) >= _FRAME_BYTES:
            chunk = bytes(self._pending[:_FRAME_BYTES])
            del self._pending[:_FRAME_BYTES]
            await self._score(chunk)
        await self._flush_audio()

    async def finish(self) -> None:
        """The stream ended: forward what is left of open speech and close it."""
        if self._gated and self._detector.speaking:
            self._forward_until(self._position)
            if not self._out:
                self._out_start = self._position
            self._out += self._pending
        self._pending.clear()
        for transition in self._detector.flush():
            await self._transition(transition)
        await self._flush_audio()

    async def end_at(self, sample: int, until: int = 0) -> None:
        """:class:`EndSpeechAt`: the speech ends at ``sample`` if still silent since then, once
        the silence has been scored up to ``until`` (checked again after each frame)."""
        self._end_at = None
        if self._position < until and self._detector.pause == sample:
            self._end_at = (sample, until)
            return
        for transition in self._detector.end_at(sample):
            await self._transition(transition)

    async def _score(self, chunk: bytes) -> None:
        frame = np.frombuffer(chunk, dtype=np.int16)
        result = await self._executor.run(VadRequest(frame=frame, state=self._state))
        self._state = result.state
        self._position += FRAME_SAMPLES
        if self._gated:
            self._history += chunk
            if len(self._history) > self._history_limit:
                del self._history[: len(self._history) - self._history_limit]
        for transition in self._detector.feed(result.probability, FRAME_SAMPLES):
            await self._transition(transition)
        if self._end_at is not None and self._detector.pause != self._end_at[0]:
            self._end_at = None  # speech again (or its end): the request is moot
        if self._end_at is not None and self._position >= self._end_at[1]:
            await self.end_at(self._end_at[0])
        if self._gated and self._detector.speaking:
            self._forward_until(self._position)
        pause = self._detector.pause
        if (
            pause is not None
            and self._pause_samples is not None
            and pause != self._paused_at
            and self._position - pause >= self._pause_samples
        ):
            self._paused_at = pause
            await self._flush_audio()  # the audio up to here comes first
            await self._outbox.send(
                SpeechPaused(session_id=self._session_id, generation=self._generation, sample=pause)
            )

    async def _transition(self, transition: SpeechStart | SpeechEnd) -> None:
        if isinstance(transition, SpeechStart):
            await self._flush_audio()
            audio_start = transition.audio_start
            if self._gated:
                audio_start = max(audio_start, self._forwarded, self._history_start)
                self._forwarded = audio_start
            await self._outbox.send(
                SpeechStarted(
                    session_id=self._session_id,
                    generation=self._generation,
                    sample=transition.sample,
                    audio_start=audio_start,
                    probability=transition.probability,
                )
            )
        else:
            if self._gated:
                self._forward_until(self._position)
            await self._flush_audio()
            await self._outbox.send(
                SpeechStopped(
                    session_id=self._session_id,
                    generation=self._generation,
                    sample=transition.sample,
                    speech_start=transition.start,
                )
            )

    @property
    def _history_start(self) -> int:
        return self._position - len(self._history) // BYTES_PER_SAMPLE

    def _forward_until(self, end: int) -> None:
        """Queue the scored audio from where forwarding stopped up to ``end``."""
        begin = max(self._forwarded, self._history_start)
        if end <= begin:
            return
        if not self._out:
            self._out_start = begin
        offset = (begin - self._history_start) * BYTES_PER_SAMPLE
        self._out += self._history[offset : offset + (end - begin) * BYTES_PER_SAMPLE]
        self._forwarded = end

    async def _flush_audio(self) -> None:
        if not self._out:
            return
        frame = AudioFrame(
            session_id=self._session_id,
            generation=self._generation,
            sample_rate=PIPELINE_RATE,
            pcm=bytes(self._out),
            pts=self._out_start,
        )
        self._out.clear()
        await self._outbox.send(frame)
