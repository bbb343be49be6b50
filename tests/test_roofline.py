"""The roofline's two halves: FLOPs counted from what an update runs, and the share of a peak."""

from __future__ import annotations

import torch
from torch import nn

from seq2seq.roofline import (
    ProductRate,
    linear_shapes,
    matmul_flop_counter,
    peak,
    product_rate,
    shares_table,
)


def test_counter_counts_a_linear_forward_and_backward() -> None:
    """Forward 2·rows·in·out; backward two products of the same size (input and weight
    gradients): 3× the forward in all. Element-wise work counts nothing."""
    layer = nn.Linear(16, 8, bias=False)
    x = torch.randn(5, 16, requires_grad=True)
    with matmul_flop_counter() as counter:
        torch.relu(layer(x)).sum().backward()
    assert counter.get_total_flops() == 3 * 2 * 5 * 16 * 8


def test_linear_shapes_are_distinct_and_widest_first() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(4, 6), nn.Linear(6, 50))
    assert linear_shapes(model) == [(6, 50), (6, 6), (4, 6)]


def test_product_rate_is_measured() -> None:
    rate = product_rate(8, 16, 32, "fp32", seconds=0.001)
    assert rate.gflops > 0 and rate.shape == "8×16 · 16×32"


def test_share_is_achieved_over_the_fastest_product_of_the_same_precision() -> None:
    rates = [
        ProductRate(1024, 256, 256, "bf16", 2000.0),
        ProductRate(1024, 256, 4000, "bf16", 3000.0),
        ProductRate(1024, 256, 4000, "fp32", 400.0),
    ]
    assert peak(rates, "bf16").gflops == 3000.0
    assert peak(rates, "fp16") is None
    record = {
        "model": "transformer",
        "precision": "fp32",
        "kernels": "fast",
        "target_tokens_per_sec": 5000.0,
        "matmul_gflop_per_token": 0.04,
    }
    row = shares_table(rates, [record, {**record, "matmul_gflop_per_token": None}]).splitlines()
    assert len(row) == 3  # header, rule, and only the line that counted its FLOPs
    cells = [cell.strip() for cell in row[2].split("|")]
    assert cells[6] == "200"  # 5,000 tokens/s × 0.04 GFLOP
    assert cells[8] == f"{200 / 400:.0%}"
