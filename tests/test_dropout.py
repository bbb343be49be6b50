"""The model's dropout: its drop rate, scale, reproducibility and gradient."""

from __future__ import annotations

import pytest
import torch

from seq2seq.fast.dropout import Dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_drops_p_of_the_elements_and_keeps_the_expectation(p: float) -> None:
    torch.manual_seed(0)
    dropout = Dropout(p).train()
    x = torch.ones(400, 1000)
    y = dropout(x)
    dropped = float((y == 0).float().mean())
    assert dropped == pytest.approx(p, abs=0.003)  # 400,000 draws: 6 standard deviations
    zero, scale = torch.unique(y).tolist()
    assert zero == 0.0 and scale == pytest.approx(1 / (1 - p), rel=1e-4)
    assert float(y.mean()) == pytest.approx(1.0, abs=0.01)


def test_every_16_bit_slot_of_a_draw_is_uniform() -> None:
    """Four numbers per 64-bit draw: each slot (including the one with the sign bit) drops p."""
    torch.manual_seed(0)
    keep = keep_mask(torch.Size([4 * 100_000]), round(0.5 * 65536), torch.device("cpu"))
    by_slot = keep.view(-1, 4).float().mean(0)
    torch.testing.assert_close(by_slot, torch.full((4,), 0.5), atol=0.006, rtol=0)


def test_same_seed_same_mask_and_the_gradient_uses_the_forward_mask() -> None:
    dropout = Dropout(0.3).train()
    x = torch.randn(7, 33, requires_grad=True)  # 231 elements: not a multiple of 4
    torch.manual_seed(5)
    y = dropout(x)
    torch.manual_seed(5)
    torch.testing.assert_close(dropout(x), y)
    y.backward(torch.ones_like(y))
    kept = y != 0
    torch.testing.assert_close(x.grad, kept.float() * (65536 / (65536 - round(0.3 * 65536))))


def test_identity_in_eval_mode_and_at_zero() -> None:
    x = torch.randn(5, 6)
    assert torch.equal(Dropout(0.4).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    with pytest.raises(ValueError, match="dropout must be in"):
        Dropout(1.0)
