"""Per-step products whose shared weight gradient is one product over all steps."""

from __future__ import annotations

import gc
import weakref
from contextlib import nullcontext

import pytest
import torch
from helpers import graph_nodes
from torch import nn

from seq2seq.fast.stepwise import StepwiseProducts, SummedOverSteps


def recurrence(layer: nn.Linear, values: torch.Tensor, inputs, products) -> torch.Tensor:
    """h_t = tanh(W h_{t-1} + b + a_t V): one linear and one mix per step."""
    hidden = torch.zeros(values.size(0), layer.in_features, dtype=values.dtype)
    outputs = []
    for weights in inputs:  # (batch, 1, src)
        if products is None:
            h, mixed = layer(hidden), torch.bmm(weights, values).squeeze(1)
        else:
            h, mixed = (
                products.linear(hidden, layer.weight, layer.bias),
                products.mix(weights, values).squeeze(1),
            )
        hidden = torch.tanh(h + mixed)
        outputs.append(hidden)
    return torch.stack(outputs, 1)


@pytest.mark.parametrize("way", ["products", "summed over steps"])
def test_linear_and_mix_sum_their_operand_gradients_over_the_steps(way: str) -> None:
    """Through :class:`StepwiseProducts`, or the plain calls inside :class:`SummedOverSteps`:
    there a product over all steps at once, and a mix with anything else, stay plain."""
    torch.manual_seed(0)
    layer = nn.Linear(6, 6).double()
    values = torch.randn(3, 4, 6, dtype=torch.double, requires_grad=True)
    inputs = [torch.softmax(torch.randn(3, 1, 4, dtype=torch.double), -1) for _ in range(5)]
    target = torch.randn(3, 5, 6, dtype=torch.double)
    grads = []
    for summed in (False, True):
        layer.zero_grad()
        values.grad = None
        if way == "products":
            outputs = recurrence(layer, values, inputs, StepwiseProducts() if summed else None)
        else:
            with SummedOverSteps([values]) if summed else nullcontext():
                outputs = recurrence(layer, values, inputs, None)
                assert layer(outputs).grad_fn.name() != "_StepBackward"  # (batch, steps, in)
                other = torch.bmm(inputs[0], values.detach().clone().requires_grad_())
                assert other.grad_fn.name() != "_StepBackward"
                mixed = torch.bmm(inputs[0], values)
                assert (mixed.grad_fn.name() == "_StepBackward") == summed
        steps = {node.name() for node in graph_nodes(outputs.grad_fn)}
        assert ("_StepBackward" in steps) == summed
        (outputs * target).sum().backward()
        grads.append((layer.weight.grad.clone(), layer.bias.grad.clone(), values.grad.clone()))
    for plain, summed_once in zip(*grads, strict=True):
        torch.testing.assert_close(summed_once, plain, rtol=1e-12, atol=1e-12)


def test_steps_need_not_feed_each_other_and_unused_steps_add_nothing() -> None:
    """Independent steps (any backward order), one of them not in the loss."""
    torch.manual_seed(0)
    layer = nn.Linear(3, 4)
    inputs = [torch.randn(2, 3) for _ in range(4)]
    used = [0, 2, 3]
    grads = []
    for products in (None, StepwiseProducts()):
        layer.zero_grad()
        outputs = [
            layer(x) if products is None else products.linear(x, layer.weight, layer.bias)
            for x in inputs
        ]
        sum(outputs[t].pow(2).sum() * (t + 1) for t in used).backward()
        grads.append((layer.weight.grad.clone(), layer.bias.grad.clone()))
    for plain, summed_once in zip(*grads, strict=True):
        torch.testing.assert_close(summed_once, plain)


def test_under_bf16_autocast_the_weight_gradient_stays_float32_and_close() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(16, 16)
    values = torch.randn(4, 5, 16, requires_grad=True)
    inputs = [torch.softmax(torch.randn(4, 1, 5), -1) for _ in range(6)]
    grads = []
    for products in (None, StepwiseProducts()):
        layer.zero_grad()
        values.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = recurrence(layer, values, inputs, products)
        outputs.float().pow(2).sum().backward()
        grads.append((layer.weight.grad.clone(), values.grad.clone()))
    for plain, summed_once in zip(*grads, strict=True):
        assert summed_once.dtype == torch.float32
        torch.testing.assert_close(summed_once, plain, rtol=0.05, atol=0.05)


def test_without_gradients_the_products_are_plain_calls() -> None:
    layer = nn.Linear(3, 3)
    products = StepwiseProducts()
    x = torch.randn(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(products.linear(x, layer.weight, layer.bias), layer(x))
        assert products.linear(x, layer.weight, layer.bias).grad_fn is None


def test_a_pass_frees_its_records_without_the_cycle_collector() -> None:
    """A reference cycle through the graph would keep every batch's activations until gc ran."""
    gc.collect()
    gc.disable()
    try:
        layer = nn.Linear(3, 3)
        products = StepwiseProducts()
        inner = products.linear(torch.randn(2, 3), layer.weight, layer.bias)
        y = products.linear(inner, layer.weight, layer.bias)
        record = weakref.ref(products._operands[id(layer.weight)][0])
        y.sum().backward()
        del y, inner, products
        assert record() is None
    finally:
        gc.enable()
