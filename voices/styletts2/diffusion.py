"""StyleTTS2's style diffusion: a transformer denoiser, Karras preconditioning, ADPM2 sampling.

The denoiser sees a noisy style ``[B, 1, 2 * style_dim]`` repeated along the BERT features
``[B, T, hidden]`` and concatenated with them; a mapping of the noise level (learned Fourier
features) and, for multispeaker models, of a reference style is added before every block; the
blocks are self-attention and feed-forward layers (with style-conditioned LayerNorms when there
is a reference, plain LayerNorms otherwise); the mean over ``T`` is projected back to a style.
Classifier-free guidance (``embedding_scale``) mixes the output for the text with the output
for a learned position-only embedding.

The published checkpoints hold the denoiser twice, as ``diffusion.net.*`` and ``unet.*`` (two
names for one module); :class:`StyleDiffusion` keeps both names on one module too.

Sampling is Karras et al.'s preconditioning (``sigma_data`` from the config) with the
ancestral DPM-2 sampler on a Karras schedule (``sigma_min`` 1e-4, ``sigma_max`` 3, ``rho`` 9),
as the published inference runs it: ``steps - 1`` steps, each adding fresh noise, unclamped.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voices.styletts2.layers import AdaLayerNorm

__all__ = ["SIGMA_MAX", "SIGMA_MIN", "StyleDiffusion", "StyleTransformer", "karras_sigmas"]

SIGMA_MIN = 1e-4
SIGMA_MAX = 3.0
RHO = 9.0
#: the fixed (unconditional) embedding's length in the published denoiser
EMBEDDING_MAX_LENGTH = 512


def _norm(features: int, style_dim: int | None) -> nn.Module:
    """A LayerNorm, conditioned on the reference style when the model has one."""
    return nn.LayerNorm(features) if style_dim is None else AdaLayerNorm(style_dim, features)


class _Output(nn.Module):
    def __init__(self, mid: int, features: int) -> None:
        super().__init__()
        self.to_out = nn.Linear(mid, features)


class _Attention(nn.Module):
    def __init__(self, features: int, heads: int, head_features: int, style_dim: int | None):
        super().__init__()
        mid = heads * head_features
        self.heads = heads
        self.styled = style_dim is not None
        self.norm = _norm(features, style_dim)
        self.norm_context = _norm(features, style_dim)
        self.to_q = nn.Linear(features, mid, bias=False)
        self.to_kv = nn.Linear(features, 2 * mid, bias=False)
        self.attention = _Output(mid, features)

    def forward(self, x: Tensor, s: Tensor | None) -> Tensor:
        batch, length, _ = x.shape

        def split(t: Tensor) -> Tensor:
            return t.view(batch, length, self.heads, -1).transpose(1, 2)

        if self.styled:
            x, context = self.norm(x, s), self.norm_context(x, s)
        else:
            x, context = self.norm(x), self.norm_context(x)
        q = split(self.to_q(x))
        k, v = (split(t) for t in self.to_kv(context).chunk(2, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length, -1)
        result: Tensor = self.attention.to_out(out)
        return result


class _Block(nn.Module):
    def __init__(
        self, features: int, heads: int, head_features: int, multiplier: int, style: int | None
    ) -> None:
        super().__init__()
        self.attention = _Attention(features, heads, head_features, style)
        self.feed_forward = nn.Sequential(
            nn.Linear(features, features * multiplier),
            nn.GELU(),
            nn.Linear(features * multiplier, features),
        )

    def forward(self, x: Tensor, s: Tensor | None) -> Tensor:
        x = x + self.attention(x, s)
        out: Tensor = x + self.feed_forward(x)
        return out


class _FourierTime(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.randn(dim // 2))

    def forward(self, t: Tensor) -> Tensor:
        angles = t[:, None] * self.weights[None] * 2 * math.pi
        return torch.cat([t[:, None], angles.sin(), angles.cos()], dim=-1)


class _FixedEmbedding(nn.Module):
    def __init__(self, length: int, features: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(length, features)


class StyleTransformer(nn.Module):
    """The denoiser: ``features`` is the reference style's size (``None``: single speaker)."""

    def __init__(
        self,
        channels: int,
        embedding_features: int,
        num_layers: int,
        num_heads: int,
        head_features: int,
        multiplier: int,
        features: int | None,
    ) -> None:
        super().__init__()
        width = channels + embedding_features
        self.channels = channels
        self.blocks = nn.ModuleList(
            _Block(width, num_heads, head_features, multiplier, features) for _ in range(num_layers)
        )
        self.to_out = nn.Sequential(nn.Identity(), nn.Conv1d(width, channels, 1))
        self.to_mapping = nn.Sequential(
            nn.Linear(width, width), nn.GELU(), nn.Linear(width, width), nn.GELU()
        )
        self.to_time = nn.Sequential(
            nn.Sequential(_FourierTime(channels), nn.Linear(channels + 1, width)), nn.GELU()
        )
        self.to_features = (
            nn.Sequential(nn.Linear(features, width), nn.GELU()) if features is not None else None
        )
        self.fixed_embedding = _FixedEmbedding(EMBEDDING_MAX_LENGTH, embedding_features)

    def run(self, x: Tensor, time: Tensor, embedding: Tensor, features: Tensor | None) -> Tensor:
        mapping = self.to_time(time)
        if self.to_features is not None:
            assert features is not None, "a multispeaker denoiser needs a reference style"
            mapping = mapping + self.to_features(features)
        mapping = self.to_mapping(mapping)[:, None]
        h = torch.cat([x.expand(-1, embedding.shape[1], -1), embedding], dim=-1)
        for block in self.blocks:
            h = block(h + mapping, features)
        out: Tensor = self.to_out(h.mean(dim=1)[..., None]).transpose(1, 2)
        return out

    def forward(
        self,
        x: Tensor,
        time: Tensor,
        embedding: Tensor,
        features: Tensor | None,
        embedding_scale: float,
    ) -> Tensor:
        out = self.run(x, time, embedding, features)
        if embedding_scale == 1.0:
            return out
        length = embedding.shape[1]
        positions = torch.arange(length, device=embedding.device)
        fixed = self.fixed_embedding.embedding(positions)[None].expand_as(embedding)
        plain = self.run(x, time, fixed, features)
        return plain + (out - plain) * embedding_scale


class _KDiffusion(nn.Module):
    def __init__(self, net: StyleTransformer) -> None:
        super().__init__()
        self.net = net


class StyleDiffusion(nn.Module):
    """The checkpoint's ``diffusion`` group and the sampler that runs it."""

    def __init__(self, net: StyleTransformer, sigma_data: float) -> None:
        super().__init__()
        self.diffusion = _KDiffusion(net)
        self.unet = net
        self.sigma_data = sigma_data

    def denoise(
        self,
        x: Tensor,
        sigma: float,
        embedding: Tensor,
        features: Tensor | None,
        embedding_scale: float,
    ) -> Tensor:
        """Karras-preconditioned denoising of ``x`` at noise level ``sigma``."""
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / math.sqrt(sd**2 + sigma**2)
        c_in = 1 / math.sqrt(sigma**2 + sd**2)
        noise = torch.full((x.shape[0],), math.log(sigma) * 0.25, device=x.device)
        pred: Tensor = self.unet(c_in * x, noise, embedding, features, embedding_scale)
        return c_skip * x + c_out * pred

    def sample(
        self,
        embedding: Tensor,
        features: Tensor | None,
        steps: int,
        embedding_scale: float,
        generator: torch.Generator,
    ) -> Tensor:
        """A style ``[B, 2 * style_dim]`` for BERT features ``[B, T, hidden]``."""
        channels = self.unet.channels
        sigmas = karras_sigmas(steps)
        shape = (embedding.shape[0], 1, channels)
        device = embedding.device
        x = sigmas[0] * torch.randn(shape, generator=generator, device=device)
        for sigma, after in itertools.pairwise(sigmas[:-1]):
            up = math.sqrt(after**2 * (sigma**2 - after**2) / sigma**2)
            down = math.sqrt(after**2 - up**2)
            middle = (sigma + down) / 2
            slope = (x - self.denoise(x, sigma, embedding, features, embedding_scale)) / sigma
            x_mid = x + slope * (middle - sigma)
            denoised = self.denoise(x_mid, middle, embedding, features, embedding_scale)
            x = x + (x_mid - denoised) / middle * (down - sigma)
            x = x + torch.randn(shape, generator=generator, device=device) * up
        return x.squeeze(1)


def karras_sigmas(steps: int) -> list[float]:
    """Karras et al.'s noise levels for ``steps`` (at least 2), then 0."""
    if steps < 2:
        raise ValueError("the style diffusion needs at least 2 steps")
    inv = 1 / RHO
    ramp = torch.arange(steps, dtype=torch.float32) / (steps - 1)
    sigmas = (SIGMA_MAX**inv + ramp * (SIGMA_MIN**inv - SIGMA_MAX**inv)) ** RHO
    return [*sigmas.tolist(), 0.0]
