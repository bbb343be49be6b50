"""Training throughput of a model config on real data: target tokens per second and peak RSS.

    python scripts/benchmark_training.py --steps 300 --threads 2 [hydra overrides ...]
    torchrun --standalone --nproc_per_node=2 scripts/benchmark_training.py --threads 1 ...

Runs the trainer's own sampler, learning-rate schedule, update
(``seq2seq.training.step.TrainingStep``: forward, loss, backward, clipping, Adam) and weight
average (``trainer.ema_decay``) for ``--warmup`` + ``--steps`` updates, no validation, and
reports the steady-state rate of the timed steps. The warm-up updates also count the FLOPs of
their matrix products (``matmul_gflop_per_token``), from which ``scripts/roofline.py`` gives the
share of the machine's measured peak that the rate reaches. Under torchrun the ranks train
data-parallel as ``train.py`` does (each its share of the same global batches) and rank 0
reports the rate of all of them together.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time

import torch
from hydra import compose, initialize_config_dir

from seq2seq.config.schema import PROJECT_ROOT, register_configs
from seq2seq.data.dataset import load_training_data
from seq2seq.device import choose_precision, keep_freed_memory
from seq2seq.fast.kernels import accelerate
from seq2seq.model.seq2seq import build_model
from seq2seq.provenance import provenance
from seq2seq.roofline import matmul_flop_counter
from seq2seq.training.distributed import (
    current_ranks,
    data_parallel,
    init_process_group,
    launched_by_torchrun,
    leave_process_group,
    main_first,
    training_device,
)
from seq2seq.training.ema import WeightAverage
from seq2seq.training.schedule import LearningRateSchedule
from seq2seq.training.step import TrainingStep, build_optimizer
from seq2seq.training.trainer import training_sampler

DEFAULT_OVERRIDES = [
    "data=tatoeba",
    f"data.dir={PROJECT_ROOT.parent / 'shared' / 'data' / 'tatoeba-cmn-eng'}",
    "model=rnn_attention",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="timed updates")
    parser.add_argument("--warmup", type=int, default=20, help="untimed updates first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (after the defaults)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    register_configs()
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=DEFAULT_OVERRIDES + args.overrides)
    t = cfg.trainer
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    torch.manual_seed(t.seed)
    if launched_by_torchrun():
        init_process_group(t.device, t.ddp_timeout_minutes)
    ranks = current_ranks()
    device = training_device(t.device, ranks)
    precision = choose_precision(t.precision, device)
    with main_first(ranks):
        data = load_training_data(cfg.data)
    model = build_model(cfg.model, len(data.source_tokenizer), len(data.target_tokenizer))
    accelerate(model, cfg.model.kernels, device)
    model.to(device)
    optimizer = build_optimizer(model, t.lr)
    update = TrainingStep(
        data_parallel(model, ranks),
        optimizer,
        t.clip_norm,
        t.label_smoothing,
        t.normalization,
        precision.used,
        WeightAverage(model, t.ema_decay) if t.ema_decay else None,
    )
    scheduler = LearningRateSchedule(optimizer, t)
    train = data.splits["train"]
    sampler = training_sampler(t, train, ranks)

    def batches():
        while True:
            yield from sampler

    tokens, start = 0, 0.0
    flops, flop_tokens = 0, 0
    for step, indices in enumerate(batches()):
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            tokens, start = 0, time.perf_counter()
        if step == args.warmup + args.steps:
            break
        scheduler.before_update(step + 1)
        batch = train.batch(indices).to(device)
        if step < args.warmup:
            with matmul_flop_counter() as counter:
                flop_tokens += update(batch).target_tokens
            flops += counter.get_total_flops()
        else:
            tokens += update(batch).target_tokens
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    report = {
        "model": cfg.model.name,
        "attention": cfg.model.attention.name,
        "decoder": cfg.model.decoder.name,
        "decoder_style": cfg.model.decoder.rnn.style if cfg.model.decoder.name == "rnn" else None,
        "kernels": model.kernels,  # "fast" or "reference": what model.kernels chose
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device),
        "processes": ranks.world_size,
        "threads": args.threads,
        "precision": precision.used,
        "precision_asked": precision.asked,
        "ema_decay": t.ema_decay,
        "steps": args.steps,
        "target_tokens_per_sec": round(tokens / seconds, 1),
        "seconds_per_step": round(seconds / args.steps, 4),
        # matrix-product GFLOP per target token of the warm-up updates (rank 0 counts its share)
        "matmul_gflop_per_token": (
            round(flops * ranks.world_size / flop_tokens / 1e9, 5) if flop_tokens else None
        ),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        **provenance(device),
    }
    if ranks.is_main:
        print(json.dumps(report))
    leave_process_group()


if __name__ == "__main__":
    main()
