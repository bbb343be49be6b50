"""Data-parallel training on the CPU: torchrun with two gloo ranks against one process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_training import events, run, tiny_overrides

from seq2seq.checkpoint import load_checkpoint
from seq2seq.config.schema import PROJECT_ROOT
from seq2seq.training.distributed import TorchrunCallback

pytestmark = pytest.mark.slow

# No dropout: one process and two ranks then compute the same function of the same batches.
OVERRIDES = ["model.dropout=0", "trainer.max_steps=6", "trainer.eval_every=3"]
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def torchrun(tmp_path: Path, *overrides: str) -> Path:
    """``torchrun --nproc_per_node=2 train.py`` on the tiny corpus; returns the one run directory.

    The run directory is named after each rank's clock to the microsecond, so the ranks would
    name different ones unless they agree."""
    runs = tmp_path / "runs"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone"),
            *("--nproc_per_node=2", str(PROJECT_ROOT / "train.py")),
            *tiny_overrides(tmp_path / "cache"),
            *overrides,
            f"hydra.run.dir={runs}/${{now:%H-%M-%S-%f}}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = runs.iterdir()
    return run_dir


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["trainer.ema_decay=0.9", "trainer.lr_schedule=linear", "trainer.lr_decay_steps=6"],
        [
            "model=transformer",
            "model.encoder.self_attention.attention_dropout=0",
            "model.decoder.transformer.attention_dropout=0",
            "model.encoder.self_attention.activation_dropout=0",
            "model.decoder.transformer.activation_dropout=0",
            "model.attention.multihead.heads=2",
            "model.encoder.self_attention.heads=2",
            "model.encoder.self_attention.ff_size=32",
            "model.decoder.transformer.heads=2",
            "model.decoder.transformer.ff_size=32",
            "trainer.ema_decay=0.9",
            "trainer.lr_schedule=inverse_sqrt",
            "trainer.warmup_steps=2",
        ],
    ],
    ids=["plain", "average-and-linear-decay", "transformer"],
)
def test_two_ranks_write_one_run_and_train_as_one_process_on_the_global_batches(
    tmp_path: Path, extra: list[str]
) -> None:
    """``torchrun --nproc_per_node=2 train.py``: one run directory, one event file, and the same
    losses and weights as one process on the same global batches (each validation also asserts
    that both ranks hold identical weights). With the weight average, each rank keeps its own,
    rank 0 validates with it and writes it, and it is the average one process keeps."""
    run_dir = torchrun(tmp_path, *OVERRIDES, *extra)
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "train.log").read_text().count("train: 136 pairs") == 1  # rank 0's only

    single = run(tmp_path, "single", *OVERRIDES, *extra)
    for tag in ("train/loss", "valid/loss"):
        two = [(e.step, e.value) for e in events(run_dir).Scalars(tag)]
        one = [(e.step, e.value) for e in events(single).Scalars(tag)]
        assert [s for s, _ in two] == [s for s, _ in one] and len(one) >= 2
        torch.testing.assert_close([v for _, v in two], [v for _, v in one], rtol=1e-5, atol=0)
    ranked = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    alone = load_checkpoint(single / "checkpoints" / "last.pt")
    assert len(ranked["rng_by_rank"]) == 2
    for name, tensor in alone["model"].items():
        torch.testing.assert_close(
            without_key_bias(name, ranked["model"][name]),
            without_key_bias(name, tensor),
            rtol=1e-4,
            atol=1e-6,
            msg=name,
        )
    for name, tensor in alone.get("ema", {}).get("average", {}).items():
        torch.testing.assert_close(
            without_key_bias(name, ranked["ema"]["average"][name]),
            without_key_bias(name, tensor),
            rtol=1e-4,
            atol=1e-6,
            msg=name,
        )
    assert ("ema" in ranked) == ("ema" in alone) == bool(extra)


def without_key_bias(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """A self-attention's query and value biases without its key bias.

    The key bias adds one constant to all of a query's scores, which softmax ignores: its
    gradient is zero up to rounding, and Adam turns that rounding into ±lr steps that differ
    between summation orders (one process, two ranks). Everything else must agree.
    """
    if not name.endswith("qkv_proj.bias"):
        return tensor
    size = tensor.numel() // 3
    return torch.cat([tensor[:size], tensor[2 * size :]])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_ranks(tmp_path: Path, *overrides: str) -> tuple[Path, list[subprocess.Popen]]:
    """Two ranks started as torchrun starts them (its environment variables), without its agent,
    which would otherwise stop the survivors itself."""
    run_dir = tmp_path / "run"
    port = str(free_port())
    ranks = [
        subprocess.Popen(
            [
                sys.executable,
                str(PROJECT_ROOT / "train.py"),
                *tiny_overrides(tmp_path / "cache"),
                *overrides,
                f"hydra.run.dir={run_dir}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={
                **ENV,
                **dict(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2"),
                **dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
            },
        )
        for rank in range(2)
    ]
    best = run_dir / "checkpoints" / "best.pt"
    deadline = time.monotonic() + 120
    while not best.exists() and time.monotonic() < deadline:
        assert all(r.poll() is None for r in ranks), ranks[0].communicate()[0][-3000:]
        time.sleep(0.05)
    return run_dir, ranks


def test_a_killed_rank_does_not_leave_the_other_waiting(tmp_path: Path) -> None:
    """``kill -9`` of rank 1 mid-run: rank 0 fails within seconds instead of hanging."""
    _, (rank0, rank1) = launch_ranks(
        tmp_path, "trainer.max_steps=0", "trainer.eval_every=2", "trainer.ddp_timeout_minutes=1"
    )
    rank1.kill()
    started = time.monotonic()
    output, _ = rank0.communicate(timeout=120)
    rank1.communicate()
    assert rank0.returncode != 0, output[-3000:]
    assert time.monotonic() - started < 70


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step(tmp_path: Path) -> None:
    """``kill`` (SIGTERM) of rank 1 alone: both ranks stop after the same update, rank 0
    writes last.pt with both ranks' RNG state, both exit 143; torchrun resumes from it."""
    run_dir, ranks = launch_ranks(tmp_path, "trainer.max_steps=0", "trainer.eval_every=2")
    ranks[1].send_signal(signal.SIGTERM)
    outputs = [r.communicate(timeout=120)[0] for r in ranks]
    assert [r.returncode for r in ranks] == [143, 143], outputs[0][-2000:] + outputs[1][-2000:]
    last = run_dir / "checkpoints" / "last.pt"
    step = load_checkpoint(last)["progress"]["step"]
    assert f"SIGTERM received at step {step}" in outputs[0]
    assert len(load_checkpoint(last)["rng_by_rank"]) == 2

    resumed = torchrun(
        tmp_path, f"trainer.resume={last}", f"trainer.max_steps={step + 2}", "trainer.eval_every=2"
    )
    assert f"resumed from {last} at step {step}" in (resumed / "train.log").read_text()
    assert json.loads((resumed / "metrics.json").read_text())["steps"] == step + 2


def test_torchrun_refuses_a_sweep_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torchrun ... train.py -m``: every rank would run every job; say what to do instead."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="torchrun trains one run with all its processes"):
        TorchrunCallback().on_multirun_start(config=None)
