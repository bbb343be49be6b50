"""The token cross-entropy that training minimises and validation reports, in row chunks.

``F.cross_entropy(logits.float(), ...)`` makes a float32 copy of the (tokens × vocabulary)
logits, keeps their float32 log-softmax for the backward pass and forms two more such tensors
there: for 64 sentences of 90 subwords and 4,000 pieces, ~350 MB beside the bfloat16 logits.
:class:`TokenCrossEntropy` reads the logits in their own dtype a few thousand rows at a time,
keeps one log-sum-exp per row, and makes the gradient chunk by chunk in the logits' dtype.
"""

from __future__ import annotations

from typing import Any

import torch

from seq2seq.data.tokenizer import PAD_ID

# Rows per chunk: chunk_elements / vocabulary, so a chunk's float32 copy is about 8 MiB.
CHUNK_ELEMENTS = 2**21


def sequence_loss(
    logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Summed token cross-entropy over real (unpadded) target tokens, in float32 (float64 for
    float64 logits).

    ``logits`` (..., vocabulary) in any float dtype, ``targets`` the matching ids (PAD_ID: not a
    token). With label smoothing ε each token's loss is (1 - ε)·(-log p_y) + ε·mean_v(-log p_v),
    as ``F.cross_entropy(..., label_smoothing=ε)`` defines it.
    """
    return TokenCrossEntropy.apply(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), label_smoothing
    )


def _row_chunks(rows: int, vocabulary: int) -> list[slice]:
    size = max(1, CHUNK_ELEMENTS // vocabulary)
    return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]


class TokenCrossEntropy(torch.autograd.Function):
    """Forward: log Σ_v exp(x_v) per row and the summed loss; backward: (softmax(x) - target
    distribution) · the loss's gradient, zero on padding, one chunk of rows at a time."""

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float
    ) -> torch.Tensor:
        rows, vocabulary = logits.shape
        real = targets != PAD_ID
        safe_targets = targets.masked_fill(~real, 0)
        exact = torch.promote_types(logits.dtype, torch.float32)
        log_normalizers = logits.new_empty(rows, dtype=exact)
        total = logits.new_zeros((), dtype=exact)
        for chunk in _row_chunks(rows, vocabulary):
            x = logits[chunk].to(exact)
            normalizer = torch.logsumexp(x, dim=-1)
            log_normalizers[chunk] = normalizer
            token_loss = normalizer - x.gather(1, safe_targets[chunk, None]).squeeze(1)
            if label_smoothing:
                uniform_loss = normalizer - x.mean(dim=-1)
                token_loss = torch.lerp(token_loss, uniform_loss, label_smoothing)
            total += token_loss.masked_fill_(~real[chunk], 0).sum()
        ctx.label_smoothing = label_smoothing
        ctx.save_for_backward(logits, safe_targets, real, log_normalizers)
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        logits, targets, real, log_normalizers = ctx.saved_tensors
        smoothing = ctx.label_smoothing
        rows, vocabulary = logits.shape
        grad = torch.empty_like(logits)
        scale = real.to(log_normalizers.dtype).mul_(grad_total)
        for chunk in _row_chunks(rows, vocabulary):
            x = logits[chunk].to(log_normalizers.dtype)
            probabilities = (x - log_normalizers[chunk, None]).exp_()
            if smoothing:
                probabilities.sub_(smoothing / vocabulary)
            probabilities.scatter_add_(
                1,
                targets[chunk, None],
                probabilities.new_full((probabilities.size(0), 1), smoothing - 1.0),
            )
            grad[chunk] = probabilities.mul_(scale[chunk, None])
        return grad, None, None
