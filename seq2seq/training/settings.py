"""Start-up checks of the settings the schema's types cannot express: ranges and added keys.

Without them a value out of range fails deep inside a run (``trainer.eval_every=0``: a
ZeroDivisionError after the first update) or silently means nothing (``+trainer.foo=1``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from seq2seq.config import DataConfig, ModelConfig, TrainerConfig, VizConfig

# GNMT's α: beyond this ((5+len)/6)^α overflows for long outputs, and no tuned value comes near.
LENGTH_PENALTY_RANGE = (0.0, 10.0)

Rule = tuple[Callable[[float], bool], str]


def above(low: float) -> Rule:
    return (lambda value: value > low), f"more than {low}"


def at_least(low: float) -> Rule:
    return (lambda value: value >= low), f"{low} or more"


def within(low: float, high: float, high_included: bool = True) -> Rule:
    if high_included:
        return (lambda value: low <= value <= high), f"from {low} to {high}"
    return (lambda value: low <= value < high), f"from {low} to less than {high}"


SIZE = above(0)
COUNT = at_least(0)
FRACTION = within(0.0, 1.0, high_included=False)

RANGES: dict[str, Rule] = {
    "data.max_length": SIZE,
    "data.src_vocab_size": SIZE,
    "data.tgt_vocab_size": SIZE,
    "data.synthetic.train_size": SIZE,
    "data.synthetic.dev_size": SIZE,
    "data.synthetic.test_size": SIZE,
    "data.synthetic.long_test_size": COUNT,
    "data.synthetic.max_clauses": SIZE,
    "data.synthetic.word_order_train": COUNT,
    "data.synthetic.word_order_size": COUNT,
    "data.synthetic.long_range_train": COUNT,
    "data.synthetic.long_range_size": COUNT,
    "model.embed_size": SIZE,
    "model.encoder_hidden": SIZE,
    "model.encoder_layers": SIZE,
    "model.decoder_hidden": SIZE,
    "model.dropout": FRACTION,
    "model.attention_dropout": FRACTION,
    "model.activation_dropout": FRACTION,
    "model.param_init": COUNT,
    "model.encoder.layers": SIZE,
    "model.encoder.heads": SIZE,
    "model.encoder.ff_size": SIZE,
    "model.encoder.max_positions": SIZE,
    "model.decoder.layers": SIZE,
    "model.decoder.heads": SIZE,
    "model.decoder.ff_size": SIZE,
    "model.decoder.max_positions": SIZE,
    "model.attention.size": SIZE,
    "model.attention.heads": SIZE,
    "trainer.seed": COUNT,
    "trainer.threads": COUNT,
    "trainer.batch_size": SIZE,
    "trainer.bucket_batches": SIZE,
    "trainer.lr": COUNT,
    "trainer.clip_norm": COUNT,
    "trainer.label_smoothing": FRACTION,
    "trainer.max_skipped_in_a_row": COUNT,
    "trainer.warmup_steps": COUNT,
    "trainer.lr_decay_steps": COUNT,
    "trainer.lr_patience": COUNT,
    "trainer.lr_factor": within(0.0, 1.0),
    "trainer.min_lr": COUNT,
    "trainer.ema_decay": FRACTION,
    "trainer.max_steps": COUNT,
    "trainer.max_epochs": COUNT,
    "trainer.max_minutes": COUNT,
    "trainer.eval_every": SIZE,
    "trainer.checkpoint_minutes": COUNT,
    "trainer.eval_batch_size": SIZE,
    "trainer.early_stopping_patience": COUNT,
    "trainer.max_output_ratio": SIZE,
    "trainer.max_output_extra": COUNT,
    "trainer.eval_beam": SIZE,
    "trainer.length_penalty": within(*LENGTH_PENALTY_RANGE),
    "trainer.log_every": SIZE,
    "trainer.ddp_timeout_minutes": SIZE,
    "viz.num_samples": COUNT,
}

SCHEMAS = {"data": DataConfig, "model": ModelConfig, "trainer": TrainerConfig, "viz": VizConfig}


def check_settings(cfg: DictConfig) -> None:
    """Raise ValueError naming the first key that is not a setting or whose value is out of
    range."""
    for group, schema in SCHEMAS.items():
        known = OmegaConf.to_container(OmegaConf.structured(schema))
        given = OmegaConf.to_container(cfg[group])
        added = added_keys(given, known, f"{group}.")  # type: ignore[arg-type]
        if added:
            raise ValueError(
                f"{', '.join(added)}: not a setting (a typo, added with +?); the {group} "
                f"settings are those of configs/{group}/ and seq2seq/config.py"
            )
    for key, (in_range, wanted) in RANGES.items():
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        if not math.isfinite(value) or not in_range(value):
            raise ValueError(f"{key}={value} is out of range: it must be {wanted}")


def added_keys(given: dict[str, Any], known: dict[str, Any], prefix: str) -> list[str]:
    """Dotted keys of ``given`` that ``known`` (the schema's) lacks, at any depth."""
    found = []
    for key, value in given.items():
        if key not in known:
            found.append(f"{prefix}{key}")
        elif isinstance(value, dict) and isinstance(known[key], dict):
            found += added_keys(value, known[key], f"{prefix}{key}.")
    return found
