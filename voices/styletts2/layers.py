"""Building blocks shared by StyleTTS2's modules, with the parameter names of its checkpoints.

StyleTTS2 was trained with torch's (old-style) ``weight_norm`` and ``spectral_norm`` hooks,
so its checkpoints hold ``weight_g``/``weight_v`` and ``weight_orig``/``weight_u``/``weight_v``
instead of ``weight``. The layers here keep those names as their own parameters and compute
the weight in ``forward``, without hooks: that is what inference needs, and it keeps the
modules plain (spectral norm is applied as in eval mode, from the stored ``u`` and ``v``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AdaIN1d",
    "AdaLayerNorm",
    "AdainResBlk1d",
    "ChannelLayerNorm",
    "LinearNorm",
    "SNConv2d",
    "WNConv1d",
    "WNConvTranspose1d",
    "leaky",
]


def leaky(x: Tensor, slope: float = 0.2) -> Tensor:
    return F.leaky_relu(x, slope)


def _norm_except_first(v: Tensor) -> Tensor:
    """The 2-norm of each slice ``v[i]``, shaped to broadcast against ``v``."""
    norms: Tensor = v.flatten(1).norm(dim=1)
    return norms.view(-1, *([1] * (v.dim() - 1)))


class WNConv1d(nn.Module):
    """A ``Conv1d`` with weight normalisation: ``weight = weight_g * weight_v / |weight_v|``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        base = nn.Conv1d(cin, cout, kernel, stride, padding, dilation, bias=bias)
        self.weight_g = nn.Parameter(_norm_except_first(base.weight.detach()).clone())
        self.weight_v = nn.Parameter(base.weight.detach().clone())
        self.bias = base.bias
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight_v * (self.weight_g / _norm_except_first(self.weight_v))
        return F.conv1d(x, weight, self.bias, self.stride, self.padding, self.dilation)


class WNConvTranspose1d(nn.Module):
    """A ``ConvTranspose1d`` with weight normalisation over its first (input) axis."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int,
        padding: int = 0,
        output_padding: int = 0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        base = nn.ConvTranspose1d(cin, cout, kernel, stride, padding, output_padding, groups)
        self.weight_g = nn.Parameter(_norm_except_first(base.weight.detach()).clone())
        self.weight_v = nn.Parameter(base.weight.detach().clone())
        self.bias = base.bias
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight_v * (self.weight_g / _norm_except_first(self.weight_v))
        return F.conv_transpose1d(
            x, weight, self.bias, self.stride, self.padding, self.output_padding, self.groups
        )


class SNConv2d(nn.Module):
    """A ``Conv2d`` with spectral normalisation, as evaluated: ``weight_orig / (u . W v)``."""

    weight_u: Tensor
    weight_v: Tensor

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        base = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=bias)
        self.weight_orig = nn.Parameter(base.weight.detach().clone())
        self.bias = base.bias
        # a few power iterations so that a freshly built layer is already normalised
        matrix = base.weight.detach().flatten(1)
        v = F.normalize(torch.randn(matrix.shape[1]), dim=0)
        u = F.normalize(matrix @ v, dim=0)
        for _ in range(10):
            v = F.normalize(matrix.T @ u, dim=0)
            u = F.normalize(matrix @ v, dim=0)
        self.register_buffer("weight_u", u)
        self.register_buffer("weight_v", v)
        self.stride, self.padding, self.groups = stride, padding, groups

    def forward(self, x: Tensor) -> Tensor:
        sigma = torch.dot(self.weight_u, self.weight_orig.flatten(1) @ self.weight_v)
        weight = self.weight_orig / sigma
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, groups=self.groups)


class LinearNorm(nn.Module):
    """A ``Linear`` under the name ``linear_layer`` (as in the duration head's checkpoint)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear_layer = nn.Linear(cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.linear_layer(x)
        return out


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of ``[batch, channels, time]`` (``gamma``/``beta``)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        normed = F.layer_norm(x.transpose(1, -1), self.gamma.shape, self.gamma, self.beta, self.eps)
        return normed.transpose(1, -1)


class AdaIN1d(nn.Module):
    """Instance norm of ``[B, C, T]`` scaled by ``1 + gamma`` and shifted by ``beta`` of a style."""

    def __init__(self, style_dim: int, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        scales: Tensor = self.fc(s)
        gamma, beta = scales.unsqueeze(-1).chunk(2, dim=1)
        return (1 + gamma) * F.instance_norm(x, eps=1e-5) + beta


class AdaLayerNorm(nn.Module):
    """LayerNorm over the last axis of ``[B, T, C]``, scaled and shifted by a style."""

    def __init__(self, style_dim: int, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.fc = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        scales: Tensor = self.fc(s)
        gamma, beta = scales.unsqueeze(1).chunk(2, dim=-1)
        return (1 + gamma) * F.layer_norm(x, (self.channels,), eps=self.eps) + beta


class AdainResBlk1d(nn.Module):
    """Two AdaIN-normalised convolutions and a shortcut; ``upsample`` doubles the time axis."""

    def __init__(self, dim_in: int, dim_out: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv1 = WNConv1d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = WNConv1d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN1d(style_dim, dim_in)
        self.norm2 = AdaIN1d(style_dim, dim_out)
        self.conv1x1 = WNConv1d(dim_in, dim_out, 1, bias=False) if dim_in != dim_out else None
        self.pool = (
            WNConvTranspose1d(dim_in, dim_in, 3, 2, padding=1, output_padding=1, groups=dim_in)
            if upsample
            else None
        )

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        h: Tensor = leaky(self.norm1(x, s))
        if self.pool is not None:
            h = self.pool(h)
        h = self.conv2(leaky(self.norm2(self.conv1(h), s)))
        skip: Tensor = F.interpolate(x, scale_factor=2.0, mode="nearest") if self.upsample else x
        if self.conv1x1 is not None:
            skip = self.conv1x1(skip)
        return (h + skip) / math.sqrt(2)
