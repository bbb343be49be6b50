"""Searching on CPU in bfloat16: every Linear's weight packed once for oneDNN, not once per word.

Under bf16 autocast each ``nn.Linear`` call casts its float32 weight to bfloat16 and oneDNN
reorders it into its blocked layout, again at every output word of a search. Packing each weight
once per batch (``torch.ops.mkldnn``, the ops ``torch.compile`` uses for frozen CPU models) makes
the decoder's per-word products up to ~1.8× faster (a 320 × 512 by 512 × 4,000 output layer:
854 → 475 µs on this project's machine). The products are the same bf16 products with float32
sums, summed in another order: a few outputs differ in their last bf16 bit. Training keeps the
plain products: its weights change at every update, and packing would cost what it saves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import nn

from seq2seq.device import bf16_support
from seq2seq.fast.private_ops import packed_linear_usable

if TYPE_CHECKING:
    from seq2seq.model.seq2seq import Seq2Seq


def prepacked_for_search(
    model: Seq2Seq, device: torch.device, precision: str, rows: int
) -> AbstractContextManager[None]:
    """:func:`prepacked_linears` where it pays (a model built with the fast kernels, bf16 on a
    CPU that computes it natively, with oneDNN's packed linear usable), else nothing.

    :func:`~seq2seq.fast.kernels.accelerate` makes it the model's ``search_scope``, which
    ``translate_split`` and ``Translator.translate`` wrap a whole test set's batches in: one
    packing per test set; nested uses pack once.
    """
    if (
        model.kernels == "fast"
        and device.type == "cpu"
        and precision == "bf16"
        and bf16_support(device).native
        and packed_linear_usable()
    ):
        return prepacked_linears(model, rows)
    return nullcontext()


@contextmanager
def prepacked_linears(model: nn.Module, rows: int) -> Iterator[None]:
    """Inside the block, every ``nn.Linear`` of ``model`` computes in bfloat16 from a packed copy
    of its weight (``rows``: the usual number of input rows, a hint for the layout). Only for
    inference: the packed copy neither follows later weight updates nor passes gradients. Layers
    already packed by an enclosing block stay as they are."""
    layers = [
        module
        for module in model.modules()
        if isinstance(module, nn.Linear) and "forward" not in module.__dict__
    ]
    try:
        for layer in layers:
            weight = layer.weight.detach().to(torch.bfloat16)
            bias = None if layer.bias is None else layer.bias.detach().to(torch.bfloat16)
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)
            layer.forward = partial(_packed_linear, packed, bias)  # shadows nn.Linear.forward
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)


def _packed_linear(
    packed: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor
) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), packed, bias, "none", [], "")
