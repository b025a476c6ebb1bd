"""The ASR stage: 16 kHz audio and VAD events in; transcripts out.

``await AsrStage(executor)(inbox, outbox)`` runs one session's recognition. The inbox carries
:class:`~pipeline.events.AudioFrame` events (16 kHz mono PCM16) and the VAD stage's
:class:`~pipeline.vad.events.SpeechStarted` / :class:`~pipeline.vad.events.SpeechStopped`
(either of its ``forward`` modes). An :class:`~pipeline.asr.utterance.UtteranceTracker` turns
them into decode jobs; one job runs at a time, on the executor shared by every session
(:func:`asr_executor`), and the stage emits:

- :class:`~pipeline.asr.events.Transcript` partials while the caller speaks (stable prefix by
  :class:`~pipeline.asr.agreement.LocalAgreement`, then the unstable tail); a partial decode
  with nothing new to say (empty, equal to the previous one, or rejected by the guards) sends
  a :class:`~pipeline.asr.events.TranscriptProgress` instead, so every partial decode tells
  downstream how far the recogniser has heard (but one abandoned for a final: see below);
- one final :class:`~pipeline.asr.events.Transcript` per utterance, with word timings (``cut``
  when the utterance reached the tracker's ``max_utterance`` and the speech goes on), **or** a
  :class:`~pipeline.asr.events.TranscriptDropped` saying why there is none (a guard's reason,
  or ``"overloaded"`` when the executor's queue refused the job).

Each decode gets the session's last finals (``DecodeOptions.context_words`` words) as Whisper's
previous-text prompt, as faster-whisper does within a file: short phrases are misheard far less
often with it (``condition_on_previous_text=False`` turns it off).

Jobs are queued in order with one rule: a new job replaces the partials still waiting (only the
newest partial is worth decoding; the final covers them all). So a slow executor gets fewer
partials, never a late final behind stale ones. In the shared executor a final has a higher
priority than partials (:data:`FINAL_PRIORITY`): it goes ahead of other calls' partials, and
takes a partial's place when the executor's queue is full.

**Under load partials thin out, finals do not wait.** Each call has at most one request waiting
in the executor (one job at a time), and while it waits its newer jobs replace its queued
partials, so a saturated executor decodes each call's partials less often, never a stale one. With
``batch_size`` > 1 (:func:`asr_executor`) the executor decodes several calls' windows at once,
finals only with finals and partials only with partials: a final never waits for partials'
work beyond the one batch already running.

**Speculative finals.** The VAD's :class:`~pipeline.vad.events.SpeechPaused` (100 ms of
silence) queues a final-quality decode of the utterance so far, at the final's priority, while
the VAD is still confirming the end (its ``min_silence``, 300 ms in the default agent). Until
then its text reads as a partial; when :class:`~pipeline.vad.events.SpeechStopped` names the
same sample, that decode *is* the final and no second decode runs, so the end of speech waits
for what is left of one decode, not for a whole one after the silence. If the caller goes on,
it was one more partial (counted: ``speculations``, ``speculations_used``).

**A final never waits for this call's partial.** Two rules, because a decode that has started
cannot be stopped and the worker is shared:

- A final (speculative or not) queued while a partial of the call is being decoded abandons that
  partial (cancelled: removed from the executor's queue if it still waits there, its result
  thrown away if it runs; counted: ``partials_superseded``) and goes to the executor at once at
  :data:`FINAL_PRIORITY`. A partial waiting behind other calls' work never runs, and once the
  worker is free the final goes next, ahead of the partials other calls queued meanwhile. The
  abandoned partial's text would have been shown for one decode at best before the final's
  reading (which reads as a partial until the stop) replaced it; it is not missed.
- With one call on the worker the partial still holds it to its end, so partials are scheduled
  away from likely pauses: a partial that finds the audio quiet for 30 ms waits until a loud
  block comes or a newer job replaces it (:mod:`pipeline.asr.quiet` has the rules and the
  measurements; counted: ``partials_held``). Quiet audio with no pause for 300 ms lets it go
  (the VAD hears speech there); after the VAD's pause only loud audio does.

Letting the final run *beside* the partial instead (a second decode in flight for the call)
gains nothing with one worker per model: the worker takes the two one after the other, and
CTranslate2 decoding two at once on the same cores makes each slower.

Every other event, control or data, passes on unchanged and at once (the speech events
included, so turn-taking downstream sees them before the final that follows). Audio is passed
on only with ``forward_audio=True``.

**Translation.** With ``translation`` options (Whisper's ``translate`` task), every
final-quality decode that is kept (speculative ones included, so a used guess costs nothing
more at the end of speech) is decoded a second time with them, in the language the first
decode heard, and the final carries the English text as
:attr:`~pipeline.asr.events.Transcript.translation`. Partials are not translated.

When the inbox ends, an open utterance is finalised (its
audio may stop mid-word: the guards decide) and the stage returns once every job is done.

:class:`~pipeline.events.Flush` (a client's commit) is the one exception to "at once": it
finalises the open utterance at that point (the VAD stage has usually closed it already) and is
passed on after that final, in the job queue's order, so downstream it follows every transcript
of the audio sent before it. A ``Flush`` with ``discard`` (a client cleared its input) drops the
open utterance with no final instead (:meth:`UtteranceTracker.discard`), and with it every
decode still queued or under way for it or an earlier one: no transcript of that audio goes out
after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import msgspec
import numpy as np

from pipeline.asr.agreement import LocalAgreement
from pipeline.asr.decode_batch import batch_key
from pipeline.asr.decoder import Decoded, DecodeOptions, DecodeRequest, WhisperDecoder
from pipeline.asr.events import Transcript, TranscriptDropped, TranscriptProgress
from pipeline.asr.model import AsrModelConfig
from pipeline.asr.quiet import QuietTail
from pipeline.asr.utterance import Decode, TrackerConfig, UtteranceTracker
from pipeline.errors import InvalidAudio, Overloaded
from pipeline.events import BYTES_PER_SAMPLE, PIPELINE_RATE, USER_GENERATION, AudioFrame, Flush
from pipeline.executor import ModelExecutor
from pipeline.tasks import shed_frames
from pipeline.vad.events import SpeechPaused, SpeechStarted, SpeechStopped

if TYPE_CHECKING:
    from pipeline.channels import Channel

OVERLOADED = "overloaded"


class AsrRunner(Protocol):
    """What the stage needs from the executor (a ``ModelExecutor[DecodeRequest, Decoded]``)."""

    async def run(self, request: DecodeRequest, /, *, priority: int = 0) -> Decoded: ...


#: executor priorities: an utterance's final goes ahead of every call's waiting partials (a
#: caller who stopped speaking is waiting for it; a partial only refreshes a caption)
FINAL_PRIORITY = 1
PARTIAL_PRIORITY = 0


def asr_executor(
    source: WhisperDecoder | AsrModelConfig | None = None,
    *,
    max_queue: int = 32,
    name: str | None = None,
    batch_size: int = 1,
) -> ModelExecutor[DecodeRequest, Decoded]:
    """The one executor for a Whisper model on one device, shared by every session.

    Given a config, the model is loaded on the worker thread when the executor starts (a CUDA
    context stays on the thread that uses it); given a loaded :class:`WhisperDecoder`, that one
    is used. Up to ``batch_size`` waiting requests of one priority and one
    :func:`~pipeline.asr.decode_batch.batch_key` (window length and beam) are decoded together
    (:meth:`WhisperDecoder.decode_batch`); 1 decodes one at a time. A request that fails (bad
    audio) fails alone.
    """
    config = source if isinstance(source, AsrModelConfig) else AsrModelConfig()
    holder: list[WhisperDecoder] = [source] if isinstance(source, WhisperDecoder) else []

    def load() -> None:
        if not holder:
            holder.append(WhisperDecoder.load(config))

    def decode(requests: list[DecodeRequest]) -> list[Decoded | Exception]:
        return holder[0].decode_batch(requests)

    device = config.device if not holder else str(holder[0].model.model.device)
    return ModelExecutor(
        name if name is not None else f"whisper:{config.model}",
        batch_fn=decode,
        max_batch=batch_size,
        batch_key=batch_key,
        max_queue=max_queue,
        device=device,
        init=load,
    )


class _Jobs:
    """The stage's decode queue: in order, newest partial only, closed at the end of input.

    A :class:`Flush` waits in the queue like a final (it is sent on when its turn comes). A
    speculative final waits like a partial that a partial cannot replace: a real final, or the
    next pause's, does. A partial is only ever last in the queue (any job after it replaces
    it), so holding it (:meth:`hold`) holds nothing else; a final put while a partial is being
    decoded cancels that decode (:attr:`running`).
    """

    def __init__(self, on_hold: Callable[[], None]) -> None:
        self._queue: deque[Decode | Flush] = deque()
        self._wakeup = anyio.Event()
        self._closed = False
        self._hold = False
        self._on_hold = on_hold
        self._held: Decode | None = None  # the last partial counted as held
        #: utterances up to this id were discarded: their decodes are not sent
        self.dropped_through = -1
        #: the scope of the partial being decoded, if one is
        self.running: anyio.CancelScope | None = None

    def discard(self, through: int) -> None:
        """Drop the decodes of utterances up to ``through`` (queued, and any under way)."""
        self.dropped_through = through
        self._queue = deque(j for j in self._queue if isinstance(j, Flush) or j.utterance > through)
        if self.running is not None:
            self.running.cancel()

    def hold(self, quiet: bool) -> None:
        """Partials wait while ``quiet`` (the audio has just gone quiet: a pause is likely)."""
        if self._hold and not quiet:
            self._wakeup.set()
        self._hold = quiet

    def put(self, job: Decode | Flush) -> None:
        waiting = self._queue
        speculating = any(isinstance(j, Decode) and j.speculative for j in waiting)
        if speculating and isinstance(job, Decode) and not job.final:
            return  # the speculative final waiting reads as a partial too, and better
        # a new job supersedes the partials and speculative finals still waiting
        self._queue = deque(
            j for j in waiting if isinstance(j, Flush) or (j.final and not j.speculative)
        )
        self._queue.append(job)
        if isinstance(job, Decode) and job.final and self.running is not None:
            self.running.cancel()  # the final covers the partial's audio: it goes now
        self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    async def get(self) -> Decode | Flush | None:
        """The next job, or ``None`` once closed and drained."""
        while True:
            if self._queue and not self._holding():
                return self._queue.popleft()
            if self._closed and not self._queue:
                return None
            await self._wakeup.wait()
            self._wakeup = anyio.Event()

    def _holding(self) -> bool:
        """The job first in the queue is a partial that waits for the quiet to end."""
        head = self._queue[0]
        if not self._hold or self._closed or isinstance(head, Flush) or head.final:
            return False
        if head is not self._held:
            self._held = head
            self._on_hold()
        return True


class AsrStage:
    """One session's recognition: ``await AsrStage(executor)(inbox, outbox)``."""

    name = "asr"

    def __init__(
        self,
        executor: AsrRunner,
        options: DecodeOptions | None = None,
        tracker: TrackerConfig | None = None,
        *,
        agreement: int = 2,
        forward_audio: bool = False,
        translation: DecodeOptions | None = None,
    ) -> None:
        self.executor = executor
        self.options = options if options is not None else DecodeOptions()
        if translation is not None and translation.task != "translate":
            raise ValueError("translation options must have task='translate'")
        self.translation = translation
        self.tracker_config = tracker if tracker is not None else TrackerConfig()
        self.agreement = agreement
        self.forward_audio = forward_audio
        #: partial jobs refused by a full executor queue (they are skipped)
        self.partials_refused = 0
        #: speculative finals decoded, and of those, used as the final
        self.speculations = 0
        self.speculations_used = 0
        #: partials that waited for the audio's quiet to end, and partial decodes abandoned
        #: for a final queued (or the utterance discarded) while they waited or ran
        self.partials_held = 0
        self.partials_superseded = 0

    async def __call__(self, inbox: Channel, outbox: Channel) -> None:
        tracker = UtteranceTracker(self.tracker_config)
        jobs = _Jobs(self._count_held)
        session: list[str] = []  # the session id, once an event names it
        try:
            async with anyio.create_task_group() as group:
                # shed_frames: else the stage lives on in anyio's cycle (pipeline.tasks)
                group.start_soon(shed_frames, self._decode_jobs(jobs, outbox, session))
                try:
                    await self._read(inbox, outbox, tracker, jobs, session)
                finally:
                    jobs.close()
        except BaseExceptionGroup as failure:  # one plain error for the runtime, not a group
            error = _first(failure)
            raise error from error.__cause__

    async def _read(
        self,
        inbox: Channel,
        outbox: Channel,
        tracker: UtteranceTracker,
        jobs: _Jobs,
        session: list[str],
    ) -> None:
        quiet = QuietTail(self.options.silence_dbfs)
        async for event in inbox:
            if not session:
                session.append(event.session_id)
            if isinstance(event, AudioFrame):
                samples = _samples(event)
                quiet.feed(samples)
                jobs.hold(quiet.pause_likely)
                for job in tracker.audio(event.pts, samples):
                    jobs.put(job)
                if self.forward_audio:
                    await outbox.send(event)
                continue
            if isinstance(event, SpeechStarted):
                quiet.restart()
                jobs.hold(quiet.pause_likely)
                actions = tracker.speech_started(event.audio_start, event.sample)
            elif isinstance(event, SpeechPaused):
                quiet.paused()
                jobs.hold(quiet.pause_likely)
                actions = tracker.speech_paused(event.sample)
            elif isinstance(event, SpeechStopped):
                actions = tracker.speech_stopped(event.sample)
            elif isinstance(event, Flush):
                if event.discard:  # the client cleared its input: forget it
                    jobs.discard(tracker.discard())
                for job in tracker.end_of_stream():  # the commit point ends the utterance
                    jobs.put(job)
                jobs.put(event)  # sent on after that final
                continue
            else:
                actions = []
            for job in actions:
                jobs.put(job)
            await outbox.send(event)
        for job in tracker.end_of_stream():
            jobs.put(job)

    async def _decode_jobs(self, jobs: _Jobs, outbox: Channel, session: list[str]) -> None:
        agreement = LocalAgreement(self.agreement)
        last_partial: tuple[int, str] | None = None
        history: deque[str] = deque()  # words of earlier finals, newest last
        #: the last speculative final and what it decoded to
        speculated: tuple[Decode, Decoded] | None = None
        while (job := await jobs.get()) is not None:
            if isinstance(job, Flush):
                await outbox.send(job)
                continue
            session_id = session[0] if session else ""
            reused = _speculated_final(speculated, job)
            if job.final:
                speculated = None  # a final settles the last guess, used or not
            if reused is not None:
                self.speculations_used += 1
                decoded = reused
            else:
                audio = job.audio.astype(np.float32) / 32768.0
                context = " ".join(history) if self.options.condition_on_previous_text else ""
                request = DecodeRequest(
                    audio=audio, final=job.final, options=self.options, context=context
                )
                try:
                    outcome = await self._decode(jobs, request)
                except Overloaded:
                    if not job.final or job.speculative:
                        self.partials_refused += 1
                        continue
                    outcome = Decoded(text="", dropped=OVERLOADED)
                if outcome is None:  # a final came while this partial was decoded
                    self.partials_superseded += 1
                    continue
                decoded = outcome
                if job.final:
                    decoded = await self._translated(audio, decoded)
            if job.utterance <= jobs.dropped_through:  # discarded while it was decoded
                agreement.reset()
                speculated = None
                continue
            if job.speculative:
                self.speculations += 1
                speculated = (job, decoded)
                # until the speech is known to have ended here, it reads as a partial
            elif job.final:
                agreement.reset()
                if decoded.dropped is None:
                    history.extend(decoded.text.split())
                    while len(history) > self.options.context_words:
                        history.popleft()
                await outbox.send(_final_event(session_id, job, decoded))
                continue
            progress = TranscriptProgress(
                session_id=session_id, utterance=job.utterance, start=job.start, end=job.end
            )
            if decoded.dropped is not None:
                await outbox.send(progress)
                continue
            partial = agreement.update(decoded.text)
            if not partial.text or last_partial == (job.utterance, partial.text):
                await outbox.send(progress)
                continue
            last_partial = (job.utterance, partial.text)
            await outbox.send(
                Transcript(
                    session_id=session_id,
                    generation=USER_GENERATION,
                    utterance=job.utterance,
                    is_final=False,
                    text=partial.text,
                    stable=partial.stable_text,
                    unstable=partial.unstable_text,
                    language=decoded.language,
                    language_probability=decoded.language_probability,
                    start=job.start,
                    end=job.end,
                    avg_logprob=decoded.avg_logprob,
                    no_speech_prob=decoded.no_speech_prob,
                    notes=decoded.notes,
                )
            )

    def _count_held(self) -> None:
        self.partials_held += 1

    async def _decode(self, jobs: _Jobs, request: DecodeRequest) -> Decoded | None:
        """``request`` decoded; a partial's decode is abandoned (``None``) when a final is queued
        while it waits or runs (:meth:`_Jobs.put`)."""
        if request.final:
            return await self.executor.run(request, priority=FINAL_PRIORITY)
        with anyio.CancelScope() as scope:
            jobs.running = scope
            try:
                return await self.executor.run(request, priority=PARTIAL_PRIORITY)
            finally:
                jobs.running = None
        return None

    async def _translated(self, audio: np.ndarray[Any, Any], decoded: Decoded) -> Decoded:
        """``decoded`` with its English translation, when the stage translates and the text
        is kept (a full executor queue leaves it untranslated: the final still goes out)."""
        if self.translation is None or decoded.dropped is not None or not decoded.text:
            return decoded
        options = msgspec.structs.replace(self.translation, language=decoded.language or None)
        request = DecodeRequest(audio=audio, final=True, options=options)
        try:
            english = await self.executor.run(request, priority=FINAL_PRIORITY)
        except Overloaded:
            return decoded
        return replace(decoded, translation=english.text if english.dropped is None else "")


def _speculated_final(speculated: tuple[Decode, Decoded] | None, job: Decode) -> Decoded | None:
    """What the last speculative final decoded to, if ``job`` is the final of that same
    guess (same utterance, start and end of speech)."""
    if speculated is None or not job.final or job.speculative:
        return None
    guess, decoded = speculated
    if (guess.utterance, guess.start, guess.stop) != (job.utterance, job.start, job.stop):
        return None
    return decoded


def _final_event(session_id: str, job: Decode, decoded: Decoded) -> Transcript | TranscriptDropped:
    if decoded.dropped is not None:
        return TranscriptDropped(
            session_id=session_id,
            utterance=job.utterance,
            reason=decoded.dropped,
            text=decoded.text,
            start=job.start,
            end=job.end,
            avg_logprob=decoded.avg_logprob,
            no_speech_prob=decoded.no_speech_prob,
        )
    words = tuple(
        msgspec.structs.replace(w, start=w.start + job.start, end=w.end + job.start)
        for w in decoded.words
    )
    return Transcript(
        session_id=session_id,
        utterance=job.utterance,
        is_final=True,
        text=decoded.text,
        stable=decoded.text,
        words=words,
        language=decoded.language,
        language_probability=decoded.language_probability,
        start=job.start,
        end=job.end,
        avg_logprob=decoded.avg_logprob,
        no_speech_prob=decoded.no_speech_prob,
        notes=decoded.notes,
        cut=job.reason == "max_length",
        translation=decoded.translation,
    )


def _samples(frame: AudioFrame) -> np.ndarray[tuple[int], np.dtype[np.int16]]:
    if frame.sample_rate != PIPELINE_RATE:
        raise InvalidAudio(
            f"the recogniser takes {PIPELINE_RATE} Hz audio, not {frame.sample_rate}"
        )
    if len(frame.pcm) % BYTES_PER_SAMPLE:
        raise InvalidAudio("PCM16 audio must have an even number of bytes")
    return np.frombuffer(frame.pcm, dtype="<i2").astype(np.int16)


def _first(failure: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that failed the stage (the other task only saw the cancellation)."""
    errors = [e for e in failure.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
    error = errors[0] if errors else failure.exceptions[0]
    return _first(error) if isinstance(error, BaseExceptionGroup) else error
