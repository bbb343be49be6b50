"""How close training comes to the machine: the matrix-product peak measured at a model's own
shapes, and the matrix-product FLOPs a training update really runs.

On a CPU the matrix products are the only part of an update that can use the matrix engine
(AMX, AVX512-BF16 or plain FMA units); everything else (casts, dropout, softmax, layer norm,
Adam) is memory traffic. So the share of the peak an update reaches is
``tokens/s × FLOPs per token / peak``, with the peak measured here rather than taken from a data
sheet: a 2-core virtual machine runs at its own clocks, and oneDNN's speed depends on the
shapes (a 4,000-wide output layer runs faster than a 256 × 256 projection).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from seq2seq.device import PRECISIONS


@dataclass(frozen=True)
class ProductRate:
    """The measured rate of one ``(rows, in) @ (in, out)`` product, as ``nn.Linear`` runs it."""

    rows: int
    inputs: int
    outputs: int
    precision: str
    gflops: float  # GFLOP/s, the best of the timed repeats

    @property
    def shape(self) -> str:
        return f"{self.rows}×{self.inputs} · {self.inputs}×{self.outputs}"


def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """The distinct (in, out) sizes of the model's linear layers, widest product first."""
    shapes = {(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)}
    return sorted(shapes, key=lambda s: -s[0] * s[1])


def product_rate(
    rows: int, inputs: int, outputs: int, precision: str, seconds: float = 0.2
) -> ProductRate:
    """GFLOP/s of ``x @ wᵀ`` (x: rows × inputs, w: outputs × inputs, the layout of
    ``nn.Linear``) in ``precision``, the best of five timed repeats of ~``seconds`` each, after
    a warm-up that lets oneDNN build its kernel for the shape."""
    dtype = PRECISIONS[precision]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, inputs, generator=generator).to(dtype)
    weight = torch.randn(outputs, inputs, generator=generator).to(dtype)
    flops = 2 * rows * inputs * outputs
    for _ in range(3):
        torch.mm(x, weight.t())
    start = time.perf_counter()
    torch.mm(x, weight.t())
    repeats = max(1, int(seconds / max(time.perf_counter() - start, 1e-6)))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            torch.mm(x, weight.t())
        best = min(best, (time.perf_counter() - start) / repeats)
    return ProductRate(rows, inputs, outputs, precision, flops / best / 1e9)


def matmul_flop_counter() -> FlopCounterMode:
    """A context that counts the FLOPs of every matrix product (mm, addmm, bmm, attention)
    computed inside it, backward included (``.get_total_flops()``): what an update really runs,
    padding and all, whatever the kernels."""
    return FlopCounterMode(display=False)


def peak(rates: list[ProductRate], precision: str) -> ProductRate | None:
    """The fastest measured product in ``precision``: the roofline's ceiling."""
    measured = [rate for rate in rates if rate.precision == precision]
    return max(measured, key=lambda rate: rate.gflops) if measured else None


def rates_table(rates: list[ProductRate]) -> str:
    """A markdown table of the measured products, one row per shape, a column per precision."""
    precisions = sorted({rate.precision for rate in rates}, key=list(PRECISIONS).index)
    shapes = list(dict.fromkeys(rate.shape for rate in rates))
    by_key = {(rate.shape, rate.precision): rate.gflops for rate in rates}
    lines = [
        "| product (rows×in · in×out) | " + " | ".join(f"{p} GFLOP/s" for p in precisions) + " |",
        "|---|" + "---:|" * len(precisions),
    ]
    for shape in shapes:
        cells = [f"{by_key[shape, p]:,.0f}" if (shape, p) in by_key else "—" for p in precisions]
        lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def shares_table(rates: list[ProductRate], records: list[dict[str, object]]) -> str:
    """Each benchmark line's achieved matrix-product rate and its share of the measured peak of
    the precision it trained in."""
    lines = [
        "| model | precision | kernels | target tokens/s | GFLOP per token | achieved GFLOP/s "
        "| peak GFLOP/s (its shape) | share of peak |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for record in records:
        per_token = record.get("matmul_gflop_per_token")
        ceiling = peak(rates, str(record["precision"]))
        if not per_token or ceiling is None:
            continue
        achieved = float(record["target_tokens_per_sec"]) * float(per_token)
        lines.append(
            f"| {record['model']} | {record['precision']} | {record.get('kernels', '')} "
            f"| {float(record['target_tokens_per_sec']):,.0f} | {float(per_token):.4f} "
            f"| {achieved:,.0f} | {ceiling.gflops:,.0f} ({ceiling.shape}) "
            f"| {achieved / ceiling.gflops:.0%} |"
        )
    return "\n".join(lines)
