"""Choosing the torch device, and the numeric precision computed in on it."""

from __future__ import annotations

import torch


def select_device(name: str) -> torch.device:
    """``auto`` is CUDA when torch sees a GPU, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for, but torch sees no CUDA device; use cpu")
    return torch.device(name)


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``trainer.precision``, or None for plain float32.

    bf16/fp16 run matrix products (linear layers, attention products) in 16 bits with 32-bit
    accumulation and keep softmax, losses and the weights in float32. On CPUs with
    AVX512-BF16 or AMX, bf16 matrix products run at about twice the float32 rate (oneDNN).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return None if precision == "fp32" else PRECISIONS[precision]


def product_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a matrix product on ``x`` runs in: autocast's where it is on, else ``x``'s."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Autocast context for ``device`` at ``precision`` (disabled for fp32)."""
    dtype = autocast_dtype(precision)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)
