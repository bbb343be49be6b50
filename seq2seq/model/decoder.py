"""RNN decoders: where the attention context enters the recurrence.

Two wirings share everything but the step and the output layer:

- :class:`BahdanauDecoder` (Bahdanau et al. 2015): s_i = f(s_{i-1}, y_{i-1}, C_i). The previous
  state s_{i-1} queries the attention, the context C_i joins the embedding of the previous word
  as RNN input, and the output layer reads s_i, C_i and y_{i-1}. With :class:`NoAttention`, C_i is
  the same fixed C for every word: the distracted encoder-decoder.
- :class:`LuongDecoder` (Luong et al. 2015): the RNN steps first, the *new* state s_i queries the
  attention, and the output reads the attentional vector h̃_i = tanh(W_c [C_i; s_i]). With input
  feeding, h̃_{i-1} joins the next RNN input so the decoder knows what it attended to.

Only the recurrence and attention depend on the previous step. The embedding and its input
projection, and the output layer over all steps, are each one large matrix product per batch;
the loop body is the attention, one or two small matrix products and the gate arithmetic.

This is the definition that trains with ``model.kernels=reference``; with ``auto`` on CPU the
entry points swap in the subclasses of :mod:`seq2seq.fast.modules` (hand-written loops, the
same numbers, held to this code by the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seq2seq.data.tokenizer import PAD_ID
from seq2seq.model.attention import Attention, AttentionMemory, NoAttention
from seq2seq.model.cells import gru_update, lstm_update
from seq2seq.model.encoding import EncoderOutput


@dataclass
class DecoderState:
    hidden: torch.Tensor  # (batch, hidden) s_i
    cell: torch.Tensor | None  # (batch, hidden) LSTM memory cell, None for GRU
    attentional: torch.Tensor | None = None  # (batch, hidden) Luong's h̃_i for input feeding

    def select(self, index: torch.Tensor) -> DecoderState:
        return DecoderState(
            self.hidden[index],
            None if self.cell is None else self.cell[index],
            None if self.attentional is None else self.attentional[index],
        )


@dataclass
class DecoderMemory:
    """The source side, prepared once per batch: what attention reads."""

    attention: AttentionMemory

    def select(self, index: torch.Tensor) -> DecoderMemory:
        return DecoderMemory(self.attention.select(index))


class RNNDecoder(nn.Module):
    """Embedding, initial state, GRU/LSTM gate arithmetic and the teacher-forced loop."""

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
            raise ValueError(f"model.decoder.rnn.cell must be 'gru' or 'lstm', got {rnn!r}")
        self.is_lstm = rnn == "lstm"
        self.gates = (4 if self.is_lstm else 3) * hidden_size
        self.hidden_size = hidden_size
        self.attention = attention
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        # s_0 = tanh(W_init C): every decoder starts from the encoder summary.
        self.init_proj = nn.Linear(summary_size, hidden_size * (2 if self.is_lstm else 1))
        self.input_proj = nn.Linear(embed_size, self.gates)  # hoisted over all steps
        self.hidden_proj = nn.Linear(hidden_size, self.gates)

    def output_layer(self, vocab_size: int, hidden_size: int, tie_embeddings: bool) -> nn.Module:
        """What the output reads (hidden_size wide) → a score per target piece.

        Tied (Press & Wolf 2017): a projection to the embedding size, then the target embedding
        matrix itself — the row that embeds a word also scores it, so each word's one vector
        learns from both sides; fewer parameters on small data, and a narrower product over
        the vocabulary at every output word."""
        if not tie_embeddings:
            return nn.Linear(hidden_size, vocab_size)
        embed_size = self.embedding.embedding_dim
        scores = nn.Linear(embed_size, vocab_size)
        scores.weight = self.embedding.weight
        return nn.Sequential(nn.Linear(hidden_size, embed_size, bias=False), scores)

    def init_state(self, encoder: EncoderOutput) -> DecoderState:
        init = torch.tanh(self.init_proj(encoder.summary))
        if self.is_lstm:
            hidden, cell = init.chunk(2, dim=-1)
            return DecoderState(hidden.contiguous(), cell.contiguous())
        return DecoderState(init, None)

    def prepare(self, encoder: EncoderOutput) -> DecoderMemory:
        """Source-only work, once per batch."""
        return DecoderMemory(self.attention.prepare(encoder))

    def embed(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings of previous words and their share of the RNN gates, for all steps."""
        embedded = self.dropout(self.embedding(tokens))
        return embedded, self.input_proj(embedded)

    def recur(
        self, x: torch.Tensor, state: DecoderState
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One GRU/LSTM update from the input's share of the gates ``x`` (batch, gates)."""
        h = self.hidden_proj(state.hidden)
        if self.is_lstm:
            assert state.cell is not None, "LSTM decoder state without a cell"
            return lstm_update(x, h, state.cell)
        return gru_update(x, h, state.hidden), None

    # The RNN decoder has one attention: it is the alignment (a Transformer has one per layer).
    alignment_index = 0

    @property
    def has_attention_weights(self) -> bool:
        return not isinstance(self.attention, NoAttention)

    def run_layers(
        self, tgt_in: torch.Tensor, encoder: EncoderOutput
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """:meth:`forward`, its weights as the list of one layer's (as a Transformer's)."""
        logits, weights = self(tgt_in, encoder)
        return logits, [weights]

    def step(
        self, input_gates: torch.Tensor, state: DecoderState, memory: DecoderMemory
    ) -> tuple[DecoderState, torch.Tensor, torch.Tensor | None]:
        """One output word: (new state, context C_i, attention weights or None)."""
        raise NotImplementedError

    def next_logits(
        self, previous: torch.Tensor, state: DecoderState, memory: DecoderMemory
    ) -> tuple[DecoderState, torch.Tensor, torch.Tensor | None]:
        """One output word after the words ``previous`` (rows,), as search runs it: the new
        state, the logits (rows, vocab) and the attention weights (rows, heads, src) or None."""
        embedded, input_gates = self.embed(previous)
        state, context, weights = self.step(input_gates, state, memory)
        return state, self.logits(state.hidden, context, embedded, state.attentional), weights

    def logits(
        self,
        hidden: torch.Tensor,
        context: torch.Tensor,
        embedded: torch.Tensor,
        attentional: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Output layer over any number of steps: (..., hidden|context|embed) → (..., vocab).

        ``attentional``: Luong's h̃_i where the loop already computed it (input feeding).
        """
        raise NotImplementedError

    def forward(
        self, tgt_in: torch.Tensor, encoder: EncoderOutput
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: logits (batch, tgt_len, vocab), weights (batch, tgt_len, heads, src)."""
        memory = self.prepare(encoder)
        embedded, input_gates = self.embed(tgt_in)  # (batch, tgt_len, embed|gates)
        states, contexts, weights = self.run_steps(input_gates, self.init_state(encoder), memory)
        hiddens = torch.stack([state.hidden for state in states], 1)
        attentional = None
        if states[0].attentional is not None:
            attentional = torch.stack([state.attentional for state in states], 1)
        logits = self.logits(hiddens, torch.stack(contexts, 1), embedded, attentional)
        return logits, None if weights[0] is None else torch.stack(weights, 1)

    def run_steps(
        self, input_gates: torch.Tensor, state: DecoderState, memory: DecoderMemory
    ) -> tuple[list[DecoderState], list[torch.Tensor], list[torch.Tensor | None]]:
        """:meth:`step` at every target position in turn: the states, contexts and weights."""
        states, contexts, weights = [], [], []
        # unbind, not input_gates[:, t]: the backward of each slice would zero-fill a whole
        # (batch, tgt_len, gates) gradient, O(tgt_len²) work per batch.
        for step_gates in input_gates.unbind(1):
            state, context, step_weights = self.step(step_gates, state, memory)
            states.append(state)
            contexts.append(context)
            weights.append(step_weights)
        return states, contexts, weights


class BahdanauDecoder(RNNDecoder):
    """Attend with s_{i-1}, update the RNN with [y_{i-1}; C_i], read out s_i, C_i and y_{i-1}."""

    def __init__(
        self,
        vocab_size: int,
        embed_size: int,
        hidden_size: int,
        summary_size: int,
        rnn: str,
        dropout: float,
        attention: Attention,
        tie_embeddings: bool = False,
    ) -> None:
        super().__init__(vocab_size, embed_size, hidden_size, summary_size, rnn, dropout, attention)
        self.context_proj = nn.Linear(attention.context_size, self.gates, bias=False)
        self.readout = nn.Linear(hidden_size + attention.context_size + embed_size, hidden_size)
        self.output = self.output_layer(vocab_size, hidden_size, tie_embeddings)

    def step(
        self, input_gates: torch.Tensor, state: DecoderState, memory: DecoderMemory
    ) -> tuple[DecoderState, torch.Tensor, torch.Tensor | None]:
        """s_i = f(s_{i-1}, y_{i-1}, C_i), with C_i from attention queried by s_{i-1}."""
        context, weights = self.attention(state.hidden, memory.attention)
        x = input_gates + self.context_proj(context)  # (batch, gates): W y_{i-1} + W_c C_i
        hidden, cell = self.recur(x, state)
        return DecoderState(hidden, cell), context, weights

    def logits(
        self,
        hidden: torch.Tensor,
        context: torch.Tensor,
        embedded: torch.Tensor,
        attentional: torch.Tensor | None = None,
    ) -> torch.Tensor:
        pre_output = torch.tanh(self.readout(torch.cat([hidden, context, embedded], dim=-1)))
        return self.output(self.dropout(pre_output))


class LuongDecoder(RNNDecoder):
    """RNN on [y_{i-1}; h̃_{i-1}], attend with s_i, read out h̃_i = tanh(W_c[C_i; s_i])."""

    def __init__(
        self,
        vocab_size: int,
        embed_size: int,
        hidden_size: int,
        summary_size: int,
        rnn: str,
        dropout: float,
        attention: Attention,
        input_feeding: bool,
        tie_embeddings: bool = False,
    ) -> None:
        super().__init__(vocab_size, embed_size, hidden_size, summary_size, rnn, dropout, attention)
        self.input_feeding = input_feeding
        if input_feeding:
            self.feed_proj = nn.Linear(hidden_size, self.gates, bias=False)
        self.combine = nn.Linear(attention.context_size + hidden_size, hidden_size, bias=False)
        self.output = self.output_layer(vocab_size, hidden_size, tie_embeddings)

    def init_state(self, encoder: EncoderOutput) -> DecoderState:
        state = super().init_state(encoder)
        if self.input_feeding:
            state.attentional = torch.zeros_like(state.hidden)
        return state

    def forward(
        self, tgt_in: torch.Tensor, encoder: EncoderOutput
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """With input feeding, the step-by-step loop of :meth:`RNNDecoder.forward`.

        Without input feeding nothing in the recurrence depends on attention, so the whole
        target runs at once: the RNN over all steps in one ``torch.gru``/``torch.lstm`` call,
        then attention for all (batch × step) queries as one batched call, then the output
        layer — the same numbers as the step-by-step loop, far fewer operations."""
        if self.input_feeding:
            return super().forward(tgt_in, encoder)
        memory = self.prepare(encoder)
        embedded = self.dropout(self.embedding(tgt_in))  # (batch, tgt_len, embed)
        hiddens = self.run_rnn(embedded, self.init_state(encoder))  # (batch, tgt_len, hidden)
        batch, steps, _ = hiddens.shape
        # A sentence's steps are consecutive query rows: they share its memory row.
        context, weights = self.attention(hiddens.reshape(batch * steps, -1), memory.attention)
        context = context.view(batch, steps, -1)
        logits = self.logits(hiddens, context, embedded)
        return logits, None if weights is None else weights.view(batch, steps, *weights.shape[1:])

    def run_rnn(self, embedded: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """All steps of the recurrence of :meth:`recur` at once (PyTorch's gate order is ours)."""
        weights = [
            self.input_proj.weight,
            self.hidden_proj.weight,
            self.input_proj.bias,
            self.hidden_proj.bias,
        ]
        # torch.gru/torch.lstm's positional flags, named: one layer with biases, no dropout
        # between layers, one direction, (batch, steps, features) tensors.
        has_biases, layers, dropout, bidirectional, batch_first = True, 1, 0.0, False, True
        args = (weights, has_biases, layers, dropout, self.training, bidirectional, batch_first)
        if self.is_lstm:
            assert state.cell is not None, "LSTM decoder state without a cell"
            hx = (state.hidden.unsqueeze(0), state.cell.unsqueeze(0))
            return torch.lstm(embedded, hx, *args)[0]
        return torch.gru(embedded, state.hidden.unsqueeze(0), *args)[0]

    def attentional_hidden(self, hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """h̃ = tanh(W_c [C; s])."""
        return torch.tanh(self.combine(torch.cat([context, hidden], dim=-1)))

    def step(
        self, input_gates: torch.Tensor, state: DecoderState, memory: DecoderMemory
    ) -> tuple[DecoderState, torch.Tensor, torch.Tensor | None]:
        x = input_gates
        if self.input_feeding:
            assert state.attentional is not None, "input feeding without h̃_{i-1}"
            x = x + self.feed_proj(state.attentional)
        hidden, cell = self.recur(x, state)
        context, weights = self.attention(hidden, memory.attention)
        feed = self.attentional_hidden(hidden, context) if self.input_feeding else None
        return DecoderState(hidden, cell, feed), context, weights

    def logits(
        self,
        hidden: torch.Tensor,
        context: torch.Tensor,
        embedded: torch.Tensor,
        attentional: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if attentional is None:
            attentional = self.attentional_hidden(hidden, context)
        return self.output(self.dropout(attentional))
