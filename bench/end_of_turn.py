"""Semantic end of turn: the silence rule against the end-of-turn model (smart-turn v3).

The set (built here, every run the same):

``espeak-pause``
    espeak-ng sentences with a pause of 400, 600 or 800 ms inside them (SSML ``<break>``, so
    the voice before it is mid-sentence), once plain and once after a filler ("um," "uh,");
``espeak-short``
    complete short answers ("No.", "Tomorrow at nine.");
``read-pause`` / ``read``
    the public-domain read speech of the ``moonshine-voice`` wheel (beckett, two_cities,
    endgame_nagg_nell), cut into its sentences by Whisper's word timings: each sentence as it
    is, and the same sentence with 400-800 ms of silence spliced in at a word boundary in its
    middle (not after a comma).

Each utterance (0.5 s of silence before, 3 s after) is played through the real components in
sample time: Silero VAD and its detector as the default agent sets them (0.5/0.35, 250 ms
speech, 300 ms silence, the stage's 100 ms ``SpeechPaused``), Whisper base for each
utterance's final text (what the silence rule's punctuation check reads), the real turn
machine (:class:`agent.turns.TurnTaking`) under each policy, and the real model, hearing what
a call's asker gives it (:func:`agent.turn_asker.question_span`). The final of
a pause arrives ``--asr-ms`` after the pause was announced (the speculative decode), not
before the stop is known; the model's answer arrives its measured batch-1 median after it was
asked. Per policy: turns cut too early (an utterance that made more than one turn, or whose
turn ended over 250 ms before its last word), and the silence waited, from the end of the
speech (the VAD's stop) to the EndOfTurn, mean / p50 / p95, over the utterances not cut.

Also the model's time per request at batch 1, 4 and 8 (features included, as the executor
runs it).

Run: ``python -m bench.end_of_turn`` (``--json FILE``; a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from agent.caller_audio import espeak, read_speech, read_wav, resample, silence
from agent.config import load_config
from agent.models import asr_model_config, asr_options
from agent.turn_asker import question_span
from agent.turns import (
    AskEndOfTurn,
    EndOfTurn,
    EndOfTurnScore,
    EndSpeech,
    TurnAction,
    TurnConfig,
    TurnInput,
    TurnTaking,
)
from pipeline.asr.decoder import DecodeOptions, DecodeRequest, WhisperDecoder
from pipeline.asr.events import Transcript
from pipeline.events import PIPELINE_RATE, Pcm
from pipeline.turn.smart_turn import SmartTurn, TurnEndRequest
from pipeline.vad import (
    FRAME_SAMPLES,
    DetectorConfig,
    SileroState,
    SileroVad,
    SpeechDetector,
    SpeechEnd,
    SpeechPaused,
    SpeechStart,
    SpeechStarted,
    SpeechStopped,
    VadRequest,
)
from pipeline.vad.stage import PAUSE_SAMPLES

RATE = PIPELINE_RATE
MS = RATE // 1000
PRE_ROLL = RATE // 2
CUT_SLACK = 250 * MS

PAIRS = (
    ("I would like to book a table for two", "at eight o'clock tonight."),
    ("Can you tell them that I", "will be late for the meeting."),
    ("My name is", "Peter Jones, from the bank."),
    ("I want to leave a message for", "Alice Smith."),
    ("The thing is, my flight", "was cancelled this morning."),
    ("Could you put me through to", "someone in billing?"),
    ("I was wondering whether", "you are open on Sunday."),
    ("Please tell her that the package", "arrived yesterday."),
)
FILLERS = ("um,", "uh,")
PAUSES_MS = (400, 600, 800)
SHORT = (
    "Yes.",
    "No.",
    "That's right.",
    "Tomorrow at nine.",
    "My name is Peter Jones.",
    "Two people, please.",
    "I'd like to leave a message.",
    "What time do you open?",
    "Thank you, goodbye.",
    "Can I talk to a person?",
    "No, that's all.",
    "Sure.",
)
RECORDINGS = ("beckett", "two_cities", "endgame_nagg_nell")


@dataclass
class Utterance:
    kind: str
    name: str
    audio: Pcm  # the speech alone
    #: sample of the last word's end within ``audio`` (an early end is before it)
    last_word: int = 0


# -- the set ----------------------------------------------------------------------------------


def espeak_ssml(ssml: str) -> Pcm:
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "160", "-m", "--stdout", f"<speak>{ssml}</speak>"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    samples, rate = read_wav(wav)
    return resample(samples, rate, RATE)


def trimmed(audio: Pcm, threshold: int = 300) -> Pcm:
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > threshold)
    return audio[max(0, loud[0] - 800) : loud[-1] + 800] if len(loud) else audio


def espeak_set() -> Iterator[Utterance]:
    for i, (first, second) in enumerate(PAIRS):
        for n, pause in enumerate(PAUSES_MS):
            for filler in ("", FILLERS[(i + n) % 2]):
                text = f"{first}, {filler}" if filler else first
                audio = trimmed(espeak_ssml(f"{text} <break time='{pause}ms'/> {second}"))
                name = f"{first} / {filler or '-'} {pause} ms / {second}"
                yield Utterance("espeak-pause", name, audio, len(audio) - 800)
    for text in SHORT:
        audio = trimmed(espeak(text))
        yield Utterance("espeak-short", text, audio, len(audio) - 800)


def read_set(decoder: WhisperDecoder, options: DecodeOptions) -> Iterator[Utterance]:
    """The recordings' sentences, and each with a pause spliced in at a middle word gap."""
    count = 0
    for name in RECORDINGS:
        pcm, rate = read_speech(name)
        pcm = resample(pcm, rate, RATE)
        for begin in range(0, len(pcm), 25 * RATE):  # Whisper hears 30 s at most
            window = pcm[begin : begin + 25 * RATE]
            if len(window) < RATE:
                continue
            audio = window.astype(np.float32) / 32768.0
            words = decoder.decode(DecodeRequest(audio=audio, final=True, options=options)).words
            sentence: list[Any] = []
            for word in words:
                sentence.append(word)
                if not word.word.strip().endswith((".", "?", "!")):
                    continue
                if len(sentence) >= 4:
                    start = max(0, sentence[0].start - 1600)
                    end = min(len(window), sentence[-1].end + 1600)
                    speech = window[start:end]
                    text = " ".join(w.word.strip() for w in sentence)
                    yield Utterance("read", f"{name}: {text}", speech, sentence[-1].end - start)
                    gaps = [
                        k
                        for k in range(1, len(sentence) - 1)
                        if not sentence[k - 1].word.strip().endswith((",", ";", ":"))
                    ]
                    if gaps:
                        k = gaps[len(gaps) // 2]
                        cut = (sentence[k - 1].end + sentence[k].start) // 2 - start
                        pause = PAUSES_MS[count % len(PAUSES_MS)]
                        count += 1
                        spliced = np.concatenate(
                            [speech[:cut], silence(pause / 1000), speech[cut:]]
                        )
                        last = sentence[-1].end - start + pause * MS
                        label = f"{name}: {pause} ms before '{sentence[k].word.strip()}': {text}"
                        yield Utterance("read-pause", label, spliced, last)
                sentence = []


# -- one utterance through VAD, ASR, turn-taking and the model, in sample time ------------------


@dataclass
class Policy:
    name: str
    turns: TurnConfig
    #: silence inside speech that makes the VAD announce a pause (the stage's 100 ms)
    pause_samples: int = PAUSE_SAMPLES


@dataclass
class Outcome:
    turns: int = 0
    cut: bool = False
    waited_ms: float | None = None
    asked: int = 0


@dataclass
class Models:
    vad: SileroVad
    decoder: WhisperDecoder
    options: DecodeOptions
    model: SmartTurn
    asr_ms: int
    model_ms: float
    texts: dict[tuple[int, int, str], str] = field(default_factory=dict)
    scores: dict[tuple[int, int, str], float] = field(default_factory=dict)


def play(models: Models, utterance: Utterance, policy: Policy, vad: DetectorConfig) -> Outcome:
    lead = PRE_ROLL
    audio = np.concatenate([silence(lead / RATE), utterance.audio, silence(3.0)])
    last_word = lead + utterance.last_word
    machine = TurnTaking(policy.turns)
    detector = SpeechDetector(vad)
    state = SileroState.initial()
    pending: list[tuple[int, TurnInput]] = []  # (due, input): the ASR's and the model's
    ended: list[EndOfTurn] = []
    outcome = Outcome()
    speech_start = 0
    segment = 0
    paused_at: int | None = None
    announced: dict[int, int] = {}  # pause -> when it was announced (speculative decode)
    stop_of_turn = 0

    def handle(actions: list[TurnAction], now: int) -> None:
        nonlocal stop_of_turn
        for action in actions:
            if isinstance(action, EndOfTurn):
                ended.append(action)
                stop_of_turn = action.end
            elif isinstance(action, AskEndOfTurn):
                outcome.asked += 1
                span = question_span(action, policy.pause_samples)
                p = score(models, audio, span, utterance.name)
                pending.append((now + round(models.model_ms * MS), EndOfTurnScore(action.pause, p)))
            elif isinstance(action, EndSpeech):
                for transition in detector.end_at(action.pause):
                    transit(transition, now)

    def transit(transition: SpeechStart | SpeechEnd, now: int) -> None:
        nonlocal speech_start, segment
        if isinstance(transition, SpeechStart):
            speech_start = transition.sample
            event: TurnInput = SpeechStarted(
                session_id="b", sample=transition.sample, audio_start=transition.audio_start,
                probability=transition.probability,
            )  # fmt: skip
            handle(machine.feed(event, now), now)
            return
        stop = transition.sample
        handle(
            machine.feed(
                SpeechStopped(session_id="b", sample=stop, speech_start=speech_start), now
            ),
            now,
        )
        start = max(0, speech_start - PRE_ROLL)
        text = transcribe(models, audio, start, stop, utterance.name)
        final = Transcript(
            session_id="b", utterance=segment, is_final=True, text=text, start=start, end=stop
        )
        segment += 1
        due = max(now, announced.get(stop, now) + models.asr_ms * MS)
        pending.append((due, final))

    for position in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        now = position + FRAME_SAMPLES
        for due, event in sorted((p for p in pending if p[0] <= now), key=lambda p: p[0]):
            pending.remove((due, event))
            handle(machine.feed(event, due), due)
        handle(machine.advance(now), now)
        frame = audio[position : position + FRAME_SAMPLES]
        result = models.vad(VadRequest(frame=frame, state=state))
        state = result.state
        for transition in detector.feed(result.probability, FRAME_SAMPLES):
            transit(transition, now)
        pause = detector.pause
        if pause is not None and pause != paused_at and now - pause >= policy.pause_samples:
            paused_at = pause
            announced[pause] = now
            handle(machine.feed(SpeechPaused(session_id="b", sample=pause), now), now)
    outcome.turns = len(ended)
    # Whisper's word ends run late by up to a few hundred ms; a cut inside a sentence leaves
    # at least a word (over 250 ms) after the turn's end
    outcome.cut = len(ended) != 1 or ended[0].end < last_word - CUT_SLACK
    if not outcome.cut:
        outcome.waited_ms = (ended[0].at - stop_of_turn) / MS
    return outcome


def transcribe(models: Models, audio: Pcm, start: int, stop: int, name: str) -> str:
    key = (start, stop, name)
    if key not in models.texts:
        window = audio[start : stop + 1600].astype(np.float32) / 32768.0
        request = DecodeRequest(audio=window, final=True, options=models.options)
        models.texts[key] = models.decoder.decode(request).text
    return models.texts[key]


def score(models: Models, audio: Pcm, span: tuple[int, int], name: str) -> float:
    """The model's answer about ``audio[span]`` (a question's :func:`question_span`)."""
    begin, end = span
    key = (begin, end, name)
    if key not in models.scores:
        clip = audio[max(0, begin) : end]
        models.scores[key] = models.model(TurnEndRequest(clip)).probability
    return models.scores[key]


# -- the model's own time ---------------------------------------------------------------------


def model_times(model: SmartTurn, clips: list[Pcm], rounds: int = 5) -> dict[str, float]:
    out: dict[str, float] = {}
    for size in (1, 4, 8):
        requests = [TurnEndRequest(clips[i % len(clips)]) for i in range(size)]
        model.batch(requests)  # warm this shape
        times = []
        for _ in range(rounds):
            began = time.perf_counter()
            model.batch(requests)
            times.append(time.perf_counter() - began)
        out[f"batch {size}: ms per request"] = 1000 * statistics.median(times) / size
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    waited = [o.waited_ms for o in outcomes if o.waited_ms is not None]
    return {
        "utterances": len(outcomes),
        "cut_pct": 100.0 * sum(o.cut for o in outcomes) / len(outcomes),
        "waited_mean_ms": statistics.fmean(waited) if waited else None,
        "waited_p50_ms": percentile(waited, 0.5) if waited else None,
        "waited_p95_ms": percentile(waited, 0.95) if waited else None,
        "asked_per_utterance": sum(o.asked for o in outcomes) / len(outcomes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--asr-ms", type=int, default=200, help="a pause's final, after it")
    parser.add_argument("--thresholds", default="0.5", help="model thresholds, comma-separated")
    parser.add_argument("--pause-ms", default="100", help="when pauses are announced, ms")
    parser.add_argument("--not-done-ms", default="2000", help="not_done_silence_ms values")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    config = load_config(args.config)
    profile = config.profile.vad
    vad = DetectorConfig.from_seconds(
        activation=profile.threshold,
        deactivation=min(profile.release_threshold, profile.threshold),
        min_speech=profile.min_speech_ms / 1000,
        min_silence=profile.min_silence_ms / 1000,
        pre_roll=profile.pre_roll_ms / 1000,
    )
    decoder = WhisperDecoder.load(asr_model_config(config))
    options = asr_options(config)
    model = SmartTurn()
    began = time.perf_counter()
    utterances = [*espeak_set(), *read_set(decoder, options)]
    clips = [u.audio for u in utterances[:8]]
    times = model_times(model, clips)
    models = Models(
        SileroVad(), decoder, options, model, args.asr_ms, times["batch 1: ms per request"]
    )
    base = msgspec.structs.replace(config.turns, idle_timeout_ms=0, max_call_ms=0)
    silence_rule = msgspec.structs.replace(base, end_of_turn_detector="silence")
    policies = [Policy(f"silence ({silence_rule.end_of_turn_silence_ms} ms)", silence_rule)]
    for threshold in (float(t) for t in args.thresholds.split(",")):
        for pause_ms in (int(p) for p in args.pause_ms.split(",")):
            for not_done in (int(n) for n in args.not_done_ms.split(",")):
                turns = msgspec.structs.replace(
                    base,
                    end_of_turn_detector="model",
                    end_of_turn_threshold=threshold,
                    not_done_silence_ms=not_done,
                )
                name = f"model ({threshold:g}, asked at {pause_ms} ms, not done {not_done} ms)"
                policies.append(Policy(name, turns, pause_ms * MS))
    results: dict[str, Any] = {}
    for policy in policies:
        by_kind: dict[str, list[Outcome]] = {}
        for utterance in utterances:
            outcome = play(models, utterance, policy, vad)
            by_kind.setdefault(utterance.kind, []).append(outcome)
        every = [o for outcomes in by_kind.values() for o in outcomes]
        pauses = [o for k, outcomes in by_kind.items() if k.endswith("pause") for o in outcomes]
        whole = [o for k, outcomes in by_kind.items() if not k.endswith("pause") for o in outcomes]
        results[policy.name] = {
            "all": summary(every),
            "with a pause inside": summary(pauses),
            "complete": summary(whole),
            **{kind: summary(outcomes) for kind, outcomes in by_kind.items()},
        }
    report = {
        "machine": platform.processor() or platform.machine(),
        "asr_ms": args.asr_ms,
        "model_times": times,
        "utterances": {
            k: sum(u.kind == k for u in utterances) for k in sorted({u.kind for u in utterances})
        },
        "policies": results,
        "seconds": time.perf_counter() - began,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)


if __name__ == "__main__":
    main()
