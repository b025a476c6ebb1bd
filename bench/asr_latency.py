"""End of speech to final transcript: the short-window decoder against plain faster-whisper.

Three measurements on the same model object (the embedded Whisper base, CTranslate2 int8,
``--threads`` threads), in one run:

``decoder``
    :meth:`WhisperDecoder.decode` of each utterance's final (beam 5, word timestamps, guards):
    the work left once the end of speech is known.
``baseline``
    ``WhisperModel.transcribe`` on the same audio (beam 5, language fixed, otherwise
    faster-whisper's defaults: the 30 s window, temperature fallback), generator consumed.
``stage``
    the real :class:`~pipeline.vad.stage.VadStage` and :class:`~pipeline.asr.stage.AsrStage` in
    one event loop, fed 20 ms frames at real-time pace (partials on, every 0.5 s of audio):
    from the moment the ASR stage passes on the VAD's ``SpeechStopped`` to the final
    ``Transcript``. This is what a caller waits for after the VAD has decided they stopped.

Utterances: espeak-ng sentences whose text is known (1 to 5 s, two voices) and the read
phrases of ``beckett.wav``. Latency is reported as p50 / p95 in milliseconds.

Word error rate: on the espeak sentences (each decoded alone), and on real read speech as
whole files, ``two_cities.wav`` (44 s) and ``beckett.wav``: faster-whisper transcribes each
file whole (long-form, its own segmentation); Voxline gets the file through VAD + ASR stages
(fed as fast as they go) and its finals are joined. References are the published texts.

Run: ``python -m bench.asr_latency`` (``--quick`` for fewer utterances, no stage run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from functools import partial

import anyio
import numpy as np

from agent.caller_audio import espeak, read_speech, resample, silence
from pipeline.asr.decoder import DecodeOptions, DecodeRequest, WhisperDecoder, to_model_audio
from pipeline.asr.events import Transcript, TranscriptDropped
from pipeline.asr.model import AsrModelConfig
from pipeline.asr.stage import AsrStage, asr_executor
from pipeline.asr.utterance import TrackerConfig
from pipeline.asr.wer import corpus_wer
from pipeline.channels import Channel, Policy
from pipeline.events import PIPELINE_RATE as RATE
from pipeline.events import AudioFrame, Event, Pcm
from pipeline.vad import SileroVad, SpeechStopped, VadStage, vad_executor

SENTENCES = (
    "Yes please.",
    "Thank you.",
    "Cancel my reservation.",
    "What time do you open tomorrow?",
    "Can you repeat that please?",
    "Please call me back later.",
    "I would like to change my order.",
    "Is the restaurant open on Sunday?",
    "Could you send me the details by email?",
    "My flight lands at seven in the evening.",
    "I would like to book a table for two people on Friday evening.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please transfer me to someone who can help with my account balance.",
    "We are looking for a quiet hotel room with a view of the sea for three nights.",
)
VOICES = ("en-us", "en-gb")
BECKETT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."
TWO_CITIES = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the "
    "season of Light, it was the season of Darkness, it was the spring of hope, it was the "
    "winter of despair, we had everything before us, we had nothing before us, we were all "
    "going direct to Heaven, we were all going direct the other way, in short, the period was "
    "so far like the present period, that some of its noisiest authorities insisted on its "
    "being received, for good or for evil, in the superlative degree of comparison only."
)
BECKETT_PHRASES = BECKETT.replace(". ", ".|").split("|")


@dataclass(frozen=True)
class Utterance:
    text: str
    audio: Pcm  # 16 kHz, speech with 0.3 s before and 0.2 s after


def espeak_utterances(limit: int | None) -> list[Utterance]:
    out = []
    for voice in VOICES:
        for text in SENTENCES:
            speech = espeak(text, voice=voice, wpm=165)
            if 1.0 <= len(speech) / RATE <= 5.0:
                out.append(Utterance(text, np.concatenate([silence(0.3), speech, silence(0.2)])))
    return out[:limit]


def beckett_utterances() -> list[Utterance]:
    """The six phrases of beckett.wav, cut at its loud regions (0.3 s before, 0.2 s after)."""
    audio, _ = read_speech("beckett")
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > 1500)
    spans: list[list[int]] = [[int(loud[0]), int(loud[0])]]
    for index in loud[1:]:
        if index - spans[-1][1] > RATE * 0.35:
            spans.append([int(index), int(index)])
        else:
            spans[-1][1] = int(index)
    if len(spans) != len(BECKETT_PHRASES):
        return []
    return [
        Utterance(text, audio[max(a - int(0.3 * RATE), 0) : b + int(0.2 * RATE)])
        for text, (a, b) in zip(BECKETT_PHRASES, spans, strict=True)
    ]


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


PHASES: dict[str, list[float]] = {}


def run_decoder(
    decoder: WhisperDecoder, items: list[Utterance], *, context: bool = False
) -> tuple[list[float], list[str]]:
    """Finals one by one; with ``context``, each gets the previous finals as the stage does.
    Each phase's time (features, encode, generate, align) is kept in :data:`PHASES`."""
    options = DecodeOptions()
    seconds: list[float] = []
    texts: list[str] = []
    for item in items:
        request = DecodeRequest(
            audio=to_model_audio(item.audio, RATE),
            final=True,
            options=options,
            context=" ".join(texts) if context else "",
        )
        started = time.perf_counter()
        decoded = decoder.decode(request)
        seconds.append(time.perf_counter() - started)
        for phase, spent in decoded.timings.items():
            PHASES.setdefault(phase, []).append(spent)
        texts.append("" if decoded.dropped else decoded.text)
    return seconds, texts


def transcribe_baseline(decoder: WhisperDecoder, audio: Pcm) -> str:
    segments, _ = decoder.model.transcribe(to_model_audio(audio, RATE), language="en", beam_size=5)
    return " ".join(s.text.strip() for s in segments)


def run_baseline(decoder: WhisperDecoder, items: list[Utterance]) -> tuple[list[float], list[str]]:
    seconds, texts = [], []
    for item in items:
        started = time.perf_counter()
        texts.append(transcribe_baseline(decoder, item.audio))
        seconds.append(time.perf_counter() - started)
    return seconds, texts


async def through_stages(
    decoder: WhisperDecoder, audio: Pcm, *, paced: bool
) -> list[tuple[float, Event]]:
    """``audio`` through VAD + ASR stages; every output event with its arrival time."""
    received: list[tuple[float, Event]] = []
    with asr_executor(decoder) as asr, vad_executor(SileroVad()) as vad:
        feed = Channel("feed", 64, Policy.COALESCE)
        speech = Channel("vad->asr", 64, Policy.BLOCK)
        out = Channel("asr->out", 64, Policy.BLOCK)

        async def produce() -> None:
            start = time.perf_counter()
            for begin in range(0, len(audio), 320):
                if paced:
                    delay = start + begin / RATE - time.perf_counter()
                    if delay > 0:
                        await anyio.sleep(delay)
                chunk = audio[begin : begin + 320]
                await feed.send(
                    AudioFrame(session_id="b", sample_rate=RATE, pcm=chunk.tobytes(), pts=begin)
                )
            feed.close()

        async def stage_vad() -> None:
            try:
                await VadStage(vad)(feed, speech)
            finally:
                speech.close()

        async def stage_asr() -> None:
            try:
                tracker = TrackerConfig() if paced else TrackerConfig(partial_interval=0)
                await AsrStage(asr, tracker=tracker)(speech, out)
            finally:
                out.close()

        async with anyio.create_task_group() as group:
            group.start_soon(produce)
            group.start_soon(stage_vad)
            group.start_soon(stage_asr)
            async for event in out:
                received.append((time.perf_counter(), event))
    return received


def stage_latencies(decoder: WhisperDecoder, items: list[Utterance]) -> tuple[list[float], int]:
    """Paced run of all items with 1 s of silence between: SpeechStopped -> final, seconds."""
    gap = silence(1.0)
    audio = np.concatenate([part for item in items for part in (item.audio, gap)])
    events = anyio.run(partial(through_stages, decoder, audio, paced=True))
    latencies: list[float] = []
    stopped_at: float | None = None
    partials = 0
    for at, event in events:
        if isinstance(event, SpeechStopped):
            stopped_at = at
        elif isinstance(event, Transcript) and not event.is_final:
            partials += 1
        elif isinstance(event, Transcript | TranscriptDropped) and stopped_at is not None:
            latencies.append(at - stopped_at)
            stopped_at = None
    return latencies, partials


def whole_file_wer(decoder: WhisperDecoder) -> dict[str, dict[str, float]]:
    results = {}
    for name, reference in (("two_cities", TWO_CITIES), ("beckett", BECKETT)):
        audio, rate = read_speech(name)
        audio = resample(audio, rate, RATE)
        started = time.perf_counter()
        baseline = transcribe_baseline(decoder, audio)
        baseline_seconds = time.perf_counter() - started
        started = time.perf_counter()
        events = anyio.run(partial(through_stages, decoder, audio, paced=False))
        ours_seconds = time.perf_counter() - started
        finals = [e.text for _, e in events if isinstance(e, Transcript) and e.is_final]
        ours = " ".join(finals)
        results[name] = {
            "baseline_wer": corpus_wer([(reference, baseline)]),
            "voxline_wer": corpus_wer([(reference, ours)]),
            "baseline_s": baseline_seconds,
            "voxline_s": ours_seconds,
            "utterances": len(finals),
        }
        print(f"  {name}: faster-whisper: {baseline}")
        print(f"  {name}: voxline:        {ours}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="8 utterances, no paced stage run")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()

    decoder = WhisperDecoder.load(AsrModelConfig(cpu_threads=args.threads))
    items = espeak_utterances(8 if args.quick else None)
    phrases = beckett_utterances()
    everything = items + phrases
    decoder.decode(DecodeRequest(audio=to_model_audio(items[0].audio, RATE), final=True))  # warm
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"CTranslate2 int8 x{args.threads} threads; {len(everything)} utterances "
        f"({min(len(i.audio) for i in everything) / RATE:.1f}-"
        f"{max(len(i.audio) for i in everything) / RATE:.1f} s with 0.5 s margins)"
    )

    ours_s, ours_text = run_decoder(decoder, items)
    ours_s2, ours_text2 = run_decoder(decoder, phrases, context=True)
    ours_s, ours_text = ours_s + ours_s2, ours_text + ours_text2
    base_s, base_text = run_baseline(decoder, everything)
    report: dict[str, object] = {}
    phases = {name: statistics.median(v) * 1000 for name, v in PHASES.items()}
    report["decoder_phase_median_ms"] = phases
    print("  decoder phases (median ms): " + ", ".join(f"{k} {v:.0f}" for k, v in phases.items()))
    for name, values in (("decoder", ours_s), ("baseline", base_s)):
        p50, p95 = percentiles(values)
        report[f"{name}_p50_ms"], report[f"{name}_p95_ms"] = p50, p95
        print(f"{name:>9}: p50 {p50:6.0f} ms   p95 {p95:6.0f} ms")
    n = len(items)
    texts = [i.text for i in items]
    report["espeak_wer_voxline"] = corpus_wer(list(zip(texts, ours_text[:n], strict=True)))
    report["espeak_wer_baseline"] = corpus_wer(list(zip(texts, base_text[:n], strict=True)))
    print(
        f"espeak WER: voxline {report['espeak_wer_voxline']:.3f}, "
        f"faster-whisper {report['espeak_wer_baseline']:.3f} ({n} utterances)"
    )
    if phrases:
        refs = [p.text for p in phrases]
        ours = list(zip(refs, ours_text[n:], strict=True))
        base = list(zip(refs, base_text[n:], strict=True))
        report["beckett_phrases_wer_voxline"] = corpus_wer(ours)
        report["beckett_phrases_wer_baseline"] = corpus_wer(base)

    if not args.quick:
        latencies, partials = stage_latencies(decoder, everything)
        p50, p95 = percentiles(latencies)
        report["stage_p50_ms"], report["stage_p95_ms"] = p50, p95
        report["stage_finals"], report["stage_partials"] = len(latencies), partials
        print(
            f"    stage: p50 {p50:6.0f} ms   p95 {p95:6.0f} ms  "
            f"(SpeechStopped -> final, paced, {len(latencies)} finals, {partials} partials)"
        )

    print("whole files (reference: the published texts):")
    files = whole_file_wer(decoder)
    report["files"] = files
    for name, numbers in files.items():
        print(
            f"  {name}: WER voxline {numbers['voxline_wer']:.3f} "
            f"({numbers['utterances']:.0f} utterances, {numbers['voxline_s']:.1f} s), "
            f"faster-whisper whole file {numbers['baseline_wer']:.3f} "
            f"({numbers['baseline_s']:.1f} s)"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=1)


if __name__ == "__main__":
    main()
