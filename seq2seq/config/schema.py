"""Typed schema of the Hydra configuration.

The YAML files under ``configs/`` mirror these dataclasses one group each; registering them in
Hydra's ConfigStore makes a typo in an override (``trainer.max_step=5``) fail at start-up instead
of being silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from seq2seq.files import capped_name

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Settings the code reads as one of a few words (checked at start-up by .validation).
# When beam search ends a sentence: "exact" once nothing can beat its finished hypotheses;
# "best_ends" also as soon as a step's best candidate ends (OpenNMT-py's rule: fewer steps).
BEAM_STOPS = ("exact", "best_ends")
# trainer.lr_schedule (seq2seq/training/schedule.py).
LR_SCHEDULES = ("plateau", "linear", "cosine", "inverse_sqrt")
# trainer.normalization: the loss per target token or per sentence (seq2seq/training/step.py).
LOSS_NORMALIZATIONS = ("tokens", "sentences")
# GNMT's α: beyond this ((5+len)/6)^α overflows for long outputs, and no tuned value comes near.
LENGTH_PENALTY_RANGE = (0.0, 10.0)


@dataclass
class SyntheticConfig:
    """Sizes and sentence lengths of the generated 我爱你 corpus."""

    train_size: int = 20000
    dev_size: int = 500
    test_size: int = 500
    long_test_size: int = 500
    max_clauses: int = 2
    long_min_clauses: int = 3
    long_max_clauses: int = 4
    word_order_train: int = 1000
    word_order_size: int = 200
    long_range_train: int = 0
    long_range_size: int = 0
    seed: int = 1


@dataclass
class DataConfig:
    name: str = MISSING
    dir: str | None = None
    # data=tsv: a TSV or a Hugging Face dataset path, a list of one line-aligned text file per
    # language of `columns`, or (train) a list of weighted corpora (data/README.md)
    train: Any = None
    dev: Any = None
    test: Any = None
    word_order: str | None = None
    url: str = ""
    sha256: str = ""
    columns: list[str] = field(default_factory=lambda: ["zh", "en"])
    source_lang: str = "zh"
    target_lang: str = "en"
    on_malformed: str = "error"
    max_length: int = 100
    src_vocab_size: int = 4000
    tgt_vocab_size: int = 4000
    shared_vocab_size: int | None = None
    spm_model_type: str = "unigram"
    spm_sample: int | None = 200_000
    simplify_source: bool = False
    subword_sampling_alpha: float | None = None
    cache_dir: str = str(PROJECT_ROOT / "data" / "cache")
    length_buckets: list[int] = field(default_factory=lambda: [10, 20, 30])
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class AttentionConfig:
    name: str = MISSING
    size: int = 512
    heads: int = 4


@dataclass
class EncoderConfig:
    """Which encoder; the sizes of the self-attention one (the RNN's are model.encoder_*)."""

    name: str = "rnn"
    layers: int = 2
    heads: int = 4
    ff_size: int = 1024
    max_positions: int = 256


@dataclass
class DecoderConfig:
    """Which decoder; the sizes of the Transformer one (the RNN's are model.decoder_hidden etc.)."""

    name: str = "rnn"
    layers: int = 3
    heads: int = 4
    ff_size: int = 1024
    max_positions: int = 256
    tie_embeddings: bool = False
    alignment_layer: int | None = None


@dataclass
class ModelConfig:
    name: str = MISSING
    rnn: str = "gru"
    embed_size: int = 256
    encoder_hidden: int = 256
    encoder_layers: int = 1
    bidirectional: bool = True
    decoder_hidden: int = 512
    decoder_style: str = "bahdanau"
    input_feeding: bool = True
    dropout: float = 0.2
    attention_dropout: float | None = None
    activation_dropout: float | None = None
    param_init: float = 0.0
    share_embeddings: bool = False
    positions: str = "sinusoidal"
    kernels: str = "auto"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)


@dataclass
class TrainerConfig:
    seed: int = 1
    device: str = "auto"
    threads: int = 0
    batch_type: str = "sentences"
    batch_size: int = 64
    bucket_batches: int = 100
    precision: str = "auto"
    lr: float = 1e-3
    normalization: str = "tokens"
    clip_norm: float = 5.0
    label_smoothing: float = 0.0
    max_skipped_in_a_row: int = 10
    lr_schedule: str = "plateau"
    warmup_steps: int = 0
    lr_decay_steps: int = 0
    lr_patience: int = 3
    lr_factor: float = 0.5
    min_lr: float = 1e-5
    ema_decay: float = 0.0
    max_steps: int = 0
    max_epochs: int = 0
    max_minutes: float = 10.0
    eval_every: int = 500
    checkpoint_minutes: float = 5.0
    keep_checkpoints: int = 5
    eval_batch_size: int = 128
    early_stopping_patience: int = 0
    max_output_ratio: float = 2.0
    max_output_extra: int = 10
    eval_beam: int = 1
    length_penalty: float = 0.0
    beam_stop: str = "exact"
    log_every: int = 50
    progress: bool = True
    resume: str | None = None
    overwrite: bool = False
    ddp_timeout_minutes: float = 30.0


@dataclass
class VizConfig:
    font: str | None = None
    examples: list[int] = field(default_factory=list)
    num_samples: int = 5


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    viz: VizConfig = field(default_factory=VizConfig)


def register_configs() -> None:
    """Register the root schema; each group's YAML is then validated against its dataclass."""
    ConfigStore.instance().store(name="schema", node=Config)
    # ${project_root:} in YAML: the checkout, so default paths do not depend on the working dir.
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)
    # ${capped_name:...}: a sweep job's directory name, cut to a length file systems take.
    OmegaConf.register_new_resolver("capped_name", capped_name, replace=True)


def config_to_dict(cfg: object) -> dict:
    """Plain, resolved dict of a config (for checkpoints and HParams)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
