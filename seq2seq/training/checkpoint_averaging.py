"""Averaging the weights of saved checkpoints (``scripts/average_checkpoints.py``).

The mean of the weights at the last few validations sits nearer the centre of the region late
training wanders in than any one of them, as the EMA does during training (ema.py), and
costs nothing at decoding time (Junczys-Dowmunt et al. 2016; fairseq's and OpenNMT-py's
``average_checkpoints``). The checkpoints must be of one model: the same architecture and the
same sentencepiece models, else their weights mean nothing to each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seq2seq.checkpoint import (
    CheckpointError,
    check_same_vocabularies,
    load_checkpoint,
    save_checkpoint,
    validation_checkpoints,
)
from seq2seq.config.saved import config_changes, under_current_names

# What an averaged checkpoint carries: what translate.py and evaluate.py read.
REQUIRED = ("config", "model", "source_spm", "target_spm")


def checkpoints_to_average(inputs: Sequence[Path], last: int | None = None) -> list[Path]:
    """``inputs`` as given, or for one run directory (or its ``checkpoints/``) the ``last``
    validation checkpoints ``step_<n>.pt`` it kept (all of them without ``last``)."""
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        directory = Path(inputs[0])
        if (directory / "checkpoints").is_dir():
            directory = directory / "checkpoints"
        kept = validation_checkpoints(directory)
        if not kept:
            raise CheckpointError(
                f"{directory}: no validation checkpoints step_<n>.pt; train with "
                "trainer.keep_checkpoints=K (K > 0) or name the checkpoint files"
            )
        if last is not None and last > len(kept):
            raise CheckpointError(
                f"{directory}: --last {last}, but the run kept {len(kept)} validation "
                f"checkpoints ({', '.join(p.name for p in kept)})"
            )
        return kept[-last:] if last else kept
    if last is not None:
        raise CheckpointError("--last K takes one run directory, not checkpoint files")
    directories = [str(path) for path in inputs if Path(path).is_dir()]
    if directories:
        raise CheckpointError(
            f"{directories[0]}: a directory among several inputs; give one run directory, "
            "or checkpoint files only"
        )
    return [Path(path) for path in inputs]


def average_checkpoints(paths: Sequence[Path]) -> dict[str, Any]:
    """A checkpoint whose weights are the mean of those of ``paths``.

    Floating-point tensors are summed in float64 and divided once, so the mean of copies of one
    checkpoint is that checkpoint, bit for bit. Other tensors (a Transformer's chosen alignment
    layer) and the config come from the last checkpoint, the most recent of a run's validations.
    One line names the first checkpoint that does not fit the first one.
    """
    if not paths:
        raise CheckpointError("no checkpoints to average")
    first = checkpoint_to_average(paths[0])
    sums = {
        name: tensor.double() if tensor.is_floating_point() else tensor
        for name, tensor in first["model"].items()
    }
    last = first
    for path in paths[1:]:
        last = checkpoint_to_average(path)
        check_same_model(paths[0], first, path, last)
        for name, tensor in last["model"].items():
            sums[name] = sums[name] + tensor.double() if tensor.is_floating_point() else tensor
    model = {
        name: (total / len(paths)).to(first["model"][name].dtype)
        if first["model"][name].is_floating_point()
        else total
        for name, total in sums.items()
    }
    averaged = {key: last[key] for key in REQUIRED} | {"model": model}
    if "precision" in last:
        averaged["precision"] = last["precision"]
    averaged["averaged_from"] = [str(Path(path).resolve()) for path in paths]
    return averaged


def checkpoint_to_average(path: Path) -> dict[str, Any]:
    state = load_checkpoint(path)
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks {', '.join(missing)}")
    return state


def check_same_model(
    first_path: Path, first: dict[str, Any], path: Path, state: dict[str, Any]
) -> None:
    """Same sentencepiece models, model config and weight shapes, or one line saying which."""
    check_same_vocabularies(
        path, state, first_path, first, "only checkpoints of one vocabulary can be averaged"
    )
    first_model, model = (under_current_names(s["config"])["model"] for s in (first, state))
    changes = config_changes(first_model, model)
    if changes:
        key, (old, new) = next(iter(changes.items()))
        raise CheckpointError(
            f"{path}: model.{key}={new!r}, {first_path} has {old!r}: only checkpoints of one "
            "model can be averaged"
        )
    for name in sorted(first["model"].keys() | state["model"].keys()):
        kinds = [
            None if weights is None else (weights.shape, weights.dtype)
            for weights in (first["model"].get(name), state["model"].get(name))
        ]
        if None in kinds or kinds[0] != kinds[1]:
            raise CheckpointError(
                f"{path}: weight {name} does not match {first_path}'s: only checkpoints of one "
                "model can be averaged"
            )


def write_average(
    inputs: Sequence[Path], out: Path, last: int | None = None, overwrite: bool = False
) -> list[Path]:
    """Average the checkpoints :func:`checkpoints_to_average` picks into ``out`` (atomically);
    an existing ``out`` is refused unless ``overwrite``. Returns the checkpoints averaged."""
    if out.exists() and not overwrite:
        raise CheckpointError(f"{out}: already exists; choose another --out or add --overwrite")
    paths = checkpoints_to_average(inputs, last)
    save_checkpoint(out, average_checkpoints(paths))
    return paths
