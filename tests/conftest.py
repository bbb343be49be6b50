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


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``best.pt`` of a run trained on the tiny corpus long enough to translate it (seconds)."""
    from test_training import run  # here, not at the top: it imports the whole trainer

    run_dir = run(
        tmp_path_factory.mktemp("tiny-checkpoint"),
        "run",
        "trainer.max_steps=150",
        "trainer.eval_every=150",
        "trainer.log_every=50",
        "trainer.lr=0.01",
    )
    return run_dir / "checkpoints" / "best.pt"


def pytest_sessionstart(session: pytest.Session) -> None:
    """The first line of every run, CI's included, even with -q: which CPU paths it exercised
    (tests that need native bf16 are skipped without it; ``-rs`` lists them)."""
    from seq2seq.device import hardware_summary

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    hardware = hardware_summary()
    reporter.write_line(
        f"cpu: {hardware['cpu']}; torch {hardware['torch']}, capability "
        f"{hardware['cpu_capability']}; bf16: {hardware['native_bf16_why']}"
    )
