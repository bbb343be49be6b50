"""The conditional RNN decoder of Bahdanau et al. (2015): s_i = f(s_{i-1}, y_{i-1}, C_i).

For each output word the previous state s_{i-1} queries the attention, the context C_i joins the
embedding of the previous word as RNN input, and the output layer reads s_i, C_i and y_{i-1}.

Speed: only the recurrence and attention depend on the previous step. The embedding and its
input projection, and the output layer over all steps, are each one large matrix product per
batch; the loop body is two small matrix products, the attention and the gate arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seq2seq.data.tokenizer import PAD_ID
from seq2seq.model.attention import Attention, AttentionMemory
from seq2seq.model.encoder import EncoderOutput


@dataclass
class DecoderState:
    hidden: torch.Tensor  # (batch, hidden) s_i
    cell: torch.Tensor | None  # (batch, hidden) LSTM memory cell, None for GRU

    def select(self, index: torch.Tensor) -> DecoderState:
        return DecoderState(self.hidden[index], None if self.cell is None else self.cell[index])


@dataclass
class DecoderMemory:
    """The source side, prepared once per batch: attention memory and the values' gate share."""

    attention: AttentionMemory
    value_gates: torch.Tensor | None  # (batch, src_len, gates) W_c h_j, if context = a @ h

    def select(self, index: torch.Tensor) -> DecoderMemory:
        gates = None if self.value_gates is None else self.value_gates[index]
        return DecoderMemory(self.attention.select(index), gates)


class ConditionalDecoder(nn.Module):
    """GRU or LSTM decoder fed by an :class:`Attention` (which may be :class:`NoAttention`)."""

    def __init__(
        self,
        vocab_size: int,
        embed_size: int,
        hidden_size: int,
        summary_size: int,
        rnn: str,
        dropout: float,
        attention: Attention,
    ) -> None:
        super().__init__()
        if rnn not in ("gru", "lstm"):
            raise ValueError(f"model.rnn must be 'gru' or 'lstm', got {rnn!r}")
        self.is_lstm = rnn == "lstm"
        gates = (4 if self.is_lstm else 3) * hidden_size
        self.hidden_size = hidden_size
        self.attention = attention
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        # s_0 = tanh(W_init C): both models start from the encoder summary.
        self.init_proj = nn.Linear(summary_size, hidden_size * (2 if self.is_lstm else 1))
        self.input_proj = nn.Linear(embed_size, gates)  # hoisted over all steps
        self.context_proj = nn.Linear(attention.context_size, gates, bias=False)
        self.hidden_proj = nn.Linear(hidden_size, gates)
        self.readout = nn.Linear(hidden_size + attention.context_size + embed_size, hidden_size)
        self.output = nn.Linear(hidden_size, vocab_size)

    def init_state(self, encoder: EncoderOutput) -> DecoderState:
        init = torch.tanh(self.init_proj(encoder.summary))
        if self.is_lstm:
            hidden, cell = init.chunk(2, dim=-1)
            return DecoderState(hidden.contiguous(), cell.contiguous())
        return DecoderState(init, None)

    def prepare(self, encoder: EncoderOutput) -> DecoderMemory:
        """Source-only work, once per batch.

        When the context is the weighted sum C_i = Σ_j a_ij h_j, its share of the RNN gates is
        W_c C_i = Σ_j a_ij (W_c h_j): projecting the src_len annotations once turns a
        (batch, context) × (context, gates) product per output word into a cheap mix.
        """
        memory = self.attention.prepare(encoder)
        gates = self.context_proj(memory.values) if self.attention.mixes_values else None
        return DecoderMemory(memory, gates)

    def embed(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of previous words and their share of the RNN gates, for all steps."""
        embedded = self.dropout(self.embedding(tokens))
        return embedded, self.input_proj(embedded)

    def step(
        self, input_gates: torch.Tensor, state: DecoderState, memory: DecoderMemory
    ) -> tuple[DecoderState, torch.Tensor, torch.Tensor | None]:
        """One output word: attend with s_{i-1}, then update the RNN with [y_{i-1}; C_i]."""
        context, weights = self.attention(state.hidden, memory.attention)
        if memory.value_gates is None:
            x = input_gates + self.context_proj(context)  # (batch, gates)
        else:
            assert weights is not None, "mixing attention without weights"
            x = torch.baddbmm(input_gates.unsqueeze(1), weights, memory.value_gates).squeeze(1)
        h = self.hidden_proj(state.hidden)
        if self.is_lstm:
            assert state.cell is not None, "LSTM decoder state without a cell"
            i, f, g, o = (x + h).chunk(4, dim=-1)
            cell = torch.sigmoid(f) * state.cell + torch.sigmoid(i) * torch.tanh(g)
            new_state = DecoderState(torch.sigmoid(o) * torch.tanh(cell), cell)
        else:
            x_r, x_z, x_n = x.chunk(3, dim=-1)
            h_r, h_z, h_n = h.chunk(3, dim=-1)
            reset = torch.sigmoid(x_r + h_r)
            update = torch.sigmoid(x_z + h_z)
            candidate = torch.tanh(x_n + reset * h_n)
            new_state = DecoderState(candidate + update * (state.hidden - candidate), None)
        return new_state, context, weights

    def logits(
        self, hidden: torch.Tensor, context: torch.Tensor, embedded: torch.Tensor
    ) -> torch.Tensor:
        """Output layer over any number of steps: (..., hidden|context|embed) → (..., vocab)."""
        pre_output = torch.tanh(self.readout(torch.cat([hidden, context, embedded], dim=-1)))
        return self.output(self.dropout(pre_output))

    def forward(
        self, tgt_in: torch.Tensor, encoder: EncoderOutput
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: logits (batch, tgt_len, vocab), weights (batch, tgt_len, heads, src)."""
        memory = self.prepare(encoder)
        embedded, input_gates = self.embed(tgt_in)  # (batch, tgt_len, embed|gates)
        state = self.init_state(encoder)
        hiddens, contexts, weights = [], [], []
        for t in range(tgt_in.size(1)):
            state, context, step_weights = self.step(input_gates[:, t], state, memory)
            hiddens.append(state.hidden)
            contexts.append(context)
            weights.append(step_weights)
        logits = self.logits(torch.stack(hiddens, 1), torch.stack(contexts, 1), embedded)
        return logits, None if weights[0] is None else torch.stack(weights, 1)
