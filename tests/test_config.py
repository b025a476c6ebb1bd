"""Config files decode strictly; errors name the key and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from agent.config import load_config, parse_config
from pipeline.errors import ConfigError

CONFIGS = sorted(Path(__file__).resolve().parent.parent.joinpath("configs").glob("*.*ml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_passes_check(path: Path) -> None:
    assert main(["check", str(path)]) == 0


@pytest.mark.parametrize(
    ("text", "suffix", "where", "reason"),
    [
        (b"name: x\nserver: {prot: 1}", ".yaml", "$.server.prot", "unknown field"),
        (b"name: x\nserver: {port: eighty}", ".yaml", "$.server.port", "Expected `int`"),
        (b"description: no name", ".yaml", "$.name", "missing required field"),
        (b'name = "x"\n[tone]\namplitude = "loud"', ".toml", "$.tone.amplitude", "Expected"),
        (b"name: [unclosed", ".yaml", "$", "not valid YAML"),
        (b"name: x", ".json", "$", "unknown config format"),
    ],
)
def test_a_broken_config_names_the_key_and_the_reason(
    text: bytes, suffix: str, where: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, suffix)
    assert info.value.path == where
    assert reason in info.value.reason


def test_check_reports_each_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsrever: {}\n")
    assert main(["check", str(CONFIGS[0]), str(broken)]) == 1
    assert "$.srever" in capsys.readouterr().err


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
