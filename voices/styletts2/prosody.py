"""StyleTTS2's prosody predictor: durations per token, then F0 and energy (N) per frame.

``text_encoder`` (a duration encoder) runs bidirectional LSTMs over the projected BERT
features, each followed by a style-conditioned LayerNorm, with the prosodic style appended
to every step's features; ``lstm`` and ``duration_proj`` give each token ``max_dur`` logits
whose sigmoids add up to its duration in frames. F0 and N run on the aligned frames and
come out at twice the frame rate (their second block upsamples).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from voices.styletts2.layers import AdainResBlk1d, AdaLayerNorm, LinearNorm

__all__ = ["DurationEncoder", "ProsodyPredictor"]


class DurationEncoder(nn.Module):
    """``[B, d_model, T]`` features and a style ``[B, sty]`` to ``[B, T, d_model + sty]``."""

    def __init__(self, sty_dim: int, d_model: int, nlayers: int) -> None:
        super().__init__()
        # LSTM and norm alternate in one list, as the checkpoint numbers them
        layers: list[nn.Module] = []
        for _ in range(nlayers):
            layers.append(
                nn.LSTM(d_model + sty_dim, d_model // 2, 1, batch_first=True, bidirectional=True)
            )
            layers.append(AdaLayerNorm(sty_dim, d_model))
        self.lstms = nn.ModuleList(layers)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        styles = style.unsqueeze(1).expand(-1, x.shape[-1], -1)
        h = torch.cat([x.transpose(1, 2), styles], dim=-1)
        for block in self.lstms:
            if isinstance(block, AdaLayerNorm):
                h = torch.cat([block(h, style), styles], dim=-1)
            else:
                h, _ = block(h)
        return h


class ProsodyPredictor(nn.Module):
    def __init__(self, style_dim: int, d_hid: int, nlayers: int, max_dur: int) -> None:
        super().__init__()
        self.text_encoder = DurationEncoder(style_dim, d_hid, nlayers)
        self.lstm = nn.LSTM(d_hid + style_dim, d_hid // 2, 1, batch_first=True, bidirectional=True)
        self.duration_proj = LinearNorm(d_hid, max_dur)
        self.shared = nn.LSTM(
            d_hid + style_dim, d_hid // 2, 1, batch_first=True, bidirectional=True
        )
        self.F0 = self._curve(d_hid, style_dim)
        self.N = self._curve(d_hid, style_dim)
        self.F0_proj = nn.Conv1d(d_hid // 2, 1, 1)
        self.N_proj = nn.Conv1d(d_hid // 2, 1, 1)

    @staticmethod
    def _curve(d: int, style_dim: int) -> nn.ModuleList:
        return nn.ModuleList(
            [
                AdainResBlk1d(d, d, style_dim),
                AdainResBlk1d(d, d // 2, style_dim, upsample=True),
                AdainResBlk1d(d // 2, d // 2, style_dim),
            ]
        )

    def durations(self, d_en: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """The encoded tokens ``[B, T, d + style]`` and each token's duration ``[B, T]``."""
        d = self.text_encoder(d_en, s)
        h, _ = self.lstm(d)
        return d, torch.sigmoid(self.duration_proj(h)).sum(dim=-1)

    def f0_energy(self, en: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """F0 and N ``[B, 2 * frames]`` from aligned features ``[B, d + style, frames]``."""
        h, _ = self.shared(en.transpose(1, 2))
        f0 = n = h.transpose(1, 2)
        for block in self.F0:
            f0 = block(f0, s)
        for block in self.N:
            n = block(n, s)
        return self.F0_proj(f0).squeeze(1), self.N_proj(n).squeeze(1)
