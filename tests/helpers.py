"""Builders the test modules share (imported as ``helpers``: pytest puts tests/ on the path)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from seq2seq.config import PROJECT_ROOT, register_configs


def tsv_config(tiny_tsv_dir: Path, cache: Path, train: str | Path, *overrides: str) -> DictConfig:
    """The config of ``data=tsv data.train=<train>`` on the tiny corpus as a user types it,
    through Hydra: 40-piece vocabularies in a private ``cache``."""
    register_configs()
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                "data=tsv",
                f"data.train={train}",
                f"data.dev={tiny_tsv_dir / 'dev.tsv'}",
                f"data.test={tiny_tsv_dir / 'test.tsv'}",
                f"data.cache_dir={cache}",
                "data.src_vocab_size=40",
                "data.tgt_vocab_size=40",
                *overrides,
            ],
        )
