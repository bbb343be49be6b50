"""The fast subclasses of the reference modules: the same parameters, the same equations.

Each overrides only where the reference computes slowly on CPU, and adds no parameter, so a
state dict loads into either, and :func:`seq2seq.fast.kernels.use_fast_kernels` can turn a built
reference module into its fast subclass in place. The tests hold each to its reference, outputs
and every gradient, in float64 (``tests/test_fused_loops.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seq2seq.device import product_dtype
from seq2seq.fast.additive_gru_loops import bahdanau_gru_loop, luong_gru_loop
from seq2seq.fast.recurrence import run_encoder_rnn
from seq2seq.fast.stepwise import SummedOverSteps
from seq2seq.model.attention import AttentionMemory, BahdanauAttention
from seq2seq.model.decoder import (
    BahdanauDecoder,
    DecoderMemory,
    DecoderState,
    LuongDecoder,
    RNNDecoder,
)
from seq2seq.model.encoder import EncoderOutput, RNNEncoder


def cast_for_search(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the autocast dtype when decoding under autocast (no gradients), else ``x``.

    Autocast would cast the (batch, src, d) annotations again at every output word of a search,
    a pass over memory larger than the product it feeds; cast once per batch here instead. (In
    training the stepwise products cast them once per batch themselves.)
    """
    return x if torch.is_grad_enabled() else x.to(product_dtype(x))


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if autocast made it bfloat16 or float16 (float64 stays)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class FastRNNEncoder(RNNEncoder):
    """The recurrence as :func:`~seq2seq.fast.recurrence.run_encoder_rnn`: on CPU faster than
    ``nn.GRU``/``nn.LSTM`` on a packed batch."""

    def recur(
        self, embedded: torch.Tensor, src_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return run_encoder_rnn(self.rnn, embedded, src_lengths, self.dropout)


class FastBahdanauAttention(BahdanauAttention):
    """e_ij = vᵀ tanh(W s + U h_j) with the (batch, g, src, att) sum, its tanh and the product
    with v in float32 under bf16 autocast (on CPU these element-wise passes run about 2.7×
    slower in bfloat16, and they are the scorer's main cost), the tanh in place (autograd keeps
    one such tensor, not two), and v as a vector."""

    def prepare(self, encoder: EncoderOutput) -> AttentionMemory:
        keys = at_least_float32(self.key_proj(encoder.states))
        return AttentionMemory(keys, cast_for_search(encoder.states), encoder.mask)

    def scores(self, query: torch.Tensor, memory: AttentionMemory) -> torch.Tensor:
        query = at_least_float32(self.query_proj(query))
        batch, src_len, size = memory.keys.shape
        grouped = query.view(batch, -1, 1, size)  # (batch, g, 1, att)
        with torch.autocast(query.device.type, enabled=False):
            hidden = (grouped + memory.keys.unsqueeze(1)).tanh_()
            return (hidden @ self.energy.weight[0]).view(-1, src_len)  # (batch·g, src)


class StepwiseLoop(RNNDecoder):
    """The reference teacher-forced loop, each weight's gradient summed once over its steps
    (:class:`~seq2seq.fast.stepwise.SummedOverSteps`)."""

    def shared_operands(self, memory: DecoderMemory) -> list[torch.Tensor]:
        """What the steps mix with their attention weights."""
        return [memory.attention.values]

    def run_steps(
        self, input_gates: torch.Tensor, state: DecoderState, memory: DecoderMemory
    ) -> tuple[list[DecoderState], list[torch.Tensor], list[torch.Tensor | None]]:
        with SummedOverSteps(self.shared_operands(memory)):
            return super().run_steps(input_gates, state, memory)


@dataclass
class GatedMemory(DecoderMemory):
    """With the values' share of the RNN gates, W_c h_j, when the context is a @ h."""

    value_gates: torch.Tensor | None  # (batch, src_len, gates)

    def select(self, index: torch.Tensor) -> GatedMemory:
        gates = None if self.value_gates is None else self.value_gates[index]
        return GatedMemory(self.attention.select(index), gates)


class FastBahdanauDecoder(StepwiseLoop, BahdanauDecoder):
    """When C_i = Σ_j a_ij h_j, its share of the RNN gates is W_c C_i = Σ_j a_ij (W_c h_j).

    Projecting the src_len annotations once per batch turns a (batch, context) × (context,
    gates) product per output word into a cheap weighted mix.
    """

    def prepare(self, encoder: EncoderOutput) -> GatedMemory:
        memory = self.attention.prepare(encoder)
        gates = self.context_proj(memory.values) if self.attention.mixes_values else None
        return GatedMemory(memory, gates)

    def shared_operands(self, memory: DecoderMemory) -> list[torch.Tensor]:
        assert isinstance(memory, GatedMemory), "prepared by another decoder"
        gates = [] if memory.value_gates is None else [memory.value_gates]
        return super().shared_operands(memory) + gates

    def step(
        self, input_gates: torch.Tensor, state: DecoderState, memory: DecoderMemory
    ) -> tuple[DecoderState, torch.Tensor, torch.Tensor | None]:
        assert isinstance(memory, GatedMemory), "prepared by another decoder"
        if memory.value_gates is None:
            return super().step(input_gates, state, memory)
        context, weights = self.attention(state.hidden, memory.attention)
        assert weights is not None, "mixing attention without weights"
        batch, src_len, _ = memory.value_gates.shape
        grouped = weights.view(batch, -1, src_len)  # beam search: g rows per sentence
        x = input_gates + torch.bmm(grouped, memory.value_gates).view_as(input_gates)
        hidden, cell = self.recur(x, state)
        return DecoderState(hidden, cell), context, weights


class FusedBahdanauDecoder(FastBahdanauDecoder):
    """A GRU with the additive scorer (the reference model): the loop runs as
    :func:`~seq2seq.fast.additive_gru_loops.bahdanau_gru_loop`, its backward written out; the
    contexts C_i, read only by the output layer, are then one batched product for all steps."""

    def forward(
        self, tgt_in: torch.Tensor, encoder: EncoderOutput
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        memory = self.prepare(encoder)
        assert memory.value_gates is not None, "the additive scorer mixes the values"
        embedded, input_gates = self.embed(tgt_in)
        hiddens, weights = bahdanau_gru_loop(
            input_gates,
            self.init_state(encoder).hidden,
            memory.attention.keys,
            memory.value_gates,
            memory.attention.mask,
            self.attention.query_proj.weight,
            self.hidden_proj.weight,
            self.hidden_proj.bias,
            self.attention.energy.weight[0],
        )
        contexts = torch.bmm(weights, memory.attention.values)
        return self.logits(hiddens, contexts, embedded), weights.unsqueeze(2)


class FastLuongDecoder(StepwiseLoop, LuongDecoder):
    """Luong's wiring with the loop's products summed once."""


class FusedLuongDecoder(FastLuongDecoder):
    """Input feeding with a GRU and the additive scorer (the Tatoeba recipe): the loop runs as
    :func:`~seq2seq.fast.additive_gru_loops.luong_gru_loop`, its backward written out."""

    def forward(
        self, tgt_in: torch.Tensor, encoder: EncoderOutput
    ) -> tuple[torch.Tensor, torch.Tensor]:
        memory = self.prepare(encoder).attention
        embedded, input_gates = self.embed(tgt_in)
        attentional, weights = luong_gru_loop(
            input_gates,
            self.init_state(encoder).hidden,
            memory.keys,
            memory.values,
            memory.mask,
            self.attention.query_proj.weight,
            self.hidden_proj.weight,
            self.hidden_proj.bias,
            self.attention.energy.weight[0],
            self.combine.weight,
            self.feed_proj.weight,
        )
        return self.output(self.dropout(attentional)), weights.unsqueeze(2)
