"""Coverage-guided fuzzing of every parser that reads what a peer, a caller or a config sends.

Each parser is a *target* (:mod:`bench.fuzz.targets`): a harness that feeds one input to the
parser and checks its contract: it returns a value, or answers with its documented clear
error (``ProtocolError``/``PeerError`` on the wire, ``SdpError``, SIP's ``ParseError``,
``InvalidSSML``, ``ConfigError``, ``InvalidAudio``, ``RtpError``), and never raises anything
else. Inputs are bounded (each target's ``max_len``) and every input has a deadline, so a hang
is a failure too. Each target starts from valid examples of its format and hostile seeds
(:mod:`bench.fuzz.seeds`: 10,000-level nesting, huge numbers, long strings, invalid UTF-8),
plus every input that once crashed a parser (:mod:`bench.fuzz.regressions`).

The engine is atheris (libFuzzer for Python): the parsers' modules are imported with its
coverage instrumentation, and libFuzzer keeps the mutations that reach new branches.
:mod:`bench.fuzz.one` runs one target in its own process (libFuzzer ends the process it runs
in); ``python -m bench.fuzz --runs 1000000`` runs them all and prints the table that
BENCHMARKS.md keeps ("Fuzzing (issue 16)"). tests/test_fuzz.py runs a short fixed-seed budget
of each in ``make test``.

This package's ``__init__`` imports nothing: a target's module must first be imported under the
instrumentation, in :mod:`bench.fuzz.one`, with only the packages its parsers live in.
"""

from __future__ import annotations

#: every target: the module that defines it and the packages instrumented for its coverage
#: (the parsers' own, and the pure-Python parsers they stand on: YAML's constructor, TOML,
#: aiortc's SDP). In the order of the report.
TARGET_MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "native": ("bench.fuzz.wire", ("transports",)),
    "realtime": ("bench.fuzz.wire", ("transports",)),
    "realtime_transcription": ("bench.fuzz.wire", ("transports",)),
    "realtime_locked": (
        "bench.fuzz.locked",
        ("transports", "agent.realtime_overrides", "agent.realtime_webrtc"),
    ),
    "twilio": ("bench.fuzz.wire", ("transports",)),
    "webrtc_offer": ("bench.fuzz.offer", ("transports", "aiortc.sdp")),
    "sdp": ("bench.fuzz.sip", ("transports",)),
    "sip_message": ("bench.fuzz.sip", ("transports",)),
    "rtp": ("bench.fuzz.sip", ("transports",)),
    "ssml": ("bench.fuzz.documents", ("voices.ssml", "voices.normalize", "voices.emotion")),
    "agent_config": ("bench.fuzz.documents", ("agent.config", "yaml", "tomllib")),
    "decode_audio": ("bench.fuzz.documents", ("pipeline.media",)),
}
