"""The fast kernels (``model.kernels=auto`` on CPU: hand-written recurrences, forward unrecorded
and backward through time by hand, and the loop's products summed once) against the reference
modules that autograd differentiates step by step: same outputs, same gradients."""

from __future__ import annotations

import pytest
import torch
from helpers import graph_nodes, padded_batch, small_model, training_run
from torch import nn

from seq2seq.data.tokenizer import PAD_ID
from seq2seq.fast.recurrence import GRULoop
from seq2seq.model.cells import gru_update
from seq2seq.model.seq2seq import Seq2Seq


@pytest.mark.parametrize(("style", "loop"), [("bahdanau", "Bahdanau"), ("luong", "Luong")])
def test_additive_gru_models_train_through_the_hand_written_loops(style: str, loop: str) -> None:
    logits, _ = small_model(style=style).train()(padded_batch())
    names = {type(node).__name__ for node in graph_nodes(logits.grad_fn)}
    assert {f"{loop}LoopBackward", "GRULoopBackward"} <= names


def test_other_models_keep_the_recorded_loop_with_its_products_summed_once() -> None:
    """Luong's wiring without input feeding has no step loop: all steps run at once."""
    for model, loop in (
        (small_model(rnn="lstm"), True),
        (small_model("general"), True),
        (small_model(style="luong", feeding=False), False),
    ):
        logits, _ = model.train()(padded_batch())
        names = {type(node).__name__ for node in graph_nodes(logits.grad_fn)}
        assert not {"BahdanauLoopBackward", "LuongLoopBackward"} & names
        assert ("_StepBackward" in names) == loop


def fast_and_reference(*args: object, **kwargs: object) -> tuple[Seq2Seq, Seq2Seq]:
    """One model twice, with the fast kernels and without: the same parameters."""
    fast = small_model(*args, **kwargs, kernels="auto")
    reference = small_model(*args, **kwargs, kernels="reference")
    assert fast.kernels == "fast" and reference.kernels == "reference"
    for (name, mine), (_, expected) in zip(
        fast.state_dict().items(), reference.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(mine, expected, rtol=0, atol=0, msg=name)
    return fast, reference


@pytest.mark.parametrize("attention", ["none", "bahdanau", "general", "multihead"])
@pytest.mark.parametrize(
    ("rnn", "style", "feeding", "tie"),
    [
        ("gru", "bahdanau", True, False),
        ("lstm", "bahdanau", True, False),
        ("gru", "luong", True, False),
        ("gru", "luong", True, True),
    ],
)
def test_the_fast_kernels_train_the_reference_model_in_float64(
    attention: str, rnn: str, style: str, feeding: bool, tie: bool
) -> None:
    """The hand-written loops (GRU with the additive scorer), and the recorded loop with its
    products summed once (the others), give the reference's outputs and every gradient."""
    fast, reference = fast_and_reference(attention, rnn, style, feeding, tie=tie)
    batch = padded_batch()
    mine = training_run(fast.double().train(), batch)
    expected = training_run(reference.double().train(), batch)
    torch.testing.assert_close(mine[0], expected[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(mine[1], expected[1], rtol=1e-10, atol=1e-12)
    assert mine[2].keys() == expected[2].keys()
    for name, gradient in expected[2].items():
        torch.testing.assert_close(mine[2][name], gradient, rtol=1e-9, atol=1e-12, msg=name)


STYLES = pytest.mark.parametrize("style", ["bahdanau", "luong"])


@STYLES
def test_padded_source_words_get_no_attention_weight(style: str) -> None:
    model = small_model(style=style).double().train()
    batch = padded_batch()
    _, weights = model(batch)  # (batch, tgt, 1, src)
    padding = batch.src.eq(PAD_ID)[:, None, None, :].expand_as(weights)
    assert padding.any()
    assert weights[padding].abs().max() == 0
    torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))


@STYLES
def test_under_bf16_autocast_the_fast_kernels_stay_close_to_the_reference(style: str) -> None:
    """The fast kernels under autocast (bf16 products, float32 elsewhere) against the reference
    in float32."""
    batch = padded_batch()
    fast, reference = fast_and_reference(style=style)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        results = [training_run(fast.train(), batch)]
    results.append(training_run(reference.train(), batch))
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
