"""End-to-end runs of the trainer on tiny configs: outputs, TensorBoard, resume, repeatability."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.config.schema import PROJECT_ROOT, register_configs
from seq2seq.training.reporting import Reporter
from seq2seq.training.trainer import train
from seq2seq.viz.heatmap import PART_COLUMNS, plot_alignment

TINY = Path(__file__).resolve().parent / "data" / "tiny"
pytestmark = pytest.mark.slow


def tiny_overrides(cache: Path) -> list[str]:
    return [
        "data=tsv",
        f"data.train={TINY / 'train.tsv'}",
        f"data.dev={TINY / 'dev.tsv'}",
        f"data.test={TINY / 'test.tsv'}",
        "data.src_vocab_size=40",
        "data.tgt_vocab_size=40",
        f"data.cache_dir={cache}",
        "model.embed_size=16",
        "model.encoder.rnn.hidden=16",
        "model.decoder.rnn.hidden=32",
        "model.attention.bahdanau.size=16",
        "trainer.max_steps=6",
        "trainer.eval_every=3",
        "trainer.log_every=2",
        "trainer.batch_size=16",
        "trainer.progress=false",
        "trainer.max_minutes=0",
        "trainer.threads=1",
        "trainer.precision=fp32",  # the same numbers on every CPU kind (auto: test_precision.py)
        "viz.examples=[0,1]",
    ]


def run(tmp_path: Path, name: str, *overrides: str) -> Path:
    register_configs()
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[*tiny_overrides(tmp_path / "cache"), *overrides])
    run_dir = tmp_path / name
    train(cfg, run_dir)
    return run_dir


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(
        str(run_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0}
    )
    accumulator.Reload()
    return accumulator


def hparams_metric_tags(accumulator: EventAccumulator) -> set[str]:
    """The scalar tags HPARAMS reads each run's metrics from."""
    content = accumulator.PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    return {info.name.tag for info in experiment.metric_infos}


def custom_scalar_layout(accumulator: EventAccumulator) -> list[tuple[str, list[str]]]:
    """CUSTOM SCALARS' categories in order, each with every tag pattern of its charts."""
    (event,) = accumulator.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    return [
        (category.title, [tag for chart in category.chart for tag in chart.multiline.tag])
        for category in layout.category
    ]


def test_run_writes_checkpoints_metrics_and_tensorboard(tmp_path: Path) -> None:
    run_dir = run(tmp_path, "run")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 6 and 0 <= metrics["test"]["bleu"] <= 100
    assert "nrefs:var" in metrics["test"]["signature"]  # dev/test group repeated sources
    checkpoints = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert checkpoints == {"best.pt", "last.pt", "step_3.pt", "step_6.pt"}  # keep_checkpoints
    assert {p.name for p in (run_dir / "spm").iterdir()} == {"zh.model", "en.model"}
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert best["source_spm"] == (run_dir / "spm" / "zh.model").read_bytes()
    assert best["config"]["model"]["attention"]["name"] == "bahdanau"

    accumulator = events(run_dir)
    scalars = set(accumulator.Tags()["scalars"])
    assert {
        "train/loss",
        "train/lr",
        "train/tokens_per_sec",
        "valid/loss",
        "valid/bleu",
        "valid/chrf",
        "test/bleu",
        "test/chrf",
    } <= scalars
    assert any(tag.startswith("valid/bleu_by_len/") for tag in scalars)
    assert "valid/aer" not in scalars  # no gold alignments in a TSV corpus
    assert [e.step for e in accumulator.Scalars("valid/bleu")] == [3, 6]
    bleus = [e.value for e in accumulator.Scalars("valid/bleu")]
    best = [e.value for e in accumulator.Scalars("valid/best_bleu")]
    assert best == pytest.approx([max(bleus[: i + 1]) for i in range(len(bleus))])
    assert best[-1] == pytest.approx(metrics["best_dev_bleu"])
    assert not any(tag.startswith("hparams/") for tag in scalars)  # no one-point copies
    hparam_tags = hparams_metric_tags(accumulator)
    assert {"valid/best_bleu", "test/bleu", "test/chrf"} <= hparam_tags <= scalars
    categories = custom_scalar_layout(accumulator)
    assert [title for title, _ in categories][:2] == ["1 training", "2 validation"]
    assert "^train/loss$" in categories[0][1] and "^valid/bleu$" in categories[1][1]
    for tag in ("alignment/0", "alignment/1"):
        images = accumulator.Images(tag)
        assert [image.step for image in images] == [3, 6]
        assert images[0].encoded_image_string.startswith(b"\x89PNG")
        assert images[0].width > 100 and images[0].height > 100
    assert any("samples" in tag for tag in accumulator.Tags()["tensors"])
    assert (run_dir / "alignments" / "step_0000006").is_dir()
    assert len(list((run_dir / "alignments" / "step_0000006").glob("*.npz"))) == 2


def test_distracted_model_logs_no_alignment(tmp_path: Path) -> None:
    run_dir = run(tmp_path, "distracted", "model=distracted")
    accumulator = events(run_dir)
    assert not accumulator.Tags()["images"]
    assert "valid/bleu" in accumulator.Tags()["scalars"]
    assert not (run_dir / "alignments").exists()


def test_self_attention_encoder_logs_word_order_and_self_attention_heatmaps(
    tmp_path: Path,
) -> None:
    run_dir = run(
        tmp_path,
        "self_attention",
        "model/encoder=self_attention",
        "model.encoder.self_attention.positions=rotary",
        "model.encoder.self_attention.heads=2",
        "model.encoder.self_attention.ff_size=32",
        f"data.word_order={TINY / 'word_order.tsv'}",
    )
    accumulator = events(run_dir)
    for tag in ("valid/word_order_acc", "valid/word_order_pair_acc"):
        values = [e.value for e in accumulator.Scalars(tag)]
        assert len(values) == 2 and all(0 <= v <= 1 for v in values)
    for tag in ("self_attention/0", "self_attention/1", "alignment/0"):
        assert [image.step for image in accumulator.Images(tag)] == [3, 6]
    saved = np.load(run_dir / "alignments" / "step_0000006" / "dev_1_self_attention.npz")
    assert saved["source_labels"].tolist() == saved["target_labels"].tolist()  # source × source
    np.testing.assert_allclose(saved["weights"].sum(axis=1), 1.0, rtol=1e-5)
    order = json.loads((run_dir / "metrics.json").read_text())["word_order"]
    assert 0 <= order["word_order_pair_acc"] <= order["word_order_acc"] <= 1
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert best["config"]["model"]["encoder"]["name"] == "self_attention"


def test_same_seed_same_numbers_and_resume_continues_exactly(tmp_path: Path) -> None:
    first = json.loads((run(tmp_path, "a") / "metrics.json").read_text())
    second = json.loads((run(tmp_path, "b") / "metrics.json").read_text())
    assert first["test"] == second["test"] and first["best_dev_bleu"] == second["best_dev_bleu"]

    half = run(tmp_path, "half", "trainer.max_steps=3")
    resumed = run(tmp_path, "resumed", f"trainer.resume={half / 'checkpoints' / 'last.pt'}")
    straight = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    continued = load_checkpoint(resumed / "checkpoints" / "last.pt")["model"]
    for name, tensor in straight.items():
        torch.testing.assert_close(continued[name], tensor, msg=name)


def test_en_to_zh_direction_trains(tmp_path: Path) -> None:
    run_dir = run(tmp_path, "en-zh", "data.source_lang=en", "data.target_lang=zh")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "tok:zh" in metrics["test"]["signature"]


@pytest.mark.parametrize(
    "attention", ["none", "bahdanau", "dot", "general", "scaled_dot", "multihead"]
)
def test_every_attention_trains_from_the_command_line(tmp_path: Path, attention: str) -> None:
    """``python train.py`` from another working directory, outputs only in the run directory."""
    run_dir = tmp_path / "run"
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    overrides = tiny_overrides(tmp_path / "cache") + [
        f"model/attention={attention}",
        "model.decoder.rnn.hidden=32",
        "model.attention.multihead.heads=2",  # read by multihead only; the others say so
        "trainer.max_steps=3",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "train.py"), *overrides],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 3
    # The last words say where TensorBoard finds this run.
    assert f"TensorBoard logs are in {run_dir}. " in result.stdout + result.stderr
    unread = f"model.attention.multihead.heads=2: not read, model.attention.name is {attention}"
    assert (unread in result.stdout + result.stderr) == (attention != "multihead")
    assert not list(workdir.iterdir())


def test_validation_with_beam_search_draws_the_beam_output(tmp_path: Path) -> None:
    """With search.beam_size > 1 the heatmap rows are the best beam hypothesis's pieces."""
    from seq2seq.inference import load_translator

    run_dir = run(tmp_path, "beam", "search.beam_size=3", "trainer.max_steps=3")
    saved = np.load(run_dir / "alignments" / "step_0000003" / "dev_1.npz")
    translator = load_translator(run_dir / "checkpoints" / "last.pt", "cpu", "fp32")
    lines = (TINY / "dev.tsv").read_text(encoding="utf-8").splitlines()
    sources = list(dict.fromkeys(line.split("\t")[0] for line in lines))  # as validation does
    (best,) = translator.translate(sources, translator.search_settings(beam_size=3), 128)[0]
    pieces = translator.target_tokenizer.pieces(best.tokens)
    assert list(saved["target_labels"][:-1]) == pieces[:-1]
    assert saved["weights"].shape == (len(best.tokens), len(saved["source_labels"]))


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_last_pt_and_the_run_resumes_from_it(
    tmp_path: Path, signum: int, exit_code: int
) -> None:
    """Ctrl-C or ``kill`` mid-run: the current update finishes, last.pt is written, the exit
    code says which signal, the log says how to resume, and resuming trains on from there."""
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(tmp_path / "cache") + [
        "trainer.max_steps=0",
        "trainer.eval_every=2",
        f"hydra.run.dir={run_dir}",
    ]
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "train.py"), *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    best = run_dir / "checkpoints" / "best.pt"
    deadline = time.monotonic() + 120
    while not best.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == exit_code, output[-3000:]
    last = run_dir / "checkpoints" / "last.pt"
    assert f"{signal.Signals(signum).name} received" in output
    assert f"trainer.resume={last.resolve()}" in output
    saved = load_checkpoint(last)
    assert saved["progress"]["step"] >= 2
    assert not list((run_dir / "checkpoints").glob("*.tmp*"))

    steps = saved["progress"]["step"] + 2
    resumed = run(tmp_path, "resumed", f"trainer.resume={last}", f"trainer.max_steps={steps}")
    assert json.loads((resumed / "metrics.json").read_text())["steps"] == steps


@pytest.mark.parametrize(("minutes", "saves"), [(0.0, 1), (1e-6, 7)])
def test_last_pt_is_written_every_checkpoint_minutes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minutes: float, saves: int
) -> None:
    """No validation before the end (eval_every 100, 6 steps): with checkpoint_minutes 0 last.pt
    is written once, at the end; with a tiny interval after each of the 6 updates as well."""
    from seq2seq.training import trainer

    written: list[int] = []

    def record(path: Path, state: dict) -> None:
        if path.name == "last.pt":
            written.append(state["progress"]["step"])
        save_checkpoint(path, state)

    monkeypatch.setattr(trainer, "save_checkpoint", record)
    run(tmp_path, "run", "trainer.eval_every=100", f"trainer.checkpoint_minutes={minutes}")
    assert len(written) == saves and written[-1] == 6


def test_non_finite_updates_are_skipped_and_k_in_a_row_stop_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every loss NaN: no update touches the weights, each is counted, the third in a row stops
    the run with a message, and the checkpoint holds the untouched weights."""
    from seq2seq.training import step

    real_loss = step.sequence_loss
    monkeypatch.setattr(step, "sequence_loss", lambda *a, **k: real_loss(*a, **k) * float("nan"))
    run_dir = run(tmp_path, "nan", "trainer.max_skipped_in_a_row=3", "trainer.max_steps=50")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 3 and "non-finite" in metrics["stop_reason"]
    assert events(run_dir).Scalars("train/skipped_updates")[-1].value == 3
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert saved["progress"]["skipped_updates"] == 3

    monkeypatch.setattr(step, "sequence_loss", real_loss)
    untouched = run(tmp_path, "zero", "trainer.max_steps=1", "trainer.lr=0")
    fresh = load_checkpoint(untouched / "checkpoints" / "last.pt")["model"]
    for name, tensor in fresh.items():
        torch.testing.assert_close(saved["model"][name], tensor, msg=name)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.train=/nonexistent/train.tsv", "/nonexistent/train.tsv: file not found"),
        ("data.max_length=1", "train.tsv: all 136 pairs of the train split are longer than"),
        ("trainer.normalization=words", "trainer.normalization=words is not a choice"),
        ("search.stop=first", "search.stop=first is not a choice"),
        ("trainer.resume=/nonexistent/last.pt", "/nonexistent/last.pt: checkpoint not found"),
        ("data.src_vocab_size=5", "sentencepiece could not train the zh model (vocab_size=5"),
    ],
)
def test_user_errors_end_train_py_with_one_line_and_exit_2(
    tmp_path: Path, override: str, message: str
) -> None:
    overrides = tiny_overrides(tmp_path / "cache") + [override, f"hydra.run.dir={tmp_path}/r"]
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "train.py"), *overrides],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "HYDRA_FULL_ERROR": "0"},
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_long_sentence_is_also_logged_in_parts_with_its_gold_cells(tmp_path: Path) -> None:
    """alignment/<n>/<k>: each part the same rows over at most PART_COLUMNS source pieces,
    with the gold cells that fall in it moved to its own columns."""
    reporter = SimpleNamespace(
        cfg=OmegaConf.create({"viz": {"font": None}}),
        writer=SummaryWriter(str(tmp_path)),
    )
    n_source = 2 * PART_COLUMNS + 3
    weights = np.full((4, n_source), 1 / n_source)
    labels = ([f"s{j}" for j in range(n_source)], ["a", "b", "c", "</s>"])
    gold = ({(0, 0), (PART_COLUMNS + 1, 2)}, {(n_source - 1, 3)})
    with mock.patch("seq2seq.training.reporting.plot_alignment", wraps=plot_alignment) as plot:
        Reporter.alignment_parts(reporter, 7, 0, 4, labels, weights, gold)
        drawn = [call.kwargs | {"args": call.args} for call in plot.call_args_list]
        short = (labels[0][:5], labels[1])
        Reporter.alignment_parts(reporter, 7, 1, 4, short, weights[:, :5], gold)
        assert plot.call_count == 3  # a short sentence has only its whole heatmap
    reporter.writer.close()
    assert len(drawn) == 3
    columns = [call["args"][1] for call in drawn]
    assert [c for part in columns for c in part] == labels[0]  # every column once, in order
    assert all(call["args"][2] == labels[1] for call in drawn)
    assert drawn[0]["sure"] == {(0, 0)} and drawn[1]["sure"] == {(PART_COLUMNS + 1 - 9, 2)}
    assert drawn[2]["possible"] == {(len(columns[2]) - 1, 3)}
    tags = events(tmp_path).Tags()["images"]
    assert sorted(tags) == ["alignment/0/1", "alignment/0/2", "alignment/0/3"]
