"""The encoder's recurrence over a padded batch on CPU, and the GRU arithmetic of the
hand-written loops.

:func:`run_encoder_rnn` runs an ``nn.GRU``/``nn.LSTM``'s parameters over a padded batch faster
on CPU than the module does on a packed one:

- the input's share of the gates is one product over all steps (packed, PyTorch makes one
  per step);
- both directions step together, one batched product per step instead of one each, the backward
  direction reading each sentence from its own last word (reversed within its length, so
  padding always comes after the words and never reaches a state that is used);
- the recurrent weight gradient is one product over all steps;
- a GRU runs as :class:`GRULoop`: forward without recording the graph, backward through time
  written out (:func:`gru_cell` and :func:`gru_cell_backward`, shared with the decoders'
  hand-written loops), a few element-wise passes per step instead of autograd replaying some twenty
  recorded operations, each with its bookkeeping. An LSTM takes the recorded loop, its weight
  gradient summed once by :mod:`seq2seq.fast.stepwise`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from seq2seq.device import backward_without_autocast, product_dtype
from seq2seq.fast.row_blocks import linear, weight_gradient
from seq2seq.fast.stepwise import StepwiseProducts
from seq2seq.model.cells import lstm_update


def split_state_bias(bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """b_hh (..., 3·hidden) → (b_hr | b_hz | 0, b_hn).

    r and z add b_hh as it is, so their share can be folded into the input's gates once for all
    steps; b_hn sits inside r ⊙ (W_hn s + b_hn) and stays with the state.
    """
    b_r, b_z, b_n = bias.chunk(3, dim=-1)
    return torch.cat([b_r, b_z, torch.zeros_like(b_n)], dim=-1), b_n


# The hand-written GRU: the state's share of the gates comes in the order (n, r, z), so that one
# row of the backward's buffer, [dh_n | dr | dz | dx_n], holds both the gradient of that share
# (its first 3·hidden columns) and of the input's share (r, z, n: its last 3·hidden).


def state_gate_order(x: torch.Tensor, dim: int) -> torch.Tensor:
    """PyTorch's (r, z, n) → (n, r, z) along ``dim``."""
    r, z, n = x.chunk(3, dim=dim)
    return torch.cat([n, r, z], dim=dim)


def gate_order_back(grad: torch.Tensor, dim: int) -> torch.Tensor:
    """(n, r, z) → PyTorch's (r, z, n) along ``dim``."""
    n, r, z = grad.chunk(3, dim=dim)
    return torch.cat([r, z, n], dim=dim)


def gru_cell(
    x: torch.Tensor,
    products: torch.Tensor,
    bias_n: torch.Tensor,
    state: torch.Tensor,
    gates: torch.Tensor,
    hidden_n: torch.Tensor,
    candidate: torch.Tensor,
    out: torch.Tensor,
) -> None:
    """One GRU update into buffers, as :func:`~seq2seq.model.cells.gru_update` computes it.

    ``x`` (..., 3·hidden): the input's share with b_hr and b_hz already added; ``products``
    (..., 3·hidden): W_hh s in the order (n, r, z), without bias; ``bias_n``: b_hn. Writes the
    gates r|z (..., 2·hidden), W_hn s + b_hn, the candidate n and the new state ``out``.
    """
    size = state.size(-1)
    torch.add(x[..., : 2 * size], products[..., size:], out=gates).sigmoid_()
    reset, update = gates.chunk(2, dim=-1)
    torch.add(products[..., :size], bias_n, out=hidden_n)
    n = torch.addcmul(x[..., 2 * size :], reset, hidden_n, out=candidate).tanh_()
    torch.addcmul(n, update, state - n, out=out)  # n + z (s - n)


def gru_local_gradients(
    gates: torch.Tensor, candidate: torch.Tensor, hidden_n: torch.Tensor, previous: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every step at once: ∂x_n/∂s', ∂z_pre/∂s' and ∂r_pre/∂x_n (pre: before sigmoid).

    s' = n + z (s - n) with n = tanh(x_n + r h_n), z = σ(z_pre), r = σ(r_pre).
    """
    reset, update = gates.chunk(2, dim=-1)
    one = torch.ones((), dtype=gates.dtype, device=gates.device)
    to_x_n = (1 - update) * torch.addcmul(one, candidate, candidate, value=-1)
    to_z = (previous - candidate) * update * (1 - update)
    to_r = hidden_n * reset * (1 - reset)
    return to_x_n, to_z, to_r


def gru_cell_backward(
    grad: torch.Tensor,
    to_x_n: torch.Tensor,
    to_z: torch.Tensor,
    to_r: torch.Tensor,
    reset: torch.Tensor,
    row: torch.Tensor,
) -> None:
    """Writes [dh_n | dr | dz | dx_n] into ``row`` (..., 4·hidden) from ``grad`` = ∂L/∂s'.

    The gradient that s' passes back to s is then ``grad`` · z + (row's first 3·hidden) · W_hh.
    """
    dh_n, dr, dz, dx_n = row.chunk(4, dim=-1)
    torch.mul(grad, to_x_n, out=dx_n)
    torch.mul(grad, to_z, out=dz)
    torch.mul(dx_n, to_r, out=dr)
    torch.mul(dx_n, reset, out=dh_n)


class GRULoop(torch.autograd.Function):
    """GRU recurrences stepping together from s_0 = 0; backward through time by hand.

    ``input_gates`` (groups, batch, steps, 3·hidden) with b_ih, ``weight`` W_hh (groups,
    3·hidden, hidden), ``bias`` b_hh (groups, 3·hidden) → states (groups, batch, steps, hidden).
    Under autocast the products run in its dtype, the rest in float32.
    """

    @staticmethod
    def forward(
        ctx: Any,
        input_gates: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        groups, batch, steps, _ = input_gates.shape
        size = weight.size(-1)
        ordered = state_gate_order(weight, dim=-2).to(dtype)  # (groups, 3·hidden, hidden): n, r, z
        folded, b_n = split_state_bias(bias.unsqueeze(1))  # (groups, 1, ·)
        gates_in = input_gates + folded.unsqueeze(2)  # float32: the bias promotes bfloat16
        # Step-major per group, (groups, steps, batch, ·): every step's slice is one view and the
        # backward's products over all steps are views too.
        states = weight.new_empty(groups, steps + 1, batch, size)
        states[:, 0] = 0
        gates = weight.new_empty(groups, steps, batch, 2 * size)
        hidden_n = weight.new_empty(groups, steps, batch, size)
        candidate = weight.new_empty(groups, steps, batch, size)
        for t in range(steps):
            products = torch.bmm(states[:, t].to(dtype), ordered.transpose(1, 2))
            gru_cell(
                gates_in[:, :, t],
                products,
                b_n,
                states[:, t],
                gates[:, t],
                hidden_n[:, t],
                candidate[:, t],
                states[:, t + 1],
            )
        ctx.device_type = weight.device.type
        ctx.save_for_backward(states, gates, hidden_n, candidate, ordered)
        ctx.gates_dtype = input_gates.dtype
        return states[:, 1:].transpose(1, 2)

    @staticmethod
    @backward_without_autocast
    def backward(ctx: Any, grad_states: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        states, gates, hidden_n, candidate, ordered = ctx.saved_tensors
        groups, steps, batch, size = candidate.shape
        previous = states[:, :-1]
        to_x_n, to_z, to_r = gru_local_gradients(gates, candidate, hidden_n, previous)
        reset, update = gates.chunk(2, dim=-1)
        rows = states.new_empty(groups, steps, batch, 4 * size)  # [dh_n | dr | dz | dx_n]
        grad_s = torch.zeros_like(states[:, 0])
        for t in reversed(range(steps)):
            grad = grad_s + grad_states[:, :, t]
            gru_cell_backward(grad, to_x_n[:, t], to_z[:, t], to_r[:, t], reset[:, t], rows[:, t])
            back = torch.bmm(rows[:, t, :, : 3 * size].to(ordered.dtype), ordered)
            grad_s = torch.addcmul(back, grad, update[:, t])
        grad_products = rows[..., : 3 * size].reshape(groups, steps * batch, 3 * size)
        inputs = previous.reshape(groups, steps * batch, size).to(ordered.dtype)
        grad_weight = weight_gradient(grad_products.to(ordered.dtype), inputs)
        grad_bias = grad_products.sum(1)
        grad_gates = rows[..., size:].transpose(1, 2).to(ctx.gates_dtype)
        return (
            grad_gates,
            gate_order_back(grad_weight.to(states.dtype), dim=-2),
            gate_order_back(grad_bias, dim=-1),
            None,
        )


def run_encoder_rnn(
    rnn: nn.GRU | nn.LSTM,
    inputs: torch.Tensor,
    lengths: torch.Tensor,
    between_layers: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``rnn``'s recurrence over ``inputs`` (batch, steps, in) of ``lengths`` real steps.

    Returns the top layer's outputs (batch, steps, directions*hidden), arbitrary on padding,
    and the final hidden states (layers*directions, batch, hidden) in ``nn.GRU``'s order: the
    forward direction's at each sentence's last word, the backward one's at its first.
    ``between_layers`` (dropout) is applied to the input of every layer above the first.
    """
    batch, steps, _ = inputs.shape
    directions = 2 if rnn.bidirectional else 1
    suffixes = ["", "_reverse"][:directions]
    lengths = lengths.to(inputs.device).unsqueeze(1)
    positions = torch.arange(steps, device=inputs.device)
    # Reading order of the backward direction: each sentence reversed within its length.
    reverse = torch.where(positions < lengths, lengths - 1 - positions, positions)
    rows = torch.arange(batch, device=inputs.device)
    last = lengths.squeeze(1) - 1
    finals = []
    x = inputs
    for layer in range(rnn.num_layers):
        if layer:
            x = between_layers(x)
        weights = [
            [getattr(rnn, f"{name}_l{layer}{suffix}") for suffix in suffixes]
            for name in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")
        ]
        gates = [linear(x, w, b) for w, b in zip(weights[0], weights[1], strict=True)]
        if directions == 2:
            gates[1] = _reorder(gates[1], reverse)
        input_gates = torch.stack(gates)  # (directions, batch, steps, gates)
        recurrent, recurrent_bias = torch.stack(weights[2]), torch.stack(weights[3])
        if isinstance(rnn, nn.LSTM):
            states = _lstm_loop(input_gates, recurrent, recurrent_bias)
        else:
            dtype = product_dtype(recurrent)
            with torch.autocast(inputs.device.type, enabled=False):
                states = GRULoop.apply(input_gates, recurrent, recurrent_bias, dtype)
        output = list(states.unbind(0))  # directions × (batch, steps, hidden)
        finals.append(output[0][rows, last])
        if directions == 2:
            finals.append(output[1][rows, last])  # the backward direction's last read: word 0
            output[1] = _reorder(output[1], reverse)
        x = torch.cat(output, dim=-1)
    return x, torch.stack(finals)


def _lstm_loop(
    input_gates: torch.Tensor, recurrent: torch.Tensor, recurrent_bias: torch.Tensor
) -> torch.Tensor:
    """LSTM recurrences stepping together, recorded by autograd: (groups, batch, steps, hidden)."""
    groups, batch, _, _ = input_gates.shape
    dtype = torch.promote_types(input_gates.dtype, torch.float32)  # float32 under autocast
    hidden = input_gates.new_zeros(groups, batch, recurrent.size(-1), dtype=dtype)
    cell = torch.zeros_like(hidden)
    products = StepwiseProducts()
    outputs = []
    for x_t in input_gates.unbind(2):  # (groups, batch, gates)
        h = products.batched_linear(recurrent, hidden) + recurrent_bias.unsqueeze(1)
        hidden, cell = lstm_update(x_t, h, cell)
        outputs.append(hidden)
    return torch.stack(outputs, 2)


def _reorder(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``x[b, order[b, t]]`` for (batch, steps, features)."""
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.size(-1)))
