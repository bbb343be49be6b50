"""Start-up checks of the settings the schema's types cannot express: ranges, choices, added
keys; and the same checks of the config a checkpoint carries.

Without them a value out of range fails deep inside a run (``trainer.eval_every=0``: a
ZeroDivisionError after the first update) or silently means nothing (``+trainer.foo=1``); a
hand-edited checkpoint's ``search.stop`` would fail only at its first beam search.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from seq2seq.config.schema import (
    BEAM_STOPS,
    LENGTH_PENALTY_RANGE,
    LOSS_NORMALIZATIONS,
    LR_SCHEDULES,
    DataConfig,
    ModelConfig,
    SearchConfig,
    TrainerConfig,
    VizConfig,
)
from seq2seq.device import PRECISION_CHOICES

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
    "data.shared_vocab_size": SIZE,
    "data.subword_sampling_alpha": ((lambda value: 0.0 < value <= 1.0), "more than 0, at most 1"),
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
    "model.dropout": FRACTION,
    "model.param_init": COUNT,
    "model.encoder.rnn.hidden": SIZE,
    "model.encoder.rnn.layers": SIZE,
    "model.encoder.self_attention.layers": SIZE,
    "model.encoder.self_attention.heads": SIZE,
    "model.encoder.self_attention.ff_size": SIZE,
    "model.encoder.self_attention.max_positions": SIZE,
    "model.encoder.self_attention.attention_dropout": FRACTION,
    "model.encoder.self_attention.activation_dropout": FRACTION,
    "model.decoder.rnn.hidden": SIZE,
    "model.decoder.transformer.layers": SIZE,
    "model.decoder.transformer.heads": SIZE,
    "model.decoder.transformer.ff_size": SIZE,
    "model.decoder.transformer.max_positions": SIZE,
    "model.decoder.transformer.attention_dropout": FRACTION,
    "model.decoder.transformer.activation_dropout": FRACTION,
    "model.attention.bahdanau.size": SIZE,
    "model.attention.multihead.size": SIZE,
    "model.attention.multihead.heads": SIZE,
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
    "trainer.keep_checkpoints": COUNT,
    "trainer.eval_batch_size": SIZE,
    "trainer.early_stopping_patience": COUNT,
    "trainer.log_every": SIZE,
    "trainer.ddp_timeout_minutes": SIZE,
    "search.beam_size": SIZE,
    "search.alpha": within(*LENGTH_PENALTY_RANGE),
    "search.max_ratio": SIZE,
    "search.max_extra": COUNT,
    "viz.num_samples": COUNT,
}

# Settings the code reads as one of a few words; the model's are checked where it is built.
CHOICES: dict[str, tuple[str, ...]] = {
    "search.stop": BEAM_STOPS,
    "trainer.precision": PRECISION_CHOICES,
    "trainer.normalization": LOSS_NORMALIZATIONS,
    "trainer.lr_schedule": LR_SCHEDULES,
}

SCHEMAS = {
    "data": DataConfig,
    "model": ModelConfig,
    "trainer": TrainerConfig,
    "search": SearchConfig,
    "viz": VizConfig,
}


def check_settings(cfg: DictConfig) -> None:
    """Raise ValueError naming the first key that is not a setting, whose value is out of
    range or not one of its choices, or a translation direction the columns lack."""
    for group, schema in SCHEMAS.items():
        known = OmegaConf.to_container(OmegaConf.structured(schema))
        given = OmegaConf.to_container(cfg[group])
        added = added_keys(given, known, f"{group}.")  # type: ignore[arg-type]
        if added:
            raise ValueError(
                f"{', '.join(added)}: not a setting (a typo, added with +?); the {group} "
                f"settings are those of configs/{group}/ and seq2seq/config/schema.py"
            )
    if cfg.model.share_embeddings and cfg.data.shared_vocab_size is None:
        raise ValueError(
            "model.share_embeddings=true ties the source and target embeddings, which needs one "
            "vocabulary for both: set data.shared_vocab_size (e.g. 8000)"
        )
    for key, (in_range, wanted) in RANGES.items():
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        if not math.isfinite(value) or not in_range(value):
            raise ValueError(f"{key}={value} is out of range: it must be {wanted}")
    for key, choices in CHOICES.items():
        if OmegaConf.select(cfg, key) not in choices:
            raise ValueError(
                f"{key}={OmegaConf.select(cfg, key)} is not a choice: it must be one of "
                f"{', '.join(choices)}"
            )
    data = cfg.data
    for key in ("source_lang", "target_lang"):
        if data[key] not in data.columns:
            raise ValueError(
                f"data.{key}={data[key]} is not one of the languages of data.columns "
                f"({', '.join(data.columns)})"
            )
    if data.source_lang == data.target_lang:
        raise ValueError(f"data.source_lang and data.target_lang are both {data.source_lang}")
    if cfg.data.subword_sampling_alpha is not None and cfg.data.spm_model_type != "unigram":
        raise ValueError(
            f"data.subword_sampling_alpha needs data.spm_model_type=unigram (it draws among a "
            f"unigram model's best segmentations), not {cfg.data.spm_model_type}"
        )


# The parts whose settings sit under the name of each family (schema.EncoderConfig, ...).
FAMILY_PARTS = ("model.encoder", "model.decoder", "model.attention")


def unread_overrides(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """The command line's overrides of a family's settings where another family is chosen
    (``model/encoder=rnn model.encoder.self_attention.heads=8``): valid keys that nothing reads.

    Only the command line is looked at: an experiment may size several families on purpose, so
    that a sweep over them finds each one's settings (configs/experiment/synthetic_*.yaml).
    """
    # "model.encoder.self_attention." → "model.encoder.name is rnn", for each family not chosen
    unchosen = {
        f"{part}.{family}.": f"{part}.name is {cfg_part.name}"
        for part in FAMILY_PARTS
        for cfg_part in [OmegaConf.select(cfg, part)]
        for family, settings in cfg_part.items()
        if isinstance(settings, DictConfig) and family != cfg_part.name
    }
    unread = []
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0] + "."
        unread += [
            f"{override}: not read, {why}" for p, why in unchosen.items() if key.startswith(p)
        ]
    return unread


def added_keys(given: dict[str, Any], known: dict[str, Any], prefix: str) -> list[str]:
    """Dotted keys of ``given`` that ``known`` (the schema's) lacks, at any depth."""
    found = []
    for key, value in given.items():
        if key not in known:
            found.append(f"{prefix}{key}")
        elif isinstance(value, dict) and isinstance(known[key], dict):
            found += added_keys(value, known[key], f"{prefix}{key}.")
    return found
