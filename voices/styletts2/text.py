"""StyleTTS2's text (acoustic) encoder: phoneme embedding, convolutions, a bidirectional LSTM."""

from __future__ import annotations

from torch import Tensor, nn

from voices.styletts2.layers import ChannelLayerNorm, WNConv1d

__all__ = ["TextEncoder"]


class TextEncoder(nn.Module):
    """Tokens ``[B, T]`` to features ``[B, channels, T]`` (one sequence, nothing masked)."""

    def __init__(self, channels: int, kernel_size: int, depth: int, n_symbols: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_symbols, channels)
        padding = (kernel_size - 1) // 2
        self.cnn = nn.ModuleList(
            nn.Sequential(
                WNConv1d(channels, channels, kernel_size, padding=padding),
                ChannelLayerNorm(channels),
                nn.LeakyReLU(0.2),
                nn.Dropout(0.2),
            )
            for _ in range(depth)
        )
        self.lstm = nn.LSTM(channels, channels // 2, 1, batch_first=True, bidirectional=True)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embedding(tokens).transpose(1, 2)
        for block in self.cnn:
            x = block(x)
        out, _ = self.lstm(x.transpose(1, 2))
        result: Tensor = out.transpose(1, 2)
        return result
