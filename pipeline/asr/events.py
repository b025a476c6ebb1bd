"""Events the ASR stage adds to the stream.

Times are sample positions at 16 kHz on the stream's ``pts`` timeline (the audio the stage
was given), like every other position in the pipeline.
"""

from __future__ import annotations

import msgspec

from pipeline.events import Event


class TranscriptWord(msgspec.Struct, frozen=True, kw_only=True):
    """One word of a final transcript: where it was heard and how sure the model was."""

    word: str
    #: first sample of the word
    start: int
    #: the sample after the word
    end: int
    #: mean probability of the word's tokens (0 to 1)
    probability: float


class Transcript(Event, frozen=True, kw_only=True, tag="transcript"):
    """What the caller said in utterance ``utterance``: a partial while they speak, then a final.

    A partial's ``text`` is ``stable`` (agreed by successive decodes: later partials keep it)
    followed by ``unstable`` (may still change). The final is decoded afresh from the whole
    utterance and may revise even the stable prefix; it alone has ``words``.
    """

    utterance: int
    is_final: bool
    text: str
    stable: str = ""
    unstable: str = ""
    words: tuple[TranscriptWord, ...] = ()
    language: str = ""
    language_probability: float = 1.0
    #: the utterance's audio: first sample and the sample after the last
    start: int = 0
    end: int = 0
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    #: repairs the guards made (``"repetition_collapsed"``)
    notes: tuple[str, ...] = ()
    #: a final of an utterance that reached the longest allowed (the tracker's
    #: ``max_utterance``): the speech goes on in the next utterance
    cut: bool = False
    #: a final's English translation, when the stage translates (Whisper's translate task on
    #: the same audio; :class:`~pipeline.asr.stage.AsrStage` ``translation``)
    translation: str = ""


class TranscriptDropped(Event, frozen=True, kw_only=True, tag="transcript_dropped"):
    """The final of utterance ``utterance`` was withheld; ``reason`` is one of
    :data:`pipeline.asr.guards.REASONS`. ``text`` is what the model wrote, if it was run."""

    utterance: int
    reason: str
    text: str = ""
    start: int = 0
    end: int = 0
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


class TranscriptProgress(Event, frozen=True, kw_only=True, tag="transcript_progress"):
    """Utterance ``utterance`` was decoded up to ``end`` and there is no new partial to send
    (its text is empty, unchanged, or rejected by the guards).

    Every partial decode ends in a :class:`Transcript` or in this, so downstream knows how far
    the recogniser has heard even while it hears no words: turn-taking waits for that instead of
    taking a lagging recogniser's silence for no words. It is not a transcript: clients are not
    told of it.
    """

    utterance: int
    start: int = 0
    end: int = 0
