"""The GRU and LSTM cell equations, in PyTorch's gate order and biases, so that ``nn.GRU`` and
``nn.LSTM`` parameters apply unchanged. The decoders' step reads them; the hand-written loops of
:mod:`seq2seq.fast` are held to them."""

from __future__ import annotations

import torch


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
