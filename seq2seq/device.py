"""Choosing the torch device, the numeric precision computed in on it, and how freed memory
is kept."""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

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
# What trainer.precision and --precision accept: a precision, or auto (chosen from the hardware).
PRECISION_CHOICES = ("auto", *PRECISIONS)
# ONEDNN_MAX_CPU_ISA values that keep oneDNN below its bf16 instructions (AVX512_CORE_BF16).
_ONEDNN_ISAS_WITHOUT_BF16 = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (not ``auto``), or None for plain float32.

    bf16/fp16 run matrix products (linear layers, attention products) in 16 bits with 32-bit
    accumulation and keep softmax, losses and the weights in float32. On CPUs with
    AVX512-BF16 or AMX, bf16 matrix products run at about twice the float32 rate (oneDNN).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return None if precision == "fp32" else PRECISIONS[precision]


@dataclass(frozen=True)
class Support:
    """Whether a device computes a 16-bit format natively, and why, in words for the log."""

    native: bool
    why: str


def bf16_support(device: torch.device) -> Support:
    """Native bf16 matrix products on ``device``: a CUDA device that supports bf16 (Ampere and
    later), or a CPU with AVX512-BF16 or AMX that oneDNN may use.

    Decided from torch's own capability queries, not by timing a product: the answer must be
    the same on every run on one machine (the precision changes the numbers a seed gives), and
    a timing on a busy 2-core VM is not. Without these instructions torch computes bf16 in a
    fallback kernel: a 320 × 512 by 512 × 4,000 product took 504 ms against 9.2 ms in float32
    on an AVX2-only AMD EPYC (Zen 3).
    """
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return Support(True, f"{name} computes bf16 natively")
        return Support(False, f"{name} has no native bf16 (before Ampere)")
    if device.type != "cpu":
        return Support(False, f"no native bf16 known for {device.type}")
    units = [
        name
        for name, query in (
            ("AMX", "_is_amx_tile_supported"),
            ("AVX512-BF16", "_is_avx512_bf16_supported"),
        )
        if getattr(torch.cpu, query, lambda: False)()
    ]
    if not units:
        return Support(False, f"this CPU ({cpu_capability()}) has neither AVX512-BF16 nor AMX")
    found = " and ".join(units)
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    if cap in _ONEDNN_ISAS_WITHOUT_BF16:
        return Support(
            False, f"this CPU has {found}, but ONEDNN_MAX_CPU_ISA={cap} keeps oneDNN from it"
        )
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return Support(
            False, f"this CPU has {found}, but this torch build's oneDNN does not use it"
        )
    return Support(True, f"this CPU computes bf16 natively ({found})")


def fp16_support(device: torch.device) -> Support:
    """Native fp16 matrix products: any CUDA device, or a CPU with AMX-FP16."""
    if device.type == "cuda":
        return Support(True, f"{torch.cuda.get_device_name(device)} computes fp16 natively")
    if device.type == "cpu" and getattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)():
        return Support(True, "this CPU computes fp16 natively (AMX-FP16)")
    return Support(False, f"this {device.type} ({cpu_capability()}) has no native fp16")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run or a decoder was asked for and the one it computes in."""

    asked: str  # auto | fp32 | bf16 | fp16
    used: str  # fp32 | bf16 | fp16
    why: str

    def __str__(self) -> str:
        asked = "" if self.asked == self.used else f" (asked: {self.asked})"
        return f"{self.used}{asked}: {self.why}"


def choose_precision(
    asked: str, device: torch.device, setting: str = "trainer.precision"
) -> PrecisionChoice:
    """``auto`` is bf16 where ``device`` computes it natively, else fp32; any other value is
    used as asked, with one warning line where a 16-bit format runs in a slow fallback.

    fp16 is never chosen by ``auto``: it needs loss scaling and, on CPU, AMX-FP16.
    """
    if asked not in PRECISION_CHOICES:
        raise ValueError(f"{setting} must be one of {list(PRECISION_CHOICES)}, got {asked!r}")
    if asked == "fp32":
        return PrecisionChoice(asked, "fp32", "asked for")
    support = {"fp16": fp16_support, "bf16": bf16_support, "auto": bf16_support}[asked](device)
    if asked == "auto":
        return PrecisionChoice(asked, "bf16" if support.native else "fp32", support.why)
    if not support.native and device.type == "cpu":
        log.warning(
            "%s=%s: %s, so its matrix products run in a fallback kernel, up to ~50x slower "
            "than fp32; %s=auto picks fp32 here",
            setting,
            asked,
            support.why,
            setting,
        )
    return PrecisionChoice(asked, asked, support.why if support.native else "asked for")


def cpu_capability() -> str:
    """torch's vector instruction level for its own kernels: AVX512, AVX2, DEFAULT, ..."""
    return torch.backends.cpu.get_cpu_capability()


def cpu_model() -> str:
    """The CPU's model name, with its family and model numbers where Linux tells them (a
    virtual machine may name only "AMD EPYC": family 25 is Zen 3 or 4, family 26 Zen 5)."""
    try:
        fields = dict(
            line.split(":", 1)
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if ":" in line
        )
    except OSError:
        return platform.processor() or platform.machine()
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def hardware_summary(device: torch.device | None = None) -> dict[str, object]:
    """What a measured figure depends on: the CPU, torch's capability and native bf16.

    Recorded in benchmark and evaluation reports, metrics.json and the CI log, so that every
    figure says which kind of CPU gave it.
    """
    device = device or torch.device("cpu")
    bf16 = bf16_support(device)
    summary: dict[str, object] = {
        "cpu": cpu_model(),
        "cpu_capability": cpu_capability(),
        "native_bf16": bf16.native,
        "native_bf16_why": bf16.why,
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        summary["gpu"] = torch.cuda.get_device_name(device)
    return summary


def product_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a matrix product on ``x`` runs in: autocast's where it is on, else ``x``'s."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def backward_without_autocast(backward: Callable[..., Any]) -> Callable[..., Any]:
    """For a hand-written backward (``ctx.device_type`` set in forward): called inside an
    autocast region, it must not recast its products."""

    @functools.wraps(backward)
    def wrapped(ctx: Any, *grads: torch.Tensor | None) -> Any:
        with torch.autocast(ctx.device_type, enabled=False):
            return backward(ctx, *grads)

    return wrapped


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
    machine, and 13-17% of a beam search's. A process-wide setting, so only entry points call
    it (train.py, scripts/benchmark_training.py, the translate and evaluate commands of
    seq2seq/cli.py), never the package a test or a notebook imports; peak memory grows by a few
    percent.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    return bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BELOW_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _KEEP_BELOW_BYTES)
    )
