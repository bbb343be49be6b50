"""Comparing runs: the table from hand-made metrics; a real tiny multirun compared end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_training import tiny_overrides

from seq2seq.comparison import (
    AER_VS_STEPS,
    BLEU_BY_LENGTH,
    DEV_BLEU_VS_STEPS,
    DEV_BLEU_VS_TIME,
    Run,
    Scalar,
    benchmark_table,
    bucket_table,
    comparison_markdown,
    comparison_table,
    plots,
    recorded_on,
)
from seq2seq.config.schema import PROJECT_ROOT, register_configs
from seq2seq.model.positions import POSITIONS
from seq2seq.provenance import code_commit, provenance

COMPARE = PROJECT_ROOT / "scripts" / "compare_runs.py"
PNG_HEADER = b"\x89PNG\r\n\x1a\n"
ATTENTIONS = sorted(
    p.stem for p in (PROJECT_ROOT / "configs" / "model" / "attention").glob("*.yaml")
)
EXPERIMENTS = sorted(p.stem for p in (PROJECT_ROOT / "configs" / "experiment").glob("*.yaml"))
POSITIONS_KEY = "model.encoder.self_attention.positions"  # what synthetic_positions sweeps


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_with_each_swept_option(experiment: str) -> None:
    """Named ``<corpus>_<what>``: its corpus, a time budget, any sweep names its runs."""
    register_configs()
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={experiment}"], return_hydra_config=True)
        params = dict(cfg.hydra.sweeper.params or {})  # a recipe (tatoeba_best) sweeps nothing
        assert cfg.data.name == experiment.split("_")[0]
        assert cfg.trainer.max_minutes > 0
        assert "experiment" in cfg.hydra.job.config.override_dirname.exclude_keys
        assert set(params) <= {"model", "model/attention", "model/encoder", POSITIONS_KEY}
        for key, values in params.items():
            assert key not in cfg.hydra.job.config.override_dirname.exclude_keys
            if key == "model/attention":
                assert set(values.split(",")) <= set(ATTENTIONS)
            if key == "model/attention" and experiment.endswith("attention_scorers"):
                # every scorer, "none" included; the fixed weights are synthetic_bag_of_words'
                assert sorted(values.split(",")) == sorted(set(ATTENTIONS) - {"mean", "tfidf"})
            if key == POSITIONS_KEY:  # every position scheme, "none" included
                assert sorted(values.split(",")) == sorted(POSITIONS)
            for value in values.split(","):
                compose("config", overrides=[f"+experiment={experiment}", f"{key}={value}"])


def test_the_tatoeba_recipe_keeps_additive_attention_and_applies_to_the_distracted_model() -> None:
    register_configs()
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        recipe = compose("config", overrides=["+experiment=tatoeba_best"])
        distracted = compose("config", overrides=["+experiment=tatoeba_best", "model=distracted"])
    assert recipe.model.attention.name == "bahdanau" and distracted.model.attention.name == "none"
    for cfg in (recipe, distracted):
        assert cfg.model.decoder.rnn.style == "luong" and cfg.model.param_init == 0.1
        assert cfg.trainer.normalization == "sentences" and cfg.trainer.max_minutes == 15


def finished_run(**test_extra: float) -> Run:
    return Run(
        name="model=rnn_attention",
        model="rnn_attention",
        attention="bahdanau",
        metrics={
            "test": {
                "bleu": 23.46,
                "chrf": 50.04,
                "bleu_by_length": {"11-20": 20.0, "01-10": 30.0, "21+": 10.0},
                "signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
                **test_extra,
            },
            "best_dev_bleu": 25.54,
            "best_step": 1000,
            "steps": 1200,
            "train_seconds": 600.0,
            "train_tokens_per_sec": 3214.4,
            "parameters": 1234567,
            "stop_reason": "trainer.max_minutes=10 reached",
        },
        scalars={"valid/aer": [Scalar(500, 4.0, 0.5), Scalar(1000, 8.0, 0.3)]},
    )


def unfinished_run() -> Run:
    return Run(
        name="model=distracted",
        model="distracted",
        attention="none",
        scalars={
            "valid/bleu": [Scalar(500, 4.0, 12.0), Scalar(1000, 8.5, 14.26)],
            "train/tokens_per_sec": [Scalar(50, 0.5, 2000.0), Scalar(100, 1.0, 3000.0)],
        },
    )


def test_table_rounds_numbers_and_marks_unfinished_runs() -> None:
    finished = finished_run(aer=0.31234)
    assert finished.metrics is not None
    finished.metrics["long"] = {"bleu": 10.06, "chrf": 30.0, "bleu_by_length": {"31+": 10.06}}
    lines = comparison_table([finished, unfinished_run()]).splitlines()
    assert lines[0] == (
        "| run | model | attention | parameters | best dev BLEU | test BLEU | long-test BLEU "
        "| test chrF | test AER | training time (min) | tokens/s |"
    )
    assert lines[2] == (
        "| model=rnn_attention | rnn_attention | bahdanau | 1,234,567 | 25.5 | 23.5 | 10.1 | 50.0 "
        "| 0.312 | 10.0 | 3,214 |"
    )
    # what the event files hold so far: best dev BLEU, latest event, mean tokens/s
    assert lines[3] == (
        "| model=distracted (unfinished) | distracted | none | – | 14.3 | – | – | – | – | 8.5 "
        "| 2,500 |"
    )
    assert len(lines) == 4


def test_long_and_aer_columns_only_where_some_run_has_them() -> None:
    header = comparison_table([finished_run(), unfinished_run()]).splitlines()[0]
    assert "long-test BLEU" not in header and "AER" not in header


def test_encoder_and_word_order_columns_where_some_run_has_them() -> None:
    rnn = finished_run()
    rnn.encoder = "rnn"
    bag = finished_run()
    bag.name, bag.encoder = f"{POSITIONS_KEY}=none", "self_attention (none)"
    assert bag.metrics is not None
    bag.metrics["word_order"] = {
        "word_order_acc": 0.4975,
        "word_order_pair_acc": 0.0,
        "word_order_same_pieces_pair_acc": 0.0,
    }
    header, _, first, second = comparison_table([rnn, bag]).splitlines()
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns[3] == "encoder"
    assert columns[-5:-2] == ["word order: sentences %", "pairs %", "pairs of the same pieces %"]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in (first, second)]
    assert [row[3] for row in cells] == ["rnn", "self_attention (none)"]
    assert cells[0][-5:-2] == ["–"] * 3 and cells[1][-5:-2] == ["49.8", "0.0", "0.0"]


def test_plots_skip_what_no_run_has() -> None:
    finished, unfinished = finished_run(), unfinished_run()
    assert set(plots([finished, unfinished])) == {
        DEV_BLEU_VS_STEPS,
        DEV_BLEU_VS_TIME,
        BLEU_BY_LENGTH,
        AER_VS_STEPS,
    }
    assert set(plots([unfinished])) == {DEV_BLEU_VS_STEPS, DEV_BLEU_VS_TIME}


def test_a_directory_without_runs_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = subprocess.run(
        [sys.executable, str(COMPARE), str(tmp_path / "empty"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert f"{tmp_path / 'empty'}: no runs found" in result.stderr
    assert not (tmp_path / "out").exists()


HARDWARE = {"cpu": "Zen", "cpu_capability": "AVX512", "native_bf16": True, "torch": "2.13.0"}


def benchmark(tokens_per_sec: float, precision: str = "bf16", **extra: object) -> dict:
    return {
        "model": "rnn_attention",
        "decoder": "rnn",
        "attention": "bahdanau",
        "kernels": "fast",
        "processes": 1,
        "threads": 2,
        "precision": precision,
        "parameters": 8_300_000,
        "target_tokens_per_sec": tokens_per_sec,
        **HARDWARE,
        "commit": "abc1234",
        "recorded": "2026-12-05T10:00:00+00:00",
        **extra,
    }


def test_benchmark_table_takes_the_median_of_repeats_and_ratios_to_the_first_row() -> None:
    records = [benchmark(3000.0, "fp32"), benchmark(8000.0), benchmark(3400.0, "fp32")]
    records.append(benchmark(9000.0))
    records.append(benchmark(6000.0))
    lines = benchmark_table(records).splitlines()
    assert lines[2] == (
        "| abc1234 | rnn_attention | rnn | bahdanau | fast | 1 × 2 | fp32 | 8,300,000 | 2 | 3,200 "
        "| 3,000–3,400 | 1.00× |"
    )
    assert lines[3] == (
        "| abc1234 | rnn_attention | rnn | bahdanau | fast | 1 × 2 | bf16 | 8,300,000 | 3 | 8,000 "
        "| 6,000–9,000 | 2.50× |"
    )
    assert lines[5] == (
        "Recorded on Zen (torch capability AVX512, native bf16), torch 2.13.0, commit abc1234, "
        "2026-12-05."
    )
    # other code or other kernels: rows of their own, never pooled with these
    records += [benchmark(1600.0, "fp32", commit="def5678"), benchmark(1500.0, kernels="reference")]
    rows = [line.split(" | ") for line in benchmark_table(records).splitlines()[2:6]]
    assert [(row[0], row[4], row[9], row[11]) for row in rows] == [
        ("| abc1234", "fast", "3,200", "1.00× |"),
        ("| abc1234", "fast", "8,000", "2.50× |"),
        ("| def5678", "fast", "1,600", "0.50× |"),
        ("| abc1234", "reference", "1,500", "0.47× |"),
    ]


def test_every_table_says_which_machine_and_commit_gave_it() -> None:
    run = finished_run()
    assert run.metrics is not None
    run.metrics.update(hardware=HARDWARE, commit="abc1234", recorded="2026-12-05T10:00:00+00:00")
    markdown = comparison_markdown([run], comparison_table([run]), [])
    assert "Recorded on Zen (torch capability AVX512, native bf16), torch 2.13.0, commit " in (
        markdown
    )
    other = dict(HARDWARE, cpu="Xeon", native_bf16=False)
    lines = recorded_on([("a", run.metrics), ("b", {"hardware": other})])
    assert lines[0].endswith("commit abc1234, 2026-12-05: a.")
    assert lines[1] == (
        "Recorded on Xeon (torch capability AVX512, no native bf16), torch 2.13.0, commit not "
        "recorded, date not recorded: b."
    )
    assert recorded_on([("old", {"test": {}})]) == []  # runs from before anything was recorded


def test_the_commit_is_this_checkout_and_marks_uncommitted_changes(tmp_path: Path) -> None:
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    assert code_commit(tmp_path) is None  # not a checkout
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert code_commit(tmp_path) == head
    (tmp_path / "untracked.txt").write_text("not part of the code\n")
    assert code_commit(tmp_path) == head
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_commit(tmp_path) == f"{head}+changes"
    assert {"cpu", "cpu_capability", "commit", "recorded"} <= provenance().keys()


def test_compare_runs_writes_the_benchmark_table(tmp_path: Path) -> None:
    lines = tmp_path / "speed.jsonl"
    lines.write_text(
        "a warning printed before the JSON\n"
        + "\n".join(json.dumps(benchmark(v)) for v in (7000.0, 8000.0))
        + "\n"
    )
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(COMPARE), "--benchmarks", str(lines), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "| 2 | 7,500 | 7,000–8,000 | 1.00× |" in (out / "benchmarks.md").read_text()
    (tmp_path / "empty.jsonl").write_text("no JSON here\n")
    result = subprocess.run(
        [sys.executable, str(COMPARE), "--benchmarks", str(tmp_path / "empty.jsonl")]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "empty.jsonl: no benchmark lines" in result.stderr


@pytest.mark.slow
def test_multirun_experiment_then_compare(tmp_path: Path) -> None:
    """``train.py -m +experiment=...`` gives one directory per model; compare_runs reads them."""
    sweep, out, workdir = tmp_path / "sweep", tmp_path / "comparison", tmp_path / "elsewhere"
    workdir.mkdir()
    tiny = tiny_overrides(tmp_path / "cache")
    # The tiny settings are overrides too: keep them out of the names, like the config's own list.
    root = OmegaConf.load(PROJECT_ROOT / "configs" / "config.yaml")
    excluded = list(root.hydra.job.config.override_dirname.exclude_keys)
    excluded += [override.split("=")[0] for override in tiny]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        "-m",
        "+experiment=synthetic_distracted_vs_attention",
        *tiny,
        f"hydra.sweep.dir={sweep}",
        f"hydra.job.config.override_dirname.exclude_keys=[{','.join(excluded)}]",
    ]
    result = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert runs == ["model=distracted", "model=rnn_attention"]
    # Each job points TensorBoard at the whole sweep, so the runs show side by side.
    assert (result.stdout + result.stderr).count(f"TensorBoard logs are in {sweep}. ") == 2
    for name in runs:
        config = OmegaConf.load(sweep / name / ".hydra" / "config.yaml")
        assert f"model={config.model.name}" == name and config.data.name == "tsv"
        assert (sweep / name / "metrics.json").is_file()
        assert len(list((sweep / name).glob("events.out.tfevents.*"))) == 1
    assert not list(workdir.iterdir())

    result = subprocess.run(
        [sys.executable, str(COMPARE), str(sweep), "--out", str(out)],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| model=")]
    assert [row.split(" | ")[0] for row in rows] == ["| model=distracted", "| model=rnn_attention"]
    assert "(unfinished)" not in result.stdout
    markdown = (out / "comparison.md").read_text()
    assert all(row in markdown for row in rows)
    commit = code_commit()
    assert f"commit {commit or 'not recorded'}, " in markdown  # one machine, one commit: one line
    for plot in (DEV_BLEU_VS_STEPS, DEV_BLEU_VS_TIME, BLEU_BY_LENGTH):
        assert (out / plot).read_bytes().startswith(PNG_HEADER), plot
        assert f"]({plot})" in markdown
    assert not (out / AER_VS_STEPS).exists()  # a TSV corpus has no gold alignments


def test_long_range_column_and_the_table_by_bucket() -> None:
    near_and_far = finished_run()
    assert near_and_far.metrics is not None
    near_and_far.metrics["long_range"] = {
        "long_range_acc": 0.75,
        "long_range_acc/11+": 0.5,
        "long_range_acc/01-06": 1.0,
    }
    header, _, with_range, without = comparison_table([near_and_far, finished_run()]).splitlines()
    assert header.split(" | ")[-3] == "long-range %"
    assert with_range.split(" | ")[-3] == "75.0" and without.split(" | ")[-3] == "–"
    table = bucket_table([near_and_far, unfinished_run()])
    assert table is not None
    header, _, row = table.splitlines()  # the unfinished run has no buckets
    assert header == (
        "| run | test BLEU 01-10 | test BLEU 11-20 | test BLEU 21+ | long-range % 01-06 "
        "| long-range % 11+ |"
    )
    assert row == "| model=rnn_attention | 30.0 | 20.0 | 10.0 | 100.0 | 50.0 |"
    assert bucket_table([unfinished_run()]) is None
