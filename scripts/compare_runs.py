"""Compare training runs: a markdown table and PNG plots, from what the runs wrote.

    python scripts/compare_runs.py multirun/synthetic_attention_scorers --out comparison
    python scripts/compare_runs.py outputs/2024-05-01/10-00-00 outputs/2024-05-01/11-00-00 --out c
    python scripts/compare_runs.py --benchmarks speed.jsonl --out comparison

Each DIR is a run directory or a (sweep) directory holding run directories. Writes
OUT/comparison.md and OUT/*.png and prints the table; never trains. ``--benchmarks`` reads the
JSON lines ``scripts/benchmark_training.py`` printed (``... >> speed.jsonl``) and writes
OUT/benchmarks.md: one row per configuration, the median of its repeats and the ratio to the
first row. Every table names the machine, torch and commit that gave its numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seq2seq.comparison import RunDirectoryError, compare, compare_benchmarks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "dirs",
        nargs="*",
        type=Path,
        metavar="DIR",
        help="a run directory, or a sweep directory holding run directories",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="directory for comparison.md and the plots"
    )
    parser.add_argument(
        "--benchmarks",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="files of JSON lines printed by scripts/benchmark_training.py",
    )
    args = parser.parse_args(argv)
    if not args.dirs and not args.benchmarks:
        parser.error("give run directories, --benchmarks files, or both")
    written: list[Path] = []
    try:
        if args.benchmarks:
            table, path = compare_benchmarks(args.benchmarks, args.out)
            written.append(path)
            print(table)
        if args.dirs:
            table, files = compare(args.dirs, args.out)
            written += files
            print(table)
    except RunDirectoryError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    for path in written:
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
