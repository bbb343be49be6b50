"""bfloat16 products in fixed blocks of rows (seq2seq/fast/row_blocks.py): few product shapes
whatever the batch, the same numbers as one product up to bfloat16 rounding."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from helpers import small_model
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from seq2seq.fast import row_blocks
from seq2seq.fast.row_blocks import BlockedLinear, weight_gradient
from seq2seq.fast.row_blocks import row_blocks as blocks_of

PRODUCTS = (torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default)


class ProductShapes(TorchDispatchMode):
    """Records the (rows, reduction) sizes of every 2-D and batched product that runs."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: set[tuple[int, ...]] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func in PRODUCTS:
            a, b = (args[1], args[2]) if func is torch.ops.aten.addmm.default else args[:2]
            self.shapes.add((*a.shape, b.shape[-1]))
        return func(*args, **(kwargs or {}))


def blocked_copy(layer: nn.Linear) -> nn.Linear:
    copy = nn.Linear(layer.in_features, layer.out_features)
    copy.load_state_dict(layer.state_dict())
    copy.__class__ = BlockedLinear
    return copy


def test_pieces_cover_every_row_once_in_few_sizes_copying_only_leftovers() -> None:
    multiple = row_blocks.ROW_MULTIPLE
    sizes = set()
    for rows in range(1, 5000, 7):
        pieces = blocks_of(rows)
        assert pieces[0][0] == 0 and pieces[-1][1] == rows
        for (_, end, _), (start, _, _) in zip(pieces, pieces[1:], strict=False):
            assert start == end  # consecutive, no row twice or missed
        for start, end, padded in pieces:
            assert 0 < end - start <= padded <= row_blocks.BLOCK_ROWS
            assert padded % multiple == 0
            assert padded == end - start or padded == multiple  # only leftovers are padded
            assert start // row_blocks.BLOCK_ROWS == (end - 1) // row_blocks.BLOCK_ROWS
            sizes.add(padded)
    assert len(sizes) <= row_blocks.BLOCK_ROWS // multiple


@pytest.mark.parametrize("rows", [37, 128, 300])
def test_a_blocked_linear_in_bf16_is_the_linear_and_uses_only_block_shapes(
    rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(row_blocks, "BLOCK_ROWS", 128)
    torch.manual_seed(0)
    layer = nn.Linear(24, 40)
    blocked = blocked_copy(layer)
    x = torch.randn(2, rows, 24)
    results = []
    shapes = ProductShapes()
    for module in (layer, blocked):
        inputs = x.clone().requires_grad_()
        with shapes if module is blocked else nullcontext():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = module(inputs)
            y.float().pow(2).sum().backward()
        results.append((y.float(), inputs.grad, module.weight.grad, module.bias.grad))
    assert results[1][0].dtype == torch.float32 and results[1][1].dtype == torch.float32
    for mine, expected in zip(results[1], results[0], strict=True):
        scale = expected.abs().max()
        torch.testing.assert_close(mine / scale, expected / scale, rtol=0, atol=2e-2)
    assert shapes.shapes
    for shape in shapes.shapes:
        row_sizes = [size for size in shape[:-1] if size not in (24, 40)]
        assert all(size % 64 == 0 and size <= 128 for size in row_sizes), shape


def test_weight_gradients_are_summed_in_float32(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(row_blocks, "BLOCK_ROWS", 64)
    torch.manual_seed(0)
    grad = torch.randn(2, 300, 16).bfloat16()  # two groups (directions), 300 rows
    inputs = torch.randn(2, 300, 8).bfloat16()
    exact = grad.double().transpose(1, 2) @ inputs.double()
    summed = weight_gradient(grad, inputs)
    assert summed.dtype == torch.float32 and summed.shape == (2, 16, 8)
    torch.testing.assert_close(summed.double(), exact, rtol=0, atol=0.01 * exact.abs().max())
    float64 = weight_gradient(grad.double(), inputs.double())
    torch.testing.assert_close(float64, exact, rtol=0, atol=0)


def test_the_fast_kernels_run_every_linear_layer_in_blocks() -> None:
    model = small_model(kernels="auto")
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    assert linears and all(type(module) is BlockedLinear for module in linears)
    reference = small_model(kernels="reference")
    assert not any(type(module) is BlockedLinear for module in reference.modules())
