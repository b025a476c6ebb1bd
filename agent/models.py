"""The models a server process loads once and every session shares.

Each model sits behind one executor per device (VAD batched across sessions, one Whisper, the
Piper worker process or the StyleTTS2 worker thread, the sentence embedder). :func:`load_models`
builds them from the agent's ``profile`` on a worker thread; the server reports ready only when
they are loaded and warm.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field

import anyio
import msgspec
import numpy as np

from agent.config import AgentConfig, VoiceConfig
from agent.dialogue.embeddings import SentenceEmbedder
from agent.reply import ReplyVoice
from agent.session import Models, SessionSettings
from agent.tts_prefill import prefill
from pipeline.asr.decoder import Decoded, DecodeOptions, DecodeRequest
from pipeline.asr.model import EMBEDDED, AsrModelConfig
from pipeline.asr.stage import asr_executor
from pipeline.asr.utterance import TrackerConfig
from pipeline.events import PIPELINE_RATE
from pipeline.executor import ExecutorStatistics, ModelExecutor
from pipeline.turn.smart_turn import SmartTurn, TurnEndRequest, TurnEndResult, end_of_turn_executor
from pipeline.vad import SileroVad, VadRequest, VadResult, vad_executor
from pipeline.vad.detector import DetectorConfig
from voices.cache import CachedEngine
from voices.catalog import Voice, create_engine, load_catalog
from voices.emotion import parse_style
from voices.engine import TTSEngine
from voices.espeak_engine import EspeakEngine, EspeakStatistics
from voices.piper_engine import PiperEngine, PiperStatistics
from voices.router import VoiceRouter
from voices.styletts2.engine import StyleTTS2Engine

log = logging.getLogger("voxline.models")

#: what the agent's speech engine reports to ``/metrics``
EngineStatistics = PiperStatistics | ExecutorStatistics | EspeakStatistics
#: the agent's speech engine: its voice's, or a router over it and the voices of other languages
Speech = PiperEngine | StyleTTS2Engine | EspeakEngine | VoiceRouter[EngineStatistics]
#: bytes in a ``profile.tts.cache_mb``
MIB = 1 << 20


@dataclass
class LoadedModels:
    """Everything loaded for one agent; :meth:`close` releases it all."""

    vad: ModelExecutor[VadRequest, VadResult]
    asr: ModelExecutor[DecodeRequest, Decoded]
    #: the agent's voice; with :attr:`voices`, a router that also speaks each SSML
    #: ``xml:lang`` (and ``<voice name>``) that one of them speaks in that voice; behind the
    #: TTS cache unless ``profile.tts.cache_mb`` is 0
    tts: Speech | CachedEngine[Speech]
    embedder: SentenceEmbedder | None
    asr_options: DecodeOptions
    #: how calls speak (:func:`reply_voice` of the agent's catalog voice)
    voice: ReplyVoice
    _stack: ExitStack = field(repr=False)
    #: the agent's voices of other languages (``voice.languages``), by language
    voices: dict[str, tuple[TTSEngine, ReplyVoice]] = field(default_factory=dict)
    #: the end-of-turn model (``turns.end_of_turn_detector: model``)
    end_of_turn: ModelExecutor[TurnEndRequest, TurnEndResult] | None = None

    def session_models(self, language: str | None = None) -> Models:
        """The models of a call; ``language``: a call heard in that language, spoken by one of
        :attr:`voices` when the agent's own voice does not speak it."""
        if language is not None and language in self.voices:
            return Models(self.vad, self.asr, self.voices[language][0], self.end_of_turn)
        return Models(self.vad, self.asr, self.tts, self.end_of_turn)

    @property
    def engine(self) -> Speech:
        """:attr:`tts` without its cache."""
        return self.tts.inner if isinstance(self.tts, CachedEngine) else self.tts

    def close(self) -> None:
        self._stack.close()


def asr_model_config(config: AgentConfig) -> AsrModelConfig:
    asr = config.profile.asr
    # "base" on the CPU is the Whisper base the embedded packages ship
    model = EMBEDDED if asr.model in ("base", EMBEDDED) and asr.device == "cpu" else asr.model
    return AsrModelConfig(
        model=model,
        device=asr.device,
        compute_type=asr.compute_type,
        cpu_threads=asr.threads,
    )


def asr_options(config: AgentConfig) -> DecodeOptions:
    asr = config.profile.asr
    return DecodeOptions(
        language=asr.language,
        beam_size=asr.beam_size,
        hotwords=" ".join(asr.hotwords) or None,
        initial_prompt=asr.initial_prompt,
    )


def translation_options(config: AgentConfig) -> DecodeOptions | None:
    """Whisper's translate task on each final, for an interpreter whose engine is
    ``whisper`` (in the language the transcription heard; no word timings, no prompt). The
    transcription has passed the guards already: only the repetition guard applies."""
    translate = config.dialogue.translate
    if config.dialogue.engine != "translate" or translate.engine != "whisper":
        return None
    return msgspec.structs.replace(
        asr_options(config),
        task="translate",
        word_timestamps=False,
        initial_prompt=None,
        hotwords=None,
        condition_on_previous_text=False,
        no_speech_threshold=1.0,
        min_avg_logprob=None,
    )


def reply_voice(config: VoiceConfig, voice: Voice | None) -> ReplyVoice:
    """How a call speaks catalog ``voice`` (``None``: the engine's own): at the agent file's
    ``voice.speed``, in its ``voice.emotion`` (left out: the voice's own style), through the
    mapping ``POST /v1/audio/speech`` applies to a request's speed and emotion."""
    style = None if config.emotion is None else parse_style(config.emotion)
    return ReplyVoice.of(voice, speed=config.speed, style=style)


def session_settings(config: AgentConfig, voice: ReplyVoice) -> SessionSettings:
    """How each call runs: turn-taking, VAD and ASR options and the ``limits`` from the agent
    file, and ``voice``
    (:attr:`LoadedModels.voice`, the file's voice section applied to its catalog voice)."""
    vad = config.profile.vad
    longest = config.limits.max_utterance_s
    translation = translation_options(config)
    turns = config.turns
    if translation is not None:  # a turn ended on its partial would have no translation
        turns = msgspec.structs.replace(turns, partial_fallback=False)
    return SessionSettings(
        asr=asr_options(config),
        translation=translation,
        utterance=TrackerConfig.from_seconds(
            max_utterance=longest, split_search=min(3.0, longest / 2)
        ),
        max_reply_chars=config.limits.max_reply_chars,
        transfer_timeout=config.dialogue.transfer_timeout_s,
        turns=turns,
        voice=voice,
        vad=DetectorConfig.from_seconds(
            activation=vad.threshold,
            deactivation=min(vad.release_threshold, vad.threshold),
            min_speech=vad.min_speech_ms / 1000,
            min_silence=vad.min_silence_ms / 1000,
            pre_roll=vad.pre_roll_ms / 1000,
        ),
    )


def tts_engine(config: AgentConfig) -> PiperEngine | StyleTTS2Engine | EspeakEngine:
    """The speech engine of ``config`` (not started): its catalog voice (``voice.name``), with
    the model ``profile.tts.voice`` names instead, if it names one.

    A StyleTTS2 voice is a local checkpoint directory or a hub name in the local cache
    (:func:`voices.styletts2.files.locate`); files that are not there are a
    :class:`~pipeline.errors.ModelError` here, at start-up.
    """
    tts = config.profile.tts
    voice = load_catalog().get(config.voice.name)
    return create_engine(voice, threads=1, use_cuda=tts.device == "cuda", model=tts.voice)


def load_models(config: AgentConfig) -> LoadedModels:
    """Load and warm every model of ``config``'s profile (blocking: run it on a thread)."""
    stack = ExitStack()
    try:
        vad = stack.enter_context(vad_executor(SileroVad()))
        batch = config.profile.asr.batch_size
        asr = stack.enter_context(asr_executor(asr_model_config(config), batch_size=batch))
        tts = tts_engine(config)
        stack.enter_context(tts)
        embedder = None
        if config.dialogue.intents:
            embedder = stack.enter_context(
                SentenceEmbedder(
                    config.profile.embeddings.model, threads=config.profile.embeddings.threads
                )
            )
        catalog = load_catalog()
        voice = reply_voice(config.voice, catalog.get(config.voice.name))
        models = LoadedModels(vad, asr, tts, embedder, asr_options(config), voice, stack)
        if config.turns.end_of_turn_detector == "model":
            turn_model = config.profile.turn_model
            smart_turn = SmartTurn(
                turn_model.path, sha256=turn_model.sha256, threads=turn_model.threads
            )
            eot = end_of_turn_executor(smart_turn, max_batch=turn_model.batch_size)
            models.end_of_turn = stack.enter_context(eot)
        by_name: dict[str, TTSEngine] = {}
        for language, name in config.voice.languages.items():
            other = catalog.get(name, where=f"$.voice.languages.{language}")
            engine = create_engine(other, threads=1)
            stack.enter_context(engine)
            models.voices[language] = (engine, reply_voice(config.voice, other))
            by_name[name] = engine
        if models.voices:
            models.tts = VoiceRouter(
                tts,
                {language: engine for language, (engine, _) in models.voices.items()},
                voices=by_name,
                language=catalog.get(config.voice.name).language,
            )
        if config.profile.tts.cache_mb:
            models.tts = CachedEngine(models.engine, max_bytes=config.profile.tts.cache_mb * MIB)
        anyio.run(_warm, models, config)
    except BaseException:
        stack.close()
        raise
    return models


async def _warm(models: LoadedModels, config: AgentConfig) -> None:
    """One call through each model, so the first caller does not pay for lazy set-up; then
    the agent's fixed replies into the TTS cache (:mod:`agent.tts_prefill`)."""
    silence = np.zeros(PIPELINE_RATE, dtype=np.float32)  # one second
    await models.asr.run(DecodeRequest(audio=silence, final=True, options=models.asr_options))
    for engine in [models.engine, *(engine for engine, _ in models.voices.values())]:
        async for _ in engine.synthesize("Ready."):
            pass
    if isinstance(models.tts, CachedEngine):
        said = await prefill(models.tts, config, models.voice)
        stats = models.tts.statistics()
        log.info("TTS cache: %d plans said, %d bytes kept", said, stats.bytes)
    if models.embedder is not None:
        await models.embedder.embed("hello")
    if models.end_of_turn is not None:
        await models.end_of_turn.run(TurnEndRequest(silence.astype(np.int16)))
    log.info("models warm")
