"""Compare training runs side by side: a markdown table and PNG plots.

Reads only what runs wrote — ``metrics.json``, ``.hydra/config.yaml`` and the TensorBoard event
files in each run directory — so a comparison never re-trains, and works while runs are still
training (those show what their event files hold so far, marked unfinished).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from seq2seq.files import atomic_write_bytes
from seq2seq.metrics.long_range import LONG_RANGE_METRIC

TABLE_FILE = "comparison.md"
BENCHMARK_FILE = "benchmarks.md"
DEV_BLEU_VS_STEPS = "dev_bleu_vs_steps.png"
DEV_BLEU_VS_TIME = "dev_bleu_vs_time.png"
BLEU_BY_LENGTH = "bleu_by_length.png"
AER_VS_STEPS = "aer_vs_steps.png"
PLOT_FILES = (DEV_BLEU_VS_STEPS, DEV_BLEU_VS_TIME, BLEU_BY_LENGTH, AER_VS_STEPS)
MISSING = "–"


class RunDirectoryError(ValueError):
    """A directory given to compare holds no readable run."""


@dataclass(frozen=True)
class Scalar:
    step: int
    minutes: float  # since the run's first event
    value: float


@dataclass
class Run:
    """What one run directory holds, as far as a comparison needs it."""

    name: str
    model: str | None = None
    attention: str | None = None
    encoder: str | None = None  # "rnn", or "self_attention (<positions>)"
    precision: str | None = None  # "bf16", or "auto → bf16" where auto chose it
    metrics: dict[str, Any] | None = None  # metrics.json; None while the run is still training
    scalars: dict[str, list[Scalar]] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    @property
    def label(self) -> str:
        return self.name if self.finished else f"{self.name} (unfinished)"


def is_run_dir(path: Path) -> bool:
    return (path / "metrics.json").is_file() or (path / ".hydra" / "config.yaml").is_file()


def find_runs(directory: Path) -> list[Path]:
    """``directory`` itself if it is a run, else every run below it (a sweep), sorted."""
    if is_run_dir(directory):
        return [directory]
    found = {p.parent for p in directory.rglob("metrics.json")}
    found |= {p.parent.parent for p in directory.rglob(".hydra/config.yaml")}
    return sorted(found)


def load_runs(directories: Sequence[Path]) -> list[Run]:
    """Every run in ``directories``, named by its path below the directory it was found in.

    Sweep job directories are named after their overrides (``model=rnn_attention``), so that
    path is the readable name; when two sweeps hold the same name, runs are named from their
    common parent instead (``synthetic/…/model=rnn_attention``).
    """
    found: dict[Path, str] = {}
    for directory in directories:
        if not directory.is_dir():
            raise RunDirectoryError(f"{directory}: no such directory")
        paths = find_runs(directory)
        if not paths:
            raise RunDirectoryError(
                f"{directory}: no runs found (a run directory holds metrics.json or "
                ".hydra/config.yaml); give run directories or the sweep directory holding them"
            )
        for path in paths:
            found.setdefault(path.resolve(), _relative_name(path, directory))
    names = list(found.values())
    if len(set(names)) < len(names):
        parent = Path(os.path.commonpath(list(found)))
        names = [_relative_name(path, parent) for path in found]
    return [read_run(path, name) for path, name in zip(found, names, strict=True)]


def _relative_name(path: Path, directory: Path) -> str:
    relative = path.resolve().relative_to(directory.resolve()).as_posix()
    return path.resolve().name if relative == "." else relative


def read_run(path: Path, name: str) -> Run:
    run = Run(name=name, scalars=read_scalars(path))
    config_file = path / ".hydra" / "config.yaml"
    if config_file.is_file():
        config = OmegaConf.load(config_file)
        run.model, run.attention, encoder, positions = (
            OmegaConf.select(config, key, default=None, throw_on_resolution_failure=False)
            for key in (
                "model.name",
                "model.attention.name",
                "model.encoder.name",
                "model.encoder.self_attention.positions",
            )
        )
        if positions is None:  # a run of before issue 40: one model.positions
            positions = OmegaConf.select(config, "model.positions", default=None)
        run.encoder = f"{encoder} ({positions})" if encoder == "self_attention" else encoder
        run.precision = OmegaConf.select(config, "trainer.precision", default=None)
    metrics_file = path / "metrics.json"
    if metrics_file.is_file():
        try:
            run.metrics = json.loads(metrics_file.read_text())
        except json.JSONDecodeError as error:
            raise RunDirectoryError(f"{metrics_file}: not valid JSON ({error})") from error
        precision = run.metrics.get("precision")  # {"asked": "auto", "used": "bf16"}
        if isinstance(precision, dict) and {"asked", "used"} <= precision.keys():
            asked, used = precision["asked"], precision["used"]
            run.precision = used if asked == used else f"{asked} → {used}"
    return run


def read_scalars(path: Path) -> dict[str, list[Scalar]]:
    """Every scalar of the event files directly in ``path``, with minutes since the first event."""
    accumulator = EventAccumulator(str(path), size_guidance={SCALARS: 0})  # 0: keep every event
    accumulator.Reload()
    tags = accumulator.Tags()[SCALARS]
    if not tags:
        return {}
    start = accumulator.FirstEventTimestamp()
    return {
        tag: [
            Scalar(event.step, (event.wall_time - start) / 60, event.value)
            for event in accumulator.Scalars(tag)
        ]
        for tag in tags
    }


@dataclass(frozen=True)
class Summary:
    """One table row's numbers; None where the run has no such number (yet)."""

    parameters: int | None
    best_dev_bleu: float | None
    test_bleu: float | None
    long_bleu: float | None
    chrf: float | None
    aer: float | None
    word_order_acc: float | None
    word_order_pair_acc: float | None
    word_order_same_pieces_pair_acc: float | None
    long_range_acc: float | None
    minutes: float | None
    tokens_per_sec: float | None


def summarize(run: Run) -> Summary:
    """From metrics.json when the run finished, else from its event files so far."""
    if run.metrics is not None:
        m = run.metrics
        test, long, order = m.get("test", {}), m.get("long", {}), m.get("word_order", {})
        seconds = m.get("train_seconds")
        return Summary(
            parameters=m.get("parameters"),
            best_dev_bleu=m.get("best_dev_bleu"),
            test_bleu=test.get("bleu"),
            long_bleu=long.get("bleu"),
            chrf=test.get("chrf"),
            aer=test.get("aer"),
            word_order_acc=order.get("word_order_acc"),
            word_order_pair_acc=order.get("word_order_pair_acc"),
            word_order_same_pieces_pair_acc=order.get("word_order_same_pieces_pair_acc"),
            long_range_acc=m.get("long_range", {}).get(LONG_RANGE_METRIC),
            minutes=None if seconds is None else seconds / 60,
            tokens_per_sec=m.get("train_tokens_per_sec"),
        )
    dev_bleu = [s.value for s in run.scalars.get("valid/bleu", [])]
    speeds = [s.value for s in run.scalars.get("train/tokens_per_sec", [])]
    latest = [s.minutes for series in run.scalars.values() for s in series]
    return Summary(
        parameters=None,
        best_dev_bleu=max(dev_bleu, default=None),
        test_bleu=None,
        long_bleu=None,
        chrf=None,
        aer=None,
        word_order_acc=None,
        word_order_pair_acc=None,
        word_order_same_pieces_pair_acc=None,
        long_range_acc=None,
        minutes=max(latest, default=None),
        tokens_per_sec=float(np.mean(speeds)) if speeds else None,
    )


def _number(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return MISSING
    return f"{value:,.{digits}f}"


def _percent(fraction: float | None) -> str:
    return _number(None if fraction is None else 100 * fraction, 1)


def _cell(text: str | None) -> str:
    return MISSING if text is None else str(text).replace("|", "\\|")


def comparison_table(runs: Sequence[Run]) -> str:
    """A markdown table, one row per run (BLEU and chrF to 0.1 as usually reported, AER to 0.001).

    The encoder, long-test BLEU, AER, word-order accuracies (sentences and pairs exactly
    right, and pairs right among those whose sources are the same bag of pieces, %), the
    long-range accuracy (pronouns decided far back, %) and the
    precision (what ``auto`` chose: tokens/s depend on it) get a column only where some run
    has them (a self-attention encoder, ...).
    """
    summaries = [summarize(run) for run in runs]
    with_encoder = any(run.encoder not in (None, "rnn") for run in runs)
    with_long = any(s.long_bleu is not None for s in summaries)
    with_aer = any(s.aer is not None for s in summaries)
    with_order = any(s.word_order_acc is not None for s in summaries)
    with_range = any(s.long_range_acc is not None for s in summaries)
    with_precision = any(run.precision is not None for run in runs)
    text_columns = ["run", "model", "attention"] + ["encoder"] * with_encoder
    header = [*text_columns, "parameters", "best dev BLEU", "test BLEU"]
    header += ["long-test BLEU"] * with_long + ["test chrF"] + ["test AER"] * with_aer
    order_columns = ["word order: sentences %", "pairs %", "pairs of the same pieces %"]
    header += order_columns * with_order + ["long-range %"] * with_range
    header += ["training time (min)", "tokens/s"] + ["precision"] * with_precision
    numbers = len(header) - len(text_columns) - with_precision
    rows = [header, ["---"] * len(text_columns) + ["---:"] * numbers + ["---"] * with_precision]
    for run, s in zip(runs, summaries, strict=True):
        row = [_cell(run.label), _cell(run.model), _cell(run.attention)]
        row += [_cell(run.encoder)] * with_encoder
        row += [_number(s.parameters, 0), _number(s.best_dev_bleu, 1), _number(s.test_bleu, 1)]
        row += [_number(s.long_bleu, 1)] * with_long + [_number(s.chrf, 1)]
        row += [_number(s.aer, 3)] * with_aer
        row += [
            _percent(s.word_order_acc),
            _percent(s.word_order_pair_acc),
            _percent(s.word_order_same_pieces_pair_acc),
        ] * with_order
        row += [_percent(s.long_range_acc)] * with_range
        row += [_number(s.minutes, 1), _number(s.tokens_per_sec, 0)]
        row += [_cell(run.precision)] * with_precision
        rows.append(row)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def bucket_table(runs: Sequence[Run]) -> str | None:
    """A markdown table of the finished runs' numbers by bucket: test and long-test BLEU by
    source length, long-range accuracy (%) by distance; None when no run has any."""
    finished = [run for run in runs if run.metrics]
    columns: list[tuple[str, str | None, str, str]] = []  # (split, key, bucket, header)
    for split, key, what in (
        ("test", "bleu_by_length", "test BLEU"),
        ("long", "bleu_by_length", "long-test BLEU"),
        ("long_range", None, "long-range %"),
    ):
        found = {b for run in finished for b in _buckets(run.metrics or {}, split, key)}
        columns += [(split, key, b, f"{what} {b}") for b in sorted(found, key=_bucket_order)]
    if not columns:
        return None
    rows = [["run", *(column[3] for column in columns)], ["---"] + ["---:"] * len(columns)]
    for run in finished:
        row = [_cell(run.label)]
        for split, key, bucket, _ in columns:
            value = _buckets(run.metrics or {}, split, key).get(bucket)
            row.append(_number(value, 1) if key else _percent(value))
        rows.append(row)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _buckets(metrics: dict[str, Any], split: str, key: str | None) -> dict[str, float]:
    """A split's ``key`` (BLEU by length), or without a key its ``long_range_acc/<bucket>``."""
    numbers = metrics.get(split, {})
    if key:
        return numbers.get(key, {})
    prefix = f"{LONG_RANGE_METRIC}/"
    return {k[len(prefix) :]: v for k, v in numbers.items() if k.startswith(prefix)}


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def plot_scalar(runs: Sequence[Run], tag: str, x: str, xlabel: str, ylabel: str) -> Figure | None:
    """One line per run that logged ``tag``, against ``x`` ("step" or "minutes"); None if none."""
    with_tag = [run for run in runs if run.scalars.get(tag)]
    if not with_tag:
        return None
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for run in with_tag:
        series = run.scalars[tag]
        xs = [getattr(s, x) for s in series]
        ax.plot(xs, [s.value for s in series], marker=".", label=run.label)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _bucket_order(name: str) -> tuple[int, str]:
    """Buckets such as ``01-10``, ``11-20``, ``21+`` by their lower bound."""
    match = re.match(r"\d+", name)
    return (int(match.group()) if match else sys.maxsize, name)


def plot_bleu_by_length(runs: Sequence[Run]) -> Figure | None:
    """Grouped bars: test BLEU per source-length bucket, one bar per finished run; the long test
    split's buckets form groups of their own. None if no run has BLEU by length."""
    groups: list[tuple[str, str]] = []  # (split, bucket)
    for split in ("test", "long"):
        buckets = {
            bucket
            for run in runs
            if run.metrics
            for bucket in run.metrics.get(split, {}).get("bleu_by_length", {})
        }
        groups += [(split, bucket) for bucket in sorted(buckets, key=_bucket_order)]
    with_buckets = [
        run
        for run in runs
        if run.metrics and any(run.metrics.get(s, {}).get("bleu_by_length") for s, _ in groups)
    ]
    if not with_buckets:
        return None
    fig = Figure(figsize=(max(6.0, 1.2 * len(groups) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(with_buckets)
    positions = np.arange(len(groups))
    for k, run in enumerate(with_buckets):
        assert run.metrics is not None, "only finished runs have BLEU by length"
        values = [
            run.metrics.get(split, {}).get("bleu_by_length", {}).get(bucket, np.nan)
            for split, bucket in groups
        ]
        ax.bar(positions + (k - (len(with_buckets) - 1) / 2) * width, values, width, label=run.name)
    ax.set_xticks(
        positions, [bucket if split == "test" else f"long {bucket}" for split, bucket in groups]
    )
    ax.set(xlabel="source length (subword tokens)", ylabel="test BLEU")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plots(runs: Sequence[Run]) -> dict[str, Figure]:
    """The comparison's figures by file name; a plot no run has data for is left out."""
    figures = {
        DEV_BLEU_VS_STEPS: plot_scalar(runs, "valid/bleu", "step", "update step", "dev BLEU"),
        DEV_BLEU_VS_TIME: plot_scalar(
            runs, "valid/bleu", "minutes", "minutes since the run's first event", "dev BLEU"
        ),
        BLEU_BY_LENGTH: plot_bleu_by_length(runs),
        AER_VS_STEPS: plot_scalar(
            runs, "valid/aer", "step", "update step", "dev AER (lower is better)"
        ),
    }
    return {name: fig for name, fig in figures.items() if fig is not None}


def comparison_markdown(runs: Sequence[Run], table: str, plot_files: Sequence[str]) -> str:
    signatures = sorted(
        {
            run.metrics[split]["signature"]
            for run in runs
            if run.metrics
            for split in ("test", "long")
            if "signature" in run.metrics.get(split, {})
        }
    )
    lines = [f"# Comparison of {len(runs)} runs", "", table, ""]
    buckets = bucket_table(runs)
    if buckets:
        lines += ["By bucket: source length in subword tokens, long-range distance in words.", ""]
        lines += [buckets, ""]
    if not all(run.finished for run in runs):
        lines += [
            "Unfinished runs have no metrics.json yet: their best dev BLEU, time and tokens/s "
            "are what their event files hold so far.",
            "",
        ]
    lines += [
        "Test BLEU, chrF and AER are the best-dev-BLEU checkpoint's; training time is wall "
        "clock, validation included.",
        "",
    ]
    if signatures:
        lines += ["sacrebleu signature: " + ", ".join(f"`{s}`" for s in signatures), ""]
    lines += recorded_on([(run.label, run.metrics) for run in runs if run.metrics])
    lines += [f"![{Path(name).stem}]({name})" for name in plot_files]
    return "\n".join(lines) + "\n"


def recorded_on(records: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """Markdown lines naming the machine, torch and commit that gave each record, grouped, so
    that a table copied elsewhere carries where it came from (records from before commits were
    recorded say so)."""
    groups: dict[str, list[str]] = {}
    for label, record in records:
        hardware = record.get("hardware", record)  # metrics.json nests it; reports are flat
        if "cpu" not in hardware:
            continue
        bf16 = "native bf16" if hardware.get("native_bf16") else "no native bf16"
        machine = f"{hardware['cpu']} (torch capability {hardware.get('cpu_capability')}, {bf16})"
        gpu = f", GPU {hardware['gpu']}" if "gpu" in hardware else ""
        commit = record.get("commit") or "not recorded"
        date = str(record.get("recorded", "")).split("T")[0] or "date not recorded"
        key = f"{machine}{gpu}, torch {hardware.get('torch')}, commit {commit}, {date}"
        groups.setdefault(key, []).append(label)
    if len(groups) <= 1:
        return [f"Recorded on {key}.", ""] if groups else []
    return [f"Recorded on {key}: {', '.join(labels)}." for key, labels in groups.items()] + [""]


BENCHMARK_KEYS = (
    "commit",
    "model",
    "decoder",
    "attention",
    "kernels",
    "processes",
    "threads",
    "precision",
)


def benchmark_table(records: Sequence[dict[str, Any]]) -> str:
    """Training throughput from ``scripts/benchmark_training.py`` JSON lines: one row per
    configuration (:data:`BENCHMARK_KEYS`: code, model, kernels, processes, threads,
    precision), the median of its repeats with their range, and each row's ratio to the first
    row's median."""
    rows: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for record in records:
        key = tuple(record.get(k) for k in BENCHMARK_KEYS)
        rows.setdefault(key, []).append(record)
    header = ["commit", "model", "decoder", "attention", "kernels", "processes × threads"]
    header += ["precision", "parameters", "repeats", "tokens/s (median)", "range", "ratio"]
    lines = [header, ["---"] * 7 + ["---:"] * 5]
    first = None
    for (
        commit,
        model,
        decoder,
        attention,
        kernels,
        processes,
        threads,
        precision,
    ), group in rows.items():
        speeds = sorted(float(r["target_tokens_per_sec"]) for r in group)
        median = float(np.median(speeds))
        first = first or median
        lines.append(
            [_cell(commit), _cell(model), _cell(decoder), _cell(attention), _cell(kernels)]
            + [f"{processes} × {threads}", _cell(precision)]
            + [_number(group[0].get("parameters"), 0), str(len(speeds))]
            + [_number(median, 0), f"{speeds[0]:,.0f}–{speeds[-1]:,.0f}"]
            + [f"{median / first:.2f}×"]
        )
    table = "\n".join("| " + " | ".join(row) + " |" for row in lines)
    provenance = recorded_on([(f"row {i + 1}", r) for i, r in enumerate(records)])
    return "\n".join([table, "", *provenance]).rstrip() + "\n"


def read_benchmarks(path: Path) -> list[dict[str, Any]]:
    """The JSON lines ``benchmark_training.py`` printed (other lines, e.g. warnings, ignored)."""
    if not path.is_file():
        raise RunDirectoryError(f"{path}: no such benchmark file")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise RunDirectoryError(f"{path}:{number}: not a JSON line ({error})") from error
        if "target_tokens_per_sec" in record:
            records.append(record)
    if not records:
        raise RunDirectoryError(
            f"{path}: no benchmark lines (JSON printed by scripts/benchmark_training.py)"
        )
    return records


def compare_benchmarks(files: Sequence[Path], out: Path) -> tuple[str, Path]:
    """Write ``out/benchmarks.md`` from benchmark JSON lines; return its text and path."""
    table = benchmark_table([record for path in files for record in read_benchmarks(path)])
    atomic_write_bytes(out / BENCHMARK_FILE, table.encode())
    return table, out / BENCHMARK_FILE


def compare(directories: Sequence[Path], out: Path) -> tuple[str, list[Path]]:
    """Write ``out/comparison.md`` and the plots; return the table and the files written."""
    runs = load_runs(directories)
    table = comparison_table(runs)
    figures = plots(runs)
    written = []
    for name in PLOT_FILES:
        if name in figures:
            atomic_write_bytes(out / name, _png(figures[name]))
            written.append(out / name)
        else:  # a plot left from an earlier comparison would sit beside this one's table
            (out / name).unlink(missing_ok=True)
    markdown = comparison_markdown(runs, table, [p.name for p in written])
    atomic_write_bytes(out / TABLE_FILE, markdown.encode())
    return table, [out / TABLE_FILE, *written]
