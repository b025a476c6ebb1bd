"""StyleTTS2's decoders: aligned text features, F0, energy and the acoustic style to a waveform.

Both published decoder types share the front (``Decoder``): F0 and energy curves (at twice
the frame rate) are halved by strided convolutions, concatenated with the aligned text
features and run through AdaIN residual blocks, the last of which doubles the time axis. The
generator then differs:

- ``hifigan`` (LibriTTS): transposed convolutions up to the sample rate, each stage followed
  by AdaIN multi-receptive-field blocks with Snake activations, and a harmonic source added
  at every stage; a tanh waveform comes out.
- ``istftnet`` (LJSpeech): fewer upsampling stages, then a magnitude and phase spectrogram
  that an inverse STFT (``gen_istft_n_fft``, ``gen_istft_hop_size``) turns into samples; the
  harmonic source enters as its STFT.

The harmonic source is a neural source-filter excitation: the F0 upsampled to the sample
rate, its fundamental and 8 overtones as sines (their phase integrated at the frame rate and
interpolated, a random initial phase per overtone), noise where the F0 is unvoiced (under
10 Hz), merged by a linear layer and a tanh. The published generator computes the phase for
24 kHz whatever the model's rate; so does this one. Random draws use the caller's generator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voices.styletts2.config import StyleTTS2Config
from voices.styletts2.layers import AdaIN1d, AdainResBlk1d, WNConv1d, WNConvTranspose1d

__all__ = ["Decoder"]

_SOURCE_RATE = 24_000
_HARMONICS = 8
_VOICED_HZ = 10.0
_SINE_AMP = 0.1
_NOISE_STD = 0.003


def _snake(x: Tensor, alpha: Tensor) -> Tensor:
    return x + (1 / alpha) * torch.sin(alpha * x) ** 2


class _SnakeResBlock(nn.Module):
    """AdaIN, Snake and dilated convolutions, in residual pairs (HiFi-GAN's ResBlock1)."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...], style_dim: int):
        super().__init__()
        self.convs1 = nn.ModuleList(
            WNConv1d(channels, channels, kernel, 1, (kernel * d - d) // 2, d) for d in dilations
        )
        self.convs2 = nn.ModuleList(
            WNConv1d(channels, channels, kernel, 1, (kernel - 1) // 2) for _ in dilations
        )
        self.adain1 = nn.ModuleList(AdaIN1d(style_dim, channels) for _ in dilations)
        self.adain2 = nn.ModuleList(AdaIN1d(style_dim, channels) for _ in dilations)
        self.alpha1 = nn.ParameterList(nn.Parameter(torch.ones(1, channels, 1)) for _ in dilations)
        self.alpha2 = nn.ParameterList(nn.Parameter(torch.ones(1, channels, 1)) for _ in dilations)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        layers = zip(
            self.convs1, self.convs2, self.adain1, self.adain2, self.alpha1, self.alpha2,
            strict=True,
        )  # fmt: skip
        for c1, c2, n1, n2, a1, a2 in layers:
            x = x + c2(_snake(n2(c1(_snake(n1(x, s), a1)), s), a2))
        return x


class _Source(nn.Module):
    """The harmonic excitation ``[B, samples, 1]`` of an F0 curve ``[B, frames]``."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.l_linear = nn.Linear(_HARMONICS + 1, 1)

    def forward(self, f0: Tensor, generator: torch.Generator) -> Tensor:
        f0 = F.interpolate(f0[:, None], scale_factor=float(self.scale)).transpose(1, 2)
        overtones = torch.arange(1, _HARMONICS + 2, device=f0.device, dtype=f0.dtype)
        rad = (f0 * overtones / _SOURCE_RATE) % 1
        initial = torch.rand(f0.shape[0], _HARMONICS + 1, generator=generator, device=f0.device)
        initial[:, 0] = 0
        rad[:, 0, :] = rad[:, 0, :] + initial
        coarse = F.interpolate(rad.transpose(1, 2), scale_factor=1 / self.scale, mode="linear")
        phase = torch.cumsum(coarse, dim=-1) * 2 * math.pi
        phase = F.interpolate(phase * self.scale, scale_factor=float(self.scale), mode="linear")
        sines = torch.sin(phase.transpose(1, 2)) * _SINE_AMP
        voiced = (f0 > _VOICED_HZ).to(f0.dtype)
        amplitude = voiced * _NOISE_STD + (1 - voiced) * _SINE_AMP / 3
        # drawn into the published memory layout (overtones outermost): same seed, same noise
        draw = torch.empty(phase.shape, device=f0.device).transpose(1, 2)
        noise = amplitude * draw.normal_(generator=generator)
        return torch.tanh(self.l_linear(sines * voiced + noise))


class _Generator(nn.Module):
    def __init__(self, config: StyleTTS2Config) -> None:
        super().__init__()
        m = config.model_params
        d = m.decoder
        self.istft = d.type == "istftnet"
        self.n_fft, self.hop = d.gen_istft_n_fft, d.gen_istft_hop_size
        scale = math.prod(d.upsample_rates) * (self.hop if self.istft else 1)
        self.m_source = _Source(scale)
        source_channels = self.n_fft + 2 if self.istft else 1
        self.kernels = len(d.resblock_kernel_sizes)
        self.ups = nn.ModuleList()
        self.noise_convs = nn.ModuleList()
        self.noise_res = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        stages = list(zip(d.upsample_rates, d.upsample_kernel_sizes, strict=True))
        channels = d.upsample_initial_channel
        for i, (u, k) in enumerate(stages):
            cin, channels = channels, d.upsample_initial_channel >> (i + 1)
            if self.istft:
                up = WNConvTranspose1d(cin, channels, k, u, padding=(k - u) // 2)
            else:
                up = WNConvTranspose1d(cin, channels, k, u, u // 2 + u % 2, u % 2)
            self.ups.append(up)
            if i + 1 < len(stages):
                stride = math.prod(d.upsample_rates[i + 1 :])
                conv = nn.Conv1d(source_channels, channels, stride * 2, stride, (stride + 1) // 2)
                self.noise_convs.append(conv)
                self.noise_res.append(_SnakeResBlock(channels, 7, (1, 3, 5), m.style_dim))
            else:
                self.noise_convs.append(nn.Conv1d(source_channels, channels, 1))
                self.noise_res.append(_SnakeResBlock(channels, 11, (1, 3, 5), m.style_dim))
            for kernel, dilations in zip(
                d.resblock_kernel_sizes, d.resblock_dilation_sizes, strict=True
            ):
                self.resblocks.append(_SnakeResBlock(channels, kernel, dilations, m.style_dim))
        if not self.istft:
            widths = [d.upsample_initial_channel >> i for i in range(len(stages) + 1)]
            self.alphas = nn.ParameterList(nn.Parameter(torch.ones(1, w, 1)) for w in widths)
        self.conv_post = WNConv1d(channels, source_channels, 7, 1, padding=3)

    def _window(self, x: Tensor) -> Tensor:
        # computed in float64 and rounded, as the published model's window was: the phase of
        # a near-zero bin flips by 2 pi on the last bit of the window
        window = torch.hann_window(self.n_fft, dtype=torch.float64, device=x.device)
        return window.to(x.dtype)

    def forward(self, x: Tensor, s: Tensor, f0: Tensor, generator: torch.Generator) -> Tensor:
        source = self.m_source(f0, generator).transpose(1, 2)
        if self.istft:
            spec = torch.stft(
                source.squeeze(1), self.n_fft, self.hop, self.n_fft, self._window(source),
                return_complex=True,
            )  # fmt: skip
            source = torch.cat([spec.abs(), spec.angle()], dim=1)
        last = len(self.ups) - 1
        for i, (up, noise_conv, noise_res) in enumerate(
            zip(self.ups, self.noise_convs, self.noise_res, strict=True)
        ):
            x = F.leaky_relu(x, 0.1) if self.istft else _snake(x, self.alphas[i])
            excitation = noise_res(noise_conv(source), s)
            x = up(x)
            if self.istft and i == last:
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + excitation
            blocks = self.resblocks[i * self.kernels : (i + 1) * self.kernels]
            total = blocks[0](x, s)
            for block in blocks[1:]:
                total = total + block(x, s)
            x = total / self.kernels
        if not self.istft:
            out: Tensor = torch.tanh(self.conv_post(_snake(x, self.alphas[last + 1])))
            return out.squeeze(1)
        x = self.conv_post(F.leaky_relu(x))
        bins = self.n_fft // 2 + 1
        spectrum = torch.exp(x[:, :bins]) * torch.exp(1j * torch.sin(x[:, bins:]))
        samples: Tensor = torch.istft(spectrum, self.n_fft, self.hop, self.n_fft, self._window(x))
        return samples


class Decoder(nn.Module):
    """Aligned ``asr`` ``[B, hidden, T]``, F0 and N ``[B, 2T]`` and a style to ``[B, samples]``."""

    def __init__(self, config: StyleTTS2Config) -> None:
        super().__init__()
        m = config.model_params
        d = m.decoder
        wide, res, style = d.decode_channels, d.residual_channels, m.style_dim
        self.encode = AdainResBlk1d(m.hidden_dim + 2, wide, style)
        self.decode = nn.ModuleList(
            [
                AdainResBlk1d(wide + 2 + res, wide, style),
                AdainResBlk1d(wide + 2 + res, wide, style),
                AdainResBlk1d(wide + 2 + res, wide, style),
                AdainResBlk1d(wide + 2 + res, d.upsample_initial_channel, style, upsample=True),
            ]
        )
        self.F0_conv = WNConv1d(1, 1, 3, 2, 1)
        self.N_conv = WNConv1d(1, 1, 3, 2, 1)
        self.asr_res = nn.Sequential(WNConv1d(m.hidden_dim, res, 1))
        self.generator = _Generator(config)

    def forward(
        self, asr: Tensor, f0: Tensor, n: Tensor, s: Tensor, generator: torch.Generator
    ) -> Tensor:
        f0_down = self.F0_conv(f0[:, None])
        n_down = self.N_conv(n[:, None])
        x = self.encode(torch.cat([asr, f0_down, n_down], dim=1), s)
        skip = self.asr_res(asr)
        residual = True
        for block in self.decode:
            if residual:
                x = torch.cat([x, skip, f0_down, n_down], dim=1)
            x = block(x, s)
            residual = residual and not block.upsample
        out: Tensor = self.generator(x, s, f0, generator)
        return out
