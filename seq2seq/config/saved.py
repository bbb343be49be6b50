"""A checkpoint's config: read and checked as the command line's is, and compared with the
current one when a run resumes.

A resumed run must be the run it continues. Anything that changes the model, the data or the
optimisation would silently turn it into another experiment, so those settings must equal the
checkpoint's; budgets, validation, logging and the device may change, and each change is logged.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seq2seq.config.schema import Config
from seq2seq.config.validation import check_settings
from seq2seq.files import CheckpointError

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


def checkpoint_config(path: str | Path, state: dict[str, Any]) -> DictConfig:
    """The config ``state`` (a loaded checkpoint) carries, checked as the command line's is.

    Training saves it resolved, so a ``${...}`` in it was put there by hand: it stays the text
    it is, never an environment variable read or a resolver run on load.
    """
    saved = state.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: the checkpoint holds no config")
    try:
        # The schema fills keys added since the checkpoint was written with their defaults.
        config = OmegaConf.merge(OmegaConf.structured(Config), escape_interpolations(saved))
        assert isinstance(config, DictConfig), "the schema merge gave no DictConfig"
        check_settings(config)
    except (OmegaConfBaseException, ValueError) as error:
        raise CheckpointError(f"{path}: its config is not usable: {one_line(error)}") from error
    return config


def one_line(error: Exception) -> str:
    """The first line of an OmegaConf or range-check error, led by the key it is about."""
    line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    # An escaped ${...} is still "dereferenced" to the text it is; the phrase would mislead.
    line = re.sub(r"^While dereferencing interpolation '.*?': ", "", line)
    key = getattr(error, "full_key", None)
    return f"{key}: {line}" if key and not line.startswith(str(key)) else line


def escape_interpolations(value: Any) -> Any:
    """``value`` with every ``${`` escaped, so OmegaConf reads it as text; backslashes before
    one are doubled, since OmegaConf reads a pair of them there as one backslash."""
    if isinstance(value, dict):
        return {key: escape_interpolations(item) for key, item in value.items()}
    if isinstance(value, list):
        return [escape_interpolations(item) for item in value]
    if isinstance(value, str):
        return re.sub(r"(\\*)\$\{", lambda match: match.group(1) * 2 + "\\${", value)
    return value


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
