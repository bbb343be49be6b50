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
class AdditiveConfig:
    """model/attention=bahdanau: the additive scorer's hidden layer."""

    size: int = 512


@dataclass
class MultiHeadConfig:
    """model/attention=multihead: the projected width, split over the heads."""

    size: int = 512
    heads: int = 4


@dataclass
class AttentionConfig:
    """The scorer (``name``); a scorer's own settings sit under its name, so a setting says
    which scorer reads it (the others' sizes follow from the encoder and decoder)."""

    name: str = MISSING
    bahdanau: AdditiveConfig = field(default_factory=AdditiveConfig)
    multihead: MultiHeadConfig = field(default_factory=MultiHeadConfig)


@dataclass
class RNNEncoderConfig:
    """model/encoder=rnn: a (bi)GRU/LSTM reads the source word by word."""

    cell: str = "gru"
    hidden: int = 256  # units per direction
    layers: int = 1
    bidirectional: bool = True


@dataclass
class TransformerStackConfig:
    """What the Transformer's encoder and decoder stacks both read, width model.embed_size."""

    layers: int = 2
    heads: int = 4
    ff_size: int = 1024
    positions: str = "sinusoidal"
    max_positions: int = 256
    attention_dropout: float | None = None  # None: model.dropout
    activation_dropout: float | None = None


@dataclass
class SelfAttentionEncoderConfig(TransformerStackConfig):
    """model/encoder=self_attention: the Transformer's encoder stack."""


@dataclass
class EncoderConfig:
    """Which encoder (``name``); each family's settings under its name."""

    name: str = "rnn"
    rnn: RNNEncoderConfig = field(default_factory=RNNEncoderConfig)
    self_attention: SelfAttentionEncoderConfig = field(default_factory=SelfAttentionEncoderConfig)


@dataclass
class RNNDecoderConfig:
    """model/decoder=rnn: a GRU/LSTM writes the translation word by word."""

    cell: str = "gru"
    hidden: int = 512
    style: str = "bahdanau"
    input_feeding: bool = True


@dataclass
class TransformerDecoderConfig(TransformerStackConfig):
    """model/decoder=transformer: the Transformer's decoder stack."""

    layers: int = 3  # its place among the fields stays the base's: first
    alignment_layer: int | None = None


@dataclass
class DecoderConfig:
    """Which decoder (``name``); each family's settings under its name."""

    name: str = "rnn"
    tie_embeddings: bool = False
    rnn: RNNDecoderConfig = field(default_factory=RNNDecoderConfig)
    transformer: TransformerDecoderConfig = field(default_factory=TransformerDecoderConfig)


@dataclass
class ModelConfig:
    """What every family reads; the encoder, decoder and scorer each in their own group."""

    name: str = MISSING
    embed_size: int = 256
    dropout: float = 0.2
    param_init: float = 0.0
    share_embeddings: bool = False
    kernels: str = "auto"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)


@dataclass
class SearchConfig:
    """How validation, the final test and (by default) translate.py decode: the names are
    :class:`seq2seq.search.SearchSettings`'s."""

    beam_size: int = 1
    alpha: float = 0.0  # GNMT length penalty; 0: none
    stop: str = "exact"  # one of BEAM_STOPS
    max_ratio: float = 2.0  # an output stops at max_ratio × source length + max_extra pieces
    max_extra: int = 10


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
    search: SearchConfig = field(default_factory=SearchConfig)
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
