"""Encoders: source ids → one annotation h_j per source position, plus a summary.

Two choices behind one output (:class:`EncoderOutput`), so every decoder and scorer works with
either: :class:`RNNEncoder` walks the sentence word by word; :class:`SelfAttentionEncoder`
compares every word with every other in one step, in parallel.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.data.tokenizer import PAD_ID
from seq2seq.model.attention import scaled_dot_product
from seq2seq.model.encoding import EncoderOutput
from seq2seq.model.feed_forward import feed_forward
from seq2seq.model.positions import RotaryPositions, stack_positions

RNN_TYPES = {"gru": nn.GRU, "lstm": nn.LSTM}


class RNNEncoder(nn.Module):
    """Embedding → (bidirectional, multi-layer) GRU or LSTM; padding never reaches the recurrence.

    The backward direction starts at each sentence's own last token: the batch is packed (on
    CUDA one cuDNN call). With ``model.kernels=auto`` on CPU the recurrence runs as
    :class:`seq2seq.fast.modules.FastRNNEncoder` instead (same parameters, same numbers up to
    rounding, faster than PyTorch's per-step packed loop).
    The summary concatenates the last forward state and the first backward state of the top
    layer: it is the fixed context C of the distracted model and initialises every decoder.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int,
        hidden_size: int,
        layers: int,
        bidirectional: bool,
        rnn: str,
        dropout: float,
    ) -> None:
        super().__init__()
        if rnn not in RNN_TYPES:
            raise ValueError(
                f"model.encoder.rnn.cell must be one of {sorted(RNN_TYPES)}, got {rnn!r}"
            )
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        self.rnn = RNN_TYPES[rnn](
            embed_size,
            hidden_size,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.directions = 2 if bidirectional else 1
        self.output_size = self.directions * hidden_size

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        """``src``: (batch, src_len) padded after each sentence's ``src_lengths`` tokens."""
        embedded = self.dropout(self.embedding(src))  # (batch, src_len, embed)
        states, final = self.recur(embedded, src_lengths)
        top = final[-self.directions :]  # (directions, batch, hidden)
        summary = torch.cat(list(top), dim=-1)  # (batch, directions*hidden)
        mask = src != PAD_ID
        return EncoderOutput(self.dropout(states * mask.unsqueeze(-1)), summary, mask, src)

    def recur(
        self, embedded: torch.Tensor, src_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``self.rnn`` on the packed batch: top-layer outputs (batch, src_len, directions·hidden)
        and final states (layers·directions, batch, hidden)."""
        packed = pack_padded_sequence(
            embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, final = self.rnn(packed)
        states, _ = pad_packed_sequence(outputs, batch_first=True, total_length=embedded.size(1))
        return states, final[0] if isinstance(final, tuple) else final  # LSTM: (h, c)


ENCODER_TYPES = ("rnn", "self_attention")


class SelfAttentionLayer(nn.Module):
    """One Transformer encoder layer (Vaswani et al. 2017, sec. 3.1), layer norm first:

    x ← x + MultiHead(LN(x)),  MultiHead: softmax(Q Kᵀ / √d_k) V per head, over real tokens only;
    x ← x + W_2 ReLU(W_1 LN(x)).

    Layer norm before each block (Xiong et al. 2020) trains without a learning-rate warm-up.
    ``dropout`` drops each block's output before the residual sum, ``attention_dropout`` the
    weights on their way to the values, ``activation_dropout`` the ReLU's output.
    """

    def __init__(
        self,
        size: int,
        heads: int,
        ff_size: int,
        dropout: float,
        rotary: RotaryPositions | None,
        attention_dropout: float,
        activation_dropout: float,
    ) -> None:
        super().__init__()
        self.heads, self.head_size = heads, size // heads
        self.attention_norm = nn.LayerNorm(size)
        self.qkv_proj = nn.Linear(size, 3 * size)  # W_Q, W_K, W_V of all heads in one product
        self.output_proj = nn.Linear(size, size)  # W_O
        self.feed_forward_norm = nn.LayerNorm(size)
        self.feed_forward = feed_forward(size, ff_size, activation_dropout)
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = nn.Dropout(attention_dropout)
        self.rotary = rotary

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (batch, src_len, size); ``mask``: (batch, src_len) True on real tokens.

        Returns the new x and the attention weights (batch, heads, src_len, src_len), exactly
        zero on padded keys.
        """
        batch, length, size = x.shape
        qkv = self.qkv_proj(self.attention_norm(x)).view(batch, length, 3, self.heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, src_len, head_size)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        mask = mask[:, None, None, :]
        context, weights = scaled_dot_product(q, k, v, mask, self.attention_dropout)
        context = context.transpose(1, 2).reshape(batch, length, size)
        x = x + self.dropout(self.output_proj(context))
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        return x, weights


class SelfAttentionEncoder(nn.Module):
    """Embedding (+ positions) → a stack of :class:`SelfAttentionLayer` → layer norm.

    The annotations h_j are the top layer's outputs (width ``embed_size``), zero on padding.
    There is no final state as in an RNN, so the summary C (the distracted model's context and
    every decoder's start) is their mean over the real tokens.

    With ``positions="none"`` nothing in it depends on where a word is: permuting the source
    permutes the annotations and leaves the summary unchanged, which is the bag-of-words
    weakness the ``word_order`` split measures.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_size: int,
        layers: int,
        heads: int,
        ff_size: int,
        dropout: float,
        positions: str,
        max_positions: int,
        attention_dropout: float | None = None,
        activation_dropout: float | None = None,
    ) -> None:
        """``attention_dropout`` and ``activation_dropout`` default to ``dropout``."""
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=PAD_ID)
        self.positions, rotary = stack_positions(
            positions, embed_size, heads, max_positions, "model.encoder.self_attention"
        )
        self.layers = nn.ModuleList(
            SelfAttentionLayer(
                embed_size,
                heads,
                ff_size,
                dropout,
                rotary,
                dropout if attention_dropout is None else attention_dropout,
                dropout if activation_dropout is None else activation_dropout,
            )
            for _ in range(layers)
        )
        self.final_norm = nn.LayerNorm(embed_size)
        self.dropout = nn.Dropout(dropout)
        self.output_size = embed_size

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        """``src``: (batch, src_len); ``src_lengths`` is not needed (the mask says it all)."""
        states, mask, _ = self.encode(src)
        real = mask.unsqueeze(-1).to(states.dtype)  # (batch, src_len, 1)
        summary = (states * real).sum(1) / real.sum(1).clamp(min=1)  # masked mean
        return EncoderOutput(self.dropout(states), summary, mask, src)

    def attention_maps(self, src: torch.Tensor) -> list[torch.Tensor]:
        """Self-attention weights of every layer, each (batch, heads, src_len, src_len)."""
        return self.encode(src)[2]

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Annotations (zero on padding), the mask and each layer's attention weights."""
        mask = src != PAD_ID  # (batch, src_len)
        x = self.embedding(src)  # (batch, src_len, embed)
        if self.positions is not None:
            x = self.positions(x)
        x = self.dropout(x)
        weights = []
        for layer in self.layers:
            x, layer_weights = layer(x, mask)
            weights.append(layer_weights)
        states = self.final_norm(x).masked_fill(~mask.unsqueeze(-1), 0.0)
        return states, mask, weights
