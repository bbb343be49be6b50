"""The additive-attention GRU decoders' teacher-forced loops, back-propagation through time
written out.

Bahdanau's wiring (``model=rnn_attention``, the reference model): each output word i runs from
the previous state s = s_{i-1}

    e_ij = vᵀ tanh(W s + U h_j)            similarity of s with each annotation (U h_j: ``keys``)
    a_i  = softmax_j(e_ij) over real words  attention weights
    x    = y-gates_i + Σ_j a_ij (W_c h_j)   the input's share of the GRU gates, context included
    s_i  = GRU(x, W_hh s + b_hh, s)

Luong's wiring with input feeding (``+experiment=tatoeba_best``): the GRU steps first on
x = y-gates_i + W_f h̃_{i-1}, the new state s_i queries, and h̃_i = tanh(W_c [C_i; s_i]).

Autograd records some forty operations per word for these and replays them backward one by
one, each with its own bookkeeping: gradients summed into buffers, casts back from bfloat16,
the concatenation that undoes ``chunk``. :class:`BahdanauLoop` and :class:`LuongLoop` run the
same equations forward without recording them and backward by hand: per word a few
element-wise passes and a few small matrix products (every product of a state with the weights
that read it is one), and every weight gradient is one product over all words at the end. The
generic loop (``RNNDecoder.forward``) stays the definition; tests hold them to the same outputs
and gradients.
"""

from __future__ import annotations

from typing import Any

import torch

from seq2seq.device import backward_without_autocast, product_dtype
from seq2seq.fast.private_ops import softmax_backward
from seq2seq.fast.recurrence import (
    gate_order_back,
    gru_cell,
    gru_cell_backward,
    gru_local_gradients,
    split_state_bias,
    state_gate_order,
)
from seq2seq.fast.row_blocks import weight_gradient


def bahdanau_gru_loop(
    input_gates: torch.Tensor,
    initial: torch.Tensor,
    keys: torch.Tensor,
    value_gates: torch.Tensor,
    mask: torch.Tensor,
    query_weight: torch.Tensor,
    hidden_weight: torch.Tensor,
    hidden_bias: torch.Tensor,
    energy: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """States s_1..s_T (batch, steps, hidden) and attention weights (batch, steps, src).

    ``input_gates`` (batch, steps, 3·hidden): the previous words' share of the gates;
    ``initial`` s_0 (batch, hidden); ``keys`` U h_j (batch, src, att); ``value_gates`` W_c h_j
    (batch, src, 3·hidden); ``mask`` (batch, src) True on real words; ``query_weight`` W (att,
    hidden); ``hidden_weight``/``hidden_bias`` W_hh, b_hh; ``energy`` v (att,).
    Under autocast the matrix products run in its dtype and everything else in float32, as
    autocast itself would.
    """
    dtype = product_dtype(keys)
    with torch.autocast(keys.device.type, enabled=False):
        return BahdanauLoop.apply(
            input_gates,
            initial,
            keys,
            value_gates,
            mask,
            query_weight,
            hidden_weight,
            hidden_bias,
            energy,
            dtype,
        )


def _score_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 on real source words, -inf on padding: added to the scores, it is the softmax's mask."""
    return torch.zeros_like(mask, dtype=dtype).masked_fill_(~mask, float("-inf"))


def _attend(
    query: torch.Tensor,
    keys: torch.Tensor,
    score_bias: torch.Tensor,
    energy: torch.Tensor,
    tanh: torch.Tensor,
    weights: torch.Tensor,
) -> None:
    """a = softmax_j(v · tanh(q + k_j)) into ``weights`` (batch, src); q: (batch, 1, att).

    ``tanh`` is a (batch, src, att) buffer for tanh(q + k): the backward pass makes it again
    from q (see :class:`_ScoresBackward`).
    """
    batch, src, att = keys.shape
    torch.add(query, keys, out=tanh).tanh_()
    scores = torch.addmv(score_bias.view(-1), tanh.view(-1, att), energy)
    torch.softmax(scores.view(batch, src), dim=-1, out=weights)


class _ScoresBackward:
    """Back through the softmax and the scores e_j = v · tanh(q + k_j), one step at a time.

    Each step's tanh(q + k) is made again from its query, and its square formed, in (batch,
    src, att) buffers that stay in cache, where they serve the query's gradient, the keys'
    running sum and v's. Keeping every step's tanh from the forward pass instead, a (steps,
    batch, src, att) tensor (1 GiB for 64 sentences of 90 subwords), goes through main memory:
    on Tatoeba that was ~1% slower and 0.2 GiB larger at its peak.
    """

    def __init__(self, queries: torch.Tensor, keys: torch.Tensor, energy: torch.Tensor) -> None:
        self.queries, self.keys, self.energy = queries, keys, energy  # queries (steps, batch, att)
        self.tanh = torch.empty_like(keys)
        self.square = torch.empty_like(keys)
        self.weighted = torch.zeros_like(keys)  # Σ_t ∂L/∂e_t ⊙ tanh_t²
        self.grad_energy = torch.zeros_like(energy)  # Σ_t ∂L/∂e_t · tanh_t
        self.grad_scores = keys.new_empty(queries.size(0), *keys.shape[:2])

    def step(
        self, t: int, grad_weights: torch.Tensor, weights: torch.Tensor, grad_query: torch.Tensor
    ) -> None:
        """Writes ∂L/∂q of step ``t`` into ``grad_query`` (batch, att), from ∂L/∂a.

        ∂L/∂q = Σ_j ∂L/∂e_j · v ⊙ (1 - tanh_j²) = -v ⊙ Σ_j ∂L/∂e_j tanh_j², because the gradients
        a softmax passes back sum to zero over j: one product with the squares.
        """
        grad_scores = softmax_backward(grad_weights, weights)
        self.grad_scores[t] = grad_scores
        tanh = torch.add(self.queries[t].unsqueeze(1), self.keys, out=self.tanh).tanh_()
        self.grad_energy.addmv_(tanh.view(-1, tanh.size(-1)).t(), grad_scores.view(-1))
        square = torch.mul(tanh, tanh, out=self.square)
        summed = torch.bmm(grad_scores.unsqueeze(1), square).squeeze(1)
        torch.mul(summed, self.energy, out=grad_query).neg_()
        self.weighted.addcmul_(grad_scores.unsqueeze(-1), square)

    def keys_gradient(self) -> torch.Tensor:
        """∂L/∂k_j = v ⊙ Σ_steps ∂L/∂e_j (1 - tanh_j²) (batch, src, att)."""
        return (self.grad_scores.sum(0).unsqueeze(-1) - self.weighted).mul_(self.energy)

    def energy_gradient(self) -> torch.Tensor:
        """∂L/∂v = Σ over steps, sentences and words of ∂L/∂e · tanh(q + k)."""
        return self.grad_energy


class BahdanauLoop(torch.autograd.Function):
    """Forward without recording; backward through time by hand.

    The products of s come in the order [W; W_hn; W_hr; W_hz] (the GRU's in
    :func:`~seq2seq.fast.recurrence.gru_cell`'s order), so one row of the backward's buffer,
    [dq | dh_n | dr | dz | dx_n], holds the gradient of those products (its first
    att + 3·hidden columns) and of the input's gates (r, z, n: its last 3·hidden).
    """

    @staticmethod
    def forward(
        ctx: Any,
        input_gates: torch.Tensor,
        initial: torch.Tensor,
        keys: torch.Tensor,
        value_gates: torch.Tensor,
        mask: torch.Tensor,
        query_weight: torch.Tensor,
        hidden_weight: torch.Tensor,
        hidden_bias: torch.Tensor,
        energy: torch.Tensor,
        dtype: torch.dtype,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, steps, _ = input_gates.shape
        src, att = keys.shape[1:]
        size = initial.size(1)
        real = keys.dtype  # float32 (float64 in tests): everything but the products
        # One product of s gives the query and the state's share of the gates.
        weight = torch.cat([query_weight, state_gate_order(hidden_weight, dim=0)]).to(dtype)
        folded, b_n = split_state_bias(hidden_bias)
        gates_in = input_gates.transpose(0, 1) + folded  # float32
        # The values' share is a weighted mix of memory-bound rows, faster in float32.
        values = value_gates.to(real)
        score_bias = _score_bias(mask, real)
        states = keys.new_empty(steps + 1, batch, size)  # s_0 .. s_T
        states[0] = initial
        queries = keys.new_empty(steps, batch, att)  # W s_{t-1}
        tanh = torch.empty_like(keys)  # tanh(W s + U h_j)
        weights = keys.new_empty(steps, batch, src)  # a_ij
        gates = keys.new_empty(steps, batch, 2 * size)  # reset r, update z
        candidate = keys.new_empty(steps, batch, size)  # n
        hidden_n = keys.new_empty(steps, batch, size)  # W_hn s + b_hn
        for t in range(steps):
            products = states[t].to(dtype) @ weight.t()  # (batch, att + 3·hidden)
            queries[t] = products[:, :att]
            _attend(queries[t].unsqueeze(1), keys, score_bias, energy, tanh, weights[t])
            x = torch.baddbmm(gates_in[t].unsqueeze(1), weights[t].unsqueeze(1), values)
            gru_cell(
                x.squeeze(1),
                products[:, att:],
                b_n,
                states[t],
                gates[t],
                hidden_n[t],
                candidate[t],
                states[t + 1],
            )
        ctx.device_type = keys.device.type
        ctx.save_for_backward(
            states, queries, keys, weights, gates, candidate, hidden_n, weight, values, energy
        )
        ctx.dtypes = input_gates.dtype, initial.dtype, value_gates.dtype
        return states[1:].transpose(0, 1), weights.transpose(0, 1)

    @staticmethod
    @backward_without_autocast
    def backward(
        ctx: Any, grad_states: torch.Tensor | None, grad_weights: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        states, queries, keys, weights, gates, candidate, hidden_n, weight, values, energy = (
            ctx.saved_tensors
        )
        gates_dtype, initial_dtype, values_dtype = ctx.dtypes
        dtype = weight.dtype
        steps, batch, att = queries.shape
        size = states.size(2)
        previous = states[:-1]
        to_x_n, to_z, to_r = gru_local_gradients(gates, candidate, hidden_n, previous)
        reset, update = gates.chunk(2, dim=-1)
        scores = _ScoresBackward(queries, keys, energy)
        rows = states.new_empty(steps, batch, att + 4 * size)  # [dq | dh_n | dr | dz | dx_n]
        values_t = values.transpose(1, 2)  # (batch, 3·hidden, src)
        grad_s = states.new_zeros(batch, size)
        for t in reversed(range(steps)):
            if grad_states is not None:
                grad_s = grad_s + grad_states[:, t]
            row = rows[t]
            gru_cell_backward(grad_s, to_x_n[t], to_z[t], to_r[t], reset[t], row[:, att:])
            grad_a = torch.bmm(row[:, att + size :].unsqueeze(1), values_t).squeeze(1)
            if grad_weights is not None:
                grad_a += grad_weights[:, t]
            scores.step(t, grad_a, weights[t], row[:, :att])
            grad_s = torch.addcmul(row[:, : att + 3 * size].to(dtype) @ weight, grad_s, update[t])
        grad_products = rows[:, :, : att + 3 * size].reshape(steps * batch, -1)
        grad_weight = weight_gradient(
            grad_products.to(dtype), previous.reshape(steps * batch, size).to(dtype)
        )
        grad_query_weight, grad_hidden_weight = grad_weight.to(states.dtype).split([att, 3 * size])
        grad_hidden_bias = rows[:, :, att : att + 3 * size].sum((0, 1))
        grad_x = rows[:, :, att + size :].transpose(0, 1)  # (batch, steps, 3·hidden): r, z, n
        grad_values = torch.bmm(weights.permute(1, 2, 0), grad_x)  # Σ_t a_tᵀ dx_t
        return (
            grad_x.to(gates_dtype),
            grad_s.to(initial_dtype),
            scores.keys_gradient(),
            grad_values.to(values_dtype),
            None,
            grad_query_weight,
            gate_order_back(grad_hidden_weight, dim=0),
            gate_order_back(grad_hidden_bias, dim=0),
            scores.energy_gradient(),
            None,
        )


def luong_gru_loop(
    input_gates: torch.Tensor,
    initial: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    query_weight: torch.Tensor,
    hidden_weight: torch.Tensor,
    hidden_bias: torch.Tensor,
    energy: torch.Tensor,
    combine_weight: torch.Tensor,
    feed_weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attentional vectors h̃_1..h̃_T (batch, steps, hidden) and weights (batch, steps, src).

    As :func:`bahdanau_gru_loop`, with ``values`` the annotations h_j (batch, src, context),
    ``combine_weight`` W_c (hidden, context + hidden) and ``feed_weight`` W_f (3·hidden, hidden).
    """
    dtype = product_dtype(keys)
    with torch.autocast(keys.device.type, enabled=False):
        return LuongLoop.apply(
            input_gates,
            initial,
            keys,
            values,
            mask,
            query_weight,
            hidden_weight,
            hidden_bias,
            energy,
            combine_weight,
            feed_weight,
            dtype,
        )


class LuongLoop(torch.autograd.Function):
    """Forward without recording; backward through time by hand.

    Every state s_k is multiplied once, by [W; W_cs; W_hn; W_hr; W_hz] (W_cs: W_c's columns for
    s): the query and the state's share of h̃ for the step that made it, and the state's share
    of the gates for the step that reads it. One row per state of the backward's buffer,
    [dq | dh̃_pre | dh_n | dr | dz | dx_n], holds the gradient of that product (its first
    att + 4·hidden columns) and of the input's gates of the step that reads s_k (its last
    3·hidden). s_0 queries nothing and s_T is read by no step: their rows are zero there.
    """

    @staticmethod
    def forward(
        ctx: Any,
        input_gates: torch.Tensor,
        initial: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        query_weight: torch.Tensor,
        hidden_weight: torch.Tensor,
        hidden_bias: torch.Tensor,
        energy: torch.Tensor,
        combine_weight: torch.Tensor,
        feed_weight: torch.Tensor,
        dtype: torch.dtype,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, steps, _ = input_gates.shape
        src, att = keys.shape[1:]
        size = initial.size(1)
        real = keys.dtype
        context_size = values.size(2)
        ctx.dtypes = input_gates.dtype, initial.dtype, values.dtype
        combine_context, combine_state = combine_weight.split([context_size, size], dim=1)
        weight = torch.cat(
            [query_weight, combine_state, state_gate_order(hidden_weight, dim=0)]
        ).to(dtype)  # (att + 4·hidden, hidden)
        combine_context = combine_context.to(dtype)
        feed = feed_weight.to(dtype)
        folded, b_n = split_state_bias(hidden_bias)
        gates_in = input_gates.transpose(0, 1) + folded  # float32
        values = values.to(real)
        score_bias = _score_bias(mask, real)
        states = keys.new_empty(steps + 1, batch, size)  # s_0 .. s_T
        states[0] = initial
        queries = keys.new_empty(steps, batch, att)  # W s_t
        tanh = torch.empty_like(keys)
        weights = keys.new_empty(steps, batch, src)
        contexts = keys.new_empty(steps, batch, context_size)  # C_i
        attentional = keys.new_empty(steps, batch, size)  # h̃_i
        gates = keys.new_empty(steps, batch, 2 * size)
        candidate = keys.new_empty(steps, batch, size)
        hidden_n = keys.new_empty(steps, batch, size)
        products = states[0].to(dtype) @ weight.t()
        for t in range(steps):
            x = gates_in[t] if t == 0 else gates_in[t] + attentional[t - 1].to(dtype) @ feed.t()
            gru_cell(
                x,
                products[:, att + size :],
                b_n,
                states[t],
                gates[t],
                hidden_n[t],
                candidate[t],
                states[t + 1],
            )
            products = states[t + 1].to(dtype) @ weight.t()  # (batch, att + 4·hidden)
            queries[t] = products[:, :att]
            _attend(queries[t].unsqueeze(1), keys, score_bias, energy, tanh, weights[t])
            torch.bmm(weights[t].unsqueeze(1), values, out=contexts[t].unsqueeze(1))
            mixed = (contexts[t].to(dtype) @ combine_context.t()).to(real)
            torch.add(mixed, products[:, att : att + size], out=attentional[t]).tanh_()
        ctx.device_type = keys.device.type
        ctx.save_for_backward(
            states,
            queries,
            keys,
            weights,
            contexts,
            attentional,
            gates,
            candidate,
            hidden_n,
            weight,
            combine_context,
            feed,
            values,
            energy,
        )
        return attentional.transpose(0, 1), weights.transpose(0, 1)

    @staticmethod
    @backward_without_autocast
    def backward(
        ctx: Any, grad_attentional: torch.Tensor | None, grad_weights: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        (
            states,
            queries,
            keys,
            weights,
            contexts,
            attentional,
            gates,
            candidate,
            hidden_n,
            weight,
            combine_context,
            feed,
            values,
            energy,
        ) = ctx.saved_tensors
        gates_dtype, initial_dtype, values_dtype = ctx.dtypes
        dtype = weight.dtype
        steps, batch, att = queries.shape
        size = states.size(2)
        to_x_n, to_z, to_r = gru_local_gradients(gates, candidate, hidden_n, states[:-1])
        reset, update = gates.chunk(2, dim=-1)
        to_pre = torch.addcmul(torch.ones_like(energy[0]), attentional, attentional, value=-1)
        scores = _ScoresBackward(queries, keys, energy)
        rows = states.new_zeros(steps + 1, batch, att + 5 * size)
        grad_contexts = states.new_empty(steps, batch, contexts.size(2))
        values_t = values.transpose(1, 2)  # (batch, context, src)
        carry = states.new_zeros(batch, size)  # from s_{t+2} back to s_{t+1} through the GRU
        for t in reversed(range(steps)):
            row = rows[t + 1]  # s_{t+1}: made by step t, read by step t + 1
            # h̃_t = tanh(W_cc C_t + W_cs s_{t+1}), read by the output and the next step's x.
            grad_h = torch.zeros_like(carry) if grad_attentional is None else grad_attentional[:, t]
            if t + 1 < steps:
                grad_h = grad_h + (row[:, att + 2 * size :].to(dtype) @ feed).to(states.dtype)
            grad_mixed = torch.mul(grad_h, to_pre[t], out=row[:, att : att + size])
            grad_contexts[t] = grad_mixed.to(dtype) @ combine_context
            grad_a = torch.bmm(grad_contexts[t].unsqueeze(1), values_t).squeeze(1)
            if grad_weights is not None:
                grad_a += grad_weights[:, t]
            scores.step(t, grad_a, weights[t], row[:, :att])
            grad_s = (row[:, : att + 4 * size].to(dtype) @ weight).to(states.dtype) + carry
            gru_cell_backward(
                grad_s, to_x_n[t], to_z[t], to_r[t], reset[t], rows[t][:, att + size :]
            )
            carry = grad_s * update[t]
        grad_initial = (rows[0, :, : att + 4 * size].to(dtype) @ weight).to(states.dtype) + carry
        grad_products = rows[:, :, : att + 4 * size].reshape((steps + 1) * batch, -1)
        all_states = states.reshape((steps + 1) * batch, size).to(dtype)
        grad_weight = weight_gradient(grad_products.to(dtype), all_states).to(states.dtype)
        grad_query, grad_combine_state, grad_hidden = grad_weight.split([att, size, 3 * size])
        grad_pre_all = rows[1:, :, att : att + size].reshape(steps * batch, size)
        grad_combine_context = weight_gradient(
            grad_pre_all.to(dtype), contexts.reshape(steps * batch, -1).to(dtype)
        )
        grad_x = rows[:steps, :, att + 2 * size :]  # (steps, batch, 3·hidden): r, z, n
        grad_feed = weight_gradient(
            grad_x[1:].reshape(-1, 3 * size).to(dtype), attentional[:-1].reshape(-1, size).to(dtype)
        )
        grad_values = torch.bmm(weights.permute(1, 2, 0), grad_contexts.transpose(0, 1))
        grad_hidden_bias = rows[:steps, :, att + size : att + 4 * size].sum((0, 1))
        return (
            grad_x.transpose(0, 1).to(gates_dtype),
            grad_initial.to(initial_dtype),
            scores.keys_gradient(),
            grad_values.to(values_dtype),
            None,
            grad_query,
            gate_order_back(grad_hidden, dim=0),
            gate_order_back(grad_hidden_bias, dim=0),
            scores.energy_gradient(),
            torch.cat([grad_combine_context.to(states.dtype), grad_combine_state], dim=1),
            grad_feed.to(states.dtype),
            None,
        )
