"""How prosody and the shared emotion vocabulary become StyleTTS2's knobs (no torch here).

StyleTTS2 expresses a style through its style vector: the diffusion sampler draws one from
the text (``diffusion_steps``, and ``embedding_scale``: classifier-free guidance, higher is
more expressive), and ``alpha``/``beta`` blend its acoustic and prosodic halves with a
reference's (from reference audio; 0 keeps the reference, 1 the text's). An emotion's
:class:`~voices.emotion.Expression` maps onto them:

- ``variation`` scales ``alpha``, ``beta`` (capped at 1), ``embedding_scale`` and the number
  of diffusion steps: a livelier emotion leans on the text-driven, more guided style;
- ``rate`` (times the prosody's ``rate``, over its ``length_scale``) divides the durations;
- ``pitch`` multiplies the predicted F0;
- ``volume`` and ``whisper`` are output transforms (:mod:`voices.dsp`), as for Piper;
- with reference audio per emotion the engine also moves the reference style from the neutral
  reference towards the emotion's by the intensity.

``timing`` (Piper's phoneme-length noise) and ``noise_scale``/``noise_w_scale`` have no
StyleTTS2 counterpart and are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from voices.emotion import PRESETS, Expression, expression
from voices.engine import Emotion, Prosody, Style

__all__ = ["Knobs", "Rendering", "StyleDefaults", "rendering"]


@dataclass(frozen=True, slots=True)
class Knobs:
    """StyleTTS2's inference knobs for one clause.

    ``alpha`` and ``beta`` (0 to 1): how much of the acoustic and prosodic style comes from
    the text (diffusion) rather than the reference; ``embedding_scale``: classifier-free
    guidance strength; ``speed`` divides durations; ``pitch`` multiplies F0.
    """

    alpha: float = 0.3
    beta: float = 0.7
    diffusion_steps: int = 5
    embedding_scale: float = 1.0
    speed: float = 1.0
    pitch: float = 1.0


@dataclass(frozen=True, slots=True)
class StyleDefaults:
    """The voice's knobs for a neutral style (StyleTTS2's usual inference settings)."""

    alpha: float = 0.3
    beta: float = 0.7
    diffusion_steps: int = 5
    embedding_scale: float = 1.0


@dataclass(frozen=True, slots=True)
class Rendering:
    """Everything one segment's style changes: model knobs, then output transforms."""

    knobs: Knobs
    volume: float
    whisper: float


def rendering(
    prosody: Prosody,
    style: Style | None,
    defaults: StyleDefaults = StyleDefaults(),
    presets: Mapping[Emotion, Expression] = PRESETS,
) -> Rendering:
    """The knobs and transforms for ``prosody`` and ``style`` (see the module docstring)."""
    e = expression(style, presets)
    length = 1.0 if prosody.length_scale is None else prosody.length_scale
    knobs = Knobs(
        alpha=min(1.0, defaults.alpha * e.variation),
        beta=min(1.0, defaults.beta * e.variation),
        diffusion_steps=max(1, round(defaults.diffusion_steps * e.variation)),
        embedding_scale=defaults.embedding_scale * e.variation,
        speed=prosody.rate * e.rate / length,
        pitch=prosody.pitch * e.pitch,
    )
    return Rendering(knobs, volume=prosody.volume * e.volume, whisper=e.whisper)
