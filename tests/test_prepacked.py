"""Searching in bf16 on CPU from pre-packed Linear weights: the same products, restored after."""

from __future__ import annotations

import pytest
import torch
from helpers import small_model as seq2seq_model
from torch import nn

from seq2seq.device import Support, cpu_capability
from seq2seq.fast import prepacked
from seq2seq.fast.prepacked import prepacked_for_search, prepacked_linears
from seq2seq.fast.private_ops import packed_linear_usable
from seq2seq.model.ensemble import Ensemble

needs_onednn_bf16 = pytest.mark.skipif(
    not packed_linear_usable(),
    reason="oneDNN's packed bf16 linear needs AVX512BW/VL/DQ or AVX-NE-CONVERT; this CPU's "
    f"torch capability is {cpu_capability()}",
)


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 40), nn.Tanh(), nn.Linear(40, 24, bias=False))


def packed_layers(model: nn.Module) -> int:
    return sum("forward" in layer.__dict__ for layer in model.modules())


@needs_onednn_bf16
def test_packed_products_are_the_autocast_products_up_to_rounding() -> None:
    model, x = small_model(), torch.randn(7, 3, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(x)
        with prepacked_linears(model, rows=21):
            assert packed_layers(model) == 2
            packed = model(x)
    assert packed.dtype == torch.bfloat16 and packed.shape == expected.shape
    torch.testing.assert_close(packed.float(), expected.float(), atol=2e-2, rtol=2e-2)


@needs_onednn_bf16
def test_layers_compute_from_their_current_weights_after_the_block() -> None:
    """Validation packs the weights; the training updates after it must not meet a stale pack."""
    model, x = small_model(), torch.randn(5, 16)
    with torch.no_grad():
        with prepacked_linears(model, rows=5):
            model(x)
        assert packed_layers(model) == 0
        model[0].weight.add_(1.0)
        torch.testing.assert_close(
            model(x), model[2](model[1](x @ model[0].weight.t() + model[0].bias))
        )


@needs_onednn_bf16
def test_nested_blocks_pack_once_and_an_error_unpacks() -> None:
    model = small_model()
    try:
        with prepacked_linears(model, rows=4):
            outer = model[0].forward
            with prepacked_linears(model, rows=4):
                assert model[0].forward is outer
            assert model[0].forward is outer  # the inner block leaves the outer's packing
            raise RuntimeError("search failed")
    except RuntimeError:
        pass
    assert packed_layers(model) == 0


def native_bf16(native: bool):
    return lambda device: Support(native, "mocked")


def test_only_bf16_on_a_cpu_without_native_bf16_is_not_packed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = seq2seq_model()
    with prepacked_for_search(model, torch.device("cpu"), "fp32", rows=4):
        assert packed_layers(model) == 0
    monkeypatch.setattr(prepacked, "bf16_support", native_bf16(False))
    with prepacked_for_search(model, torch.device("cpu"), "bf16", rows=4):
        assert packed_layers(model) == 0  # the AVX2 CPU: plain autocast products


@needs_onednn_bf16
def test_bf16_search_on_a_cpu_with_native_bf16_is_packed(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the fast kernels only: model.kernels=reference searches through plain modules."""
    model = seq2seq_model()
    linears = sum(isinstance(module, nn.Linear) for module in model.modules())
    monkeypatch.setattr(prepacked, "bf16_support", native_bf16(True))
    with prepacked_for_search(model, torch.device("cpu"), "bf16", rows=4):
        assert packed_layers(model) == linears
    with prepacked_for_search(model, torch.device("cpu"), "fp32", rows=4):
        assert packed_layers(model) == 0
    reference = seq2seq_model(kernels="reference")
    with prepacked_for_search(reference, torch.device("cpu"), "bf16", rows=4):
        assert packed_layers(reference) == 0


@needs_onednn_bf16
def test_accelerate_gives_the_model_and_an_ensemble_of_such_models_a_packing_search_scope(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Searches ask the model for its scope (``model.search_scope``): the fast kernels' packs
    every Linear in bf16, an ensemble's enters each member's, the reference model's packs none."""
    monkeypatch.setattr(prepacked, "bf16_support", native_bf16(True))
    fast, other, reference = (
        seq2seq_model(),
        seq2seq_model(seed=1),
        seq2seq_model(kernels="reference"),
    )
    linears = sum(isinstance(module, nn.Linear) for module in fast.modules())
    with fast.search_scope("bf16", 4):
        assert packed_layers(fast) == linears
    with fast.search_scope("fp32", 4), reference.search_scope("bf16", 4):
        assert packed_layers(fast) == packed_layers(reference) == 0
    ensemble = Ensemble([fast, other])
    with ensemble.search_scope("bf16", 4):
        assert packed_layers(ensemble) == 2 * linears
    assert packed_layers(ensemble) == 0
