"""Fuzz targets for documents: SSML, agent files and uploaded audio.

The contracts, as the modules document them:

- ``parse_ssml`` returns a plan or raises ``InvalidSSML``; ``parse_ssml_lenient`` and
  ``plan_from_text`` never raise (text reaches them as any Unicode string);
- ``parse_config`` returns an ``AgentConfig`` or raises ``ConfigError``, from YAML and TOML;
- ``decode_audio`` returns PCM or raises ``InvalidAudio``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from agent.config import parse_config
from bench.fuzz.seeds import BIG_INT, BIGGER_INT, deep_yaml, text_values
from bench.fuzz.target import Target, kind
from pipeline.errors import ConfigError, InvalidAudio, InvalidSSML
from pipeline.media import StreamEncoder, decode_audio, wav_header
from voices.ssml import parse_ssml, parse_ssml_lenient, plan_from_text

__all__ = ["TARGETS"]

_ROOT = Path(__file__).resolve().parents[2]


def _text(data: bytes) -> str:
    """Text as a JSON string or a config brings it: any Unicode scalar value."""
    return data.decode("utf-8", "replace")


# -- SSML ---------------------------------------------------------------------------------------


def ssml(data: bytes) -> list[str]:
    text = _text(data)
    kinds: list[str] = []
    try:
        parse_ssml(text)
    except InvalidSSML as error:
        kinds.append(kind("InvalidSSML", error.reason))
    parse_ssml_lenient(text)
    plan_from_text(text)
    return kinds


def ssml_seeds() -> list[bytes]:
    speak = (
        '<speak version="1.1" xml:lang="en-US">Hello <break time="300ms"/>'
        '<prosody rate="fast" pitch="+10%" volume="loud">world</prosody>, '
        '<emphasis level="strong">now</emphasis> <say-as interpret-as="date" format="mdy">'
        '12/31/2024</say-as> <say-as interpret-as="cardinal">1234</say-as> '
        '<voice name="joe"><s>Hi.</s></voice><p>$3.50 on Jan 5th</p>'
        '<sub alias="World Wide Web">WWW</sub><phoneme alphabet="ipa" ph="t">t</phoneme>'
        '<mark name="m"/><audio src="x">alt</audio><lang xml:lang="fr">oui</lang>'
        '<break strength="x-strong"/></speak>'
    )
    return [
        speak.encode(),
        b"<speak>" + b"<p>" * 10_000 + b"x" + b"</p>" * 10_000 + b"</speak>",
        b"<speak>" + b'<break time="10000000000000s"/>' * 100 + b"</speak>",
        b'<speak><prosody rate="' + BIGGER_INT + b'%">x</prosody></speak>',
        b'<speak><say-as interpret-as="cardinal">' + BIG_INT + b"</say-as></speak>",
        b'<?xml version="1.0"?><!DOCTYPE speak [<!ENTITY a "aaaa">]><speak>&a;</speak>',
        b"[happy] It costs $1,000,000.50 on 2024-12-31 at 10:30pm, call 555-1234. [/]",
        b"Dr. Smith lives at 221B Baker St. " + BIG_INT,
        *text_values(),
    ]


# -- agent files ----------------------------------------------------------------------------


def agent_config(data: bytes) -> list[str]:
    kinds: list[str] = []
    for suffix in (".yaml", ".toml"):
        try:
            parse_config(data, suffix)
        except ConfigError as error:
            syntax = error.reason.startswith("not valid")
            kinds.append(f"ConfigError {suffix[1:]} {'syntax' if syntax else 'content'}")
    return kinds


_TOML = b"""
name = "x"
[greeting]
text = "Hello"
[[dialogue.slots]]
name = "n"
type = "number"
prompt = "How many?"
units = ["people"]
[[dialogue.intents]]
name = "book"
examples = ["book a table"]
flow = "f"
[[dialogue.flows]]
name = "f"
slots = ["n"]
confirm = { text = "{n} people?", emotion = "happy" }
"""


def config_seeds() -> list[bytes]:
    shipped = [path.read_bytes() for path in sorted((_ROOT / "configs").glob("*.yaml"))]
    laughs = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n".encode()
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )  # a billion laughs: 9**9 references
    hook = b"name: x\ntools: {webhooks: [{name: h, url: 'http://127.0.0.1:9/h', parameters: "
    return [
        *shipped,
        _TOML,
        *deep_yaml(),
        b"a = " + b"[" * 10_000 + b"]" * 10_000,
        b"name = " + b"{a = " * 10_000 + b"1" + b"}" * 10_000,
        b"name: x\nserver: {port: " + BIGGER_INT + b"}",
        b"name = 'x'\n[server]\nport = " + BIGGER_INT,
        b"name: x\nserver: {port: 1e308}\n",
        hook
        + b"{a: " * 900  # under libyaml's nesting limit (1,000)
        + b"1"
        + b"}" * 900
        + b"}]}\n",
        b"? [a, b]\n: 1\n",
        b"name: x\ndate: 2024-13-45\n",
        b"name: x\nname: y\n",
        b"name: !!python/object/apply:os.system [true]\n",
        laughs,
        hook + b"{type: object, properties: {" + laughs.replace(b"\n", b", ") + b"}}}]}\n",
        *text_values(),
    ]


# -- uploaded audio -----------------------------------------------------------------------------


def audio(data: bytes) -> list[str]:
    try:
        decode_audio(data, max_seconds=30.0)
    except InvalidAudio as error:
        return [kind("InvalidAudio", str(error).split(":", 1)[0])]
    return []


def audio_seeds() -> list[bytes]:
    tone = (3000 * np.sin(np.arange(1600) * 0.2)).astype("<i2").tobytes()
    seeds = [wav_header(16000, len(tone)) + tone, wav_header(8000) + tone]
    for fmt in ("mp3", "opus", "flac"):
        encoder = StreamEncoder(fmt, 16000)
        seeds.append(encoder.encode(tone) + encoder.close())
    header = bytearray(seeds[0][:44])
    struct.pack_into("<I", header, 24, 0xFFFFFFFF)  # a sample rate no resampler takes
    return [*seeds, bytes(header) + tone, seeds[0][:60], b"RIFF", b"OggS" + bytes(60)]


TARGETS = (
    Target(
        "ssml",
        "parse_ssml: InvalidSSML; lenient and plain text never raise",
        ssml,
        ssml_seeds,
        max_len=8192,
    ),
    Target(
        "agent_config",
        "parse_config (YAML, TOML): ConfigError",
        agent_config,
        config_seeds,
        max_len=8192,
    ),
    Target("decode_audio", "decode_audio: InvalidAudio", audio, audio_seeds, max_len=16_384),
)
