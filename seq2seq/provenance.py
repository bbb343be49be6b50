"""Where a recorded figure came from: the hardware, the code's commit and the date.

metrics.json, benchmark and evaluation reports carry this record, and ``compare_runs.py`` prints
it under every table it makes, so that a figure copied into the README says which machine and
which code gave it (and goes stale visibly when the code moves on).
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

import torch

from seq2seq.device import hardware_summary

SOURCE_ROOT = Path(__file__).resolve().parents[1]


def code_commit(root: Path = SOURCE_ROOT) -> str | None:
    """The short commit of the checkout that holds this code, ``+changes`` where tracked files
    differ from it; None outside a git checkout (an installed wheel) or without git."""
    try:
        commit = _git(root, "rev-parse", "--short", "HEAD")
        changed = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return f"{commit}+changes" if changed else commit


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def code_record(commit: str | None = None) -> dict[str, object]:
    """The code's commit (``commit``: one taken when the work began, since the checkout may
    change while a run trains) and the UTC time of recording."""
    return {
        "commit": commit or code_commit(),
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def provenance(device: torch.device | None = None) -> dict[str, object]:
    """:func:`hardware_summary` and :func:`code_record` in one flat record."""
    return {**hardware_summary(device), **code_record()}
