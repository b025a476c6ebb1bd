"""A StyleTTS2 ``config.yml``: the parts inference needs, decoded and checked (no torch here).

The file has the layout of the published configs (``Configs/config*.yml`` of StyleTTS2, and
the ``config.yml`` beside each published checkpoint): training keys are ignored (``slm``,
``loss_params`` and the like); ``preprocess_params`` gives the sample rate and the
spectrogram of reference audio; ``model_params`` sizes every module, ``decoder.type`` is
``hifigan`` or ``istftnet`` (with ``gen_istft_n_fft`` and ``gen_istft_hop_size``), and
``diffusion.dist.sigma_data`` is the style diffusion's data scale.

The phoneme-level BERT's size comes, in order, from ``model_params.plbert`` (Voxline's own
section, with the keys of a PL-BERT ``config.yml``'s ``model_params``), from a PL-BERT
``config.yml`` passed to :func:`load_config`, from ``<PLBERT_dir>/config.yml`` found beside
the config or in a folder above it (the published configs name ``Utils/PLBERT/``, relative to
the StyleTTS2 repository), or else is the published PL-BERT's.

Two more Voxline keys size the decoder's front, which the published code fixes:
``decoder.decode_channels`` (1024) and ``decoder.residual_channels`` (64). Small models for
tests set them; the published configs leave them out.
"""

from __future__ import annotations

import math
from pathlib import Path

import msgspec

from pipeline.errors import ModelError

__all__ = [
    "DecoderParams",
    "DiffusionParams",
    "DistParams",
    "ModelParams",
    "PLBertParams",
    "PreprocessParams",
    "SpectParams",
    "StyleTTS2Config",
    "TransformerParams",
    "dump_config",
    "load_config",
]

DECODERS = ("hifigan", "istftnet")


class DecoderParams(msgspec.Struct, frozen=True, kw_only=True):
    type: str = "hifigan"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    upsample_rates: tuple[int, ...] = (10, 5, 3, 2)
    upsample_initial_channel: int = 512
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    upsample_kernel_sizes: tuple[int, ...] = (20, 10, 6, 4)
    gen_istft_n_fft: int = 20
    gen_istft_hop_size: int = 5
    decode_channels: int = 1024
    residual_channels: int = 64


class TransformerParams(msgspec.Struct, frozen=True, kw_only=True):
    num_layers: int = 3
    num_heads: int = 8
    head_features: int = 64
    multiplier: int = 2


class DistParams(msgspec.Struct, frozen=True, kw_only=True):
    sigma_data: float = 0.2
    estimate_sigma_data: bool = True
    mean: float = -3.0
    std: float = 1.0


class DiffusionParams(msgspec.Struct, frozen=True, kw_only=True):
    embedding_mask_proba: float = 0.1
    transformer: TransformerParams = TransformerParams()
    dist: DistParams = DistParams()


class PLBertParams(msgspec.Struct, frozen=True, kw_only=True):
    """PL-BERT's ALBERT size (a PL-BERT ``config.yml``'s ``model_params``; its defaults)."""

    vocab_size: int = 178
    hidden_size: int = 768
    num_attention_heads: int = 12
    intermediate_size: int = 2048
    max_position_embeddings: int = 512
    num_hidden_layers: int = 12
    embedding_size: int = 128
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu_new"
    num_hidden_groups: int = 1
    inner_group_num: int = 1


class ModelParams(msgspec.Struct, frozen=True, kw_only=True):
    multispeaker: bool = False
    dim_in: int = 64
    hidden_dim: int = 512
    max_conv_dim: int = 512
    n_layer: int = 3
    n_mels: int = 80
    n_token: int = 178
    max_dur: int = 50
    style_dim: int = 128
    dropout: float = 0.2
    decoder: DecoderParams = DecoderParams()
    diffusion: DiffusionParams = DiffusionParams()
    plbert: PLBertParams | None = None


class SpectParams(msgspec.Struct, frozen=True, kw_only=True):
    n_fft: int = 2048
    win_length: int = 1200
    hop_length: int = 300


class PreprocessParams(msgspec.Struct, frozen=True, kw_only=True):
    sr: int = 24000
    spect_params: SpectParams = SpectParams()


class StyleTTS2Config(msgspec.Struct, frozen=True, kw_only=True):
    model_params: ModelParams = ModelParams()
    preprocess_params: PreprocessParams = PreprocessParams()
    plbert_dir: str | None = msgspec.field(default=None, name="PLBERT_dir")

    @property
    def sample_rate(self) -> int:
        return self.preprocess_params.sr

    @property
    def hop_length(self) -> int:
        return self.preprocess_params.spect_params.hop_length

    @property
    def frame_samples(self) -> int:
        """Samples per predicted duration frame (two spectrogram hops)."""
        return 2 * self.hop_length

    @property
    def plbert(self) -> PLBertParams:
        """The PL-BERT size (the published one where the config names none)."""
        return self.model_params.plbert or PLBertParams()


class _PLBertFile(msgspec.Struct, frozen=True):
    model_params: PLBertParams = PLBertParams()


def _positive(prefix: str, struct: msgspec.Struct, names: tuple[str, ...]) -> list[str]:
    return [f"{prefix}.{name} must be positive" for name in names if getattr(struct, name) < 1]


def _check_decoder(config: StyleTTS2Config) -> list[str]:
    d = config.model_params.decoder
    key = "model_params.decoder"
    if d.type not in DECODERS:
        return [f"{key}.type {d.type!r}: one of {', '.join(DECODERS)}"]
    problems = _positive(
        key,
        d,
        ("upsample_initial_channel", "gen_istft_n_fft", "gen_istft_hop_size",
         "decode_channels", "residual_channels"),
    )  # fmt: skip
    if not d.upsample_rates or len(d.upsample_rates) != len(d.upsample_kernel_sizes):
        problems.append(f"{key}: upsample_rates and upsample_kernel_sizes differ in length")
    istft = d.type == "istftnet"
    for u, k in zip(d.upsample_rates, d.upsample_kernel_sizes, strict=False):
        if u < 1 or (k != 2 * u if not istft else k < u or (k - u) % 2):
            rule = "k - u even and not negative" if istft else "k == 2 * u"
            problems.append(f"{key}.upsample_kernel_sizes: rate {u} and kernel {k} need {rule}")
    scale = math.prod(d.upsample_rates) * (d.gen_istft_hop_size if istft else 1)
    if scale != config.hop_length:
        what = "upsample_rates times gen_istft_hop_size" if istft else "upsample_rates"
        hop = config.hop_length
        problems.append(f"{key}: {what} give {scale} samples a frame, not hop_length {hop}")
    if istft and (d.gen_istft_n_fft % 2 or d.gen_istft_n_fft < d.gen_istft_hop_size):
        problems.append(f"{key}.gen_istft_n_fft must be even and at least gen_istft_hop_size")
    if len(d.resblock_kernel_sizes) != len(d.resblock_dilation_sizes) or not all(
        d.resblock_dilation_sizes
    ):
        problems.append(f"{key}: resblock kernel and dilation lists differ in length")
    if d.upsample_initial_channel >> len(d.upsample_rates) < 1:
        problems.append(f"{key}.upsample_initial_channel is too small to halve at every stage")
    return problems


def _check(config: StyleTTS2Config) -> list[str]:
    """What is wrong with ``config`` (empty: nothing)."""
    m = config.model_params
    p = config.plbert
    t = m.diffusion.transformer
    s = config.preprocess_params
    problems = _check_decoder(config)
    problems += _positive(
        "model_params", m, ("dim_in", "hidden_dim", "n_layer", "n_token", "max_dur", "style_dim")
    )
    problems += _positive(
        "model_params.diffusion.transformer", t,
        ("num_layers", "num_heads", "head_features", "multiplier"),
    )  # fmt: skip
    problems += _positive(
        "model_params.plbert", p,
        ("vocab_size", "hidden_size", "num_attention_heads", "intermediate_size",
         "max_position_embeddings", "num_hidden_layers", "embedding_size", "type_vocab_size"),
    )  # fmt: skip
    if m.hidden_dim % 2:
        problems.append("model_params.hidden_dim must be even (the LSTMs are bidirectional)")
    if m.n_mels % 16 or m.n_mels < 80:
        problems.append(
            "model_params.n_mels must be a multiple of 16 and at least 80 "
            "(the style encoders halve it four times, then apply a 5x5 kernel)"
        )
    if m.diffusion.dist.sigma_data <= 0:
        problems.append("model_params.diffusion.dist.sigma_data must be positive")
    if p.hidden_size % max(p.num_attention_heads, 1):
        problems.append("model_params.plbert.hidden_size must be a multiple of num_attention_heads")
    if p.hidden_act not in ("gelu_new", "gelu"):
        problems.append(f"model_params.plbert.hidden_act {p.hidden_act!r}: gelu_new or gelu")
    if (p.num_hidden_groups, p.inner_group_num) != (1, 1):
        problems.append("model_params.plbert: only one shared layer (num_hidden_groups 1, "
                        "inner_group_num 1) is implemented")  # fmt: skip
    if s.sr < 1 or min(s.spect_params.n_fft, s.spect_params.hop_length) < 1:
        problems.append("preprocess_params: sr, n_fft and hop_length must be positive")
    if not 1 <= s.spect_params.win_length <= s.spect_params.n_fft:
        problems.append("preprocess_params.spect_params.win_length must be 1 to n_fft")
    return problems


def _plbert_file(path: Path) -> PLBertParams:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read the PL-BERT config {path}: {error.strerror}") from error
    try:
        return msgspec.yaml.decode(raw, type=_PLBertFile).model_params
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise ModelError(f"the PL-BERT config {path} is not usable: {error}") from error


def _find_plbert(config: StyleTTS2Config, source: Path) -> Path | None:
    if config.plbert_dir is None:
        return None
    for folder in source.resolve().parents:
        candidate = folder / config.plbert_dir / "config.yml"
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | Path, plbert: str | Path | None = None) -> StyleTTS2Config:
    """Read and check a StyleTTS2 ``config.yml``; a problem is a :class:`ModelError`.

    ``plbert``: a PL-BERT ``config.yml`` (see the module docstring for where it is looked
    for otherwise). The returned config always has ``model_params.plbert``.
    """
    source = Path(path)
    try:
        raw = source.read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read the StyleTTS2 config {source}: {error.strerror}") from error
    try:
        config = msgspec.yaml.decode(raw, type=StyleTTS2Config)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise ModelError(f"the StyleTTS2 config {source} is not usable: {error}") from error
    if config.model_params.plbert is None:
        found = Path(plbert) if plbert is not None else _find_plbert(config, source)
        size = _plbert_file(found) if found is not None else PLBertParams()
        model = msgspec.structs.replace(config.model_params, plbert=size)
        config = msgspec.structs.replace(config, model_params=model)
    problems = _check(config)
    if problems:
        raise ModelError(f"the StyleTTS2 config {source} is not usable: {'; '.join(problems)}")
    return config


def dump_config(config: StyleTTS2Config, path: str | Path) -> None:
    """Write ``config`` as YAML (what :func:`load_config` reads back)."""
    Path(path).write_bytes(msgspec.yaml.encode(config))
