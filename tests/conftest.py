"""Shared fixtures: a tiny TSV corpus written for the tests, and a tiny Hydra config."""

from __future__ import annotations

from pathlib import Path

import pytest

TATOEBA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tatoeba-cmn-eng"
TINY = Path(__file__).resolve().parent / "data" / "tiny"


@pytest.fixture
def tiny_tsv_dir() -> Path:
    """train/dev/test.tsv of a few dozen hand-written 我爱你-style pairs."""
    return TINY
