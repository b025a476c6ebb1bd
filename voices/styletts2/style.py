"""StyleTTS2's style encoders (acoustic and prosodic) and the log-mel input they read.

Each encoder is a spectrally normalised 2-D CNN over a log-mel spectrogram ``[B, 1, n_mels,
frames]``: a stem, four residual blocks that halve both axes (a learned strided depthwise
convolution on the residual path, average pooling on the shortcut), a 5x5 convolution, global
average pooling and a linear head to ``style_dim``. Their widths double from ``dim_in`` up to
the model's ``hidden_dim`` (the published models pass ``hidden_dim`` there, not
``max_conv_dim``).

The spectrogram is the one the published models were trained on: torchaudio's
``MelSpectrogram`` with its default 16 kHz rate whatever the audio's (so the HTK mel filters
span the STFT bins as if they reached 8 kHz), power 2, then ``(log(1e-5 + mel) + 4) / 4``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voices.styletts2.layers import SNConv2d, leaky

__all__ = ["MEL_RATE", "StyleEncoder", "frames_needed", "log_mel", "mel_filters"]

#: the sample rate the published models' mel filters assume (torchaudio's default)
MEL_RATE = 16_000
_DOWNS = 4
_HEAD_KERNEL = 5


class _ResBlk(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.conv1 = SNConv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = SNConv2d(dim_in, dim_out, 3, 1, 1)
        shortcut = SNConv2d(dim_in, dim_out, 1, 1, 0, bias=False) if dim_in != dim_out else None
        self.conv1x1 = shortcut
        self.downsample_res = _LearnedDown(dim_in)

    def forward(self, x: Tensor) -> Tensor:
        skip: Tensor = x if self.conv1x1 is None else self.conv1x1(x)
        if skip.shape[-1] % 2:
            skip = torch.cat([skip, skip[..., -1:]], dim=-1)
        skip = F.avg_pool2d(skip, 2)
        h: Tensor = self.conv2(leaky(self.downsample_res(self.conv1(leaky(x)))))
        return (skip + h) / math.sqrt(2)


class _LearnedDown(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = SNConv2d(dim, dim, 3, 2, 1, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(x)
        return out


class StyleEncoder(nn.Module):
    """A log-mel spectrogram ``[B, 1, n_mels, frames]`` to a style ``[B, style_dim]``."""

    def __init__(self, dim_in: int, style_dim: int, max_conv_dim: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = [SNConv2d(1, dim_in, 3, 1, 1)]
        dim = dim_in
        for _ in range(_DOWNS):
            out = min(dim * 2, max_conv_dim)
            blocks.append(_ResBlk(dim, out))
            dim = out
        blocks += [
            nn.LeakyReLU(0.2),
            SNConv2d(dim, dim, _HEAD_KERNEL, 1, 0),
            nn.AdaptiveAvgPool2d(1),
            nn.LeakyReLU(0.2),
        ]
        self.shared = nn.Sequential(*blocks)
        self.unshared = nn.Linear(dim, style_dim)

    def forward(self, mel: Tensor) -> Tensor:
        out: Tensor = self.unshared(self.shared(mel).flatten(1))
        return out


def frames_needed() -> int:
    """The fewest spectrogram frames the encoders accept (four halvings, then a 5x5 kernel)."""
    return ((_HEAD_KERNEL - 1) << _DOWNS) + 1


def mel_filters(n_mels: int, n_fft: int) -> np.ndarray:
    """HTK triangular filters ``[n_mels, n_fft // 2 + 1]`` over 0 to ``MEL_RATE / 2``."""

    def to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    top = MEL_RATE / 2
    bins = np.linspace(0, top, n_fft // 2 + 1)
    edges = 700.0 * (10 ** (np.linspace(0, to_mel(np.array(top)), n_mels + 2) / 2595.0) - 1.0)
    widths = np.diff(edges)
    offsets = edges[None, :] - bins[:, None]
    falling = -offsets[:, :-2] / widths[:-1]
    rising = offsets[:, 2:] / widths[1:]
    filters: np.ndarray = np.maximum(0.0, np.minimum(falling, rising)).T.astype(np.float32)
    return filters


def log_mel(audio: Tensor, filters: Tensor, n_fft: int, hop: int, win: int) -> Tensor:
    """The normalised log-mel ``[1, 1, n_mels, frames]`` of mono audio ``[samples]``."""
    window = torch.hann_window(win, device=audio.device, dtype=audio.dtype)
    stft = torch.stft(audio, n_fft, hop, win, window, center=True, return_complex=True)
    mel = filters @ stft.abs().pow(2)
    return ((torch.log(1e-5 + mel) + 4.0) / 4.0)[None, None]
