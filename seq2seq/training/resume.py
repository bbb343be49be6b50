"""Continuing a run from its ``last.pt``: which settings may change, and restoring the state.

A resumed run must be the run it continues. Anything that changes the model, the data or the
optimisation would silently turn it into another experiment, so those settings must equal the
checkpoint's; budgets, validation, logging and the device may change, and each change is logged.
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

# Settings a resumed run may change: how long and where it runs, how often it validates and
# logs, how it decodes for validation, which kernels compute the same model (a checkpoint
# written before model.kernels existed has none), how many sentences sentencepiece would train on
# (a resumed run reads the models its checkpoint carries). Everything else must equal the
# checkpoint's.
CHANGEABLE_ON_RESUME = frozenset(
    {
        "data.cache_dir",
        "data.spm_sample",
        "model.kernels",
        "trainer.device",
        "trainer.ddp_timeout_minutes",
        "trainer.threads",
        "trainer.max_steps",
        "trainer.max_epochs",
        "trainer.max_minutes",
        "trainer.max_skipped_in_a_row",
        "trainer.eval_every",
        "trainer.checkpoint_minutes",
        "trainer.keep_checkpoints",
        "trainer.eval_batch_size",
        "trainer.early_stopping_patience",
        "trainer.max_output_ratio",
        "trainer.max_output_extra",
        "trainer.eval_beam",
        "trainer.length_penalty",
        "trainer.beam_stop",
        "trainer.log_every",
        "trainer.progress",
        "trainer.resume",
        "trainer.overwrite",
    }
)
CHANGEABLE_PREFIXES = ("viz.",)

# Model presets renamed since a checkpoint may have been written: its former ``model.name``
# counts as the current one on resume and when averaging (the name is a label; the model is
# built from the other keys). model=bahdanau became model=rnn_attention on 2026-12-05.
RENAMED_MODELS = {"bahdanau": "rnn_attention"}

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


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every dotted key whose value differs: ``{key: (checkpoint's, current)}``."""
    old, new = flatten(saved), flatten(current)
    missing = object()
    return {
        key: (old.get(key, "<absent>"), new.get(key, "<absent>"))
        for key in sorted(old.keys() | new.keys())
        if old.get(key, missing) != new.get(key, missing)
    }


def under_current_names(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with a renamed preset's former ``model.name`` replaced by its current one."""
    model = config.get("model")
    if isinstance(model, dict) and model.get("name") in RENAMED_MODELS:
        return {**config, "model": {**model, "name": RENAMED_MODELS[model["name"]]}}
    return config


def is_changeable(key: str) -> bool:
    return key in CHANGEABLE_ON_RESUME or key.startswith(CHANGEABLE_PREFIXES)


def check_resume_config(path: str, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume with a different model, data or optimisation; log allowed changes."""
    changes = config_changes(under_current_names(saved), under_current_names(current))
    refused = {key: values for key, values in changes.items() if not is_changeable(key)}
    if refused:
        listed = "; ".join(f"{key}: {old!r} → {new!r}" for key, (old, new) in refused.items())
        raise ValueError(
            f"cannot resume from {path}: these settings differ from the checkpoint's ({listed}). "
            "Only budgets, validation, logging and device settings may change on resume; "
            "start a new run for the others"
        )
    for key, (old, new) in changes.items():
        if key != "trainer.resume":
            log.info("resume: %s changed from %r to %r", key, old, new)


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
