"""Self-contained checkpoints: written atomically, loaded without executing pickled code.

A checkpoint holds the resolved config, both sentencepiece models (as bytes) and the weights, so
translating needs nothing else; ``last.pt`` adds optimizer, scheduler, sampler and RNG state so a
run can be resumed exactly. With ``trainer.keep_checkpoints`` a run also keeps the weights of its
last few validations as ``step_<n>.pt``, for checkpoint averaging.
"""

from __future__ import annotations

import io
import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from seq2seq.files import CheckpointError, atomic_write_bytes

FORMAT_VERSION = 1
# A validation's weights kept by trainer.keep_checkpoints: step_<update>.pt.
VALIDATION_CHECKPOINT = re.compile(r"step_(?P<step>\d+)\.pt")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Serialize to memory, then write via a temporary file and a rename.

    A failed write (disk full, no permission) leaves the previous file as it was.
    """
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buffer)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:
        raise CheckpointError(
            f"{path}: could not write the checkpoint ({error.strerror or error}); "
            f"the previous {Path(path).name}, if any, is unchanged"
        ) from error


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``: tensors and plain Python values only, no code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes), not a checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile) as error:
        reason = why_unreadable(error)
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from error
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a seq2seq checkpoint of format {FORMAT_VERSION}")
    return state


def why_unreadable(error: BaseException) -> str:
    """One line on why ``torch.load`` failed. The safe loader's own message runs to several
    lines and suggests ``weights_only=False``, which would run whatever code the file holds."""
    text = str(error)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return (
            f"it holds a Python object of type {refused.group(1)}, which safe loading refuses; "
            "train.py writes only tensors and plain values"
        )
    if "WeightsUnpickler error:" in text:  # the safe loader's reason is the line after it
        reason = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        return f"not a file torch.save wrote, or a damaged one: {reason}"
    lines = text.strip().splitlines()
    return lines[0] if lines else type(error).__name__


def check_finite_weights(path: str | Path, weights: dict[str, Any]) -> None:
    """Raise CheckpointError naming the tensors that hold NaN or infinity, if any: such a
    model's every score is NaN, and search finishes no hypothesis at all."""
    broken = [
        name
        for name, tensor in weights.items()
        if isinstance(tensor, torch.Tensor)
        and tensor.is_floating_point()
        and not bool(tensor.isfinite().all())
    ]
    if broken:
        more = f" and {len(broken) - 1} more" if len(broken) > 1 else ""
        raise CheckpointError(
            f"{path}: the weights hold NaN or infinite values ({broken[0]}{more}): the run "
            "diverged; use an earlier checkpoint or train again"
        )


def check_same_vocabularies(
    path: str | Path, state: dict[str, Any], first_path: str | Path, first: dict[str, Any], why: str
) -> None:
    """Raise naming the side whose sentencepiece model (``source_spm``/``target_spm`` bytes)
    differs from the first checkpoint's: token ids mean nothing across vocabularies."""
    for key, side in (("source_spm", "source"), ("target_spm", "target")):
        if state[key] != first[key]:
            raise CheckpointError(
                f"{path}: its {side} sentencepiece model differs from {first_path}'s: {why}"
            )


def validation_checkpoints(directory: Path) -> list[Path]:
    """The kept validation checkpoints ``step_<n>.pt`` in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [
        (int(match["step"]), path)
        for path in directory.iterdir()
        if (match := VALIDATION_CHECKPOINT.fullmatch(path.name)) and path.is_file()
    ]
    return [path for _, path in sorted(found)]


def keep_validation_checkpoint(
    directory: Path, step: int, state: dict[str, Any], keep: int
) -> None:
    """Write ``step_<step>.pt`` and remove all but the newest ``keep`` of them.

    Only files of that pattern are removed: the run's own, never another file in the folder.
    """
    assert keep > 0, "trainer.keep_checkpoints=0 keeps none: do not call this"
    save_checkpoint(directory / f"step_{step}.pt", state)
    for old in validation_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
