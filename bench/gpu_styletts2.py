"""StyleTTS2 at its published LibriTTS size with random weights, for :mod:`bench.gpu`.

The model is Voxline's own (:class:`voices.styletts2.model.StyleTTS2Model`, the graph the
engine runs) built from a config of StyleTTS2's ``Configs/config_libritts.yml`` sizes
(:func:`libritts`): multispeaker, hidden 512, style 128, 3 layers, 178 tokens, max_dur 50,
HiFi-GAN decoder (upsample 10, 5, 3, 2; initial channel 512; resblock kernels 3, 7, 11), the
style diffusion transformer (3 layers, 8 heads of 64), 24 kHz with hop 300, and the published
PL-BERT (ALBERT, hidden 768, 12 heads, FFN 2048, 12 repeats of one shared layer). It runs in
float32, as the engine loads it.

**A benchmark machine may lack msgspec** (the config structs are msgspec ``Struct`` classes).
Then :func:`import_model` installs a stand-in module first: ``Struct`` becomes a frozen
keyword-only dataclass, ``structs.replace`` is :func:`dataclasses.replace`; nothing is decoded
or validated, which model building does not need. The result says which was used.

**Fixed durations.** Random weights predict arbitrary durations; the benchmark gives every
phoneme ``frames`` frames (2 by default: 60 phonemes are 120 frames of 600 samples, 3.0 s), so
each synthesis has a defined cost. The duration predictor still runs (its cost is real), its
output is replaced. :func:`synthesize_batch` is the engine's inference for a batch of equal
clauses (:meth:`StyleTTS2Model.synthesize` takes one); :func:`synthesize_one` calls
``synthesize`` itself with the durations fixed, as a check that the batched path at batch 1
costs what the engine's path costs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import sys
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from voices.styletts2.config import StyleTTS2Config
    from voices.styletts2.model import StyleTTS2Model

__all__ = ["import_model", "libritts", "synthesize_batch", "synthesize_one", "tiny"]

N_TOKENS = 178


def _msgspec_stand_in() -> None:
    """Register a minimal ``msgspec`` (see the module docstring) in :data:`sys.modules`."""

    class Struct:
        def __init_subclass__(cls, **options: object) -> None:
            super().__init_subclass__()
            dataclasses.dataclass(frozen=True, kw_only=True)(cls)

    def field(*, default: Any = dataclasses.MISSING, name: str | None = None) -> Any:
        return dataclasses.field(default=default)

    class ValidationError(ValueError):
        pass

    module = types.ModuleType("msgspec")
    structs = types.ModuleType("msgspec.structs")
    structs.replace = dataclasses.replace  # type: ignore[attr-defined]
    for name, value in {
        "Struct": Struct, "field": field, "structs": structs,
        "ValidationError": ValidationError, "DecodeError": ValidationError,
    }.items():  # fmt: skip
        setattr(module, name, value)
    sys.modules["msgspec"] = module
    sys.modules["msgspec.structs"] = structs


def import_model(stand_in: bool = False) -> str:
    """Import Voxline's StyleTTS2 modules; returns how msgspec was provided."""
    if "voices.styletts2.model" in sys.modules:
        return "msgspec" if importlib.util.find_spec("msgspec") else "msgspec stand-in"
    if stand_in or importlib.util.find_spec("msgspec") is None:
        _msgspec_stand_in()
        why = "asked for" if stand_in else "msgspec is not installed here"
        how = f"msgspec stand-in ({why})"
    else:
        how = "msgspec"
    import voices.styletts2.model  # noqa: F401

    return how


def libritts() -> StyleTTS2Config:
    """StyleTTS2's LibriTTS config (``Configs/config_libritts.yml``) with the published PL-BERT."""
    from voices.styletts2 import config as c

    return c.StyleTTS2Config(
        model_params=c.ModelParams(
            multispeaker=True, dim_in=64, hidden_dim=512, max_conv_dim=512, n_layer=3, n_mels=80,
            n_token=N_TOKENS, max_dur=50, style_dim=128,
            decoder=c.DecoderParams(
                type="hifigan", resblock_kernel_sizes=(3, 7, 11), upsample_rates=(10, 5, 3, 2),
                upsample_initial_channel=512, resblock_dilation_sizes=((1, 3, 5),) * 3,
                upsample_kernel_sizes=(20, 10, 6, 4),
            ),
            diffusion=c.DiffusionParams(
                transformer=c.TransformerParams(
                    num_layers=3, num_heads=8, head_features=64, multiplier=2
                ),
                dist=c.DistParams(sigma_data=0.2),
            ),
            plbert=c.PLBertParams(
                vocab_size=N_TOKENS, hidden_size=768, num_attention_heads=12,
                intermediate_size=2048, max_position_embeddings=512, num_hidden_layers=12,
            ),
        ),
        preprocess_params=c.PreprocessParams(
            sr=24000, spect_params=c.SpectParams(n_fft=2048, win_length=1200, hop_length=300)
        ),
    )  # fmt: skip


def tiny() -> StyleTTS2Config:
    """The same layout, a few kilobytes (the CPU smoke run; as the engine's tests size it)."""
    from voices.styletts2 import config as c

    return c.StyleTTS2Config(
        model_params=c.ModelParams(
            multispeaker=True, dim_in=4, hidden_dim=16, max_conv_dim=16, n_layer=1, n_mels=80,
            n_token=N_TOKENS, max_dur=10, style_dim=8,
            decoder=c.DecoderParams(
                resblock_kernel_sizes=(3,), upsample_rates=(5, 4, 2), upsample_initial_channel=16,
                resblock_dilation_sizes=((1, 3),), upsample_kernel_sizes=(10, 8, 4),
                decode_channels=16, residual_channels=4,
            ),
            diffusion=c.DiffusionParams(
                transformer=c.TransformerParams(num_layers=1, num_heads=2, head_features=8),
            ),
            plbert=c.PLBertParams(
                vocab_size=N_TOKENS, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                max_position_embeddings=128, num_hidden_layers=2, embedding_size=16,
            ),
        ),
        preprocess_params=c.PreprocessParams(
            sr=8000, spect_params=c.SpectParams(n_fft=128, win_length=100, hop_length=40)
        ),
    )  # fmt: skip


def build(config: StyleTTS2Config, device: str) -> StyleTTS2Model:
    from voices.styletts2.model import StyleTTS2Model

    return StyleTTS2Model(config).to(device).eval()


def _aligned(x: Tensor, frames: int) -> Tensor:
    """Features ``[B, C, T]`` on ``frames`` frames per token ``[B, C, T * frames]``."""
    return x.repeat_interleave(frames, dim=-1)


def synthesize_batch(
    model: StyleTTS2Model, tokens: Tensor, frames: int, generator: torch.Generator
) -> Tensor:
    """Audio ``[B, samples]`` for equal-length clauses ``[B, T]`` (a random reference style)."""
    from voices.styletts2.styles import Knobs

    knobs = Knobs()
    m = model.config.model_params
    sd = m.style_dim
    b = tokens.shape[0]
    reference = torch.randn(1, 2 * sd, generator=generator, device=tokens.device).expand(b, -1)
    t_en = model.text_encoder(tokens)
    bert_dur = model.bert(tokens)
    d_en = model.bert_encoder(bert_dur).transpose(1, 2)
    features = reference if m.multispeaker else None
    s_pred = model.diffusion.sample(
        bert_dur, features, knobs.diffusion_steps, knobs.embedding_scale, generator
    )
    ref = knobs.alpha * s_pred[:, :sd] + (1 - knobs.alpha) * reference[:, :sd]
    s = knobs.beta * s_pred[:, sd:] + (1 - knobs.beta) * reference[:, sd:]
    d, _ = model.predictor.durations(d_en, s)
    en, asr = _aligned(d.transpose(1, 2), frames), _aligned(t_en, frames)
    if m.decoder.type == "hifigan":
        en = torch.cat([en[..., :1], en[..., :-1]], dim=-1)
        asr = torch.cat([asr[..., :1], asr[..., :-1]], dim=-1)
    f0, energy = model.predictor.f0_energy(en, s)
    audio: Tensor = model.decoder(asr, f0, energy, ref, generator)
    return audio


@contextlib.contextmanager
def _fixed_durations(model: StyleTTS2Model, frames: int) -> Iterator[None]:
    predictor = model.predictor
    durations = predictor.durations

    def fixed(d_en: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        d, predicted = durations(d_en, s)
        return d, torch.full_like(predicted, frames)

    setattr(predictor, "durations", fixed)  # noqa: B010 - an instance attribute hides the method
    try:
        yield
    finally:
        delattr(predictor, "durations")


def synthesize_one(
    model: StyleTTS2Model, tokens: Tensor, frames: int, generator: torch.Generator
) -> int:
    """One clause ``[1, T]`` through :meth:`StyleTTS2Model.synthesize`; its sample count."""
    from voices.styletts2.styles import Knobs

    sd = model.config.model_params.style_dim
    reference = torch.randn(1, 2 * sd, generator=generator, device=tokens.device)
    with _fixed_durations(model, frames):
        result = model.synthesize(tokens, Knobs(), generator, reference)
    return len(result.audio)
