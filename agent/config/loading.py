"""Reading agent files: YAML or TOML, decoded strictly, then cross-checked.

An unknown or mistyped key fails with a :class:`~pipeline.errors.ConfigError` naming its path
(``$.server.port``) and the reason; so does a name that refers to nothing
(``$.dialogue.flows[0].slots[2]: unknown slot 'tiem'``).
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml  # type: ignore[import-untyped]  # no stubs installed: used as Any

from agent.config.references import check_references
from agent.config.schema import AgentConfig
from pipeline.errors import ConfigError

T = TypeVar("T")

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
    """Decode an agent file's bytes (``suffix`` picks the format) and check its references."""
    try:
        if suffix in (".yaml", ".yml"):
            data: Any = load_yaml(raw)
        elif suffix == ".toml":
            data = msgspec.toml.decode(raw)
        else:
            raise ConfigError("$", f"unknown config format {suffix!r} (use .yaml or .toml)")
    except (msgspec.DecodeError, yaml.YAMLError) as error:
        raise ConfigError("$", f"not valid {suffix.lstrip('.').upper()}: {error}") from error
    except (RecursionError, ValueError) as error:  # too deep; a date or number out of range
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        reason = reason.split(";")[0]  # not int's advice to raise its digit limit
        raise ConfigError("$", f"not valid {suffix.lstrip('.').upper()}: {reason}") from None
    config = convert_strictly(data, AgentConfig)
    check_references(config)
    return config


def convert_strictly(data: object, kind: type[T]) -> T:
    """Decoded ``data`` as ``kind``, strictly: a mismatch is a
    :class:`~pipeline.errors.ConfigError` naming the key (``$.turns.barge_in_min_speech``)."""
    try:
        return msgspec.convert(data, kind, strict=True)
    except msgspec.ValidationError as error:
        message = str(error)
        match = _PATH.search(message)
        where = match.group(1) if match else "$"
        reason = _PATH.sub("", message).strip().rstrip("-").strip()
        field = _FIELD.search(reason)
        if field:
            where = f"{where}.{field.group(1)}"
        raise ConfigError(where, reason) from error


_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_Loader):  # type: ignore[misc]
    """YAML's safe loader, except that a key given twice is an error (YAML keeps the last)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            mark = key_node.start_mark
            if not isinstance(key, Hashable):  # a list or a mapping as a key (bench/fuzz)
                raise yaml.constructor.ConstructorError(
                    None, None, f"a list or a mapping as a key (line {mark.line + 1})", mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (line {mark.line + 1})", mark
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def load_yaml(raw: bytes) -> Any:
    return yaml.load(raw, Loader=_StrictLoader)  # a safe loader
