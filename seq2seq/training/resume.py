"""Continuing a run from its ``last.pt``: is it resumable, and restoring its state.

Which settings may change on resume is the config's question (:mod:`seq2seq.config.saved`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seq2seq.checkpoint import CheckpointError, restore_rng_state, validation_checkpoints
from seq2seq.data.batching import BucketBatchSampler
from seq2seq.files import atomic_write_bytes
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.training.distributed import Ranks
from seq2seq.training.ema import WeightAverage
from seq2seq.training.schedule import LearningRateSchedule
from seq2seq.training.step import TrainingStep

log = logging.getLogger(__name__)

# What a last.pt holds beyond what translating needs, and resuming restores.
RESUMABLE_STATE = ("progress", "optimizer", "scheduler", "sampler", "rng")


@dataclass
class TrainingProgress:
    """Counters of a run, saved in every checkpoint and restored on resume."""

    step: int = 0
    epoch: int = 0  # written from the sampler at each checkpoint, for the record
    train_tokens: int = 0
    train_seconds: float = 0.0
    best_bleu: float = -math.inf
    best_step: int = 0
    evals_without_improvement: int = 0
    last_eval_step: int = -1
    skipped_updates: int = 0  # updates whose loss or gradient was not finite
    skipped_in_a_row: int = 0
    test_pending: bool = False  # training ended, but a signal stopped the final test


def check_resumable(path: str, saved: dict[str, Any], averaged: bool) -> None:
    """Refuse a checkpoint that lacks part of the state a run continues from (a best.pt, or a
    last.pt edited by hand) before anything is built from it."""
    if "optimizer" not in saved:
        raise CheckpointError(f"{path} holds weights only; resume from a run's checkpoints/last.pt")
    needed = ("config", "model", "source_spm", "target_spm", *RESUMABLE_STATE)
    missing = [key for key in needed + ("ema",) * averaged if key not in saved]
    if missing:
        raise CheckpointError(
            f"{path}: the checkpoint lacks {', '.join(missing)}, which resuming restores; "
            "resume from a last.pt as train.py wrote it"
        )


def carry_checkpoints(resumed_from: Path, checkpoints: Path) -> None:
    """A run resumed into a new directory starts with the best checkpoint it resumed from, and
    the validation checkpoints ``step_<n>.pt`` that run kept.

    Otherwise a resumed run that never beats the restored best dev BLEU would have no best.pt,
    and averaging its last validations would miss those made before the interruption.
    """
    for source in [resumed_from.parent / "best.pt", *validation_checkpoints(resumed_from.parent)]:
        target = checkpoints / source.name
        if source.is_file() and source.resolve() != target.resolve():
            atomic_write_bytes(target, source.read_bytes())


def restore_training_state(
    state: dict[str, Any],
    model: Seq2Seq,
    update: TrainingStep,
    scheduler: LearningRateSchedule,
    sampler: BucketBatchSampler,
    ranks: Ranks,
    average: WeightAverage | None = None,
) -> TrainingProgress:
    """Restore everything ``last.pt`` saved, so training continues exactly where it stopped.

    Each rank restores its own RNG state when the run resumes with as many ranks as saved it;
    otherwise dropout draws do not continue exactly (a warning says so).
    """
    model.load_state_dict(state["model"])
    update.optimizer.load_state_dict(state["optimizer"])
    if state.get("grad_scaler"):  # fp16 loss scale; empty for fp32/bf16
        update.scaler.load_state_dict(state["grad_scaler"])
    scheduler.load_state_dict(state["scheduler"])
    if average is not None:
        average.load_state_dict(state["ema"])
    sampler.load_state_dict(state["sampler"])
    rng_by_rank = state.get("rng_by_rank", [state["rng"]])
    if len(rng_by_rank) == ranks.world_size:
        restore_rng_state(rng_by_rank[ranks.rank])
    else:
        log.warning(
            "the checkpoint was saved by %d process(es), resumed by %d: the batches continue "
            "exactly, dropout draws start afresh from trainer.seed",
            len(rng_by_rank),
            ranks.world_size,
        )
    return TrainingProgress(**state["progress"])
