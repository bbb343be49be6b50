"""A checkpoint's config: read and checked as the command line's is, and compared with the
current one when a run resumes.

A resumed run must be the run it continues. Anything that changes the model, the data or the
optimisation would silently turn it into another experiment, so those settings must equal the
checkpoint's; budgets, validation, logging and the device may change, and each change is logged.
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from seq2seq.config.schema import Config, config_to_dict
from seq2seq.config.validation import check_settings
from seq2seq.files import CheckpointError

log = logging.getLogger(__name__)

# Settings a resumed run may change: how long and where it runs, how often it validates and
# logs, how it decodes for validation (search.*), which kernels compute the same model (a checkpoint
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
        "trainer.log_every",
        "trainer.progress",
        "trainer.resume",
        "trainer.overwrite",
    }
)
CHANGEABLE_PREFIXES = ("viz.", "search.")

# Settings moved since a checkpoint may have been written (2026-12-07, issue 40): the RNNs'
# sizes from model.* into their families' groups, the search's from trainer.* into search.*.
FLAT_RNN_ENCODER = {
    "rnn": "cell",
    "encoder_hidden": "hidden",
    "encoder_layers": "layers",
    "bidirectional": "bidirectional",
}
FLAT_RNN_DECODER = {
    "rnn": "cell",
    "decoder_hidden": "hidden",
    "decoder_style": "style",
    "input_feeding": "input_feeding",
}
STACK_KEYS = ("layers", "heads", "ff_size", "max_positions")  # were beside the encoder's name
STACK_SHARED_KEYS = ("positions", "attention_dropout", "activation_dropout")  # were model.*
FLAT_MODEL_KEYS = (FLAT_RNN_ENCODER.keys() | FLAT_RNN_DECODER.keys()) | set(STACK_SHARED_KEYS)
KEPT_MODEL_KEYS = ("name", "embed_size", "dropout", "param_init", "share_embeddings", "kernels")
MOVED_SEARCH_KEYS = {
    "eval_beam": "beam_size",
    "length_penalty": "alpha",
    "beam_stop": "stop",
    "max_output_ratio": "max_ratio",
    "max_output_extra": "max_extra",
}

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
        # Settings moved since the checkpoint was written go where they are now; the schema
        # fills keys added since with their defaults.
        current = escape_interpolations(under_current_names(saved))
        config = OmegaConf.merge(OmegaConf.structured(Config), current)
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
    """``config`` (a checkpoint's, as saved) in the current shape: a renamed preset's former
    ``model.name`` replaced by its current one, settings moved since put where they are now."""
    config = copy.deepcopy(config)
    model = config.get("model")
    if isinstance(model, dict):
        if model.get("name") in RENAMED_MODELS:
            model["name"] = RENAMED_MODELS[model["name"]]
        if FLAT_MODEL_KEYS & model.keys():
            config["model"] = nested_model(model)
    trainer = config.get("trainer")
    if isinstance(trainer, dict) and MOVED_SEARCH_KEYS.keys() & trainer.keys():
        moved = {new: trainer.pop(old) for old, new in MOVED_SEARCH_KEYS.items() if old in trainer}
        config["search"] = {**moved, **config.get("search", {})}
    return config


def nested_model(flat: dict[str, Any]) -> dict[str, Any]:
    """A model config of before 2026-12-07 (issue 40): the RNNs' keys at ``model.*``, the
    self-attention stacks' beside their names in ``model.encoder`` / ``model.decoder``, one
    ``positions`` and attention dropouts for both → the settings of each family the model
    uses under its name (those of the others were never read: the schema's defaults fill them).
    """
    encoder, decoder = flat.get("encoder", {}), flat.get("decoder", {})
    attention = flat.get("attention", {})
    shared = {key: flat[key] for key in STACK_SHARED_KEYS if key in flat}
    encoder_name, decoder_name = encoder.get("name", "rnn"), decoder.get("name", "rnn")
    scorer = attention.get("name")
    families = {
        "encoder": {
            "rnn": {new: flat[old] for old, new in FLAT_RNN_ENCODER.items() if old in flat},
            "self_attention": {
                **{key: encoder[key] for key in STACK_KEYS if key in encoder},
                **shared,
            },
        }.get(encoder_name, {}),
        "decoder": {
            "rnn": {new: flat[old] for old, new in FLAT_RNN_DECODER.items() if old in flat},
            "transformer": {
                **{key: decoder[key] for key in (*STACK_KEYS, "alignment_layer") if key in decoder},
                **shared,
            },
        }.get(decoder_name, {}),
    }
    if decoder_name == "rnn" and families["decoder"].get("style", "bahdanau") == "bahdanau":
        families["decoder"]["input_feeding"] = True  # Bahdanau's wiring never read it
    scorer_keys = {"bahdanau": ("size",), "multihead": ("size", "heads")}.get(scorer, ())
    sized = {key: attention[key] for key in scorer_keys if key in attention}
    tied = {key: decoder[key] for key in ("tie_embeddings",) if key in decoder}
    return {
        **{key: value for key, value in flat.items() if key in KEPT_MODEL_KEYS},
        "encoder": {"name": encoder_name, encoder_name: families["encoder"]},
        "decoder": {"name": decoder_name, **tied, decoder_name: families["decoder"]},
        "attention": {
            "name": scorer,
            **({scorer: sized} if sized else {}),
        },
    }


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


def resumed_config(path: str, state: dict[str, Any], current: DictConfig) -> DictConfig:
    """The config of the run ``state`` (a loaded last.pt) continues, once it is usable and
    differs from ``current`` only where a resumed run may change (each change logged)."""
    saved = checkpoint_config(path, state)
    check_resume_config(path, config_to_dict(saved), config_to_dict(current))
    return saved
