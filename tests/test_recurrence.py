"""The encoder's CPU recurrence against PyTorch's packed GRU/LSTM on the same parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.fast.recurrence import run_encoder_rnn


@pytest.mark.parametrize("rnn_type", [nn.GRU, nn.LSTM])
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, True), (2, True), (2, False)])
def test_same_outputs_final_states_and_gradients_as_the_packed_module(
    rnn_type: type[nn.RNNBase], layers: int, bidirectional: bool
) -> None:
    torch.manual_seed(0)
    rnn = rnn_type(5, 7, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    rnn = rnn.double()
    lengths = torch.tensor([6, 4, 4, 1])
    inputs = torch.randn(4, 6, 5, dtype=torch.double)
    real = (torch.arange(6) < lengths.unsqueeze(1)).unsqueeze(-1)
    target = torch.randn(4, 6, 7 * (2 if bidirectional else 1), dtype=torch.double)

    def run(ours: bool) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        rnn.zero_grad()
        x = inputs.clone().requires_grad_()
        if ours:
            outputs, final = run_encoder_rnn(rnn, x, lengths, lambda y: y)
        else:
            packed, final = rnn(pack_padded_sequence(x, lengths, batch_first=True))
            outputs = pad_packed_sequence(packed, batch_first=True, total_length=6)[0]
            final = final[0] if isinstance(final, tuple) else final
        outputs = outputs * real
        ((outputs * target).sum() + final.pow(2).sum()).backward()
        return outputs, final, [x.grad] + [p.grad for p in rnn.parameters()]

    ours, theirs = run(True), run(False)
    torch.testing.assert_close(ours[0], theirs[0])
    torch.testing.assert_close(ours[1], theirs[1])
    for mine, expected in zip(ours[2], theirs[2], strict=True):
        torch.testing.assert_close(mine, expected)


def test_between_layers_is_applied_to_every_layer_input_above_the_first() -> None:
    rnn = nn.GRU(3, 3, num_layers=3, batch_first=True)
    calls = []
    run_encoder_rnn(rnn, torch.randn(2, 4, 3), torch.tensor([4, 2]), lambda y: calls.append(y) or y)
    assert len(calls) == 2 and all(call.shape == (2, 4, 3) for call in calls)
