"""Nothing a user made is lost: run directories, interrupted final tests, sweeps, stale files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from test_training import events, run, tiny_overrides

from seq2seq.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from seq2seq.config.schema import PROJECT_ROOT, register_configs
from seq2seq.config.validation import check_settings
from seq2seq.files import NAME_BYTES, capped_name, remove_orphaned_temporaries_in

ENVIRONMENT = {**os.environ, "PYTHONWARNINGS": "ignore", "HYDRA_FULL_ERROR": "0"}


def dead_pid() -> int:
    """The id of a process that has exited (and been waited for)."""
    result = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(result.stdout)


def train_py(*args: str) -> subprocess.CompletedProcess:
    """``python train.py *args`` in a process of its own, as a user runs it."""
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "train.py"), *args],
        capture_output=True,
        text=True,
        env=ENVIRONMENT,
        timeout=300,
    )


def temporary_name(name: str, pid: int) -> str:
    return f".{name}.{pid}.{'0123456789abcdef' * 2}.tmp"


@pytest.mark.slow
def test_a_run_directory_that_holds_a_run_is_refused_unless_told_to_start_over(
    tmp_path: Path,
) -> None:
    run_dir = run(tmp_path, "run")
    kept = [run_dir / "metrics.json", *(run_dir / "checkpoints").iterdir()]
    kept += run_dir.glob("events.out.tfevents.*")
    before = {path: path.read_bytes() for path in kept}
    last = run_dir / "checkpoints" / "last.pt"
    with pytest.raises(
        ValueError,
        match=rf"already holds a run .*continue it with trainer.resume={last}, start over there "
        r"with trainer.overwrite=true",
    ):
        run(tmp_path, "run", "trainer.max_steps=3")
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(run_dir.glob("events.out.tfevents.*")) == sorted(
        p for p in before if p.name.startswith("events")
    )

    run(tmp_path, "run", "trainer.max_steps=3", "trainer.overwrite=true")
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 3
    assert [e.step for e in events(run_dir).Scalars("valid/bleu")] == [3]  # the new run's only
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1


@pytest.mark.slow
def test_train_py_refuses_a_run_directory_before_hydra_writes_into_it(tmp_path: Path) -> None:
    """The earlier run's .hydra/ record and train.log stay as they were."""
    run_dir = run(tmp_path, "run", "trainer.max_steps=3")
    record = run_dir / ".hydra" / "overrides.yaml"
    record.parent.mkdir()
    record.write_text("- trainer.max_steps=3\n")
    overrides = [*tiny_overrides(tmp_path / "cache"), f"hydra.run.dir={run_dir}"]
    result = train_py(*overrides)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"train.py: error: {run_dir} already holds a run")
    assert record.read_text() == "- trainer.max_steps=3\n"
    assert sorted(p.name for p in record.parent.iterdir()) == ["overrides.yaml"]
    assert not (run_dir / "train.log").exists()


def test_default_run_and_sweep_directories_differ_within_a_second() -> None:
    register_configs()
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        first, second = (compose("config", return_hydra_config=True) for _ in range(2))
    for key in ("run", "sweep"):
        directory = str(first.hydra[key].dir)
        assert re.fullmatch(r"(outputs|multirun)/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-\d{6}", directory)
        assert directory != str(second.hydra[key].dir)


# Runs train.py with a final test that receives SIGINT as it starts.
INTERRUPTED_FINAL_TEST = """
import os, runpy, signal, sys
from seq2seq.training import trainer
real_final_test = trainer.final_test
def final_test(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    return real_final_test(*args, **kwargs)
trainer.final_test = final_test
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_an_interrupted_final_test_saves_a_last_pt_that_resumes_into_the_test(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    overrides = [*tiny_overrides(tmp_path / "cache"), f"hydra.run.dir={run_dir}"]
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_FINAL_TEST, str(PROJECT_ROOT / "train.py"), *overrides],
        capture_output=True,
        text=True,
        env=ENVIRONMENT,
        timeout=300,
    )
    output = result.stdout + result.stderr
    last = (run_dir / "checkpoints" / "last.pt").resolve()
    assert result.returncode == 130, output[-3000:]
    assert "SIGINT received during the final test" in output and "Traceback" not in output
    assert f"trainer.resume={last}" in output
    assert not (run_dir / "metrics.json").exists()
    saved = load_checkpoint(last)
    assert saved["progress"]["test_pending"] and saved["progress"]["step"] == 6

    straight = run(tmp_path, "straight")
    expected = load_checkpoint(straight / "checkpoints" / "last.pt")
    for name, tensor in expected["model"].items():  # the trained weights, not best.pt's
        assert saved["model"][name].equal(tensor), name
    resumed = run(tmp_path, "resumed", f"trainer.resume={last}")
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["test"] == json.loads((straight / "metrics.json").read_text())["test"]
    assert metrics["steps"] == 6
    assert not load_checkpoint(resumed / "checkpoints" / "last.pt")["progress"]["test_pending"]
    assert (resumed / "checkpoints" / "best.pt").is_file()


def test_only_our_temporaries_of_dead_writers_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / temporary_name("last.pt", dead_pid())
    live = tmp_path / temporary_name("last.pt", os.getpid())
    others = [tmp_path / ".notes.123.tmp", tmp_path / "draft.tmp"]
    folder = tmp_path / temporary_name("tatoeba", dead_pid())  # a directory: not ours to delete
    for path in (stale, live, *others):
        path.write_bytes(b"x")
    folder.mkdir()
    remove_orphaned_temporaries_in(tmp_path)
    assert sorted(tmp_path.iterdir()) == sorted([live, *others, folder])


@pytest.mark.slow
def test_a_run_removes_stale_temporaries_of_the_run_it_resumes(tmp_path: Path) -> None:
    """kill -9 during a write, then a resume into a new directory: no later write lands in the
    old folder, so the start of the resumed run removes what the killed writer left there."""
    first = run(tmp_path, "first", "trainer.max_steps=3")
    stale = first / "checkpoints" / temporary_name("last.pt", dead_pid())
    stale.write_bytes(b"half a checkpoint")
    run(tmp_path, "again", f"trainer.resume={first / 'checkpoints' / 'last.pt'}")
    assert not stale.exists()


@pytest.mark.slow
def test_a_job_that_fails_on_a_user_error_does_not_end_the_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    overrides = [
        *tiny_overrides(tmp_path / "cache"),
        "trainer.max_steps=2",
        "trainer.eval_every=2",
        "trainer.lr=0.001,-1,0.002",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]
    result = train_py("-m", *overrides)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for job in ("0", "2"):  # lr 0.001 and 0.002
        assert (sweep / job / "metrics.json").is_file(), result.stderr[-3000:]
    assert not (sweep / "1" / "metrics.json").exists()
    errors = [line for line in result.stderr.splitlines() if line.startswith("train.py: error")]
    assert len(errors) == 2 and "-1" in errors[0], result.stderr[-3000:]
    assert errors[1] == "train.py: error: 1 job(s) of the sweep failed:"
    assert (
        f"\n  {sweep / '1'}: trainer.lr=-1.0 is out of range" in result.stderr.split(errors[1])[1]
    )


def test_every_preset_is_in_range_and_each_bad_value_is_named() -> None:
    register_configs()
    presets = [[f"+experiment={p.stem}"] for p in (PROJECT_ROOT / "configs/experiment").iterdir()]
    bad = {
        "trainer.eval_every=0": "trainer.eval_every=0 is out of range: it must be more than 0",
        "trainer.batch_size=-4": "trainer.batch_size=-4 is out of range",
        "model.decoder.rnn.hidden=0": "model.decoder.rnn.hidden=0 is out of range",
        "trainer.max_minutes=-1": "trainer.max_minutes=-1.0 is out of range: it must be 0 or more",
        "trainer.log_every=0": "trainer.log_every=0 is out of range",
        "trainer.lr=nan": "trainer.lr=nan is out of range",
        "model.dropout=1.0": "model.dropout=1.0 is out of range: it must be from 0.0 to less than",
        "data.src_vocab_size=0": "data.src_vocab_size=0 is out of range",
        "search.alpha=1000": "search.alpha=1000.0 is out of range",
        "search.stop=fastest": "search.stop=fastest is not a choice: it must be one",
        "trainer.precision=fp64": "trainer.precision=fp64 is not a choice",
        "trainer.lr_schedule=step": "trainer.lr_schedule=step is not a choice",
        "data.source_lang=fr": "data.source_lang=fr is not one of the languages of data.columns",
        "data.target_lang=zh": "data.source_lang and data.target_lang are both zh",
        "data.subword_sampling_alpha=0": "data.subword_sampling_alpha=0.0 is out of range",
        "+trainer.foo=1": "trainer.foo: not a setting",
        "+model.attention.bar=2": "model.attention.bar: not a setting",
    }
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        for overrides in [[], ["data=tatoeba", "model=distracted"], *presets]:
            check_settings(compose("config", overrides=overrides))
        for override, message in bad.items():
            with pytest.raises(ValueError, match=re.escape(message)):
                check_settings(compose("config", overrides=[override]))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("eval_every=0", "trainer.eval_every=0 is out of range"),
        ("added key", "trainer.foo: not a setting"),
        ("offline", "could not download the Tatoeba corpus from data.url=file:"),
        ("own corpus", "lacks dev.tsv and is not empty"),
    ],
)
def test_start_up_errors_end_train_py_with_one_line_and_exit_2(
    tmp_path: Path, case: str, message: str
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    tatoeba = ["data=tatoeba", f"data.dir={corpus}", f"data.url={(tmp_path / 'no.zip').as_uri()}"]
    overrides = {
        "eval_every=0": ["trainer.eval_every=0"],
        "added key": ["+trainer.foo=1"],
        "offline": tatoeba,
        "own corpus": tatoeba,
    }[case]
    if case == "own corpus":
        for split in ("train", "test"):
            (corpus / f"{split}.tsv").write_text(f"我的{split}\tmy {split}\n", encoding="utf-8")
    result = train_py(*overrides, f"hydra.run.dir={tmp_path}/r")
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert message in line and "Traceback" not in result.stderr
    if case == "own corpus":
        assert sorted(p.name for p in corpus.iterdir()) == ["test.tsv", "train.tsv"]
        assert (corpus / "train.tsv").read_text(encoding="utf-8") == "我的train\tmy train\n"


@pytest.fixture(scope="module")
def last_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.pt`` of a three-step tiny run."""
    run_dir = run(tmp_path_factory.mktemp("incomplete"), "run", "trainer.max_steps=3")
    return run_dir / "checkpoints" / "last.pt"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("no sampler", "the checkpoint lacks sampler, which resuming restores"),
        ("no rng", "the checkpoint lacks rng, which resuming restores"),
        ("no config", "the checkpoint lacks config, which resuming restores"),
        ("bad beam_stop", "its config is not usable: search.stop=fastest is not a choice"),
        ("progress of another version", "its saved training state does not fit this run"),
        ("NaN weights", "the weights hold NaN or infinite values"),
    ],
)
def test_resuming_a_hand_edited_checkpoint_is_refused_in_one_line(
    last_pt: Path, tmp_path: Path, edit: str, message: str
) -> None:
    state = load_checkpoint(last_pt)
    if edit.startswith("no "):
        del state[edit.removeprefix("no ")]
    elif edit == "bad beam_stop":
        state["config"]["search"]["stop"] = "fastest"
    elif edit == "progress of another version":
        state["progress"]["tokens_seen"] = 10
    else:
        next(iter(state["model"].values())).fill_(float("nan"))
    edited = tmp_path / "edited.pt"
    save_checkpoint(edited, state)
    with pytest.raises(CheckpointError, match=rf"^{edited}: .*{re.escape(message)}") as error:
        run(tmp_path, "resumed", f"trainer.resume={edited}")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "resumed" / "checkpoints").exists()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_a_directory_that_cannot_be_written_is_one_line_before_hydra_logs(
    tmp_path: Path, mode: str
) -> None:
    """A path under a file fails as a read-only directory does, for root too."""
    blocker = tmp_path / "a file"
    blocker.write_text("the user's\n")
    where = {"run": ["hydra.run.dir"], "sweep": ["-m", "hydra.sweep.dir"]}[mode]
    result = train_py(*where[:-1], *tiny_overrides(tmp_path), f"{where[-1]}={blocker / 'run'}")
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.splitlines()
    assert line == (
        f"train.py: error: {blocker / 'run'}: cannot write a run there (Not a directory); "
        f"choose another {where[-1]}"
    )
    assert blocker.read_text() == "the user's\n"


def test_capped_names_fit_the_file_system_and_stay_apart() -> None:
    short = "model=distracted,trainer.lr=0.001"
    assert capped_name(short) == short
    first, second = (f"{'我' * 60},trainer.lr={lr}" for lr in ("0.001", "0.002"))
    capped = [capped_name(first), capped_name(second)]
    assert capped[0] != capped[1]
    for name in capped:
        assert NAME_BYTES - 3 < len(name.encode()) <= NAME_BYTES  # whole 3-byte characters
        assert name.startswith("我" * 30)


@pytest.mark.slow
def test_a_sweep_with_many_overrides_names_its_jobs_within_the_limit(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    overrides = [
        *tiny_overrides(tmp_path / "cache"),
        "trainer.label_smoothing=0.1",
        "trainer.clip_norm=1.0",
        "trainer.lr_patience=2",
        "trainer.warmup_steps=0",
        "model.dropout=0.1",
        f"hydra.sweep.dir={sweep}",
    ]
    result = train_py("-m", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    (job,) = [path for path in sweep.iterdir() if path.is_dir() and path.name != ".hydra"]
    assert len(job.name.encode()) <= NAME_BYTES and job.name.startswith("data.src_vocab_size=40")
    assert (job / "metrics.json").is_file()
    recorded = (job / ".hydra" / "overrides.yaml").read_text().lower()  # YAML writes False
    assert [o for o in overrides if f"- {o.lower()}\n" not in recorded] == [overrides[-1]]
