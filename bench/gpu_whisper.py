"""Whisper at full size with random weights, for the GPU benchmark (:mod:`bench.gpu`).

No weights exist on the benchmark machines, so the model is Whisper's architecture with random
weights: :data:`LARGE_V3_TURBO` is openai/whisper-large-v3-turbo's published ``config.json``
(32 encoder layers, 4 decoder layers, d_model 1280, 20 heads, FFN 5120, 128 mel bins, vocabulary
51866, 1500 source and 448 target positions). Two backends run it:

- ``ctranslate2``: what Voxline runs (faster-whisper's CTranslate2 model). The torch module's
  random weights are written into CTranslate2's own ``WhisperSpec`` (no transformers needed)
  and converted to a temporary model directory, then loaded as ``ctranslate2.models.Whisper``
  and driven as :mod:`pipeline.asr.decoder` does: ``encode`` a 10 s window, then ``generate``.
- ``torch``: the same architecture in plain torch (the parameter names are Hugging Face's
  ``WhisperForConditionalGeneration``'s), greedy decoding with a key/value cache and
  ``scaled_dot_product_attention``: a stand-in where CTranslate2 cannot run on the device.

Every decode is one 10 s window (Voxline's ``min_window``: 1000 mel frames, 500 encoder
positions; CTranslate2's encoder takes any length, see :mod:`pipeline.asr.decoder`) and exactly
``decode_tokens`` greedy tokens after the 4-token prompt (start of transcript, language,
transcribe, no timestamps): end of text is suppressed, so random weights give a defined cost.

Run ``python -m bench.gpu_whisper --probe cuda`` to learn whether CTranslate2 runs on a device
(a missing CUDA library can abort the process, so :mod:`bench.gpu` asks a child process), and
``--compare`` to check that the conversion is faithful: a tiny model's encoder output and
greedy tokens, torch against CTranslate2 on the CPU.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LARGE_V3_TURBO", "TINY", "WhisperSize", "build_ctranslate2", "build_torch", "count",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class WhisperSize:
    name: str
    n_mels: int
    d_model: int
    heads: int
    ffn: int
    encoder_layers: int
    decoder_layers: int
    vocab: int
    source_positions: int
    target_positions: int
    languages: int
    timestamps: int

    @property
    def eot(self) -> int:
        """``<|endoftext|>``: the first id after the text tokens (specials follow it)."""
        return self.vocab - self.timestamps - self.languages - 8

    @property
    def prompt(self) -> list[int]:
        """Start of transcript, the first language, transcribe, no timestamps."""
        sot = self.eot + 1
        transcribe = sot + self.languages + 2
        return [sot, sot + 1, transcribe, transcribe + 4]

    def vocabulary(self) -> list[str]:
        """Token strings with Whisper's special tokens where CTranslate2 looks for them."""
        words = [f"t{i}" for i in range(self.eot)]
        words += ["<|endoftext|>", "<|startoftranscript|>"]
        words += [f"<|l{i}|>" for i in range(self.languages)]
        words += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>"]
        words += ["<|nospeech|>", "<|notimestamps|>"]
        words += [f"<|{i * 0.02:.2f}|>" for i in range(self.timestamps)]
        assert len(words) == self.vocab
        return words

    def parameters(self) -> dict[str, int]:
        return {
            "n_mels": self.n_mels, "d_model": self.d_model, "heads": self.heads, "ffn": self.ffn,
            "encoder_layers": self.encoder_layers, "decoder_layers": self.decoder_layers,
            "vocab": self.vocab, "source_positions": self.source_positions,
            "target_positions": self.target_positions,
        }  # fmt: skip


#: openai/whisper-large-v3-turbo's config.json (100 languages and 1501 timestamps: v3's vocabulary)
LARGE_V3_TURBO = WhisperSize(
    "whisper-large-v3-turbo", n_mels=128, d_model=1280, heads=20, ffn=5120, encoder_layers=32,
    decoder_layers=4, vocab=51866, source_positions=1500, target_positions=448, languages=100,
    timestamps=1501,
)  # fmt: skip
#: a few kilobytes of the same shape, for the CPU smoke run
TINY = WhisperSize(
    "whisper-tiny-random", n_mels=16, d_model=32, heads=2, ffn=64, encoder_layers=2,
    decoder_layers=1, vocab=80, source_positions=1500, target_positions=64, languages=2,
    timestamps=20,
)  # fmt: skip
#: mel frames of one 10 s window (100 frames a second)
WINDOW_FRAMES = 1000


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def split(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, causal: bool = False) -> Tensor:
        out = F.scaled_dot_product_attention(self.split(q), k, v, is_causal=causal)
        b, h, t, e = out.shape
        result: Tensor = self.out_proj(out.transpose(1, 2).reshape(b, t, h * e))
        return result


class EncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn = Attention(d, heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ffn)
        self.fc2 = nn.Linear(ffn, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x: Tensor) -> Tensor:
        h = self.self_attn_layer_norm(x)
        a = self.self_attn
        x = x + a.attend(a.q_proj(h), a.split(a.k_proj(h)), a.split(a.v_proj(h)))
        out: Tensor = x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        return out


class DecoderLayer(EncoderLayer):
    def __init__(self, d: int, heads: int, ffn: int) -> None:
        super().__init__(d, heads, ffn)
        self.encoder_attn = Attention(d, heads)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)

    def step(self, x: Tensor, cache: Tensor, start: int, cross: tuple[Tensor, Tensor]) -> Tensor:
        """``x`` ``[B, t, d]`` at positions ``start..start+t``; ``cache`` ``[2, B, H, T, e]``."""
        a = self.self_attn
        h = self.self_attn_layer_norm(x)
        end = start + x.shape[1]
        cache[0, :, :, start:end] = a.split(a.k_proj(h))
        cache[1, :, :, start:end] = a.split(a.v_proj(h))
        x = x + a.attend(a.q_proj(h), cache[0, :, :, :end], cache[1, :, :, :end], start == 0)
        c = self.encoder_attn
        x = x + c.attend(c.q_proj(self.encoder_attn_layer_norm(x)), *cross)
        out: Tensor = x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))
        return out


class Encoder(nn.Module):
    def __init__(self, s: WhisperSize) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(s.n_mels, s.d_model, 3, padding=1)
        self.conv2 = nn.Conv1d(s.d_model, s.d_model, 3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(s.source_positions, s.d_model)
        self.layers = nn.ModuleList(
            EncoderLayer(s.d_model, s.heads, s.ffn) for _ in range(s.encoder_layers)
        )
        self.layer_norm = nn.LayerNorm(s.d_model)

    def forward(self, mel: Tensor) -> Tensor:
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        x = x + self.embed_positions.weight[: x.shape[1]]
        for layer in self.layers:
            x = layer(x)
        out: Tensor = self.layer_norm(x)
        return out


class Decoder(nn.Module):
    def __init__(self, s: WhisperSize) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(s.vocab, s.d_model)
        self.embed_positions = nn.Embedding(s.target_positions, s.d_model)
        self.layers = nn.ModuleList(
            DecoderLayer(s.d_model, s.heads, s.ffn) for _ in range(s.decoder_layers)
        )
        self.layer_norm = nn.LayerNorm(s.d_model)


class TorchWhisper(nn.Module):
    """Whisper in torch; :meth:`transcribe` is one batch of windows, greedy, fixed length."""

    def __init__(self, size: WhisperSize) -> None:
        super().__init__()
        self.size = size
        self.encoder = Encoder(size)
        self.decoder = Decoder(size)

    def randomize(self) -> TorchWhisper:
        """Weights ~ N(0, 0.02), biases 0, norms 1 (activations stay finite in float16)."""
        for name, p in self.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                nn.init.ones_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, std=0.02)
        return self

    def transcribe(self, mel: Tensor, tokens: int) -> Tensor:
        """``tokens`` greedy tokens ``[B, tokens]`` for log-mel windows ``[B, n_mels, frames]``."""
        s = self.size
        encoded = self.encoder(mel)
        b = mel.shape[0]
        prompt = torch.tensor(s.prompt, device=mel.device).expand(b, -1)
        layers = [layer for layer in self.decoder.layers if isinstance(layer, DecoderLayer)]
        cross = [
            (layer.encoder_attn.split(layer.encoder_attn.k_proj(encoded)),
             layer.encoder_attn.split(layer.encoder_attn.v_proj(encoded)))
            for layer in layers
        ]  # fmt: skip
        shape = (2, b, s.heads, prompt.shape[1] + tokens, s.d_model // s.heads)
        caches = [mel.new_empty(shape) for _ in layers]
        out: list[Tensor] = []
        ids, start = prompt, 0
        embed = self.decoder.embed_tokens.weight
        for _ in range(tokens):
            end = start + ids.shape[1]
            x = self.decoder.embed_tokens(ids) + self.decoder.embed_positions.weight[start:end]
            for layer, cache, kv in zip(layers, caches, cross, strict=True):
                x = layer.step(x, cache, start, kv)
            logits = self.decoder.layer_norm(x[:, -1]) @ embed.T
            logits[:, s.eot] = -math.inf
            ids, start = logits.argmax(dim=-1, keepdim=True), end
            out.append(ids)
        return torch.cat(out, dim=1)


def build_torch(size: WhisperSize, device: str, dtype: torch.dtype) -> TorchWhisper:
    with torch.device(device):
        model = TorchWhisper(size).randomize()
    return model.to(dtype).eval()


def _linear(spec: Any, weight: Tensor, bias: Tensor | None) -> None:
    spec.weight = weight.detach().float().cpu().numpy()
    if bias is not None:
        spec.bias = bias.detach().float().cpu().numpy()


def _norm(spec: Any, norm: nn.LayerNorm) -> None:
    spec.gamma = norm.weight.detach().float().cpu().numpy()
    spec.beta = norm.bias.detach().float().cpu().numpy()


def _attention(spec: Any, a: Attention, fused: bool) -> None:
    """Query, key and value fused (self-attention) or query alone, then key and value."""
    zeros = torch.zeros_like(a.q_proj.bias)
    parts = [(a.q_proj.weight, a.q_proj.bias), (a.k_proj.weight, zeros),
             (a.v_proj.weight, a.v_proj.bias)]  # fmt: skip
    groups = [parts] if fused else [parts[:1], parts[1:]]
    for target, group in zip(spec.linear, groups, strict=False):
        _linear(target, torch.cat([w for w, _ in group]), torch.cat([b for _, b in group]))
    _linear(spec.linear[-1], a.out_proj.weight, a.out_proj.bias)


def _layer(spec: Any, layer: nn.Module) -> None:
    assert isinstance(layer, EncoderLayer)
    _attention(spec.self_attention, layer.self_attn, fused=True)
    _norm(spec.self_attention.layer_norm, layer.self_attn_layer_norm)
    if isinstance(layer, DecoderLayer):
        _attention(spec.attention, layer.encoder_attn, fused=False)
        _norm(spec.attention.layer_norm, layer.encoder_attn_layer_norm)
    _linear(spec.ffn.linear_0, layer.fc1.weight, layer.fc1.bias)
    _linear(spec.ffn.linear_1, layer.fc2.weight, layer.fc2.bias)
    _norm(spec.ffn.layer_norm, layer.final_layer_norm)


def _spec(model: TorchWhisper) -> Any:
    """CTranslate2's ``WhisperSpec`` holding ``model``'s weights."""
    from ctranslate2.specs import whisper_spec

    s = model.size
    spec = whisper_spec.WhisperSpec(s.encoder_layers, s.heads, s.decoder_layers, s.heads)
    encoder, decoder = model.encoder, model.decoder
    for target, conv in ((spec.encoder.conv1, encoder.conv1), (spec.encoder.conv2, encoder.conv2)):
        _linear(target, conv.weight, conv.bias)
    spec.encoder.position_encodings.encodings = _numpy(encoder.embed_positions.weight)
    _norm(spec.encoder.layer_norm, encoder.layer_norm)
    for target, layer in zip(spec.encoder.layer, encoder.layers, strict=True):
        _layer(target, layer)
    spec.decoder.embeddings.weight = _numpy(decoder.embed_tokens.weight)
    spec.decoder.position_encodings.encodings = _numpy(decoder.embed_positions.weight)
    _norm(spec.decoder.layer_norm, decoder.layer_norm)
    spec.decoder.projection.weight = _numpy(decoder.embed_tokens.weight)
    for target, layer in zip(spec.decoder.layer, decoder.layers, strict=True):
        _layer(target, layer)
    first = s.eot + 2
    spec.config.suppress_ids = []
    spec.config.suppress_ids_begin = [s.eot]
    spec.config.lang_ids = list(range(first, first + s.languages))
    spec.config.alignment_heads = [(s.decoder_layers - 1, h) for h in range(s.heads)]
    spec.register_vocabulary(s.vocabulary())
    return spec


def _numpy(t: Tensor) -> np.ndarray[Any, Any]:
    return t.detach().float().cpu().numpy()


class CTranslate2Whisper:
    """A converted random Whisper in CTranslate2; :meth:`transcribe` as the decoder drives it."""

    def __init__(self, size: WhisperSize, folder: Path, device: str, compute_type: str) -> None:
        import ctranslate2

        self.size = size
        self.parameters = 0  # set by build_ctranslate2
        self._ct2 = ctranslate2
        kind, _, index = device.partition(":")
        self.model = ctranslate2.models.Whisper(
            str(folder), device=kind, device_index=int(index or 0), compute_type=compute_type
        )

        self._max_length: dict[int, int] = {}

    def transcribe(self, mel: np.ndarray[Any, Any], tokens: int) -> list[list[int]]:
        features = self._ct2.StorageView.from_array(np.ascontiguousarray(mel))
        encoded = self.model.encode(features, to_cpu=False)
        if tokens not in self._max_length:
            self._max_length[tokens] = self._calibrate(encoded, tokens)
        return self._generate(encoded, mel.shape[0], self._max_length[tokens])

    def _generate(self, encoded: Any, batch: int, max_length: int) -> list[list[int]]:
        results = self.model.generate(
            encoded,
            [self.size.prompt] * batch,
            beam_size=1,
            max_length=max_length,
            suppress_blank=False,
            suppress_tokens=[self.size.eot],
        )
        return [list(r.sequences_ids[0]) for r in results]

    def _calibrate(self, encoded: Any, tokens: int) -> int:
        """The ``max_length`` that yields exactly ``tokens`` tokens after the prompt.

        CTranslate2 4.x generates ``max_length // 2`` tokens after a 4-token prompt, not
        ``max_length - 4`` (measured with the embedded base model too), so it is found here.
        """
        batch = encoded.shape[0]
        prompt = len(self.size.prompt)
        for max_length in (prompt + tokens, 2 * tokens, 2 * (prompt + tokens)):
            got = {len(t) for t in self._generate(encoded, batch, max_length)}
            if got == {tokens}:
                return max_length
        raise RuntimeError(f"no max_length makes CTranslate2 generate exactly {tokens} tokens")


def build_ctranslate2(
    size: WhisperSize, device: str, compute_type: str, folder: Path
) -> CTranslate2Whisper:
    """Random weights (built on the CPU), converted into ``folder``, loaded on ``device``."""
    from ctranslate2.converters.converter import Converter

    random = build_torch(size, "cpu", torch.float32)
    spec = _spec(random)

    class _Random(Converter):  # type: ignore[misc]  # ctranslate2 ships no types
        def _load(self) -> Any:
            return spec

    _Random().convert(str(folder), quantization=compute_type, force=True)
    model = CTranslate2Whisper(size, folder, device, compute_type)
    model.parameters = count(random)
    return model


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _probe(device: str) -> None:
    """Exit 0 when a tiny CTranslate2 Whisper decodes on ``device`` (the parent's probe)."""
    compute = "float16" if device.startswith("cuda") else "float32"
    with tempfile.TemporaryDirectory() as folder:
        model = build_ctranslate2(TINY, device, compute, Path(folder) / "model")
        mel = np.zeros((1, TINY.n_mels, WINDOW_FRAMES), dtype=np.float32)
        got = model.transcribe(mel, 4)
    print(f"ctranslate2 decodes on {device}: {got[0]}")


def _compare() -> bool:
    """Whether the converted CTranslate2 model computes what the torch model does (CPU, tiny).

    Weights of a larger spread than :meth:`TorchWhisper.randomize` gives, so that greedy
    decoding wanders over the vocabulary instead of repeating one token.
    """
    import ctranslate2
    from ctranslate2.converters.converter import Converter

    torch.manual_seed(3)
    model = TorchWhisper(TINY).eval()
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    mel = torch.randn(2, TINY.n_mels, WINDOW_FRAMES)
    with torch.inference_mode():
        encoded = model.encoder(mel).numpy()
        tokens = model.transcribe(mel, 12).tolist()
    spec = _spec(model)

    class _Random(Converter):  # type: ignore[misc]  # ctranslate2 ships no types
        def _load(self) -> Any:
            return spec

    with tempfile.TemporaryDirectory() as folder:
        _Random().convert(f"{folder}/model", quantization="float32", force=True)
        ct2 = CTranslate2Whisper(TINY, Path(folder) / "model", "cpu", "float32")
        features = ctranslate2.StorageView.from_array(mel.numpy())
        difference = float(np.abs(np.asarray(ct2.model.encode(features)) - encoded).max())
        decoded = ct2.transcribe(mel.numpy(), 12)
    print(f"encoder outputs differ by at most {difference:.2e}")
    print(f"torch {tokens}\nctranslate2 {decoded}")
    return difference < 1e-4 and decoded == tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--probe", metavar="DEVICE", help="decode a tiny model on DEVICE")
    what.add_argument(
        "--compare", action="store_true", help="CTranslate2 against torch, tiny, on the CPU"
    )
    args = parser.parse_args(argv)
    if args.compare:
        return 0 if _compare() else 1
    _probe(args.probe)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
