"""Checkpoint averaging: the mean of the weights, of one model only, written like best.pt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import model_config

from seq2seq.checkpoint import (
    CheckpointError,
    keep_validation_checkpoint,
    load_checkpoint,
    save_checkpoint,
    validation_checkpoints,
)
from seq2seq.config.schema import PROJECT_ROOT, config_to_dict
from seq2seq.model.seq2seq import build_model
from seq2seq.training.checkpoint_averaging import average_checkpoints, write_average


def small_config(*changes: str) -> Any:
    return model_config(
        "embed_size=8",
        "encoder.rnn.hidden=6",
        "decoder.rnn.hidden=12",
        "attention.name=bahdanau",
        "attention.bahdanau.size=12",
        *changes,
    )


def checkpoint(path: Path, seed: int, *changes: str) -> dict[str, Any]:
    """A weights-only checkpoint of a small random model (as step_<n>.pt and best.pt are)."""
    cfg = small_config(*changes)
    torch.manual_seed(seed)
    state = {
        "config": {"model": config_to_dict(cfg)},
        "model": build_model(cfg, 20, 20).state_dict(),
        "source_spm": b"source model",
        "target_spm": b"target model",
    }
    save_checkpoint(path, state)
    return state


def test_averaging_two_copies_of_a_checkpoint_is_that_checkpoint(tmp_path: Path) -> None:
    original = checkpoint(tmp_path / "a.pt", seed=0)
    averaged = average_checkpoints([tmp_path / "a.pt", tmp_path / "a.pt", tmp_path / "a.pt"])
    assert averaged["model"].keys() == original["model"].keys()
    for name, tensor in original["model"].items():
        torch.testing.assert_close(averaged["model"][name], tensor, rtol=0, atol=0, msg=name)
    assert averaged["source_spm"] == original["source_spm"]
    assert averaged["config"] == original["config"]


def test_averaging_two_checkpoints_is_their_mean(tmp_path: Path) -> None:
    a = checkpoint(tmp_path / "a.pt", seed=0)
    b = checkpoint(tmp_path / "b.pt", seed=1)
    averaged = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    for name, tensor in a["model"].items():
        mean = ((tensor.double() + b["model"][name].double()) / 2).float()
        assert not torch.equal(tensor, b["model"][name]), name
        torch.testing.assert_close(averaged["model"][name], mean, rtol=0, atol=0, msg=name)
        assert averaged["model"][name].dtype == tensor.dtype


def test_checkpoints_of_another_model_or_vocabulary_are_refused_in_one_line(
    tmp_path: Path,
) -> None:
    checkpoint(tmp_path / "a.pt", seed=0)
    checkpoint(tmp_path / "wide.pt", 0, "decoder.rnn.hidden=14")
    with pytest.raises(CheckpointError, match=r"wide.pt: model.decoder.rnn.hidden=14, .* has 12"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "wide.pt"])
    other = checkpoint(tmp_path / "other.pt", seed=1)
    save_checkpoint(tmp_path / "other.pt", {**other, "target_spm": b"another target model"})
    with pytest.raises(CheckpointError, match="other.pt: its target sentencepiece model differs"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "other.pt"])


def test_checkpoints_from_before_and_after_the_preset_rename_average(tmp_path: Path) -> None:
    # A run resumed across model=bahdanau → model=rnn_attention keeps step_<n>.pt of both names.
    checkpoint(tmp_path / "before.pt", 0, "name=bahdanau")
    checkpoint(tmp_path / "after.pt", 1, "name=rnn_attention")
    average_checkpoints([tmp_path / "before.pt", tmp_path / "after.pt"])
    checkpoint(tmp_path / "other.pt", 1, "name=distracted")
    with pytest.raises(CheckpointError, match=r"other.pt: model.name='distracted'"):
        average_checkpoints([tmp_path / "before.pt", tmp_path / "other.pt"])


def test_a_run_keeps_its_newest_validation_checkpoints_in_step_order(tmp_path: Path) -> None:
    state = checkpoint(tmp_path / "unrelated.pt", seed=0)
    for step in (500, 1000, 1500, 2000):  # 1000 after 500: by number, not by name
        keep_validation_checkpoint(tmp_path, step, state, keep=3)
    kept = validation_checkpoints(tmp_path)
    assert [p.name for p in kept] == ["step_1000.pt", "step_1500.pt", "step_2000.pt"]
    assert (tmp_path / "unrelated.pt").is_file()  # only its own files are removed

    out = tmp_path / "averaged.pt"
    assert write_average([tmp_path], out, last=2) == kept[1:]
    assert load_checkpoint(out)["averaged_from"] == [str(p.resolve()) for p in kept[1:]]
    with pytest.raises(CheckpointError, match="already exists"):
        write_average([tmp_path], out, last=2)
    with pytest.raises(CheckpointError, match="--last 4, but the run kept 3"):
        write_average([tmp_path], tmp_path / "four.pt", last=4)
    assert not (tmp_path / "four.pt").exists()


def test_the_script_ends_a_user_error_with_one_line_and_status_2(tmp_path: Path) -> None:
    checkpoint(tmp_path / "a.pt", seed=0)
    (tmp_path / "out.pt").write_bytes(b"the user's own file")
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "scripts" / "average_checkpoints.py"),
            str(tmp_path / "a.pt"),
            "--out",
            str(tmp_path / "out.pt"),
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": ""},
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "out.pt: already exists" in result.stderr
    assert (tmp_path / "out.pt").read_bytes() == b"the user's own file"


@pytest.mark.slow
def test_a_run_keeps_its_last_validations_and_their_average_translates(tmp_path: Path) -> None:
    """keep_checkpoints 2 of validations at 3, 6 and 9 updates: step_6.pt and step_9.pt, the
    latter the weights last.pt holds; their average loads and translates like best.pt."""
    from test_training import run

    from seq2seq.inference import load_translator

    run_dir = run(tmp_path, "run", "trainer.max_steps=9", "trainer.keep_checkpoints=2")
    kept = validation_checkpoints(run_dir / "checkpoints")
    assert [p.name for p in kept] == ["step_6.pt", "step_9.pt"]
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    for name, tensor in load_checkpoint(kept[-1])["model"].items():
        torch.testing.assert_close(tensor, last["model"][name], rtol=0, atol=0, msg=name)

    assert write_average([run_dir], tmp_path / "averaged.pt") == kept
    translator = load_translator(tmp_path / "averaged.pt", "cpu")
    ((hypothesis,),) = translator.translate(["我爱你。"])
    assert hypothesis.tokens
