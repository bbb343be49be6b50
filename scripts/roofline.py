"""The machine's matrix-product peak at a model's shapes, and each benchmark's share of it.

    python scripts/roofline.py --threads 2 [--rows 1024] [--benchmarks speed.jsonl] [overrides]

Builds the model of the Hydra overrides as ``benchmark_training.py`` does (Tatoeba's
vocabulary sizes, ``model=rnn_attention`` unless they say otherwise), times each of its linear
layers' products on ``--rows`` rows in fp32 and, where the CPU computes it natively, bf16, and
prints a markdown table of the rates. With ``--benchmarks`` (JSON lines of
``scripts/benchmark_training.py``) it also prints, for each line, tokens/s × its counted
matrix-product FLOPs per token against the fastest product of its precision: the share of the
roofline the update reaches.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from seq2seq.comparison import RunDirectoryError, read_benchmarks
from seq2seq.config.schema import PROJECT_ROOT, register_configs
from seq2seq.device import bf16_support
from seq2seq.model.seq2seq import build_model
from seq2seq.provenance import provenance
from seq2seq.roofline import linear_shapes, product_rate, rates_table, shares_table

# benchmark_training.py's model and vocabularies unless overridden: the same overrides name the
# same model in both scripts.
DEFAULT_OVERRIDES = ["data=tatoeba", "model=rnn_attention"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--rows", type=int, default=1024, help="rows of every product (tokens)")
    parser.add_argument(
        "--seconds", type=float, default=0.2, help="time of each of the 5 timed repeats"
    )
    parser.add_argument(
        "--benchmarks",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="a file of benchmark_training.py JSON lines (repeat for more)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides naming the model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    register_configs()
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=DEFAULT_OVERRIDES + args.overrides)
    shared = cfg.data.get("shared_vocab_size")
    source, target = (
        (shared, shared) if shared else (cfg.data.src_vocab_size, cfg.data.tgt_vocab_size)
    )
    model = build_model(cfg.model, source, target)
    precisions = ["fp32"] + (["bf16"] if bf16_support(torch.device("cpu")).native else [])
    rates = [
        product_rate(args.rows, inputs, outputs, precision, args.seconds)
        for inputs, outputs in linear_shapes(model)
        for precision in precisions
    ]
    print(f"{cfg.model.name}: its linear layers' products, {args.threads} threads")
    print(json.dumps(provenance()))
    print(rates_table(rates))
    if args.benchmarks:
        try:
            records = [record for path in args.benchmarks for record in read_benchmarks(path)]
        except RunDirectoryError as error:
            parser.exit(2, f"{parser.prog}: error: {error}\n")
        print()
        print(shares_table(rates, records))


if __name__ == "__main__":
    main()
