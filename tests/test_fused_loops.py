"""The hand-written recurrences (forward unrecorded, backward through time by hand) against
the step-by-step loops that autograd differentiates: same outputs, same gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seq2seq.data.batching import collate
from seq2seq.data.tokenizer import PAD_ID
from seq2seq.evaluation import sequence_loss
from seq2seq.model.decoder import RNNDecoder
from seq2seq.model.recurrence import GRULoop, gru_update
from tests.test_model import small_model


def padded_batch():
    """Source lengths 5, 2, 3 and 1: every row but one has padding the attention must skip."""
    sources = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14], [15]]
    targets = [[15, 16, 17], [18, 19, 20, 21], [22], [23, 24]]
    return collate(sources, targets, [0, 1, 2, 3])


def decoder_run(model, batch, loop: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Logits, weights and every parameter's gradient of a loss that reads both outputs."""
    model.zero_grad()
    encoder = model.encode(batch)
    decode = RNNDecoder.forward if loop else type(model.decoder).forward
    logits, weights = decode(model.decoder, batch.tgt_in, encoder)
    # The weights enter the loss too: their gradient path (through the softmax) is checked.
    probe = torch.linspace(-1, 1, weights.numel(), dtype=weights.dtype).view_as(weights)
    loss = sequence_loss(logits.float(), batch.tgt_out, 0.1) + (weights * probe).sum()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return logits, weights, grads


def graph_nodes(node, seen: set | None = None) -> set:
    seen = set() if seen is None else seen
    if node is not None and node not in seen:
        seen.add(node)
        for child, _ in node.next_functions:
            graph_nodes(child, seen)
    return seen


@pytest.mark.parametrize(("style", "loop"), [("bahdanau", "Bahdanau"), ("luong", "Luong")])
def test_additive_gru_models_train_through_the_hand_written_loops(style: str, loop: str) -> None:
    logits, _ = small_model(style=style).train()(padded_batch())
    names = {type(node).__name__ for node in graph_nodes(logits.grad_fn)}
    assert {f"{loop}LoopBackward", "GRULoopBackward"} <= names


def test_other_models_keep_the_recorded_loop() -> None:
    for model in (
        small_model(rnn="lstm"),
        small_model("general"),
        small_model(style="luong", feeding=False),
    ):
        logits, _ = model.train()(padded_batch())
        names = {type(node).__name__ for node in graph_nodes(logits.grad_fn)}
        assert not {"BahdanauLoopBackward", "LuongLoopBackward"} & names


STYLES = pytest.mark.parametrize("style", ["bahdanau", "luong"])


@STYLES
def test_the_loop_matches_the_step_by_step_decoder_in_float64(style: str) -> None:
    model = small_model(style=style).double().train()
    batch = padded_batch()
    fused = decoder_run(model, batch, loop=False)
    loop = decoder_run(model, batch, loop=True)
    torch.testing.assert_close(fused[0], loop[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fused[1], loop[1], rtol=1e-10, atol=1e-12)
    assert fused[2].keys() == loop[2].keys()
    for name, expected in loop[2].items():
        torch.testing.assert_close(fused[2][name], expected, rtol=1e-9, atol=1e-12, msg=name)


@STYLES
def test_padded_source_words_get_no_attention_weight(style: str) -> None:
    model = small_model(style=style).double().train()
    batch = padded_batch()
    _, weights = model.decoder(batch.tgt_in, model.encode(batch))  # (batch, tgt, 1, src)
    padding = batch.src.eq(PAD_ID)[:, None, None, :].expand_as(weights)
    assert padding.any()
    assert weights[padding].abs().max() == 0
    torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))


@STYLES
def test_under_bf16_autocast_the_loop_stays_close_to_the_step_by_step_decoder(style: str) -> None:
    model = small_model(style=style).train()
    batch = padded_batch()
    results = []
    for loop in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(decoder_run(model, batch, loop))
    (logits, weights, grads), (loop_logits, loop_weights, loop_grads) = results
    assert weights.dtype == torch.float32
    torch.testing.assert_close(logits.float(), loop_logits.float(), rtol=0.05, atol=0.05)
    torch.testing.assert_close(weights, loop_weights, rtol=0.02, atol=0.02)
    for name, expected in loop_grads.items():
        assert grads[name].dtype == torch.float32, name
        scale = expected.abs().max().item()
        torch.testing.assert_close(grads[name], expected, rtol=0.1, atol=0.05 * scale, msg=name)


def gru_reference(input_gates, weight, bias):
    """The recorded loop: gru_update step by step from zero, each group its own weights."""
    groups, batch, steps, _ = input_gates.shape
    hidden = input_gates.new_zeros(groups, batch, weight.size(-1))
    outputs = []
    for t in range(steps):
        h = torch.bmm(hidden, weight.transpose(1, 2)) + bias.unsqueeze(1)
        hidden = gru_update(input_gates[:, :, t], h, hidden)
        outputs.append(hidden)
    return torch.stack(outputs, 2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gru_loop_matches_the_recorded_recurrence(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    cell = nn.GRUCell(4, 6)  # only for PyTorch's own initial scale
    groups, batch, steps, size = 2, 3, 5, cell.hidden_size
    inputs = (torch.randn(groups, batch, steps, 3 * size) * 0.5).to(dtype).requires_grad_()
    weight = torch.stack([cell.weight_hh.detach()] * groups).to(dtype)
    weight = (weight + 0.1 * torch.randn_like(weight)).requires_grad_()
    bias = (0.1 * torch.randn(groups, 3 * size, dtype=dtype)).requires_grad_()
    target = torch.randn(groups, batch, steps, size, dtype=dtype)
    results = []
    for fused in (True, False):
        for tensor in (inputs, weight, bias):
            tensor.grad = None
        states = (
            GRULoop.apply(inputs, weight, bias, dtype)
            if fused
            else gru_reference(inputs, weight, bias)
        )
        (states * target).sum().backward()
        results.append([states.detach(), inputs.grad, weight.grad, bias.grad])
    tolerance = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {}
    for mine, expected in zip(*results, strict=True):
        torch.testing.assert_close(mine, expected, **tolerance)
