"""GRU and LSTM arithmetic, and the encoder's recurrence over a padded batch.

The cell equations (PyTorch's gate order and biases, so ``nn.GRU``/``nn.LSTM`` parameters
apply unchanged) are written once here and used by the encoder and the decoder.

:func:`run_encoder_rnn` runs an ``nn.GRU``/``nn.LSTM``'s parameters over a padded batch faster
on CPU than the module does on a packed one:

- the input's share of the gates is one product over all steps (packed, PyTorch makes one
  per step);
- both directions step together, one batched product per step instead of one each, the backward
  direction reading each sentence from its own last word (reversed within its length, so
  padding always comes after the words and never reaches a state that is used);
- the recurrent weight gradient is one product over all steps (:mod:`seq2seq.model.stepwise`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from seq2seq.model.stepwise import StepwiseProducts


def gru_update(x: torch.Tensor, h: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """New GRU state from the input's and the state's shares of the gates (r, z, n)."""
    x_r, x_z, x_n = x.chunk(3, dim=-1)
    h_r, h_z, h_n = h.chunk(3, dim=-1)
    reset = torch.sigmoid(x_r + h_r)
    update = torch.sigmoid(x_z + h_z)
    candidate = torch.tanh(x_n + reset * h_n)
    return candidate + update * (hidden - candidate)


def lstm_update(
    x: torch.Tensor, h: torch.Tensor, cell: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """New LSTM (hidden, cell) from the shares of the gates (i, f, g, o) and the old cell."""
    i, f, g, o = (x + h).chunk(4, dim=-1)
    cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell), cell


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
        gates = [F.linear(x, w, b) for w, b in zip(weights[0], weights[1], strict=True)]
        if directions == 2:
            gates[1] = _reorder(gates[1], reverse)
        input_gates = torch.stack(gates)  # (directions, batch, steps, gates)
        recurrent, recurrent_bias = torch.stack(weights[2]), torch.stack(weights[3]).unsqueeze(1)
        dtype = torch.promote_types(inputs.dtype, torch.float32)  # float32 under autocast
        hidden = inputs.new_zeros(directions, batch, rnn.hidden_size, dtype=dtype)
        cell = torch.zeros_like(hidden)
        products = StepwiseProducts()
        outputs = []
        for x_t in input_gates.unbind(2):  # (directions, batch, gates)
            h = products.batched_linear(recurrent, hidden) + recurrent_bias
            if isinstance(rnn, nn.LSTM):
                hidden, cell = lstm_update(x_t, h, cell)
            else:
                hidden = gru_update(x_t, h, hidden)
            outputs.append(hidden)
        output = list(torch.stack(outputs, 2).unbind(0))  # directions × (batch, steps, hidden)
        finals.append(output[0][rows, last])
        if directions == 2:
            finals.append(output[1][rows, last])  # the backward direction's last read: word 0
            output[1] = _reorder(output[1], reverse)
        x = torch.cat(output, dim=-1)
    return x, torch.stack(finals)


def _reorder(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``x[b, order[b, t]]`` for (batch, steps, features)."""
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.size(-1)))
