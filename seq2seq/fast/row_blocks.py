"""bfloat16 products over a batch's rows in fixed blocks, so oneDNN caches a few shapes.

oneDNN, which runs torch's bfloat16 products on CPU, caches one primitive per product shape
(up to 1,024), and each primitive keeps a scratch copy of its right-hand operand in its own
layout: the weight, for a product with a layer's weight (3.4 MB for a 512 → 4,000 output
layer), and the inputs of every step, for a weight's gradient Σ_rows gᵀx (18 MB for 64
sentences of 90 subwords into 1,536 gates). Every batch of a new length adds such shapes: a run
on long, varied sentences (1M joined Tatoeba pairs) grew by ~0.9 GB over its first 200 updates,
~23 MB per new length. Here the rows (batch × steps) go through each product in blocks of
``BLOCK_ROWS``, each cut at a multiple of ``ROW_MULTIPLE`` rows, its few leftover rows
padded with zeros to ``ROW_MULTIPLE``: at most ``BLOCK_ROWS / ROW_MULTIPLE`` shapes per
product, whatever the corpus, and no copy of the rows but the leftovers. The products are the
same bfloat16 products with float32 sums; a weight's gradient is summed over the blocks in
float32, one rounding per piece (one in all before). In float32 and float64 nothing changes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from seq2seq.device import backward_without_autocast, product_dtype

BLOCK_ROWS = 1024
ROW_MULTIPLE = 64


def row_blocks(rows: int) -> list[tuple[int, int, int]]:
    """(start, end, padded rows) of the pieces of ``rows``: blocks of ``BLOCK_ROWS``, each split
    into its rows up to a multiple of ``ROW_MULTIPLE`` (read in place) and the rest (fewer than
    ``ROW_MULTIPLE``, padded to it), so only the few leftover rows are ever copied."""
    pieces = []
    for start in range(0, rows, BLOCK_ROWS):
        end = min(start + BLOCK_ROWS, rows)
        aligned = start + (end - start) // ROW_MULTIPLE * ROW_MULTIPLE
        if aligned > start:
            pieces.append((start, aligned, aligned - start))
        if end > aligned:
            pieces.append((aligned, end, ROW_MULTIPLE))
    return pieces


def _padded(a: torch.Tensor, rows: int) -> torch.Tensor:
    """``a`` (..., r, columns) with zero rows appended up to ``rows``."""
    return a if a.size(-2) == rows else F.pad(a, (0, 0, 0, rows - a.size(-2)))


def _blocked_product(
    a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor
) -> None:
    """``out`` = a @ b (+ bias), piece by piece of ``a``'s rows (2-D operands)."""
    for start, end, padded in row_blocks(a.size(0)):
        block = _padded(a[start:end], padded)
        target = out[start:end] if padded == end - start else None
        if bias is None:
            product = torch.mm(block, b, out=target)
        else:
            product = torch.addmm(bias, block, b, out=target)
        if target is None:
            out[start:end] = product[: end - start]


def weight_gradient(grad: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Σ over rows of gradᵀ · inputs: (..., rows, out) and (..., rows, in) → (..., out, in).

    In bfloat16 (the operands', or autocast's on CPU) piece by piece of rows, summed in
    float32 (one piece: its bfloat16 product); else one product in the operands' dtype.
    """
    dtype = product_dtype(grad)
    if grad.device.type != "cpu" or dtype != torch.bfloat16:
        return grad.transpose(-1, -2) @ inputs
    grad, inputs = grad.to(dtype), inputs.to(dtype)
    pieces = row_blocks(grad.size(-2))
    with torch.autocast("cpu", enabled=False):
        partials = (
            _padded(grad[..., start:end, :], padded).transpose(-1, -2)
            @ _padded(inputs[..., start:end, :], padded)
            for start, end, padded in pieces
        )
        if len(pieces) == 1:
            return next(partials)
        total = torch.zeros(
            *grad.shape[:-2],
            grad.size(-1),
            inputs.size(-1),
            dtype=torch.float32,
            device=grad.device,
        )
        for partial in partials:
            total += partial
    return total


class BlockedLinearFunction(torch.autograd.Function):
    """y = x Wᵀ + b over rows (rows, in), its products and y in ``dtype``."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        x_low, weight_low = x.to(dtype), weight.to(dtype)
        out = x.new_empty(x.size(0), weight.size(0), dtype=dtype)
        _blocked_product(x_low, weight_low.t(), None if bias is None else bias.to(dtype), out)
        ctx.device_type = x.device.type
        ctx.dtypes = x.dtype, weight.dtype, None if bias is None else bias.dtype
        ctx.save_for_backward(x_low, weight_low)
        return out

    @staticmethod
    @backward_without_autocast
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x_low, weight_low = ctx.saved_tensors
        x_dtype, weight_dtype, bias_dtype = ctx.dtypes
        grad_out = grad_out.to(weight_low.dtype)
        grad_x = torch.empty_like(x_low)
        _blocked_product(grad_out, weight_low, None, grad_x)
        grad_weight = weight_gradient(grad_out, x_low).to(weight_dtype)
        grad_bias = None if bias_dtype is None else grad_out.sum(0).to(bias_dtype)
        return grad_x.to(x_dtype), grad_weight, grad_bias, None


def _with_zero_rows(x: torch.Tensor, rows: int, dtype: torch.dtype) -> torch.Tensor:
    """(r, columns) → (rows, columns) in ``dtype``: one copy (with the cast), and only the
    appended rows zeroed (``F.pad`` and a slice's backward fill the whole tensor first)."""
    out = x.new_empty(rows, x.size(1), dtype=dtype)
    out[: x.size(0)] = x
    out[x.size(0) :].zero_()
    return out


class _PaddedRows(torch.autograd.Function):
    """(rows, columns) → (padded, columns) in ``dtype``, zero rows appended: the cast to the
    product's dtype and the padding in one copy; backward takes the first rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, padded: int, dtype: torch.dtype) -> torch.Tensor:
        ctx.rows, ctx.dtype = x.size(0), x.dtype
        return _with_zero_rows(x, padded, dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return grad[: ctx.rows].to(ctx.dtype), None, None


class _FirstRows(torch.autograd.Function):
    """The first ``rows`` rows (a view); backward pads the gradient with zero rows."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, rows: int) -> torch.Tensor:
        ctx.padded = x.size(0)
        return x[:rows]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _with_zero_rows(grad, ctx.padded, grad.dtype), None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear``, its bfloat16 products on CPU in blocks of rows (module docstring); in
    float32, or elsewhere, the plain product.

    Up to ``BLOCK_ROWS`` rows (a Transformer's token batch) the rows are padded once to a
    multiple of ``ROW_MULTIPLE`` and go through ``F.linear`` itself: its backward products then
    have the padded shapes too, and autocast's cached weight casts and torch's own backward
    cost ~400 µs less per layer than the block-by-block function.
    """
    dtype = product_dtype(x)
    if x.device.type != "cpu" or dtype != torch.bfloat16:
        return F.linear(x, weight, bias)
    rows = x.numel() // x.size(-1)
    flat = x.reshape(rows, x.size(-1))
    padded = -(-rows // ROW_MULTIPLE) * ROW_MULTIPLE
    if rows > BLOCK_ROWS:
        with torch.autocast("cpu", enabled=False):
            out = BlockedLinearFunction.apply(flat, weight, bias, dtype)
    elif padded == rows:
        out = F.linear(flat, weight, bias)
    else:
        out = _FirstRows.apply(F.linear(_PaddedRows.apply(flat, padded, dtype), weight, bias), rows)
    return out.view(*x.shape[:-1], out.size(-1))


class BlockedLinear(nn.Linear):
    """``nn.Linear`` through :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
