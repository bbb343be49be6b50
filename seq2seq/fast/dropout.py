"""Dropout with four random draws per 64-bit number instead of one per element.

``nn.Dropout`` on CPU draws one Bernoulli number per element, and at this model's sizes that
draw costs more than the rest of dropout: about 4% of a training update. Here one 64-bit draw
gives four 16-bit numbers; an element is kept when its number is at least
``round(p · 65536)``, so the drop rate is p to within 1/65536 (0.2 → 0.199997), and the kept
elements are scaled by the exact inverse of the keep rate, so the expectation is unchanged.
Same seed, same masks: the numbers come from torch's default generator. It stands in for every
``nn.Dropout`` of a model built with fast kernels (:mod:`seq2seq.fast.kernels`): on CPU only,
since CUDA draws Bernoulli numbers fast.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seq2seq.fast.private_ops import masked_scale

LEVELS = 1 << 16


class Dropout(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * LEVELS)  # keep a 16-bit number u when u >= threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        return _Dropout.apply(x, self.threshold)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def keep_mask(shape: torch.Size, threshold: int, device: torch.device) -> torch.Tensor:
    """True where an element survives: P = 1 − threshold / 65536."""
    numel = shape.numel()
    draws = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device)
    draws.random_(-(1 << 63), None)  # all 64 bits random (the default range leaves the top one 0)
    halves = draws.view(torch.int16)[:numel].view(shape)  # signed: u − 32768
    return halves >= threshold - LEVELS // 2


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, threshold: int) -> torch.Tensor:
        keep = keep_mask(x.shape, threshold, x.device)
        ctx.scale = LEVELS / (LEVELS - threshold)
        ctx.save_for_backward(keep)
        return masked_scale(x, keep, ctx.scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (keep,) = ctx.saved_tensors
        return masked_scale(grad, keep, ctx.scale), None
