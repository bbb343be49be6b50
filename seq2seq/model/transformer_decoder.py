"""The Transformer decoder (Vaswani et al. 2017, sec. 3.1), layer norm first (Xiong et al. 2020).

Each layer reads the target prefix three ways, each block added to a residual stream:

    x ← x + SelfAttention(LN(x))   every earlier output word, never a later one (causal mask);
    x ← x + CrossAttention(LN(x))  the annotations h_j: the explainer's C_i = Σ_j a_ij h_j,
                                   one scorer from :mod:`seq2seq.model.attention` per layer;
    x ← x + W_2 ReLU(W_1 LN(x)).

Nothing in a layer waits for the previous output word: in training all target positions run at
once, which is the explainer's second claim for self-attention (an RNN decoder must walk the
target). Decoding still goes one word at a time, but keeps each layer's keys and values of the
words already written (:class:`TransformerState`) so a step costs one position, not the prefix.

The alignment a heatmap shows is one layer's cross-attention (``alignment_layer``), averaged over
heads; :meth:`TransformerDecoder.cross_attention` gives every layer's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from seq2seq.data.tokenizer import PAD_ID
from seq2seq.model.attention import Attention, AttentionMemory, NoAttention, scaled_dot_product
from seq2seq.model.encoding import EncoderOutput
from seq2seq.model.feed_forward import feed_forward
from seq2seq.model.positions import RotaryPositions, stack_positions


@dataclass
class TransformerState:
    """What decoding keeps between output words: each layer's self-attention keys and values
    of the prefix, (rows, heads, prefix, head_size) each."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int  # words in the prefix (BOS included): the position of the next one

    def select(self, index: torch.Tensor) -> TransformerState:
        return TransformerState(
            [k[index] for k in self.keys], [v[index] for v in self.values], self.length
        )


@dataclass
class TransformerMemory:
    """The source side, prepared once per batch: each layer's cross-attention memory."""

    layers: list[AttentionMemory]

    def select(self, index: torch.Tensor) -> TransformerMemory:
        return TransformerMemory([memory.select(index) for memory in self.layers])


class TransformerDecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over the encoder and a feed-forward block."""

    def __init__(
        self,
        size: int,
        heads: int,
        ff_size: int,
        cross_attention: Attention,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
        rotary: RotaryPositions | None,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.self_attention_norm = nn.LayerNorm(size)
        self.qkv_proj = nn.Linear(size, 3 * size)  # W_Q, W_K, W_V of all heads in one product
        self.self_output_proj = nn.Linear(size, size)  # W_O
        self.cross_attention_norm = nn.LayerNorm(size)
        self.cross_attention = cross_attention
        # Scorers whose context is not already size wide (e.g. the annotations themselves).
        self.cross_output_proj = (
            nn.Identity()
            if cross_attention.context_size == size
            else nn.Linear(cross_attention.context_size, size)
        )
        self.feed_forward_norm = nn.LayerNorm(size)
        self.feed_forward = feed_forward(size, ff_size, activation_dropout)
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = nn.Dropout(attention_dropout)
        self.rotary = rotary

    def forward(
        self,
        x: torch.Tensor,
        memory: AttentionMemory,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor | None]:
        """``x`` (batch, steps, size): all target positions (training), or the next one after
        the prefix whose keys and values are ``cache`` (decoding).

        Returns the new x, the self-attention keys and values of the prefix including ``x``,
        and the cross-attention weights (batch, steps, heads, src_len) or None.
        """
        batch, steps, size = x.shape
        qkv = self.qkv_proj(self.self_attention_norm(x)).view(batch, steps, 3, self.heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, steps, head_size)
        start = 0 if cache is None else cache[0].size(2)
        if self.rotary is not None:
            q, k = self.rotary(q, start), self.rotary(k, start)
        if cache is None:  # all positions at once: position i sees positions 0..i only
            causal = torch.ones(steps, steps, dtype=torch.bool, device=x.device).tril_()
        else:  # one new position: it may see the whole prefix
            causal = None
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        context, _ = scaled_dot_product(q, k, v, causal, self.attention_dropout)
        context = context.transpose(1, 2).reshape(batch, steps, size)
        x = x + self.dropout(self.self_output_proj(context))

        # Cross-attention: each sentence's steps are consecutive queries sharing its memory row.
        query = self.cross_attention_norm(x).reshape(batch * steps, size)
        context, weights = self.cross_attention(query, memory)
        context = self.cross_output_proj(context).view(batch, steps, -1)
        x = x + self.dropout(context)
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        if weights is not None:
            weights = weights.view(batch, steps, *weights.shape[1:])
        return x, (k, v), weights


class TransformerDecoder(nn.Module):
    """Target embedding (+ positions) → :class:`TransformerDecoderLayer` stack → layer norm →
    output layer (optionally the embedding matrix itself: ``tie_embeddings``)."""

    def __init__(
        self,
        vocab_size: int,
        size: int,
        layers: int,
        heads: int,
        ff_size: int,
        cross_attention: list[Attention],
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
        positions: str,
        max_positions: int,
        tie_embeddings: bool,
        alignment_layer: int | None,
    ) -> None:
        super().__init__()
        if len(cross_attention) != layers:
            raise ValueError(f"{layers} layers need {layers} cross-attentions")
        if alignment_layer is not None and not -layers <= alignment_layer < layers:
            raise ValueError(
                f"model.decoder.transformer.alignment_layer={alignment_layer} is not one of the "
                f"{layers} layers (0..{layers - 1}, or negative from the last)"
            )
        self.size = size
        # Fairseq's scheme: N(0, 1/size) rows, scaled by √size on the way in, so the embedding
        # entering the residual stream has unit-size entries and, tied, the output layer's
        # logits start small.
        self.embedding = nn.Embedding(vocab_size, size, padding_idx=PAD_ID)
        nn.init.normal_(self.embedding.weight, std=size**-0.5)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        self.positions, rotary = stack_positions(
            positions, size, heads, max_positions, "model.decoder.transformer"
        )
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(
                size,
                heads,
                ff_size,
                attention,
                dropout,
                attention_dropout,
                activation_dropout,
                rotary,
            )
            for attention in cross_attention
        )
        self.final_norm = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(size, vocab_size)
        if tie_embeddings:
            self.output.weight = self.embedding.weight
        # Which layer's cross-attention is "the" alignment: a buffer, so checkpoints carry it
        # (None in the config: chosen on dev by the lowest AER where gold links exist).
        self.alignment_layer: torch.Tensor
        chosen = layers - 1 if alignment_layer is None else alignment_layer % layers
        self.register_buffer("alignment_layer", torch.tensor(chosen))

    @property
    def alignment_index(self) -> int:
        return int(self.alignment_layer)

    @property
    def attention(self) -> Attention:
        """The cross-attention the heatmaps show (all layers use the same scorer)."""
        return self.layers[self.alignment_index].cross_attention

    @property
    def has_attention_weights(self) -> bool:
        return not isinstance(self.attention, NoAttention)

    def prepare(self, encoder: EncoderOutput) -> TransformerMemory:
        """Each layer's projected keys and values of the source, once per batch."""
        return TransformerMemory([layer.cross_attention.prepare(encoder) for layer in self.layers])

    def init_state(self, encoder: EncoderOutput) -> TransformerState:
        """The empty prefix (the encoder's summary plays no part: every word attends)."""
        return TransformerState([], [], 0)

    def embed(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """(batch, steps) ids at positions offset, offset + 1, ... → (batch, steps, size)."""
        x = self.embedding(tokens) * math.sqrt(self.size)
        if self.positions is not None:
            x = self.positions(x, offset)
        return self.dropout(x)

    def forward(
        self, tgt_in: torch.Tensor, encoder: EncoderOutput
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing, all positions at once: logits (batch, tgt_len, vocab) and the
        alignment layer's cross-attention (batch, tgt_len, heads, src_len) or None."""
        logits, weights = self.run_layers(tgt_in, encoder)
        return logits, weights[self.alignment_index]

    def cross_attention(
        self, tgt_in: torch.Tensor, encoder: EncoderOutput
    ) -> list[torch.Tensor | None]:
        """Every layer's cross-attention on a teacher-forced target: (batch, tgt, heads, src)."""
        return self.run_layers(tgt_in, encoder)[1]

    def run_layers(
        self, tgt_in: torch.Tensor, encoder: EncoderOutput
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        memory = self.prepare(encoder)
        x = self.embed(tgt_in)
        weights = []
        for layer, layer_memory in zip(self.layers, memory.layers, strict=True):
            x, _, layer_weights = layer(x, layer_memory)
            weights.append(layer_weights)
        return self.output(self.final_norm(x)), weights

    def next_logits(
        self, previous: torch.Tensor, state: TransformerState, memory: TransformerMemory
    ) -> tuple[TransformerState, torch.Tensor, torch.Tensor | None]:
        """One output word after ``previous`` (rows,): the new state, logits (rows, vocab) and
        the alignment layer's cross-attention (rows, heads, src_len) or None.

        Only the new position runs through the layers; its self-attention reads the cached
        keys and values of the prefix, so the logits equal those of :meth:`forward` at the
        same position.
        """
        x = self.embed(previous.unsqueeze(1), state.length)  # (rows, 1, size)
        keys, values, weights = [], [], []
        for k, layer in enumerate(self.layers):
            cache = (state.keys[k], state.values[k]) if state.length else None
            x, (layer_keys, layer_values), layer_weights = layer(x, memory.layers[k], cache)
            keys.append(layer_keys)
            values.append(layer_values)
            weights.append(layer_weights)
        logits = self.output(self.final_norm(x[:, 0]))
        chosen = weights[self.alignment_index]
        return (
            TransformerState(keys, values, state.length + 1),
            logits,
            None if chosen is None else chosen[:, 0],
        )
