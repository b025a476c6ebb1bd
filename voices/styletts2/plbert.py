"""PL-BERT, StyleTTS2's phoneme-level BERT: an ALBERT encoder, written here in plain torch.

The parameter names are those of ``transformers``' ``AlbertModel`` (which the published
checkpoints were saved from), so its ``bert`` group loads key for key without depending on
``transformers``: factorised embeddings (``embedding_size``, then a projection to
``hidden_size``), one shared layer applied ``num_hidden_layers`` times, post-LayerNorm
residuals, the tanh-approximated GELU (ALBERT's ``gelu_new``) and an (unused) pooler.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from voices.styletts2.config import PLBertParams

__all__ = ["PLBert"]


class _Embeddings(nn.Module):
    def __init__(self, p: PLBertParams) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(p.vocab_size, p.embedding_size)
        self.position_embeddings = nn.Embedding(p.max_position_embeddings, p.embedding_size)
        self.token_type_embeddings = nn.Embedding(p.type_vocab_size, p.embedding_size)
        self.LayerNorm = nn.LayerNorm(p.embedding_size, eps=p.layer_norm_eps)

    def forward(self, tokens: Tensor) -> Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = (
            self.word_embeddings(tokens)
            + self.position_embeddings(positions)[None]
            + self.token_type_embeddings.weight[0]
        )
        out: Tensor = self.LayerNorm(x)
        return out


class _Attention(nn.Module):
    def __init__(self, p: PLBertParams) -> None:
        super().__init__()
        size = p.hidden_size
        self.heads = p.num_attention_heads
        self.query = nn.Linear(size, size)
        self.key = nn.Linear(size, size)
        self.value = nn.Linear(size, size)
        self.dense = nn.Linear(size, size)
        self.LayerNorm = nn.LayerNorm(size, eps=p.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, size = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.view(batch, length, self.heads, size // self.heads).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        context = F.scaled_dot_product_attention(q, k, v)
        context = context.transpose(1, 2).reshape(batch, length, size)
        out: Tensor = self.LayerNorm(x + self.dense(context))
        return out


class _Layer(nn.Module):
    def __init__(self, p: PLBertParams) -> None:
        super().__init__()
        self.attention = _Attention(p)
        self.ffn = nn.Linear(p.hidden_size, p.intermediate_size)
        self.ffn_output = nn.Linear(p.intermediate_size, p.hidden_size)
        self.full_layer_layer_norm = nn.LayerNorm(p.hidden_size, eps=p.layer_norm_eps)
        self.approximate = "tanh" if p.hidden_act == "gelu_new" else "none"

    def forward(self, x: Tensor) -> Tensor:
        h = self.attention(x)
        ff = self.ffn_output(F.gelu(self.ffn(h), approximate=self.approximate))
        out: Tensor = self.full_layer_layer_norm(ff + h)
        return out


class _LayerGroup(nn.Module):
    def __init__(self, p: PLBertParams) -> None:
        super().__init__()
        self.albert_layers = nn.ModuleList([_Layer(p)])


class _Encoder(nn.Module):
    def __init__(self, p: PLBertParams) -> None:
        super().__init__()
        self.embedding_hidden_mapping_in = nn.Linear(p.embedding_size, p.hidden_size)
        self.albert_layer_groups = nn.ModuleList([_LayerGroup(p)])
        self.repeats = p.num_hidden_layers

    def forward(self, x: Tensor) -> Tensor:
        h: Tensor = self.embedding_hidden_mapping_in(x)
        group = self.albert_layer_groups[0]
        assert isinstance(group, _LayerGroup)
        layer = group.albert_layers[0]
        for _ in range(self.repeats):
            h = layer(h)
        return h


class PLBert(nn.Module):
    """Tokens ``[B, T]`` (every position attended) to hidden states ``[B, T, hidden_size]``."""

    def __init__(self, p: PLBertParams) -> None:
        super().__init__()
        self.embeddings = _Embeddings(p)
        self.encoder = _Encoder(p)
        self.pooler = nn.Linear(p.hidden_size, p.hidden_size)  # in the checkpoint, not used

    def forward(self, tokens: Tensor) -> Tensor:
        out: Tensor = self.encoder(self.embeddings(tokens))
        return out
