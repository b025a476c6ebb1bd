"""Agent config files: YAML or TOML, decoded strictly.

An unknown or mistyped key fails with a :class:`~pipeline.errors.ConfigError` naming its path
(``$.server.port``) and the reason. The schema grows with the features; every key is
documented in docs/config.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec

from pipeline.errors import ConfigError


class ServerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8000
    #: the most concurrent sessions this process accepts
    max_sessions: int = 100


class ToneConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The placeholder agent: answers every call with a tone (until the speech stack lands)."""

    frequency_hz: float = 440.0
    amplitude: float = 0.2


class AgentConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    description: str = ""
    server: ServerConfig = ServerConfig()
    tone: ToneConfig = ToneConfig()


_PATH = re.compile(r"at `(\$[^`]*)`$")
_FIELD = re.compile(r"(?:unknown|missing required) field `([^`]+)`")


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate an agent file (``.yaml``, ``.yml`` or ``.toml``)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError("$", f"cannot read {path}: {error.strerror}") from error
    return parse_config(raw, path.suffix.lower())


def parse_config(raw: bytes, suffix: str) -> AgentConfig:
    try:
        if suffix in (".yaml", ".yml"):
            data: Any = msgspec.yaml.decode(raw)
        elif suffix == ".toml":
            data = msgspec.toml.decode(raw)
        else:
            raise ConfigError("$", f"unknown config format {suffix!r} (use .yaml or .toml)")
    except msgspec.DecodeError as error:
        raise ConfigError("$", f"not valid {suffix.lstrip('.').upper()}: {error}") from error
    try:
        return msgspec.convert(data, AgentConfig, strict=True)
    except msgspec.ValidationError as error:
        message = str(error)
        match = _PATH.search(message)
        where = match.group(1) if match else "$"
        reason = _PATH.sub("", message).strip().rstrip("-").strip()
        field = _FIELD.search(reason)
        if field:
            where = f"{where}.{field.group(1)}"
        raise ConfigError(where, reason) from error
