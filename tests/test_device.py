"""Devices, precisions and the process's memory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seq2seq.device import autocast_dtype, select_device

REUSE = """
import random, resource, sys, torch
from seq2seq.device import keep_freed_memory
print(keep_freed_memory() if sys.argv[1] == "keep" else "plain")
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
lengths = random.Random(0)
counts = []
for step in range(60):  # an update's large activations, their size varying with the batch
    length = lengths.randint(8, 16)
    before = faults()
    tanhs = torch.ones(length, 64, length, 512)
    squares = tanhs * tanhs
    logits = torch.ones(64 * length, 4000)
    counts.append(faults() - before)
    del tanhs, squares, logits
print(sum(counts[-20:]))
"""


def page_faults_at_the_end(mode: str) -> tuple[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", REUSE, mode], capture_output=True, text=True, check=True
    )
    status, faults = result.stdout.split()
    return status, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_memory_comes_back_without_page_faults() -> None:
    """By default glibc returns freed blocks of tens of MB to the kernel and the next ones fault
    in fresh pages, one fault per 4 KiB; told to keep freed memory, allocations of varying sizes
    soon reuse it.

    Some runs of the plain process fault far less (ten runs on this project's VM: 0 three
    times, 40,268 to 81,094 otherwise): one of up to six runs must show glibc's default."""
    assert any(page_faults_at_the_end("plain")[1] > 20_000 for _ in range(6))
    status, faults = page_faults_at_the_end("keep")
    assert status == "True"
    assert faults < 100


def test_device_and_precision_names_are_checked() -> None:
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        select_device("tpu")
    assert autocast_dtype("fp32") is None and autocast_dtype("bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype("int8")


def test_only_entry_points_change_how_the_process_keeps_memory() -> None:
    """mallopt is process-wide: importing the package (a test, a notebook) must not set it."""
    root = Path(__file__).resolve().parents[1]
    callers = sorted(
        path.relative_to(root).as_posix()
        for path in [*root.glob("seq2seq/**/*.py"), *root.glob("scripts/*.py"), root / "train.py"]
        if re.search(r"(?<!def )keep_freed_memory\(\)", path.read_text(encoding="utf-8"))
    )
    assert callers == ["scripts/benchmark_training.py", "seq2seq/cli.py", "train.py"]
