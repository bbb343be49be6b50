"""Choosing the torch device, the numeric precision computed in on it, and how freed memory
is kept."""

from __future__ import annotations

import ctypes
import platform

import torch

# glibc's mallopt parameters (malloc.h) and the largest value they take.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BELOW_BYTES = 2**31 - 1


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


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks for the next allocation instead of returning them to
    the operating system; False where the C library is not glibc (nothing changes).

    By default glibc maps each block over a threshold (128 KiB, growing to at most 32 MiB)
    fresh from the kernel and unmaps it when freed, so every training update's tens of MB of
    activations come back as new pages that the kernel faults in and zeroes: about 5,000 page
    faults per update (about 1,200 with this), 4-9% of an update's time on this project's
    machine, and 13-17% of a beam search's. Called once by the training, benchmark and
    decoding entry points; peak memory grows by a few percent.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BELOW_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _KEEP_BELOW_BYTES)
    )
