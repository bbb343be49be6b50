"""The reference decoder's teacher-forced loop, with back-propagation through time written out.

For Bahdanau's wiring with a GRU and the additive scorer (``model=bahdanau``), each output word i
runs, from the previous state s = s_{i-1}:

    e_ij = vᵀ tanh(W s + U h_j)            similarity of s with each annotation (U h_j: ``keys``)
    a_i  = softmax_j(e_ij) over real words  attention weights
    x    = y-gates_i + Σ_j a_ij (W_c h_j)   the input's share of the GRU gates, context included
    s_i  = GRU(x, W_hh s + b_hh, s)

Autograd records some forty operations per word for this and replays them backward one by one,
each with its own bookkeeping: gradients summed into buffers, casts back from bfloat16, the
concatenation that undoes ``chunk``. :class:`AdditiveGRULoop` runs the same equations forward
without recording them and backward by hand: per word a few element-wise passes and two small
matrix products ([W; W_hh] is one product with s), and every weight gradient is one product over
all words at the end. The generic loop (``RNNDecoder.forward``) stays the definition; a test
holds the two to the same outputs and gradients.
"""

from __future__ import annotations

from typing import Any

import torch

from seq2seq.model.recurrence import (
    gate_order_back,
    gru_cell,
    gru_cell_backward,
    gru_local_gradients,
    product_dtype,
    state_gate_order,
)


def additive_gru_loop(
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
        return AdditiveGRULoop.apply(
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


class AdditiveGRULoop(torch.autograd.Function):
    """Forward without recording; backward through time by hand.

    The products of s come in the order [W; W_hn; W_hr; W_hz] (the GRU's in
    :func:`~seq2seq.model.recurrence.gru_cell`'s order), so one row of the backward's buffer,
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
        b_r, b_z, b_n = hidden_bias.chunk(3)
        # r and z add b_hh as it is: fold it into the input's share once for all steps. The
        # values' share is a weighted mix of memory-bound rows, faster in float32.
        gates_in = input_gates.transpose(0, 1) + torch.cat([b_r, b_z, 0 * b_n])  # float32
        values = value_gates.to(real)
        score_bias = torch.zeros_like(mask, dtype=real).masked_fill_(~mask, float("-inf"))
        states = keys.new_empty(steps + 1, batch, size)  # s_0 .. s_T
        states[0] = initial
        tanhs = keys.new_empty(steps, batch, src, att)  # tanh(W s + U h_j)
        weights = keys.new_empty(steps, batch, src)  # a_ij
        gates = keys.new_empty(steps, batch, 2 * size)  # reset r, update z
        candidate = keys.new_empty(steps, batch, size)  # n
        hidden_n = keys.new_empty(steps, batch, size)  # W_hn s + b_hn
        for t in range(steps):
            products = states[t].to(dtype) @ weight.t()  # (batch, att + 3·hidden)
            query = products[:, :att].to(real).unsqueeze(1)  # (batch, 1, att)
            torch.add(query, keys, out=tanhs[t]).tanh_()
            scores = torch.addmv(score_bias.view(-1), tanhs[t].view(-1, att), energy)
            torch.softmax(scores.view(batch, src), dim=-1, out=weights[t])
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
            states, tanhs, weights, gates, candidate, hidden_n, weight, values, energy
        )
        ctx.dtypes = input_gates.dtype, initial.dtype, value_gates.dtype
        return states[1:].transpose(0, 1), weights.transpose(0, 1)

    @staticmethod
    def backward(
        ctx: Any, grad_states: torch.Tensor | None, grad_weights: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        # A backward called inside an autocast region must not recast our products.
        with torch.autocast(ctx.device_type, enabled=False):
            return AdditiveGRULoop._backward(ctx, grad_states, grad_weights)

    @staticmethod
    def _backward(
        ctx: Any, grad_states: torch.Tensor | None, grad_weights: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        states, tanhs, weights, gates, candidate, hidden_n, weight, values, energy = (
            ctx.saved_tensors
        )
        gates_dtype, initial_dtype, values_dtype = ctx.dtypes
        dtype = weight.dtype
        steps, batch, src, att = tanhs.shape
        size = states.size(2)
        previous = states[:-1]
        to_x_n, to_z, to_r = gru_local_gradients(gates, candidate, hidden_n, previous)
        reset, update = gates.chunk(2, dim=-1)
        # e = v · tanh(q + k): d(q + k) = de · v (1 - tanh²); overwritten below by the gradient.
        one = torch.ones((), dtype=states.dtype, device=states.device)
        grad_pre = torch.addcmul(one, tanhs, tanhs, value=-1).mul_(energy)
        rows = states.new_empty(steps, batch, att + 4 * size)  # [dq | dh_n | dr | dz | dx_n]
        grad_scores = []
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
            grad_score = torch._softmax_backward_data(grad_a, weights[t], -1, weights.dtype)
            grad_scores.append(grad_score)
            grad_pre[t].mul_(grad_score.unsqueeze(-1))
            torch.sum(grad_pre[t], dim=1, out=row[:, :att])
            grad_s = torch.addcmul(row[:, : att + 3 * size].to(dtype) @ weight, grad_s, update[t])
        grad_products = rows[:, :, : att + 3 * size].reshape(steps * batch, -1)
        grad_weight = grad_products.t().to(dtype) @ previous.reshape(steps * batch, size).to(dtype)
        grad_query_weight, grad_hidden_weight = grad_weight.to(states.dtype).split([att, 3 * size])
        grad_hidden_bias = rows[:, :, att : att + 3 * size].sum((0, 1))
        grad_x = rows[:, :, att + size :].transpose(0, 1)  # (batch, steps, 3·hidden): r, z, n
        grad_values = torch.bmm(weights.permute(1, 2, 0), grad_x)  # Σ_t a_tᵀ dx_t
        grad_energy = torch.stack(grad_scores[::-1]).reshape(1, -1) @ tanhs.reshape(-1, att)
        return (
            grad_x.to(gates_dtype),
            grad_s.to(initial_dtype),
            grad_pre.sum(0),
            grad_values.to(values_dtype),
            None,
            grad_query_weight,
            gate_order_back(grad_hidden_weight, dim=0),
            gate_order_back(grad_hidden_bias, dim=0),
            grad_energy.squeeze(0),
            None,
        )
