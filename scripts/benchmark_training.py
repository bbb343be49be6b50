"""Training throughput of a model config on real data: target tokens per second and peak RSS.

    python scripts/benchmark_training.py --steps 200 [--threads 2] [hydra overrides ...]

Runs the trainer's own batching, forward, loss, backward and Adam step (no validation) for
``--warmup`` + ``--steps`` updates and reports the steady-state rate of the timed steps.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import torch
from hydra import compose, initialize_config_dir

from seq2seq.config import PROJECT_ROOT, register_configs
from seq2seq.data.batching import BucketBatchSampler
from seq2seq.device import select_device
from seq2seq.model.seq2seq import build_model
from seq2seq.training.evaluation import sequence_loss
from seq2seq.training.trainer import prepare_data

DEFAULT_OVERRIDES = [
    "data=tatoeba",
    f"data.dir={PROJECT_ROOT.parent / 'shared' / 'data' / 'tatoeba-cmn-eng'}",
    "model=bahdanau",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="timed updates")
    parser.add_argument("--warmup", type=int, default=20, help="untimed updates first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (after the defaults)")
    args = parser.parse_args()

    register_configs()
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=DEFAULT_OVERRIDES + args.overrides)
    torch.set_num_threads(args.threads)
    torch.manual_seed(cfg.trainer.seed)
    device = select_device(cfg.trainer.device)
    data = prepare_data(cfg)
    model = build_model(cfg.model, len(data.source_tokenizer), len(data.target_tokenizer))
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.trainer.lr)
    train = data.splits["train"]
    lengths = [
        max(len(s), len(t)) + 1 for s, t in zip(train.source_ids, train.target_ids, strict=True)
    ]
    t = cfg.trainer
    sampler = BucketBatchSampler(lengths, t.batch_type, t.batch_size, t.bucket_batches, t.seed)

    def batches():
        while True:
            yield from sampler

    tokens, start = 0, 0.0
    for step, indices in enumerate(batches()):
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            tokens, start = 0, time.perf_counter()
        if step == args.warmup + args.steps:
            break
        batch = train.batch(indices).to(device)
        logits, _ = model(batch)
        loss = sequence_loss(logits, batch.tgt_out) / batch.target_tokens
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_norm)
        optimizer.step()
        tokens += batch.target_tokens
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    report = {
        "model": cfg.model.name,
        "attention": cfg.model.attention.name,
        "device": str(device),
        "threads": args.threads,
        "steps": args.steps,
        "target_tokens_per_sec": round(tokens / seconds, 1),
        "seconds_per_step": round(seconds / args.steps, 4),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
