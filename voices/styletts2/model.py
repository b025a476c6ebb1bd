"""StyleTTS2's inference graph (Li et al., 2023) in torch, sized by a :class:`StyleTTS2Config`.

The modules are the published StyleTTS2's, with its checkpoints' parameter names and shapes
for every group inference needs (:data:`GROUPS`), so the published checkpoints load as they
are (LibriTTS: multispeaker, HiFi-GAN decoder; LJSpeech: single speaker, iSTFTNet decoder):

- ``bert``: PL-BERT, an ALBERT encoder over the phoneme tokens (:mod:`.plbert`);
- ``bert_encoder``: a projection of its output to ``hidden_dim`` for the prosody predictor;
- ``text_encoder``: the acoustic text encoder (:mod:`.text`);
- ``diffusion``: the style diffusion (:mod:`.diffusion`), which draws a style vector of
  ``2 * style_dim`` (acoustic half, prosodic half) from the BERT features, and for
  multispeaker models from the reference style too;
- ``predictor``: durations, F0 and energy (:mod:`.prosody`);
- ``style_encoder``, ``predictor_encoder``: reference audio to the acoustic and prosodic
  halves of a style (:mod:`.style`);
- ``decoder``: HiFi-GAN or iSTFTNet (:mod:`.decoder`).

:meth:`StyleTTS2Model.synthesize` follows the published inference: BERT, then the diffusion
sampler conditioned on the text (and the reference), the sampled style blended with the
reference by ``alpha`` (acoustic) and ``beta`` (prosodic), the durations rounded (at least one
frame each), the monotonic alignment they make, F0 and energy on the aligned frames, and the
decoder (for HiFi-GAN the aligned features are delayed by one frame, as the LibriTTS demo
does). Voxline adds the ``speed`` and ``pitch`` knobs (durations divided, F0 multiplied) and a
short fade over the last samples instead of the demo's cut of a click at the very end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.errors import ModelError
from voices.styletts2.config import StyleTTS2Config
from voices.styletts2.decoder import Decoder
from voices.styletts2.diffusion import EMBEDDING_MAX_LENGTH, StyleDiffusion, StyleTransformer
from voices.styletts2.plbert import PLBert
from voices.styletts2.prosody import ProsodyPredictor
from voices.styletts2.style import StyleEncoder, frames_needed, log_mel, mel_filters
from voices.styletts2.styles import Knobs
from voices.styletts2.text import TextEncoder

__all__ = ["GROUPS", "StyleTTS2Model", "Synthesis"]

#: the checkpoint groups (``net`` keys) inference needs, as in StyleTTS2's checkpoints
GROUPS = (
    "bert", "bert_encoder", "text_encoder", "predictor", "predictor_encoder", "style_encoder",
    "diffusion", "decoder",
)  # fmt: skip
#: the fade at the end of each clause, in seconds (the demo cuts 50 samples at 24 kHz)
FADE_SECONDS = 50 / 24_000


@dataclass(frozen=True, slots=True)
class Synthesis:
    """Float audio (``frame_samples`` samples per frame) and each token's frame count."""

    audio: np.ndarray
    durations: np.ndarray


class StyleTTS2Model(nn.Module):
    """Every module inference needs; attribute names are the checkpoint's groups."""

    mel_basis: Tensor

    def __init__(self, config: StyleTTS2Config) -> None:
        super().__init__()
        m = config.model_params
        p = config.plbert
        t = m.diffusion.transformer
        styles = 2 * m.style_dim
        self.config = config
        self.bert = PLBert(p)
        self.bert_encoder = nn.Linear(p.hidden_size, m.hidden_dim)
        self.text_encoder = TextEncoder(m.hidden_dim, 5, m.n_layer, m.n_token)
        self.predictor = ProsodyPredictor(m.style_dim, m.hidden_dim, m.n_layer, m.max_dur)
        # the published models size both encoders' widths by hidden_dim, not max_conv_dim
        self.predictor_encoder = StyleEncoder(m.dim_in, m.style_dim, m.hidden_dim)
        self.style_encoder = StyleEncoder(m.dim_in, m.style_dim, m.hidden_dim)
        net = StyleTransformer(
            styles, p.hidden_size, t.num_layers, t.num_heads, t.head_features, t.multiplier,
            styles if m.multispeaker else None,
        )  # fmt: skip
        self.diffusion = StyleDiffusion(net, m.diffusion.dist.sigma_data)
        self.decoder = Decoder(config)
        filters = mel_filters(m.n_mels, config.preprocess_params.spect_params.n_fft)
        self.register_buffer("mel_basis", torch.from_numpy(filters), persistent=False)

    @property
    def max_tokens(self) -> int:
        """The longest token sequence (PL-BERT's positions, the diffusion's fixed embedding)."""
        return min(self.config.plbert.max_position_embeddings, EMBEDDING_MAX_LENGTH)

    def reference_style(self, audio: Tensor) -> Tensor:
        """The style ``[1, 2 * style_dim]`` (acoustic, prosodic) of mono float audio."""
        spect = self.config.preprocess_params.spect_params
        needed = (frames_needed() - 1) * spect.hop_length
        if audio.shape[-1] <= needed:
            seconds = needed / self.config.sample_rate
            raise ModelError(f"StyleTTS2 reference audio must last over {seconds:.2f} s")
        mel = log_mel(audio, self.mel_basis, spect.n_fft, spect.hop_length, spect.win_length)
        return torch.cat([self.style_encoder(mel), self.predictor_encoder(mel)], dim=-1)

    def synthesize(
        self,
        tokens: Tensor,
        knobs: Knobs,
        generator: torch.Generator,
        reference: Tensor | None = None,
    ) -> Synthesis:
        """Speak one clause of tokens ``[1, T]`` (``reference``: a style ``[1, 2 * style]``).

        Multispeaker models need the reference; the diffusion runs at least 2 steps.
        """
        m = self.config.model_params
        sd = m.style_dim
        length = tokens.shape[1]
        if length > self.max_tokens:
            raise ModelError(f"{length} phoneme tokens in one clause (limit {self.max_tokens})")
        if m.multispeaker and reference is None:
            raise ModelError("a multispeaker StyleTTS2 model needs a reference style")
        t_en = self.text_encoder(tokens)
        bert_dur = self.bert(tokens)
        d_en = self.bert_encoder(bert_dur).transpose(1, 2)
        features = reference if m.multispeaker else None
        steps = max(2, knobs.diffusion_steps)
        s_pred = self.diffusion.sample(bert_dur, features, steps, knobs.embedding_scale, generator)
        ref, s = s_pred[:, :sd], s_pred[:, sd:]
        if reference is not None:
            ref = knobs.alpha * ref + (1 - knobs.alpha) * reference[:, :sd]
            s = knobs.beta * s + (1 - knobs.beta) * reference[:, sd:]
        d, duration = self.predictor.durations(d_en, s)
        frames = torch.round(duration[0] / knobs.speed).clamp(min=1).long()
        owner = torch.repeat_interleave(torch.arange(length, device=tokens.device), frames)
        alignment = F.one_hot(owner, length).T.to(d.dtype)[None]
        en = d.transpose(1, 2) @ alignment
        asr = t_en @ alignment
        if m.decoder.type == "hifigan":
            en, asr = _delayed(en), _delayed(asr)
        f0, energy = self.predictor.f0_energy(en, s)
        audio = self.decoder(asr, f0 * knobs.pitch, energy, ref, generator)
        total = int(frames.sum()) * self.config.frame_samples
        samples = audio[0, :total].float().cpu().numpy()
        fade = min(len(samples), round(FADE_SECONDS * self.config.sample_rate))
        if fade:
            samples[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
        return Synthesis(samples, frames.cpu().numpy())


def _delayed(x: Tensor) -> Tensor:
    """``x`` one frame later along its last axis (its first frame repeated)."""
    return torch.cat([x[..., :1], x[..., :-1]], dim=-1)
