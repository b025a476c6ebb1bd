"""An idle ``/v1/realtime`` session: counted from the end of the client's playback.

The API counts ``server_vad``'s ``idle_timeout_ms`` "after the last model response's audio has
finished playing" on the client. The server cannot hear the client's speaker, so it estimates:
the response's audio duration after its first audio delta went out; a client that stopped
playing earlier says how much it played with ``conversation.item.truncate`` (``audio_end_ms``),
and one that stopped at a barge-in stopped when the response was cancelled.
:class:`Playback` keeps that estimate for one session, sans-I/O, on the turn machine's timeline
(input samples at 16 kHz, :class:`~pipeline.clock.InputClock`: the wall clock while the client
sends nothing).

The timer itself is the turn machine's (rule Q1 of :mod:`agent.turns`): it runs while nobody
speaks and no reply is on, and a reply is on until its last audio is out. Voxline paces a
response's audio in real time (the session's playout, ``lead`` 60 ms ahead of it), so its last
delta goes out within the lead and a frame (80 ms) of the estimated end of playback, and the
timer starts there: as the client stops listening, not seconds before (the OpenAI server sends
faster than real time, so it has to add the rest of the playback; a timer counted from its
``response.done`` would prompt a caller who is still listening). After a truncate the rest of
the response still goes out, paced, so the timer starts no earlier than the client's stop.

When the timeout passes, :func:`timed_out` says so as the API does: the audio since the
playback ended is ``input_audio_buffer.timeout_triggered``, and it is committed as an empty user
item (``input_audio_buffer.committed``, its empty transcript); then the agent's idle prompt
comes as a response. After ``turns.idle_prompts`` of them the agent hangs up and the socket is
closed (``1000``, reason ``idle``), so an idle socket does not hold a session slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.session import Session
from pipeline.events import PIPELINE_RATE
from transports.realtime import RealtimeProtocol

__all__ = ["IdleWatch", "Playback", "timed_out"]


@dataclass
class _Playing:
    """The response whose audio the client plays (or played) last."""

    generation: int
    #: when its first delta went out (input samples)
    start: int
    #: its audio sent so far, in input samples
    length: int = 0
    #: where the client stopped playing it, if it stopped early (input samples)
    stopped: int | None = None

    @property
    def ends(self) -> int:
        end = self.start + self.length
        return end if self.stopped is None else min(end, self.stopped)


class Playback:
    """Where the client's playback of the responses ends, estimated as the API does."""

    def __init__(self) -> None:
        self._last: _Playing | None = None

    @property
    def ends(self) -> int | None:
        """When the last response's audio ends playing on the client (input samples;
        ``None``: no response has had audio)."""
        return None if self._last is None else self._last.ends

    def sent(self, generation: int, samples: int, rate: int, now: int) -> None:
        """``samples`` of response ``generation``'s audio at ``rate`` went out at ``now``."""
        last = self._last
        if last is None or last.generation != generation:
            if last is not None and generation < last.generation:
                return  # a frame of an older response, on its way when it was cancelled
            last = self._last = _Playing(generation, now)
        last.length += samples * PIPELINE_RATE // rate

    def truncated(self, generation: int, audio_end_ms: int) -> None:
        """The client played response ``generation`` up to ``audio_end_ms`` and stopped."""
        last = self._last
        if last is not None and last.generation == generation:
            stop = last.start + audio_end_ms * PIPELINE_RATE // 1000
            last.stopped = stop if last.stopped is None else min(last.stopped, stop)

    def cancelled(self, generation: int, now: int) -> None:
        """Response ``generation`` was cancelled at ``now``: the client stops playing it (it
        stops at ``speech_started``, or asked for the cancel)."""
        last = self._last
        if last is not None and last.generation == generation and last.stopped is None:
            last.stopped = now


def timed_out(protocol: RealtimeProtocol, playback: Playback, idle_ms: int, now: int) -> str:
    """The idle timeout passed at ``now``: the API's events for it, before the idle prompt's
    response; returns the committed (empty) user item's id. The silent span starts where the
    playback ended, and is no longer than the timeout (a session that never played anything
    counts from the end of the caller's last turn, or from its start)."""
    start = max(now - idle_ms * PIPELINE_RATE // 1000, playback.ends or 0, 0)
    protocol.idle_timeout(min(start, now), now)
    item = protocol.commit_input()
    protocol.input_transcript_completed(item, "")
    return item


class IdleWatch:
    """A Realtime sink's side of its session's idle timeout (the sink's hooks, one line each):
    the playback estimate kept from what it sends and hears, and the API's events before each
    idle prompt's response. Audio goes out at ``rate``."""

    def __init__(self, protocol: RealtimeProtocol, rate: int) -> None:
        self.protocol = protocol
        self.rate = rate
        self.playback = Playback()

    def sent(self, session: Session | None, generation: int, pcm: bytes) -> None:
        if session is not None:
            self.playback.sent(generation, len(pcm) // 2, self.rate, session.input.now())

    def cancelled(self, session: Session | None, generation: int) -> None:
        if session is not None:
            self.playback.cancelled(generation, session.input.now())

    def starting(self, session: Session | None, generation: int) -> None:
        """Reply ``generation``'s response is about to start: if it is an idle prompt, the
        timeout's events go first."""
        run = None if session is None else session.replies.live.get(generation)
        if session is not None and run is not None and run.idle:
            idle_ms = session.turns.config.idle_timeout_ms
            timed_out(self.protocol, self.playback, idle_ms, session.input.now())
