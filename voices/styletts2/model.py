"""StyleTTS2's inference graph in torch, every module sized by a :class:`StyleTTS2Config`.

The structure follows StyleTTS2 (Li et al., 2023): a phoneme text encoder (CNN + BiLSTM); a
phoneme-level BERT whose output (projected by ``bert_encoder``) drives the prosody predictor
and conditions the style diffusion; a style diffusion model (a transformer denoiser with
Karras preconditioning and classifier-free guidance, sampled with a DPM-2 sampler on a Karras
schedule) that draws a 2 x ``style_dim`` style vector from the text; two style encoders that
turn reference audio (a log-mel spectrogram) into the acoustic and prosodic halves of such a
vector; a prosody predictor (style-conditioned duration encoder, duration head, F0 and
energy heads with AdaIN residual blocks); and a HiFi-GAN-style decoder with AdaIN residual
blocks and a harmonic (sine) source from the predicted F0.

**Simplified, not the published architecture.** The modules are Voxline's own and smaller
than the originals: the BERT is a plain ``torch.nn.TransformerEncoder`` (not ALBERT), the
diffusion denoiser is a small cross-attention transformer (not the a-unet ``StyleTransformer1d``),
the style encoders and the decoder are reduced, and F0/energy run at the frame rate (not twice
it). The checkpoint has StyleTTS2's outer layout (``{"net": {"bert": ..., "predictor": ...}}``,
``module.`` prefixes allowed) but the parameter names and shapes inside each group are this
module's: **the published StyleTTS2 checkpoints do not load into it.**
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voices.styletts2.config import StyleTTS2Config
from voices.styletts2.styles import Knobs

__all__ = ["GROUPS", "StyleTTS2Model", "Synthesis"]

#: the checkpoint groups (``net`` keys) inference needs, as in StyleTTS2's checkpoints
GROUPS = (
    "bert", "bert_encoder", "text_encoder", "predictor", "predictor_encoder", "style_encoder",
    "diffusion", "decoder",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Synthesis:
    """Float audio (``hop_length`` samples per frame) and each token's frame count."""

    audio: np.ndarray
    durations: np.ndarray


def _leaky(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2)


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of a ``[batch, channels, time]`` tensor."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return out


class AdaIN1d(nn.Module):
    """Instance norm whose scale and shift come from the style vector."""

    def __init__(self, style_dim: int, channels: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm1d(channels, affine=False)
        self.fc = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        gamma, beta = self.fc(s).unsqueeze(-1).chunk(2, dim=1)
        out: Tensor = (1 + gamma) * self.norm(x) + beta
        return out


class AdaLayerNorm(nn.Module):
    """LayerNorm over the last axis, scaled and shifted by the style vector."""

    def __init__(self, style_dim: int, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.fc = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        gamma, beta = self.fc(s).unsqueeze(1).chunk(2, dim=-1)
        normed = F.layer_norm(x, (self.channels,))
        out: Tensor = (1 + gamma) * normed + beta
        return out


class AdaINResBlock(nn.Module):
    """Two style-normalised convolutions with a (projected) shortcut."""

    def __init__(self, dim_in: int, dim_out: int, style_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = AdaIN1d(style_dim, dim_in)
        self.conv1 = nn.Conv1d(dim_in, dim_out, 3, padding=1)
        self.norm2 = AdaIN1d(style_dim, dim_out)
        self.conv2 = nn.Conv1d(dim_out, dim_out, 3, padding=1)
        self.shortcut = nn.Conv1d(dim_in, dim_out, 1, bias=False) if dim_in != dim_out else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        h: Tensor = self.conv1(self.dropout(_leaky(self.norm1(x, s))))
        h = self.conv2(self.dropout(_leaky(self.norm2(h, s))))
        skip: Tensor = x if self.shortcut is None else self.shortcut(x)
        return (h + skip) / math.sqrt(2)


class TextEncoder(nn.Module):
    """Phoneme embedding, ``depth`` convolutions, a bidirectional LSTM: ``[B, C, T]``."""

    def __init__(self, n_token: int, channels: int, depth: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_token, channels)
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, 5, padding=2) for _ in range(depth)
        )
        self.norms = nn.ModuleList(ChannelNorm(channels) for _ in range(depth))
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(channels, channels // 2, batch_first=True, bidirectional=True)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embedding(tokens).transpose(1, 2)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = self.dropout(_leaky(norm(conv(x))))
        out, _ = self.lstm(x.transpose(1, 2))
        result: Tensor = out.transpose(1, 2)
        return result


class PhonemeBert(nn.Module):
    """A phoneme-level BERT (simplified PL-BERT): ``[B, T]`` tokens to ``[B, T, hidden]``."""

    def __init__(self, config: StyleTTS2Config) -> None:
        super().__init__()
        p = config.model_params.plbert
        self.embeddings = nn.Embedding(config.model_params.n_token, p.hidden_size)
        self.positions = nn.Embedding(p.max_position_embeddings, p.hidden_size)
        self.norm = nn.LayerNorm(p.hidden_size)
        layer = nn.TransformerEncoderLayer(
            p.hidden_size, p.num_heads, p.intermediate_size, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, p.num_layers, enable_nested_tensor=False)
        self.max_positions = p.max_position_embeddings

    def forward(self, tokens: Tensor) -> Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device) % self.max_positions
        x = self.norm(self.embeddings(tokens) + self.positions(positions)[None])
        out: Tensor = self.encoder(x)
        return out


class StyleEncoder(nn.Module):
    """A log-mel spectrogram ``[B, n_mels, frames]`` to a ``style_dim`` vector."""

    def __init__(self, dim_in: int, style_dim: int, max_conv_dim: int, downs: int = 2) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, dim_in, 3, padding=1)
        blocks: list[nn.Module] = []
        dim = dim_in
        for _ in range(downs):
            out = min(dim * 2, max_conv_dim)
            blocks.append(nn.Conv2d(dim, out, 3, padding=1))
            dim = out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(dim, style_dim)

    def forward(self, mel: Tensor) -> Tensor:
        x = self.stem(mel.unsqueeze(1))
        for block in self.blocks:
            x = _leaky(block(x))
            if min(x.shape[-2:]) >= 2:
                x = F.avg_pool2d(x, 2)
        out: Tensor = self.head(x.mean(dim=(2, 3)))
        return out


class DurationEncoder(nn.Module):
    """Style-conditioned BiLSTM layers over the BERT features: ``[B, T, d + style]``."""

    def __init__(self, style_dim: int, d_model: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.lstms = nn.ModuleList(
            nn.LSTM(d_model + style_dim, d_model // 2, batch_first=True, bidirectional=True)
            for _ in range(layers)
        )
        self.norms = nn.ModuleList(AdaLayerNorm(style_dim, d_model) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        styles = s.unsqueeze(1).expand(-1, x.shape[2], -1)
        h = x.transpose(1, 2)
        for lstm, norm in zip(self.lstms, self.norms, strict=True):
            h, _ = lstm(torch.cat([h, styles], dim=-1))
            h = self.dropout(norm(h, s))
        return torch.cat([h, styles], dim=-1)


class ProsodyPredictor(nn.Module):
    """Durations per token, then F0 and energy (N) per frame, all conditioned on the style."""

    def __init__(self, config: StyleTTS2Config) -> None:
        super().__init__()
        m = config.model_params
        d, s = m.hidden_dim, m.style_dim
        self.text_encoder = DurationEncoder(s, d, m.n_layer, m.dropout)
        self.lstm = nn.LSTM(d + s, d // 2, batch_first=True, bidirectional=True)
        self.duration_proj = nn.Linear(d, m.max_dur)
        self.shared = nn.LSTM(d + s, d // 2, batch_first=True, bidirectional=True)
        self.F0 = nn.ModuleList(
            [AdaINResBlock(d, d, s), AdaINResBlock(d, d // 2, s), AdaINResBlock(d // 2, d // 2, s)]
        )
        self.N = nn.ModuleList(
            [AdaINResBlock(d, d, s), AdaINResBlock(d, d // 2, s), AdaINResBlock(d // 2, d // 2, s)]
        )
        self.F0_proj = nn.Conv1d(d // 2, 1, 1)
        self.N_proj = nn.Conv1d(d // 2, 1, 1)

    def durations(self, d_en: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """The encoded tokens ``[B, T, d + style]`` and each token's duration (frames)."""
        d = self.text_encoder(d_en, s)
        h, _ = self.lstm(d)
        logits = self.duration_proj(h)
        return d, torch.sigmoid(logits).sum(dim=-1)

    def f0_energy(self, en: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """F0 (Hz) and energy per frame from the frame features ``[B, d + style, frames]``."""
        h, _ = self.shared(en.transpose(1, 2))
        h = h.transpose(1, 2)
        f0, n = h, h
        for block in self.F0:
            f0 = block(f0, s)
        for block in self.N:
            n = block(n, s)
        return self.F0_proj(f0).squeeze(1), self.N_proj(n).squeeze(1)


class StyleDenoiser(nn.Module):
    """The style diffusion's network: a noisy style, a noise level and BERT features in."""

    def __init__(self, config: StyleTTS2Config) -> None:
        super().__init__()
        m = config.model_params
        t = m.diffusion.transformer
        width = t.num_heads * t.head_features
        features = 2 * m.style_dim
        self.sigma_data = m.diffusion.dist.sigma_data
        self.to_width = nn.Linear(features, width)
        self.embedding_proj = nn.Linear(m.plbert.hidden_size, width)
        self.fixed_embedding = nn.Parameter(torch.zeros(1, 1, m.plbert.hidden_size))
        self.frequencies = nn.Parameter(torch.randn(width // 2), requires_grad=False)
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        layer = nn.TransformerDecoderLayer(
            width, t.num_heads, width * t.multiplier, dropout=0.0, batch_first=True
        )
        self.transformer = nn.TransformerDecoder(layer, t.num_layers)
        self.to_out = nn.Linear(width, features)

    def network(self, x: Tensor, noise: Tensor, embedding: Tensor) -> Tensor:
        angles = noise[:, None] * self.frequencies[None] * 2 * math.pi
        time = self.time_mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))
        h = self.to_width(x) + time[:, None]
        out: Tensor = self.to_out(self.transformer(h, self.embedding_proj(embedding)))
        return out

    def denoise(self, x: Tensor, sigma: Tensor, embedding: Tensor, scale: float) -> Tensor:
        """Karras-preconditioned denoising with classifier-free guidance ``scale``."""
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / torch.sqrt(sigma**2 + sd**2)
        c_in = 1 / torch.sqrt(sigma**2 + sd**2)
        noise = torch.log(sigma) / 4
        scaled = x * c_in[:, None, None]
        guided = self.network(scaled, noise, embedding)
        if scale != 1.0:
            fixed = self.fixed_embedding.expand_as(embedding)
            plain = self.network(scaled, noise, fixed)
            guided = plain + (guided - plain) * scale
        return c_skip[:, None, None] * x + c_out[:, None, None] * guided

    def sample(
        self, embedding: Tensor, steps: int, scale: float, generator: torch.Generator
    ) -> Tensor:
        """A style ``[B, 2 * style_dim]`` for the BERT features, by DPM-2 on a Karras schedule."""
        batch = embedding.shape[0]
        features = self.to_out.out_features
        sigma_min, sigma_max, rho = 1e-4, 3.0, 9.0
        ramp = torch.linspace(0, 1, steps, device=embedding.device)
        sigmas = (
            sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
        ) ** rho
        sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
        x = sigmas[0] * torch.randn(
            batch, 1, features, generator=generator, device=embedding.device
        )
        for i in range(steps):
            sigma, after = sigmas[i], sigmas[i + 1]
            slope = (x - self.denoise(x, sigma.expand(batch), embedding, scale)) / sigma
            if after == 0:
                x = x + slope * (after - sigma)
                continue
            middle = torch.exp((torch.log(sigma) + torch.log(after)) / 2)
            x_mid = x + slope * (middle - sigma)
            denoised = self.denoise(x_mid, middle.expand(batch), embedding, scale)
            slope_mid = (x_mid - denoised) / middle
            x = x + slope_mid * (after - sigma)
        return x.squeeze(1)


class ResBlock(nn.Module):
    """A HiFi-GAN multi-dilation residual block with AdaIN before each convolution."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...], style_dim: int):
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2)
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations
        )
        self.adain1 = nn.ModuleList(AdaIN1d(style_dim, channels) for _ in dilations)
        self.adain2 = nn.ModuleList(AdaIN1d(style_dim, channels) for _ in dilations)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        for c1, c2, n1, n2 in zip(self.convs1, self.convs2, self.adain1, self.adain2, strict=True):
            x = x + c2(_leaky(n2(c1(_leaky(n1(x, s))), s)))
        return x


class Decoder(nn.Module):
    """Aligned text features, F0, energy and the acoustic style to a waveform."""

    def __init__(self, config: StyleTTS2Config) -> None:
        super().__init__()
        m = config.model_params
        d = m.decoder
        hidden, style = m.hidden_dim, m.style_dim
        channels = d.upsample_initial_channel
        self.sample_rate = config.sample_rate
        self.rates = d.upsample_rates
        self.encode = AdaINResBlock(hidden + 2, channels, style)
        self.asr_res = nn.Conv1d(hidden, 64, 1)
        self.decode = nn.ModuleList(
            [AdaINResBlock(channels + 64 + 2, channels, style) for _ in range(2)]
        )
        self.ups = nn.ModuleList()
        self.noise_convs = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        kernels = zip(d.upsample_rates, d.upsample_kernel_sizes, strict=True)
        self.per_stage = len(d.resblock_kernel_sizes)
        for i, (rate, kernel) in enumerate(kernels):
            out = channels >> (i + 1)
            self.ups.append(
                nn.ConvTranspose1d(channels >> i, out, kernel, rate, padding=(kernel - rate) // 2)
            )
            stride = math.prod(d.upsample_rates[i + 1 :])
            self.noise_convs.append(
                nn.Conv1d(1, out, 2 * stride, stride, padding=stride // 2)
                if stride > 1
                else nn.Conv1d(1, out, 1)
            )
            blocks = zip(d.resblock_kernel_sizes, d.resblock_dilation_sizes, strict=True)
            self.resblocks.extend(ResBlock(out, k, dil, style) for k, dil in blocks)
        self.conv_post = nn.Conv1d(channels >> len(d.upsample_rates), 1, 7, padding=3)

    def source(self, f0: Tensor) -> Tensor:
        """A sine at F0 (silent where F0 is not voiced), one value per output sample."""
        per_sample = f0.clamp(min=0).repeat_interleave(math.prod(self.rates), dim=-1)
        phase = torch.cumsum(2 * math.pi * per_sample / self.sample_rate, dim=-1)
        voiced = (per_sample > 10).to(per_sample.dtype)
        return (0.1 * torch.sin(phase) * voiced).unsqueeze(1)

    def forward(self, asr: Tensor, f0: Tensor, energy: Tensor, s: Tensor) -> Tensor:
        frames = asr.shape[-1]
        curves = torch.stack([torch.tanh(f0 / 400), energy], dim=1)
        x = self.encode(torch.cat([asr, curves], dim=1), s)
        skip = self.asr_res(asr)
        for block in self.decode:
            x = block(torch.cat([x, skip, curves], dim=1), s)
        source = self.source(f0)
        length = frames
        stages = zip(self.ups, self.noise_convs, self.rates, strict=True)
        for i, (up, noise_conv, rate) in enumerate(stages):
            x = up(_leaky(x))
            length *= rate
            x = x[..., :length] + noise_conv(source)[..., :length]
            blocks = self.resblocks[i * self.per_stage : (i + 1) * self.per_stage]
            x = sum((block(x, s) for block in blocks), torch.zeros_like(x)) / self.per_stage
        out: Tensor = torch.tanh(self.conv_post(_leaky(x))).squeeze(1)
        return out


class StyleTTS2Model(nn.Module):
    """Every module inference needs; attribute names are the checkpoint's groups."""

    mel_basis: Tensor

    def __init__(self, config: StyleTTS2Config) -> None:
        super().__init__()
        m = config.model_params
        self.config = config
        self.bert = PhonemeBert(config)
        self.bert_encoder = nn.Linear(m.plbert.hidden_size, m.hidden_dim)
        self.text_encoder = TextEncoder(m.n_token, m.hidden_dim, m.n_layer, m.dropout)
        self.predictor = ProsodyPredictor(config)
        self.predictor_encoder = StyleEncoder(m.dim_in, m.style_dim, m.max_conv_dim)
        self.style_encoder = StyleEncoder(m.dim_in, m.style_dim, m.max_conv_dim)
        self.diffusion = StyleDenoiser(config)
        self.decoder = Decoder(config)
        self.register_buffer("mel_basis", torch.from_numpy(_mel_basis(config)), persistent=False)

    def reference_style(self, audio: Tensor) -> Tensor:
        """The style ``[1, 2 * style_dim]`` (acoustic, prosodic) of mono float audio."""
        spect = self.config.preprocess_params.spect_params
        window = torch.hann_window(spect.win_length, device=audio.device)
        stft = torch.stft(
            audio, spect.n_fft, spect.hop_length, spect.win_length, window, return_complex=True
        )
        mel = torch.log(1e-5 + self.mel_basis @ stft.abs()) if stft.numel() else stft.real
        mel = ((mel - -4.0) / 4.0).unsqueeze(0)
        return torch.cat([self.style_encoder(mel), self.predictor_encoder(mel)], dim=-1)

    def synthesize(
        self,
        tokens: Tensor,
        knobs: Knobs,
        generator: torch.Generator,
        reference: Tensor | None = None,
    ) -> Synthesis:
        """Speak one clause of tokens ``[1, T]`` (``reference``: a style ``[1, 2 * style]``)."""
        sd = self.config.model_params.style_dim
        t_en = self.text_encoder(tokens)
        bert_dur = self.bert(tokens)
        d_en = self.bert_encoder(bert_dur).transpose(1, 2)
        s_pred = self.diffusion.sample(
            bert_dur, max(1, knobs.diffusion_steps), knobs.embedding_scale, generator
        )
        ref, s = s_pred[:, :sd], s_pred[:, sd:]
        if reference is not None:
            ref = knobs.alpha * ref + (1 - knobs.alpha) * reference[:, :sd]
            s = knobs.beta * s + (1 - knobs.beta) * reference[:, sd:]
        d, duration = self.predictor.durations(d_en, s)
        frames = torch.round(duration.squeeze(0) / knobs.speed).clamp(min=1).long()
        total = int(frames.sum())
        owner = torch.repeat_interleave(torch.arange(tokens.shape[1], device=tokens.device), frames)
        alignment = F.one_hot(owner, tokens.shape[1]).T.to(d.dtype).unsqueeze(0)
        en = d.transpose(1, 2) @ alignment
        f0, energy = self.predictor.f0_energy(en, s)
        audio = self.decoder(t_en @ alignment, f0 * knobs.pitch, energy, ref)
        samples = audio.squeeze(0)[: total * self.config.hop_length]
        return Synthesis(samples.float().cpu().numpy(), frames.cpu().numpy())


def _mel_basis(config: StyleTTS2Config) -> np.ndarray:
    """Triangular mel filters ``[n_mels, n_fft // 2 + 1]`` (HTK mel scale)."""
    n_mels = config.model_params.n_mels
    n_fft = config.preprocess_params.spect_params.n_fft
    rate = config.sample_rate
    bins = np.linspace(0, rate / 2, n_fft // 2 + 1)
    mel = 2595 * np.log10(1 + bins / 700)
    edges = np.linspace(0, mel[-1], n_mels + 2)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (mel[None] - low) / np.maximum(centre - low, 1e-9)
    fall = (high - mel[None]) / np.maximum(high - centre, 1e-9)
    filters: np.ndarray = np.maximum(0, np.minimum(rise, fall)).astype(np.float32)
    return filters
