"""The private torch operators of the fast paths: where one is missing, refuses this CPU or
computes something else, the plain path gives the same numbers and one warning line says so."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch
from helpers import padded_batch, small_model, training_run

from seq2seq.device import Support
from seq2seq.fast import prepacked
from seq2seq.fast.dropout import Dropout
from seq2seq.fast.prepacked import prepacked_for_search
from seq2seq.fast.private_ops import usable

LOGGER = "seq2seq.fast.private_ops"


def refused(*args: object, **kwargs: object) -> torch.Tensor:
    raise RuntimeError("this operator needs a CPU feature this machine lacks")


@pytest.fixture(autouse=True)
def tried_afresh() -> Iterator[None]:
    """Each test tries the operators again (the verdict is kept per process)."""
    usable.cache_clear()
    yield
    usable.cache_clear()


def warnings_about(caplog: pytest.LogCaptureFixture, operator: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and operator in r.message]


def test_every_operator_works_with_the_torch_the_project_is_tested_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On this torch the fast paths are taken: softmax backward and dropout's mask on every CPU;
    packed bf16 linears where oneDNN has a bf16 path (AVX512BW/VL/DQ or AVX-NE-CONVERT)."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert usable("softmax_backward") and usable("masked_scale")
    assert not caplog.records
    assert usable("packed_linear") == torch.ops.mkldnn._is_mkldnn_bf16_supported()


def test_trying_the_operators_leaves_the_random_state_alone() -> None:
    """The trials run mid-training (first use): they must not shift the dropout masks, or a
    resumed run, which tries them again, would draw other masks than an uninterrupted one."""
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    for name in ("softmax_backward", "masked_scale", "packed_linear"):
        usable(name)
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "replacement",
    [refused, lambda grad, weights, dim, dtype: grad],  # missing, or computing something else
    ids=["refused", "disagrees"],
)
def test_the_attention_loop_without_softmax_backward_gives_the_same_gradients(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, replacement
) -> None:
    model = small_model(style="bahdanau").double().train()
    batch = padded_batch()
    fast = training_run(model, batch)
    monkeypatch.setattr(torch, "_softmax_backward_data", replacement)
    usable.cache_clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        plain = training_run(model, batch)
        training_run(model, batch)
    assert len(warnings_about(caplog, "torch._softmax_backward_data")) == 1
    torch.testing.assert_close(plain[0], fast[0], rtol=1e-10, atol=1e-12)
    for name, expected in fast[2].items():
        torch.testing.assert_close(plain[2][name], expected, rtol=1e-9, atol=1e-12, msg=name)


def test_dropout_without_native_dropout_backward_draws_the_same_masks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    layer = Dropout(0.3).train()

    def forward_backward() -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        x = torch.randn(40, 50, requires_grad=True)
        y = layer(x)
        (y * torch.arange(50.0)).sum().backward()
        return y.detach(), x.grad

    fast = forward_backward()
    monkeypatch.setattr(torch.ops.aten, "native_dropout_backward", refused)
    usable.cache_clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        plain = forward_backward()
    assert len(warnings_about(caplog, "native_dropout_backward")) == 1
    assert 0 < (plain[0] == 0).float().mean() < 0.5  # it still drops
    torch.testing.assert_close(plain, fast)


def test_bf16_search_without_the_packed_linear_computes_plain_products(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Even on a CPU with native bf16: a torch whose mkldnn ops are gone or refuse searches
    with autocast's products."""
    model = small_model()
    monkeypatch.setattr(prepacked, "bf16_support", lambda device: Support(True, "mocked"))
    monkeypatch.setattr(torch.ops.mkldnn, "_reorder_linear_weight", refused)
    cpu = torch.device("cpu")
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        prepacked_for_search(model, cpu, "bf16", rows=4),
        torch.autocast("cpu", dtype=torch.bfloat16),
    ):
        assert not any("forward" in layer.__dict__ for layer in model.modules())
        assert model(padded_batch())[0].shape == (4, 5, 30)
    assert len(warnings_about(caplog, "torch.ops.mkldnn")) == 1
