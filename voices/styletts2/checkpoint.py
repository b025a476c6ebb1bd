"""Load a StyleTTS2 model from a local ``config.yml`` and ``.pth`` checkpoint; never download.

The published StyleTTS2 checkpoints load as they are (e.g. LibriTTS ``epochs_2nd_00020.pth``
with its ``config.yml``, LJSpeech ``epoch_2nd_00100.pth``). A checkpoint is a ``torch.save``
of ``{"net": {group: state_dict}}``: other top-level keys (``optimizer``, ``epoch``...) and
the groups inference does not need (``text_aligner``, ``pitch_extractor``, ``mpd``, ``msd``,
``wd``) are ignored, and the ``module.`` prefixes that ``DataParallel`` leaves are removed.
It is read with ``weights_only=True`` (no pickled code runs). Each group in
:data:`~voices.styletts2.model.GROUPS` must be there and match the model the config sizes,
key for key and shape for shape (the only keys tolerated beyond are the position and token
type id buffers that older ``transformers`` saved with PL-BERT); anything else is a
:class:`~pipeline.errors.ModelError` that names the file, the group and the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import ModelError
from voices.styletts2.config import StyleTTS2Config, load_config
from voices.styletts2.model import GROUPS, StyleTTS2Model

__all__ = ["load_model", "save_checkpoint"]

_SHOWN = 5
#: buffers some checkpoints hold that the model recomputes
_TOLERATED = {"bert": frozenset({"embeddings.position_ids", "embeddings.token_type_ids"})}


def _listing(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _strip(state: Mapping[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_model(
    checkpoint: str | Path, config: str | Path | StyleTTS2Config, device: str = "cpu"
) -> StyleTTS2Model:
    """The model ``config`` sizes with the weights of ``checkpoint``, in eval mode on ``device``."""
    settings = config if isinstance(config, StyleTTS2Config) else load_config(config)
    path = Path(checkpoint)
    if not path.is_file():
        raise ModelError(f"no StyleTTS2 checkpoint at {path}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds on a bad file
        raise ModelError(f"cannot read the StyleTTS2 checkpoint {path}: {error}") from error
    if not isinstance(saved, Mapping) or not isinstance(saved.get("net"), Mapping):
        raise ModelError(f"the StyleTTS2 checkpoint {path} has no 'net' dictionary of modules")
    net: Mapping[str, Any] = saved["net"]
    absent = [group for group in GROUPS if group not in net]
    if absent:
        raise ModelError(f"the StyleTTS2 checkpoint {path} lacks modules: {', '.join(absent)}")
    model = StyleTTS2Model(settings)
    for group in GROUPS:
        module = getattr(model, group)
        if not isinstance(net[group], Mapping):
            raise ModelError(f"the StyleTTS2 checkpoint {path} has no state dict for {group!r}")
        tolerated = _TOLERATED.get(group, frozenset())
        state = {k: v for k, v in _strip(net[group]).items() if k not in tolerated}
        expected = module.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing keys {_listing(missing)}")
            if unexpected:
                parts.append(f"unexpected keys {_listing(unexpected)}")
            raise ModelError(
                f"the StyleTTS2 checkpoint {path} does not fit the config in {group!r}: "
                + "; ".join(parts)
            )
        wrong = [
            f"{key} {tuple(state[key].shape)} (config: {tuple(value.shape)})"
            for key, value in expected.items()
            if tuple(getattr(state[key], "shape", ())) != tuple(value.shape)
        ]
        if wrong:
            raise ModelError(
                f"the StyleTTS2 checkpoint {path} does not fit the config in {group!r}: "
                f"shapes differ for {_listing(wrong)}"
            )
        module.load_state_dict(state)
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as error:
        raise ModelError(f"cannot move the StyleTTS2 model to {device}: {error}") from error
    return model.eval()


def save_checkpoint(model: StyleTTS2Model, path: str | Path) -> None:
    """Save ``model`` in the layout :func:`load_model` reads."""
    net = {group: getattr(model, group).state_dict() for group in GROUPS}
    torch.save({"net": net}, Path(path))
