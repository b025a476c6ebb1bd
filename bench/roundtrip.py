"""Round trip: text -> Piper (the embedded voice) -> Whisper (the embedded model) -> text.

20 varied sentences (numbers, names, questions, dates, money). The text goes to the voice as a
live reply does (``plan_from_text``: normalised, through the worker process); the audio is
transcribed by the same decoder the calls use (beam 5, finals) and scored with
:mod:`pipeline.asr.wer` (numbers 0-99 spelled out on both sides). Baseline in the same run: the
same sentences spoken by espeak-ng (Debian) through the same decoder, to separate the voice's
errors from the ASR's.

Run: ``python -m bench.roundtrip``.
"""

from __future__ import annotations

import platform
import subprocess
from contextlib import aclosing

import anyio
import numpy as np

from agent.caller_audio import espeak
from pipeline.asr.decoder import DecodeOptions, DecodeRequest, WhisperDecoder, to_model_audio
from pipeline.asr.wer import corpus_wer, wer
from voices.piper_engine import PiperEngine
from voices.ssml import plan_from_text

SENTENCES = [
    "Good morning, how can I help you today?",
    "My name is Sarah Johnson and I live in Boston.",
    "Could you book a table for four people at eight tonight?",
    "The meeting is on Tuesday the third of March.",
    "Please call me back on 555 0142.",
    "Is the restaurant open on Sunday evenings?",
    "I would like two coffees and a croissant, please.",
    "The total comes to twelve dollars and fifty cents.",
    "What time does the last train to Chicago leave?",
    "Doctor Patel will see you at half past nine.",
    "We have seventeen rooms available next weekend.",
    "Can you spell your surname for me?",
    "The package should arrive within three to five days.",
    "Turn left at the second traffic light.",
    "Did you receive my email about the invoice?",
    "Our office is closed for the holidays until January.",
    "How much does a ticket to the museum cost?",
    "Michael and Emma are flying to Paris on Friday.",
    "I'm sorry, the line is busy, shall I take a message?",
    "Thank you for calling, have a wonderful day!",
]


def transcribe(decoder: WhisperDecoder, samples: np.ndarray, rate: int) -> str:
    audio = to_model_audio(samples, rate)
    return decoder.decode(DecodeRequest(audio=audio, final=True, options=DecodeOptions())).text


async def piper_audio(engine: PiperEngine, text: str) -> np.ndarray:
    chunks = []
    async with aclosing(engine.synthesize(plan_from_text(text))) as stream:
        async for chunk in stream:
            chunks.append(chunk.pcm)
    return np.frombuffer(b"".join(chunks), dtype="<i2")


def header() -> None:
    with open("/proc/loadavg") as loadavg:
        load = loadavg.read().split()[0]
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    print(f"# round trip on {platform.node()} (load {load}; {version.strip()})")


async def main() -> None:
    decoder = WhisperDecoder.load()
    rows: dict[str, list[tuple[str, str]]] = {"piper": [], "espeak-ng": []}
    with PiperEngine(threads=1) as engine:
        for text in SENTENCES:
            audio = await piper_audio(engine, text)
            rows["piper"].append((text, transcribe(decoder, audio, engine.sample_rate)))
            rows["espeak-ng"].append((text, transcribe(decoder, espeak(text), 16000)))
    print("\n| voice | sentences | corpus WER |\n|---|---|---|")
    for voice, pairs in rows.items():
        print(f"| {voice} | {len(pairs)} | {corpus_wer(pairs):.3f} |")
    print("\nSentences with errors (piper):")
    for text, heard in rows["piper"]:
        if wer(text, heard) > 0:
            print(f"- {text!r} -> {heard!r}")


if __name__ == "__main__":
    header()
    anyio.run(main)
