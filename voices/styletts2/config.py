"""A StyleTTS2 ``config.yml``: the parts inference needs, decoded and checked (no torch here).

The file has the layout of the published configs (``Configs/config*.yml`` of StyleTTS2):
training keys at the top level are ignored; ``preprocess_params`` gives the sample rate and
the spectrogram (for reference audio); ``model_params`` sizes every module. Voxline adds one
optional section, ``model_params.plbert``, that sizes the phoneme-level BERT (StyleTTS2 keeps
that in a separate ``Utils/PLBERT/config.yml``).
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


class DecoderParams(msgspec.Struct, frozen=True, kw_only=True):
    type: str = "hifigan"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    upsample_rates: tuple[int, ...] = (10, 5, 3, 2)
    upsample_initial_channel: int = 512
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    upsample_kernel_sizes: tuple[int, ...] = (20, 10, 6, 4)


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
    """Voxline's extension: the phoneme-level BERT's size (PL-BERT's defaults)."""

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 2048
    max_position_embeddings: int = 512


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
    plbert: PLBertParams = PLBertParams()


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

    @property
    def sample_rate(self) -> int:
        return self.preprocess_params.sr

    @property
    def hop_length(self) -> int:
        return self.preprocess_params.spect_params.hop_length


def _check(config: StyleTTS2Config) -> list[str]:
    """What is wrong with ``config`` (empty: nothing)."""
    m = config.model_params
    d = m.decoder
    p = m.plbert
    t = m.diffusion.transformer
    s = config.preprocess_params
    problems: list[str] = []
    if d.type != "hifigan":
        problems.append(f"model_params.decoder.type {d.type!r}: only 'hifigan' is implemented")
    if len(d.upsample_rates) != len(d.upsample_kernel_sizes):
        problems.append("model_params.decoder: upsample rates and kernel sizes differ in length")
    if any(k < u for k, u in zip(d.upsample_kernel_sizes, d.upsample_rates, strict=False)):
        problems.append("model_params.decoder: an upsample kernel is shorter than its rate")
    if math.prod(d.upsample_rates) != s.spect_params.hop_length:
        problems.append(
            f"model_params.decoder.upsample_rates multiply to {math.prod(d.upsample_rates)}, "
            f"not hop_length {s.spect_params.hop_length}"
        )
    if len(d.resblock_kernel_sizes) != len(d.resblock_dilation_sizes):
        problems.append("model_params.decoder: resblock kernel and dilation lists differ in length")
    if d.upsample_initial_channel >> len(d.upsample_rates) < 1:
        problems.append("model_params.decoder.upsample_initial_channel is too small to halve")
    if m.hidden_dim % 2 or m.hidden_dim < 2:
        problems.append("model_params.hidden_dim must be even")
    if p.hidden_size % p.num_heads:
        problems.append("model_params.plbert.hidden_size must be a multiple of num_heads")
    if min(m.dim_in, m.hidden_dim, m.max_conv_dim, m.n_mels, m.n_token, m.max_dur) < 1:
        problems.append("model_params sizes must be positive")
    if min(t.num_layers, t.num_heads, t.head_features, t.multiplier, m.style_dim) < 1:
        problems.append("model_params.diffusion.transformer sizes must be positive")
    if s.sr < 1 or s.spect_params.win_length > s.spect_params.n_fft:
        problems.append("preprocess_params: sr must be positive and win_length <= n_fft")
    return problems


def load_config(path: str | Path) -> StyleTTS2Config:
    """Read and check a StyleTTS2 ``config.yml``; a problem is a :class:`ModelError`."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read the StyleTTS2 config {source}: {error.strerror}") from error
    try:
        config = msgspec.yaml.decode(raw, type=StyleTTS2Config)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise ModelError(f"the StyleTTS2 config {source} is not usable: {error}") from error
    problems = _check(config)
    if problems:
        raise ModelError(f"the StyleTTS2 config {source} is not usable: {'; '.join(problems)}")
    return config


def dump_config(config: StyleTTS2Config, path: str | Path) -> None:
    """Write ``config`` as YAML (what :func:`load_config` reads back)."""
    Path(path).write_bytes(msgspec.yaml.encode(config))
