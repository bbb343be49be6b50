"""The training update shared by train.py and the benchmark: loss scale, clipping, NaN, bf16."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import model_config
from test_training import tiny_overrides

from seq2seq.config.schema import PROJECT_ROOT
from seq2seq.data.batching import collate
from seq2seq.data.tokenizer import PAD_ID
from seq2seq.model.seq2seq import Seq2Seq, build_model
from seq2seq.training.step import TrainingStep, build_optimizer, gradient_norm

VOCAB = 30


def model_and_batch(seed: int = 0) -> tuple[Seq2Seq, object]:
    cfg = model_config(
        "embed_size=8",
        "dropout=0.0",
        "encoder.rnn.hidden=6",
        "decoder.rnn.hidden=12",
        "attention.name=bahdanau",
        "attention.bahdanau.size=12",
    )
    torch.manual_seed(seed)
    batch = collate([[5, 6, 7, 8], [9, 10]], [[11, 12, 13], [14, 15, 16, 17, 18]], [0, 1])
    return build_model(cfg, VOCAB, VOCAB), batch


def step(model: Seq2Seq, normalization: str = "tokens", clip: float = 0.0, **kw) -> TrainingStep:
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # the update is minus the gradient
    return TrainingStep(model, optimizer, clip, 0.0, normalization, **kw)


def test_sentence_normalisation_scales_the_gradient_by_tokens_per_sentence() -> None:
    norms = {}
    for normalization in ("tokens", "sentences"):
        model, batch = model_and_batch()
        norms[normalization] = step(model, normalization)(batch).grad_norm
    tokens, sentences = batch.target_tokens, batch.src.size(0)  # 10 tokens (with EOS), 2
    assert norms["sentences"] == pytest.approx(norms["tokens"] * tokens / sentences, rel=1e-5)


def test_clipping_bounds_the_applied_update_to_clip_norm() -> None:
    model, batch = model_and_batch()
    before = [p.detach().clone() for p in model.parameters()]
    result = step(model, "sentences", clip=0.01)(batch)
    assert result.applied and result.grad_norm > 0.01
    moved = math.sqrt(
        sum(
            float((p.detach() - b).pow(2).sum())
            for p, b in zip(model.parameters(), before, strict=True)
        )
    )
    assert moved == pytest.approx(0.01, rel=1e-3)  # SGD, lr 1: the step is the clipped gradient


def test_label_smoothing_changes_the_update_to_the_smoothed_loss_gradient() -> None:
    """ε = 0.1 (Szegedy et al. 2016): each real token's loss is (1 − ε)·(−log p_y) +
    ε·mean_v(−log p_v); with SGD at lr 1 the update is minus its per-token mean's gradient."""
    model, batch = model_and_batch()
    log_p = model(batch)[0].float().log_softmax(-1)
    real = batch.tgt_out != PAD_ID
    nll = -log_p.gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1)
    smoothed = (0.9 * nll - 0.1 * log_p.mean(-1))[real].sum() / batch.target_tokens
    expected = torch.autograd.grad(smoothed, list(model.parameters()))
    moved = {}
    for epsilon in (0.0, 0.1):
        model, batch = model_and_batch()
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        TrainingStep(model, optimizer, 0.0, epsilon, "tokens")(batch)
        moved[epsilon] = [b - p.detach() for p, b in zip(model.parameters(), before, strict=True)]
    for update, gradient in zip(moved[0.1], expected, strict=True):
        torch.testing.assert_close(update, gradient, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(moved[0.0][-1], expected[-1], rtol=1e-4, atol=1e-6)


def test_the_gradient_norm_is_the_norm_of_all_gradients_together() -> None:
    generator = torch.Generator().manual_seed(0)
    grads = [torch.randn(shape, generator=generator) for shape in [(40, 7), (7,), (3, 5, 2)]]
    flat = torch.cat([grad.reshape(-1) for grad in grads]).double()
    assert gradient_norm(grads) == pytest.approx(float(flat.norm()), rel=1e-6)
    grads[1][2] = float("inf")
    assert gradient_norm(grads) == float("inf")


def test_a_non_finite_loss_skips_the_update_and_keeps_the_weights() -> None:
    model, batch = model_and_batch()
    with torch.no_grad():
        model.decoder.output.bias[3] = float("nan")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = step(model)(batch)
    assert not result.applied and math.isnan(result.loss_sum)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter, before[name], equal_nan=True, msg=name)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_update_is_reproducible_and_learns(precision: str) -> None:
    losses = []
    for _ in range(2):
        model, batch = model_and_batch(seed=3)
        optimizer = build_optimizer(model, lr=0.01)
        update = TrainingStep(model, optimizer, 5.0, 0.0, "tokens", precision)
        losses.append([update(batch).loss_sum for _ in range(30)])
    assert losses[0] == losses[1]  # bitwise, same seed
    assert losses[0][-1] < 0.5 * losses[0][0]


def test_an_unknown_normalisation_or_precision_is_refused() -> None:
    model, _ = model_and_batch()
    with pytest.raises(ValueError, match="trainer.normalization"):
        step(model, "words")
    with pytest.raises(ValueError, match="precision"):
        step(model, precision="fp8")


@pytest.mark.slow
def test_the_benchmark_runs_the_trainers_update_schedule_and_average(tmp_path: Path) -> None:
    """scripts/benchmark_training.py on the tiny corpus: it times the requested updates with the
    schedule and weight average that train.py runs, and reports them as one JSON line."""
    overrides = tiny_overrides(tmp_path / "cache")
    overrides += ["trainer.ema_decay=0.9", "trainer.lr_schedule=linear", "trainer.lr_decay_steps=4"]
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "benchmark_training.py")]
        + ["--steps", "3", "--warmup", "1", "--threads", "1", *overrides],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["steps"] == 3 and report["ema_decay"] == 0.9
    assert report["target_tokens_per_sec"] > 0
    assert report["matmul_gflop_per_token"] > 0

    # The roofline reads that line: its share of the peak measured at the model's shapes.
    (tmp_path / "speed.jsonl").write_text(result.stdout)
    roofline = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "roofline.py")]
        + ["--threads", "1", "--rows", "16", "--seconds", "0.001"]
        + ["--benchmarks", str(tmp_path / "speed.jsonl"), *overrides],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert roofline.returncode == 0, roofline.stderr[-2000:]
    share_row = roofline.stdout.strip().splitlines()[-1]
    assert share_row.startswith(f"| {report['model']} | {report['precision']} |")
    assert share_row.endswith("% |")
