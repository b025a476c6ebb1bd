"""Speech-to-speech translation: ear-to-ear latency and chrF, per engine and language pair.

The interpreter (``dialogue.engine: translate``, agent/translator.py) runs as a real ``voxline
serve`` (:func:`agent.server_process.running_server`) per leg, from
``configs/interpreter.yaml`` with ``profile.asr.language`` set to the leg's source language (as
a deployment that knows its callers' language sets it: detection on short espeak-ng utterances
is the weakest step, measured apart below) and:

- ``whisper``: Whisper's translate task (fr, de, es -> en), Joe's voice;
- ``llm``: the embedded Qwen2.5 0.5B behind llama.cpp's server, started here
  (:class:`~agent.dialogue.llm_local.LlamaServer`, 2 threads), as ``profile.llm``
  (``dialogue.llm.seed: 0``): fr, de, es -> en with Joe, and en -> es with the ``espeak-es``
  voice (skipped, and said so, when the catalog has no such voice).

Each leg is one native call (``/v1/stream``, :mod:`agent.caller`) that says every sentence of
the parallel set (:mod:`bench.translation_data`, ``bench/data/translation.tsv``) in the
source language, spoken by espeak-ng at 120 words a minute, then silence until the
translation has been played. All times are the client's (as in :mod:`bench.voice_to_voice`):
**ear to ear** is from sending the frame holding the utterance's last loud sample to the
arrival of the first frame of the translation holding a loud sample (above |300|).

Quality: chrF of the translation text the server sent (``agent.text``) against the hand
translation; chrF of the ASR's transcript (its finals) against the source sentence, which
shows how much of the loss is the ASR's; how often Whisper's language detection (the same
audio decoded in this process with ``language: null``) names the source language.

Baseline (same run, no call open, in this process): per sentence, the models alone with the
server's settings: the final decode of the utterance (Whisper base int8, 2 threads, language
detection), then the translate decode of the same audio (``whisper``) or the time to the LLM's
first text for the heard text (``llm``: the translator itself, with the call's context pairs),
then the first chunk of the translation's first clause from the agent's voice. The floor adds
the VAD's ``min_silence_ms`` (the silence before the final decode starts), as in
bench/voice_to_voice.py.

Run: ``python -m bench.translation [--sentences N] [--engines whisper,llm] [--json FILE]``
(about half an hour for all 24 sentences on 2 cores).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, aclosing
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from agent.caller import Caller, Reply, Utterance, call
from agent.caller_audio import espeak
from agent.config import AgentConfig, load_config
from agent.config.runtime import llm_config
from agent.dialogue.decision import Say
from agent.dialogue.llm import LLMEngine, make_backend
from agent.dialogue.llm_local import LlamaServer, embedded_gguf
from agent.models import asr_model_config, asr_options, translation_options, tts_engine
from agent.server_process import ROOT, running_server
from agent.translator import TranslatorResponder, translation_llm
from bench.translation_data import Leg, Sentence, load_parallel, report
from bench.v2v_report import load
from bench.voice_to_voice import answer_to, final_request, finish, first_chunk_times, greeting
from bench.voice_to_voice import median_time as timed
from pipeline.asr.decoder import Decoded, WhisperDecoder
from pipeline.asr.events import Transcript
from pipeline.errors import ConfigError
from voices.catalog import load_catalog

INTERPRETER = ROOT / "configs" / "interpreter.yaml"
#: (engine, source, target), in the order they run (one server each)
LEGS = (
    ("whisper", "fr", "en"),
    ("whisper", "de", "en"),
    ("whisper", "es", "en"),
    ("llm", "fr", "en"),
    ("llm", "de", "en"),
    ("llm", "es", "en"),
    ("llm", "en", "es"),
)
WPM = 120  # the espeak-ng speed of the caller's sentences
#: the voice that speaks each target language, and the engine it needs
VOICES = {"en": ("joe", "piper"), "es": ("espeak-es", "espeak")}
GREETINGS = {"es": "Intérprete listo. Hable en su idioma, y lo diré en español."}
LLM_MODEL = "qwen2.5-coder-0.5b-instruct"  # any name: llama.cpp serves the one model it has
#: a turn for the LLM before the baseline's (see first_text_times)
WARM_TEXT = "Testing, one, two, three."
ANSWER_WITHIN = 15.0  # seconds to wait for a translation's first loud frame


def missing_voice(target: str) -> str:
    """Why no server can speak ``target`` (empty when one can)."""
    if target not in VOICES:
        return f"no voice for {target!r}"
    try:
        load_catalog().get(VOICES[target][0])
    except ConfigError as error:
        return str(error)
    return ""


def agent_file(folder: Path, engine: str, source: str, target: str, llm_url: str | None) -> Path:
    """configs/interpreter.yaml, changed for one server of the benchmark, written in
    ``folder``."""
    data: dict[str, Any] = msgspec.yaml.decode(INTERPRETER.read_bytes())
    profile, dialogue = data.setdefault("profile", {}), data.setdefault("dialogue", {})
    profile.setdefault("asr", {})["language"] = source
    dialogue.setdefault("translate", {}).update(engine=engine, target=target)
    if engine == "llm":
        profile["llm"] = {
            "backend": "openai",
            "base_url": llm_url,
            "model": LLM_MODEL,
            # the model shares 2 cores with the ASR: a slow first token is measured, not
            # replaced by a fallback
            "first_token_timeout_s": 60,
            "stall_timeout_s": 60,
        }
        dialogue.setdefault("llm", {})["seed"] = 0
    # no idle prompt (nor hang-up) after a sentence the ASR did not hear
    data.setdefault("turns", {})["idle_timeout_ms"] = 0
    voice, tts = VOICES[target]
    data.setdefault("voice", {})["name"] = voice
    profile.setdefault("tts", {})["engine"] = tts
    if target in GREETINGS:
        data.setdefault("greeting", {})["text"] = GREETINGS[target]
    path = folder / f"interpreter-{engine}-{source}-{target}.yaml"
    path.write_bytes(msgspec.yaml.encode(data))
    return path


# -- one call ------------------------------------------------------------------------------------


def over_after(caller: Caller, generation: int) -> Callable[[], bool]:
    """Whether every reply after ``generation`` has been played (or interrupted)."""
    return lambda: all(r.over for g, r in caller.replies.items() if g > generation)


def answers_after(caller: Caller, generation: int) -> list[Reply]:
    """The replies after ``generation`` that answered a turn (they have a latency report)."""
    return [r for g, r in sorted(caller.replies.items()) if g > generation and r.latency]


async def translate_call(url: str, leg: Leg, utterances: Sequence[Utterance]) -> None:
    """Say each utterance, wait for its translation to be played; fill ``leg.sentences``."""
    async with call(url) as caller:
        await greeting(caller)
        for index, item in enumerate(utterances):
            events, generation = len(caller.events), caller.latest()
            turn = await answer_to(caller, item, ANSWER_WITHIN)
            await finish(caller, turn)
            await caller.wait(over_after(caller, generation), 60)
            finals = [e for e in caller.events[events:] if e["type"] == "transcript.final"]
            answers = answers_after(caller, generation)
            # the turn ended at a pause inside the sentence: no ear-to-ear time
            split = len(answers) > 1 or (turn.latency is not None and turn.latency < 0)
            leg.sentences[index] = replace(
                leg.sentences[index],
                heard=" ".join(str(e["text"]).strip() for e in finals),
                translation=" ".join(r.text.strip() for r in answers if r.text.strip()),
                latency=None if split else turn.latency,
                split=split,
            )
            if caller.closed:
                print(f"  the call closed after {index + 1} sentences")
                break


# -- the baseline --------------------------------------------------------------------------------


def decode_times(
    whisper: WhisperDecoder, config: AgentConfig, utterances: Sequence[Utterance], rounds: int = 3
) -> list[tuple[float, float, str]]:
    """Median seconds of each utterance's final decode and, for the ``whisper`` engine, of its
    translate decode in the language the first heard (else 0); and the language Whisper
    detects in it when it is not told (not timed)."""
    translate = translation_options(config)
    detect = msgspec.structs.replace(asr_options(config), language=None)
    out = []
    for item in utterances:
        detected = whisper.decode(final_request(item, detect)).language
        request = final_request(item, asr_options(config))
        decoded: Decoded = whisper.decode(request)  # and warm (first call of a shape)
        second = 0.0
        if translate is not None:
            options = msgspec.structs.replace(translate, language=decoded.language or None)
            again = final_request(item, options)
            whisper.decode(again)
            second = timed(functools.partial(whisper.decode, again), rounds)
        out.append((timed(functools.partial(whisper.decode, request), rounds), second, detected))
    return out


async def first_text(
    responder: TranslatorResponder, index: int, text: str, language: str
) -> float | None:
    """Seconds from turn ``text`` going to ``responder`` to its first text (``None``: none
    came). The whole reply is read, as in a call, so the next turn has the same context pairs."""
    final = Transcript(
        session_id="bench", utterance=index, is_final=True, text=text, language=language
    )
    responder.transcribed(final)
    start, first = time.perf_counter(), None
    async with aclosing(responder.respond(text, generation=index + 1)) as parts:
        async for part in parts:
            if first is None and isinstance(part, Say) and part.text.strip():
                first = time.perf_counter() - start
    return first


async def first_text_times(
    config: AgentConfig, heard: Sequence[tuple[str, str]]
) -> list[float | None]:
    """Seconds to the LLM's first text for each turn ``(text, language)`` the call heard
    (``None``: nothing heard), through a fresh translator, so each turn comes with the same
    context pairs as in the call. A turn that is not part of the set goes first, so the
    first one does not find its whole prompt in llama.cpp's prompt cache (the call left it
    there)."""
    settings = llm_config(config)
    backend = make_backend(settings)
    await backend.start()
    try:
        llm = translation_llm(LLMEngine(settings, backend), config)
        await first_text(TranslatorResponder(config, llm), 0, WARM_TEXT, "en")
        responder = TranslatorResponder(config, llm)
        return [
            await first_text(responder, index, text, language) if text else None
            for index, (text, language) in enumerate(heard)
        ]
    finally:
        await backend.aclose()


async def baseline(
    whisper: WhisperDecoder, config: AgentConfig, leg: Leg, utterances: Sequence[Utterance]
) -> None:
    """The models alone for each sentence of ``leg`` (the server idle)."""
    asr = await anyio.to_thread.run_sync(decode_times, whisper, config, utterances)
    second: list[float | None] = [t for _, t, _ in asr]
    if leg.engine == "llm":
        heard = [(s.heard, leg.source) for s in leg.sentences]
        second = await first_text_times(config, heard)
    # a sentence left untranslated: its reference's first clause (some text to time)
    spoken = [s.translation or s.reference for s in leg.sentences]
    tts = await first_chunk_times(spoken, engine=tts_engine(config))
    leg.sentences[:] = [
        replace(s, asr=a, translate=t, tts=c, language=detected)
        for s, (a, _, detected), t, c in zip(leg.sentences, asr, second, tts, strict=True)
    ]


# -- the run -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = load_parallel()[: args.sentences]
    legs = [Leg(e, s, t) for e, s, t in LEGS if e in args.engines]
    for leg in legs:
        leg.skipped = missing_voice(leg.target)
        leg.sentences = [Sentence(row[leg.source], row[leg.target]) for row in rows]
        if leg.skipped:
            print(f"skipping {leg.name}: {leg.skipped}")
    speech = {
        (leg.source, i): Utterance.of(s.source, espeak(s.source, voice=leg.source, wpm=WPM))
        for leg in legs
        for i, s in enumerate(leg.sentences)
    }  # espeak before the clock runs
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    results: dict[str, Any] = {"machine": machine, "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"{machine}, {results['date']}, {len(rows)} sentences")
    began = time.perf_counter()
    loads: dict[str, str] = {}
    whisper: WhisperDecoder | None = None  # the servers' (every agent file here has the same)
    with tempfile.TemporaryDirectory(prefix="voxline-bench-") as folder, ExitStack() as stack:
        llm_url: str | None = None
        for leg in legs:  # in the order of LEGS
            if leg.skipped:
                continue
            if leg.engine == "llm" and llm_url is None:
                llm_url = stack.enter_context(LlamaServer(embedded_gguf(), n_threads=2)).base_url
            path = agent_file(Path(folder), leg.engine, leg.source, leg.target, llm_url)
            config = load_config(path)
            if whisper is None:
                whisper = await anyio.to_thread.run_sync(
                    WhisperDecoder.load, asr_model_config(config)
                )
            with running_server(str(path), timeout=300) as server:
                leg.vad_silence = config.profile.vad.min_silence_ms / 1000
                utterances = [speech[leg.source, i] for i in range(len(leg.sentences))]
                print(f"\n{leg.name}: call (load {load()})")
                loads[leg.name] = load()
                await translate_call(server.ws, leg, utterances)
                print(f"{leg.name}: baseline")
                await baseline(whisper, config, leg, utterances)
    print(f"\nload average (1/5/15 min) at the start of each leg: {loads}")
    results["load"] = loads
    results["legs"] = report(legs)
    results["sentences"] = {leg.name: [asdict(s) for s in leg.sentences] for leg in legs}
    print(f"\ntotal {time.perf_counter() - began:.0f} s")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sentences", type=int, default=None, help="the first N of the set")
    parser.add_argument(
        "--engines",
        type=lambda s: s.split(","),
        default=["whisper", "llm"],
        help="which engines to run (comma-separated)",
    )
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    result = anyio.run(run, args, backend_options={"use_uvloop": True})
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2, default=str)


if __name__ == "__main__":
    main()
