"""Nothing a run made is lost: exact resume, refused mismatches, kills, failed writes."""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from test_training import run, tiny_overrides

from seq2seq.checkpoint import CheckpointError, load_checkpoint, validation_checkpoints
from seq2seq.config.saved import check_resume_config, config_changes
from seq2seq.config.schema import PROJECT_ROOT
from seq2seq.data.subword_sampling import SubwordSampler
from seq2seq.files import atomic_write_bytes

pytestmark = pytest.mark.slow


def assert_same_training_state(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    """Weights, Adam moments, scheduler, sampler, RNG and counters (except wall time) equal."""
    for name, tensor in expected["model"].items():
        torch.testing.assert_close(actual["model"][name], tensor, rtol=0, atol=0, msg=name)
    for key in ("scheduler", "sampler", "rng"):
        assert repr(actual[key]) == repr(expected[key]), key
    assert actual["optimizer"]["param_groups"] == expected["optimizer"]["param_groups"]
    for index, moments in expected["optimizer"]["state"].items():
        for name, value in moments.items():
            torch.testing.assert_close(
                actual["optimizer"]["state"][index][name], value, rtol=0, atol=0
            )
    counters = {k: v for k, v in expected["progress"].items() if k != "train_seconds"}
    assert {k: actual["progress"][k] for k in counters} == counters


def test_a_resumed_run_ends_in_exactly_the_state_of_an_uninterrupted_one(tmp_path: Path) -> None:
    """lr_patience 0: the dev BLEU plateau cuts the learning rate after the resume, so a
    scheduler that is not restored (or a sampler, optimizer or RNG) leaves another state."""
    straight = run(tmp_path, "straight", "trainer.lr_patience=0", "trainer.max_steps=9")
    half = run(tmp_path, "half", "trainer.lr_patience=0", "trainer.max_steps=3")
    resumed = run(
        tmp_path,
        "resumed",
        "trainer.lr_patience=0",
        "trainer.max_steps=9",
        f"trainer.resume={half / 'checkpoints' / 'last.pt'}",
    )
    expected = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert expected["optimizer"]["param_groups"][0]["lr"] < 1e-3  # the plateau did cut the lr
    assert_same_training_state(expected, load_checkpoint(resumed / "checkpoints" / "last.pt"))


AVERAGE_AND_COSINE = (
    "trainer.ema_decay=0.9",
    "trainer.lr_schedule=cosine",
    "trainer.warmup_steps=2",
    "trainer.lr_decay_steps=9",
)


def test_a_resumed_run_averages_and_anneals_exactly_as_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    """The weight average lives in last.pt and the rate is a function of the update count: a
    run resumed at step 3 ends with the average and rate of one that was never stopped."""
    straight = run(tmp_path, "straight", *AVERAGE_AND_COSINE, "trainer.max_steps=9")
    half = run(tmp_path, "half", *AVERAGE_AND_COSINE, "trainer.max_steps=3")
    resumed = run(
        tmp_path,
        "resumed",
        *AVERAGE_AND_COSINE,
        "trainer.max_steps=9",
        f"trainer.resume={half / 'checkpoints' / 'last.pt'}",
    )
    expected = load_checkpoint(straight / "checkpoints" / "last.pt")
    actual = load_checkpoint(resumed / "checkpoints" / "last.pt")
    assert_same_training_state(expected, actual)
    assert actual["ema"]["updates"] == expected["ema"]["updates"] == 9
    for name, tensor in expected["ema"]["average"].items():
        torch.testing.assert_close(actual["ema"]["average"][name], tensor, rtol=0, atol=0)
    # update 9 of a cosine from 1e-3 (after 2 warm-up updates) ends at min_lr
    assert actual["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-5)
    # the validation checkpoints of before the resume are carried into the resumed run
    kept = [p.name for p in validation_checkpoints(straight / "checkpoints")]
    assert kept == ["step_3.pt", "step_6.pt", "step_9.pt"]
    assert [p.name for p in validation_checkpoints(resumed / "checkpoints")] == kept
    for name in kept:
        weights = load_checkpoint(resumed / "checkpoints" / name)["model"]
        for key, tensor in load_checkpoint(straight / "checkpoints" / name)["model"].items():
            torch.testing.assert_close(weights[key], tensor, rtol=0, atol=0, msg=f"{name} {key}")


def test_a_run_with_subword_sampling_resumes_mid_epoch_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """136 pairs in batches of 16: an epoch is 9 updates, so a run resumed at update 10 resumes
    inside epoch 1, whose draw of the pieces is not epoch 0's: it must draw epoch 1's again."""
    drawn_for: list[int] = []  # the epoch each batch's pieces were drawn for
    draw = SubwordSampler.batch

    def recorded(self: SubwordSampler, indices: list[int], epoch: int) -> Any:
        drawn_for.append(epoch)
        return draw(self, indices, epoch)

    monkeypatch.setattr(SubwordSampler, "batch", recorded)
    sampling = ("data.subword_sampling_alpha=0.5", "trainer.eval_every=5")
    straight = run(tmp_path, "straight", *sampling, "trainer.max_steps=14")
    assert drawn_for == [0] * 9 + [1] * 5  # each batch drawn for its own epoch
    half = run(tmp_path, "half", *sampling, "trainer.max_steps=10")
    assert load_checkpoint(half / "checkpoints" / "last.pt")["sampler"] == {
        "epoch": 1,
        "position": 1,
    }
    drawn_for.clear()
    resumed = run(
        tmp_path,
        "resumed",
        *sampling,
        "trainer.max_steps=14",
        f"trainer.resume={half / 'checkpoints' / 'last.pt'}",
    )
    assert drawn_for == [1] * 4  # updates 11 to 14, inside epoch 1
    expected = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert_same_training_state(expected, load_checkpoint(resumed / "checkpoints" / "last.pt"))
    fixed = run(tmp_path, "fixed", "trainer.eval_every=5", "trainer.max_steps=14")
    fixed_weights = load_checkpoint(fixed / "checkpoints" / "last.pt")["model"]
    assert any(not torch.equal(t, fixed_weights[n]) for n, t in expected["model"].items())


def test_best_pt_holds_the_average_that_validation_scored(tmp_path: Path) -> None:
    """One validation, at the last update: best.pt's weights are last.pt's average, not the
    weights training continues from."""
    run_dir = run(tmp_path, "run", "trainer.ema_decay=0.9", "trainer.eval_every=6")
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    average = last["ema"]["average"]
    assert set(average) == {n for n, t in last["model"].items() if t.is_floating_point()}
    for name, tensor in average.items():
        torch.testing.assert_close(best["model"][name], tensor, rtol=0, atol=0, msg=name)
    assert any(not torch.equal(last["model"][n], t) for n, t in average.items())


def test_resume_refuses_other_model_data_or_optimisation_and_names_each_key() -> None:
    saved = {"model": {"rnn": "gru", "attention": {"name": "bahdanau"}}, "trainer": {"lr": 1e-3}}
    current = {"model": {"rnn": "gru", "attention": {"name": "dot"}}, "trainer": {"lr": 2e-3}}
    assert config_changes(saved, current) == {
        "model.attention.name": ("bahdanau", "dot"),
        "trainer.lr": (1e-3, 2e-3),
    }
    with pytest.raises(ValueError, match="model.attention.name: 'bahdanau' → 'dot'") as error:
        check_resume_config("last.pt", saved, current)
    assert "trainer.lr: 0.001 → 0.002" in str(error.value)


def test_a_checkpoint_named_before_the_preset_was_renamed_resumes_under_its_new_name() -> None:
    # model=bahdanau became model=rnn_attention: model.name is a label, the model is the same.
    saved = {"model": {"name": "bahdanau", "rnn": "gru"}, "trainer": {"lr": 1e-3}}
    current = {"model": {"name": "rnn_attention", "rnn": "gru"}, "trainer": {"lr": 1e-3}}
    check_resume_config("last.pt", saved, current)
    distracted = {**saved, "model": {"name": "distracted", "rnn": "gru"}}
    with pytest.raises(ValueError, match="model.name: 'distracted' → 'rnn_attention'"):
        check_resume_config("last.pt", distracted, current)


def test_resume_reports_the_settings_that_may_change(caplog: pytest.LogCaptureFixture) -> None:
    saved = {"trainer": {"max_steps": 6, "resume": None, "lr": 1e-3}, "viz": {"examples": [0]}}
    current = {"trainer": {"max_steps": 9, "resume": "x", "lr": 1e-3}, "viz": {"examples": [1]}}
    with caplog.at_level(logging.INFO):
        check_resume_config("last.pt", saved, current)
    assert "trainer.max_steps changed from 6 to 9" in caplog.text
    assert "viz.examples changed" in caplog.text and "trainer.resume" not in caplog.text


def test_resume_with_another_attention_stops_before_training(tmp_path: Path) -> None:
    last = run(tmp_path, "run", "trainer.max_steps=3") / "checkpoints" / "last.pt"
    with pytest.raises(ValueError, match=r"model.attention.name: 'bahdanau' → 'general'"):
        run(tmp_path, "other", "model/attention=general", f"trainer.resume={last}")
    assert not (tmp_path / "other" / "checkpoints").exists()


def test_resume_takes_the_tokenizers_from_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sentencepiece cache may be gone or hold other models: a resumed run never retrains."""
    from seq2seq.data import dataset

    first = run(tmp_path, "run", "trainer.max_steps=3")

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("resume retrained the sentencepiece models")

    monkeypatch.setattr(dataset, "build_tokenizers", no_training)
    resumed = run(
        tmp_path,
        "resumed",
        f"trainer.resume={first / 'checkpoints' / 'last.pt'}",
        "trainer.max_steps=4",
    )
    for lang in ("zh", "en"):
        assert (resumed / "spm" / f"{lang}.model").read_bytes() == (
            first / "spm" / f"{lang}.model"
        ).read_bytes()


def test_resuming_a_finished_run_says_so_and_trains_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    last = run(tmp_path, "run") / "checkpoints" / "last.pt"
    before = last.read_bytes()
    with caplog.at_level(logging.WARNING):
        run(tmp_path, "again", f"trainer.resume={last}")
    assert "already finished (trainer.max_steps=6 reached): nothing to train" in caplog.text
    assert not (tmp_path / "again" / "checkpoints").exists()
    assert last.read_bytes() == before


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_stops_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up after the first last.pt: the run stops naming the file and the cause,
    last.pt still holds step 3, and no temporary file is left."""
    from seq2seq import files

    last = tmp_path / "full" / "checkpoints" / "last.pt"
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if last.exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    with pytest.raises(CheckpointError, match=r"could not write the checkpoint \(No space left"):
        run(tmp_path, "full")
    assert load_checkpoint(last)["progress"]["step"] == 3
    assert not list(last.parent.glob("*.tmp"))


def test_temporary_files_of_killed_writers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    """A writer killed between writing and renaming leaves its temporary file; it does not
    accumulate, and the target keeps its previous content until a write completes."""
    target = tmp_path / "last.pt"
    atomic_write_bytes(target, b"old")
    crash = (
        "import os, sys; from pathlib import Path; from seq2seq import files; "
        "files.os.replace = lambda *a: os._exit(9); "
        "files.atomic_write_bytes(Path(sys.argv[1]), b'new')"
    )
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", crash, str(target)], timeout=60)
        assert result.returncode == 9
        # each crashed writer removed the one before it: one orphan, not one per crash
        assert len(list(tmp_path.glob(".last.pt.*.tmp"))) == 1 and target.read_bytes() == b"old"
    atomic_write_bytes(target, b"newer")
    assert target.read_bytes() == b"newer" and not list(tmp_path.glob("*.tmp"))


def test_sigkill_at_random_moments_loses_nothing_and_resumes_exactly(tmp_path: Path) -> None:
    """``kill -9`` during training — last.pt is written after every update, so some kills land
    while it is being written. Each time the newest last.pt loads, and the run resumed after
    every kill ends in exactly the state of a run that was never interrupted."""
    overrides = [
        *tiny_overrides(tmp_path / "cache"),
        "trainer.max_steps=40",
        "trainer.eval_every=10",
        "trainer.checkpoint_minutes=1e-9",
    ]
    run_dir = tmp_path / "killed"
    last = run_dir / "checkpoints" / "last.pt"
    command = [sys.executable, str(PROJECT_ROOT / "train.py"), *overrides]
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    moments = random.Random(7)
    steps_seen = []
    for _ in range(3):
        resume = [f"trainer.resume={last}"] if last.exists() else []
        process = subprocess.Popen(
            [*command, *resume, f"hydra.run.dir={run_dir}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=environment,
        )
        start_step = load_checkpoint(last)["progress"]["step"] if last.exists() else 0
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if last.exists() and last.stat().st_size and _step(last) > start_step:
                break
            time.sleep(0.01)
        time.sleep(moments.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        steps_seen.append(load_checkpoint(last)["progress"]["step"])  # loads, every time
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] < 40, steps_seen

    result = subprocess.run(
        [*command, f"trainer.resume={last}", f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(last.parent.glob("*.tmp"))
    straight = tmp_path / "straight"
    subprocess.run(
        [*command, f"hydra.run.dir={straight}"], check=True, env=environment, timeout=300
    )
    expected = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert_same_training_state(expected, load_checkpoint(last))


def _step(path: Path) -> int:
    try:
        return load_checkpoint(path)["progress"]["step"]
    except CheckpointError:  # replaced while being read
        return 0
