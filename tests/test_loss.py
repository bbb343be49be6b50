"""The chunked token cross-entropy against ``F.cross_entropy``: the same loss and gradient, with
padding and label smoothing, across chunk boundaries, and in bfloat16."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from seq2seq.data.tokenizer import PAD_ID
from seq2seq.metrics import loss as loss_module
from seq2seq.metrics.loss import sequence_loss

VOCAB = 11


def logits_and_targets(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(3 sentences, 5 steps, VOCAB) logits; the last steps of two rows are padding."""
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 5, VOCAB, generator=generator) * 3).to(dtype).requires_grad_()
    targets = torch.randint(1, VOCAB, (3, 5), generator=generator)
    targets[0, 3:] = PAD_ID
    targets[2, 1:] = PAD_ID
    return logits, targets


def reference(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    return F.cross_entropy(
        logits.reshape(-1, VOCAB),
        targets.reshape(-1),
        ignore_index=PAD_ID,
        label_smoothing=smoothing,
        reduction="sum",
    )


@pytest.mark.parametrize("chunk_rows", [1, 4, 100])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_the_loss_and_its_gradient_are_cross_entropys(
    smoothing: float, chunk_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", chunk_rows * VOCAB)
    logits, targets = logits_and_targets(torch.float64)
    mine = sequence_loss(logits, targets, smoothing)
    (grad,) = torch.autograd.grad(mine * 0.37, logits)
    expected_logits = logits.detach().clone().requires_grad_()
    expected = reference(expected_logits, targets, smoothing)
    (expected_grad,) = torch.autograd.grad(expected * 0.37, expected_logits)
    assert mine.dtype == torch.float64
    torch.testing.assert_close(mine, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-14)
    assert (grad[targets == PAD_ID] == 0).all()


def test_bfloat16_logits_give_a_float32_loss_and_bfloat16_gradients() -> None:
    logits, targets = logits_and_targets(torch.bfloat16)
    mine = sequence_loss(logits, targets, 0.1)
    (grad,) = torch.autograd.grad(mine, logits)
    exact = logits.detach().double().requires_grad_()
    expected = reference(exact, targets, 0.1)
    (expected_grad,) = torch.autograd.grad(expected, exact)
    assert mine.dtype == torch.float32 and grad.dtype == torch.bfloat16
    torch.testing.assert_close(mine.double(), expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad.double(), expected_grad, rtol=1e-2, atol=4e-3)
