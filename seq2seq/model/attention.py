"""Where attention is computed: one interface, several scorers.

Every scorer does the same four things for each output word i (Bahdanau et al. 2015, sec. 3.1):
the decoder state is the *query*, the encoder annotations h_j are the *keys* and *values*;
a similarity e_ij = score(query, key_j) is computed for every source position, normalised over
the real (unpadded) positions with a softmax, a_ij = exp(e_ij) / Σ_k exp(e_ik), and the context
is the weighted sum of the values, C_i = Σ_j a_ij h_j.

Everything that depends only on the source (the key projection U h_j, say) is computed once per
batch in :meth:`Attention.prepare`, not once per output word.

The "distracted" encoder-decoder is :class:`NoAttention`: the same interface, but the context is
the one fixed summary C of the whole source for every output word, and there are no weights.
:class:`MeanAttention` and :class:`TfidfAttention` mix the annotations with weights fixed by the
source alone (every word alike, or by its TF-IDF): a bag of words, refined or not, measured
beside the learned scorers.

Several queries may share one memory row: ``query`` then has ``g`` consecutive rows per source
sentence (beam search's ``beam`` prefixes, or all target steps of a sentence at once) and the
source side is neither copied nor read ``g`` times.

This is the definition that trains with ``model.kernels=reference``; with ``auto`` on CPU the
additive scorer runs as :class:`seq2seq.fast.modules.FastBahdanauAttention` (the same numbers,
held to these by the tests).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from seq2seq.data.tokenizer import EOS_ID
from seq2seq.model.encoding import EncoderOutput


@dataclass
class AttentionMemory:
    """The source side of attention, prepared once per batch."""

    keys: torch.Tensor  # (batch, src_len, key_size), already projected where the scorer can
    values: torch.Tensor  # (batch, src_len, value_size)
    mask: torch.Tensor  # (batch, src_len) True on real tokens

    def select(self, index: torch.Tensor) -> AttentionMemory:
        return AttentionMemory(self.keys[index], self.values[index], self.mask[index])


class Attention(nn.Module):
    """``query, memory → context, weights``; weights are (batch, heads, src_len) or None."""

    context_size: int
    # True when the context is exactly ``weights @ memory.values``: a linear map of the context
    # can then be applied to the values once per batch instead of once per output word (as
    # the fast kernels do).
    mixes_values = True

    def prepare(self, encoder: EncoderOutput) -> AttentionMemory:
        return AttentionMemory(encoder.states, encoder.states, encoder.mask)

    def scores(self, query: torch.Tensor, memory: AttentionMemory) -> torch.Tensor:
        """Similarities e_ij, (batch·g, src_len) for (batch·g, query_size) queries."""
        raise NotImplementedError

    def forward(
        self, query: torch.Tensor, memory: AttentionMemory
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch·g, query) queries → contexts (batch·g, context), weights (batch·g, 1, src)."""
        rows, (batch, src_len) = query.size(0), memory.mask.shape
        group = queries_per_row(query, memory)
        scores = self.scores(query, memory).view(batch, group, src_len)
        weights = masked_softmax(scores, memory.mask.unsqueeze(1))  # (batch, g, src_len)
        context = torch.bmm(weights, memory.values)  # (batch, g, value)
        return context.view(rows, -1), weights.view(rows, 1, src_len)


def queries_per_row(query: torch.Tensor, memory: AttentionMemory) -> int:
    """g: how many consecutive query rows share each memory row."""
    rows, batch = query.size(0), memory.mask.size(0)
    if rows % batch:
        raise ValueError(f"{rows} queries do not split evenly over {batch} memory rows")
    return rows // batch


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension with exactly zero weight where ``mask`` is False."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


def scaled_dot_product(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dropout: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ / √d_k) v for every head at once (Vaswani et al. 2017, eq. 1).

    The attention of multi-head scorers, of the self-attention encoder and of the Transformer
    decoder's self- and cross-attention: q (..., q_len, d_k), k and v (..., k_len, d_k); ``mask``
    broadcasts to (..., q_len, k_len), True where a query may look (None: everywhere). Returns
    the contexts (..., q_len, d_k) and the weights (..., q_len, k_len), exactly zero where
    ``mask`` is False; ``dropout`` drops weights (attention dropout) only on the way to v.
    """
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.size(-1))
    weights = torch.softmax(scores, dim=-1) if mask is None else masked_softmax(scores, mask)
    mixed = weights if dropout is None else dropout(weights)
    return torch.matmul(mixed, v), weights


class NoAttention(Attention):
    """The distracted model: one fixed context C (the encoder summary) for every output word."""

    mixes_values = False

    def __init__(self, value_size: int) -> None:
        super().__init__()
        self.context_size = value_size

    def prepare(self, encoder: EncoderOutput) -> AttentionMemory:
        summary = encoder.summary.unsqueeze(1)  # (batch, 1, value)
        return AttentionMemory(summary, summary, encoder.mask[:, :1])

    def forward(
        self, query: torch.Tensor, memory: AttentionMemory
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        group = queries_per_row(query, memory)
        summary = memory.values[:, 0]
        return (summary if group == 1 else summary.repeat_interleave(group, dim=0)), None


class BahdanauAttention(Attention):
    """Additive attention, Bahdanau et al. 2015, eq. A.1.2: e_ij = vᵀ tanh(W s_{i-1} + U h_j).

    U h_j does not depend on the output position, so it is computed once per batch in
    :meth:`prepare`; each step only projects the query and adds.
    """

    def __init__(self, query_size: int, value_size: int, attention_size: int) -> None:
        super().__init__()
        self.query_proj = nn.Linear(query_size, attention_size, bias=False)  # W
        self.key_proj = nn.Linear(value_size, attention_size, bias=False)  # U
        self.energy = nn.Linear(attention_size, 1, bias=False)  # v
        self.context_size = value_size

    def prepare(self, encoder: EncoderOutput) -> AttentionMemory:
        return AttentionMemory(self.key_proj(encoder.states), encoder.states, encoder.mask)

    def scores(self, query: torch.Tensor, memory: AttentionMemory) -> torch.Tensor:
        batch, src_len, size = memory.keys.shape
        projected = self.query_proj(query).view(batch, -1, 1, size)  # (batch, g, 1, att) W s
        keys = memory.keys.unsqueeze(1)  # (batch, 1, src, att) U h_j
        energies = self.energy(torch.tanh(projected + keys))  # (batch, g, src, 1)
        return energies.view(-1, src_len)  # (batch·g, src)


class DotAttention(Attention):
    """Luong et al. 2015 "dot": e_ij = s_iᵀ h_j (query and annotations must have equal size)."""

    def __init__(self, query_size: int, value_size: int) -> None:
        super().__init__()
        if query_size != value_size:
            raise ValueError(
                f"{type(self).__name__} needs the decoder size ({query_size}) to equal the encoder "
                f"output size ({value_size}); use model/attention=general or change the sizes"
            )
        self.context_size = value_size
        self.scale = 1.0

    def scores(self, query: torch.Tensor, memory: AttentionMemory) -> torch.Tensor:
        batch, src_len, size = memory.keys.shape
        grouped = query.view(batch, -1, size).transpose(1, 2)  # (batch, size, g)
        scores = torch.bmm(memory.keys, grouped)  # (batch, src, g)
        return scores.transpose(1, 2).reshape(-1, src_len) * self.scale


class ScaledDotAttention(DotAttention):
    """Vaswani et al. 2017: e_ij = s_iᵀ h_j / √d, which keeps the softmax out of saturation."""

    def __init__(self, query_size: int, value_size: int) -> None:
        super().__init__(query_size, value_size)
        self.scale = 1.0 / math.sqrt(value_size)


class GeneralAttention(DotAttention):
    """Luong et al. 2015 "general" (bilinear): e_ij = s_iᵀ W_a h_j.

    W_a h_j is projected once per batch, which leaves a dot product per step.
    """

    def __init__(self, query_size: int, value_size: int) -> None:
        nn.Module.__init__(self)
        self.key_proj = nn.Linear(value_size, query_size, bias=False)  # W_a
        self.context_size = value_size
        self.scale = 1.0

    def prepare(self, encoder: EncoderOutput) -> AttentionMemory:
        keys = self.key_proj(encoder.states)  # (batch, src_len, query) W_a h_j
        return AttentionMemory(keys, encoder.states, encoder.mask)


class MultiHeadAttention(Attention):
    """Vaswani et al. 2017: H heads of scaled dot attention on learned projections.

    Keys and values are projected once per batch. Weights come back per head,
    (batch, heads, src_len); plots show their mean. ``dropout`` drops weights on the way to the
    values (the Transformer's attention dropout); the weights returned are the undropped ones.
    """

    mixes_values = False

    def __init__(
        self,
        query_size: int,
        value_size: int,
        attention_size: int,
        heads: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if attention_size % heads:
            raise ValueError(
                f"model.attention.multihead.size ({attention_size}) must be divisible by "
                f"model.attention.multihead.heads ({heads})"
            )
        self.heads, self.head_size = heads, attention_size // heads
        self.query_proj = nn.Linear(query_size, attention_size, bias=False)
        self.key_proj = nn.Linear(value_size, attention_size, bias=False)
        self.value_proj = nn.Linear(value_size, attention_size, bias=False)
        self.output_proj = nn.Linear(attention_size, attention_size, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.context_size = attention_size

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.head_size).transpose(1, 2)

    def prepare(self, encoder: EncoderOutput) -> AttentionMemory:
        keys = self._split_heads(self.key_proj(encoder.states))  # (batch, heads, src, head)
        values = self._split_heads(self.value_proj(encoder.states))
        return AttentionMemory(keys, values, encoder.mask)

    def forward(
        self, query: torch.Tensor, memory: AttentionMemory
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows, (batch, src_len) = query.size(0), memory.mask.shape
        q = self.query_proj(query)
        group = queries_per_row(query, memory)
        q = q.view(batch, group, self.heads, self.head_size).transpose(1, 2)  # (b, heads, g, head)
        mask = memory.mask[:, None, None, :]
        context, weights = scaled_dot_product(q, memory.keys, memory.values, mask, self.dropout)
        context = context.transpose(1, 2)  # (batch, g, heads, head); weights (batch, heads, g, src)
        context = self.output_proj(context.reshape(rows, -1))
        return context, weights.transpose(1, 2).reshape(rows, self.heads, src_len)


# ----------------------------------------------------------------------------------------------
# Fixed-weight contexts: C_i = Σ_j w_j h_j with weights that no output word chooses.
#
# The explainer calls attention "a refined bag of words" and asks whether TF-IDF weights over the
# source words would not do as well. These scorers answer it behind the same interface: their
# weights depend on the source sentence alone, so every output word gets the same context. Each
# is the base forward with a score e_j = log w_j that ignores the query: the masked softmax then
# gives exactly w_j / Σ_k w_k on real tokens and 0 on padding, and heatmaps show the fixed rows.


class FixedAttention(Attention):
    """Weights from the source alone, the same for every output word: e_ij = e_j."""

    def __init__(self, value_size: int) -> None:
        super().__init__()
        self.context_size = value_size

    def source_scores(self, encoder: EncoderOutput) -> torch.Tensor:
        """e_j = log w_j up to a constant, (batch, src_len); padding is masked afterwards."""
        raise NotImplementedError

    def prepare(self, encoder: EncoderOutput) -> AttentionMemory:
        keys = self.source_scores(encoder).float().unsqueeze(-1)  # (batch, src_len, 1)
        return AttentionMemory(keys, encoder.states, encoder.mask)

    def scores(self, query: torch.Tensor, memory: AttentionMemory) -> torch.Tensor:
        batch, src_len, _ = memory.keys.shape
        group = queries_per_row(query, memory)
        return (
            memory.keys.view(batch, 1, src_len).expand(batch, group, src_len).reshape(-1, src_len)
        )


class MeanAttention(FixedAttention):
    """C_i = (1/T_x) Σ_j h_j over the T_x real tokens: every word alike, every step the same."""

    def source_scores(self, encoder: EncoderOutput) -> torch.Tensor:
        return torch.zeros(encoder.mask.shape, device=encoder.mask.device)


class TfidfAttention(FixedAttention):
    """C_i = Σ_j w_j h_j, w_j = tf(x_j) · idf(x_j) / Σ_k tf(x_k) · idf(x_k) for every i.

    tf(p) counts piece p in this sentence (dividing by the length would cancel in the
    normalisation), so a piece that occurs twice weighs twice at each occurrence: the TF-IDF
    of the piece, taken literally, at every position that holds it. idf(p) = ln((1 + N) /
    (1 + df(p))) + 1 over the N training sources (the smoothed IDF of scikit-learn), never 0, so
    every real token keeps some weight. Until :meth:`fit` it is 1 for every piece.
    """

    idf: torch.Tensor

    def __init__(self, value_size: int, source_vocab_size: int) -> None:
        super().__init__(value_size)
        # A buffer, not a parameter: saved in checkpoints, never trained.
        self.register_buffer("idf", torch.ones(source_vocab_size))

    @torch.no_grad()
    def fit(self, sources: Sequence[Sequence[int]]) -> None:
        """The IDF table from the training sources' piece ids (each sentence one document).

        The encoder reads every source with EOS at its end, so EOS counts in every document:
        the lowest IDF, as any piece that every sentence holds.
        """
        distinct = [piece for ids in sources for piece in {*ids, EOS_ID}]
        df = torch.bincount(torch.tensor(distinct, dtype=torch.long), minlength=len(self.idf))
        self.idf.copy_(torch.log((1.0 + len(sources)) / (1.0 + df.double())) + 1.0)

    def source_scores(self, encoder: EncoderOutput) -> torch.Tensor:
        tokens, mask = encoder.tokens, encoder.mask
        assert tokens is not None, "TF-IDF weights need the source piece ids (EncoderOutput.tokens)"
        same = (tokens.unsqueeze(2) == tokens.unsqueeze(1)) & mask.unsqueeze(1)  # (b, src, src)
        tf = same.sum(-1).clamp(min=1)  # occurrences of x_j among the real tokens
        return torch.log(tf * self.idf[tokens])


ATTENTION_TYPES = ("none", "bahdanau", "dot", "general", "scaled_dot", "multihead", "mean", "tfidf")


def build_attention(
    name: str,
    query_size: int,
    value_size: int,
    attention_size: int,
    heads: int,
    dropout: float = 0.0,
    source_vocab_size: int | None = None,
) -> Attention:
    """The scorer named by ``model.attention.name`` (``dropout``: multihead's on its weights;
    ``source_vocab_size``: the size of tfidf's IDF table)."""
    if name == "none":
        return NoAttention(value_size)
    if name == "bahdanau":
        return BahdanauAttention(query_size, value_size, attention_size)
    if name == "dot":
        return DotAttention(query_size, value_size)
    if name == "scaled_dot":
        return ScaledDotAttention(query_size, value_size)
    if name == "general":
        return GeneralAttention(query_size, value_size)
    if name == "multihead":
        return MultiHeadAttention(query_size, value_size, attention_size, heads, dropout)
    if name == "mean":
        return MeanAttention(value_size)
    if name == "tfidf":
        if source_vocab_size is None:
            raise ValueError("model/attention=tfidf needs the source vocabulary size")
        return TfidfAttention(value_size, source_vocab_size)
    raise ValueError(f"model.attention.name must be one of {ATTENTION_TYPES}, got {name!r}")


def fit_source_idf(model: nn.Module, sources: Iterable[Sequence[int]]) -> bool:
    """Fit every TF-IDF scorer in ``model`` on ``sources``; False when there is none."""
    scorers = [m for m in model.modules() if isinstance(m, TfidfAttention)]
    sentences = list(sources)
    for scorer in scorers:
        scorer.fit(sentences)
    return bool(scorers)
