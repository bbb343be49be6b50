"""The RNN encoder: source ids → one annotation h_j per source position, plus a summary."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.data.tokenizer import PAD_ID

RNN_TYPES = {"gru": nn.GRU, "lstm": nn.LSTM}


@dataclass
class EncoderOutput:
    states: torch.Tensor  # (batch, src_len, directions*hidden) annotations h_j, zero on padding
    summary: torch.Tensor  # (batch, directions*hidden) final states of the top layer
    mask: torch.Tensor  # (batch, src_len) True on real source tokens

    def select(self, index: torch.Tensor) -> EncoderOutput:
        """Rows ``index`` of the batch (beam search expands and reorders with this)."""
        return EncoderOutput(self.states[index], self.summary[index], self.mask[index])


class RNNEncoder(nn.Module):
    """Embedding → (bidirectional, multi-layer) GRU or LSTM over packed sequences.

    Packing makes padding invisible to the recurrence (the backward direction starts at each
    sentence's own last token) and runs the whole batch as one cuDNN/oneDNN call.
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
            raise ValueError(f"model.rnn must be one of {sorted(RNN_TYPES)}, got {rnn!r}")
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
        """``src``: (batch, src_len) sorted by ``src_lengths`` (CPU tensor), longest first."""
        embedded = self.dropout(self.embedding(src))  # (batch, src_len, embed)
        packed = pack_padded_sequence(embedded, src_lengths, batch_first=True, enforce_sorted=True)
        outputs, final = self.rnn(packed)
        states, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.size(1))
        hidden = final[0] if isinstance(final, tuple) else final  # LSTM: (h, c)
        top = hidden[-self.directions :]  # (directions, batch, hidden)
        summary = torch.cat(list(top), dim=-1)  # (batch, directions*hidden)
        return EncoderOutput(self.dropout(states), summary, src != PAD_ID)
