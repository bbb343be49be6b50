"""Compare training runs: a markdown table and PNG plots, from what the runs wrote.

    python scripts/compare_runs.py multirun/synthetic_attention_scorers --out comparison
    python scripts/compare_runs.py outputs/2024-05-01/10-00-00 outputs/2024-05-01/11-00-00 --out c

Each DIR is a run directory or a (sweep) directory holding run directories. Writes
OUT/comparison.md and OUT/*.png and prints the table; never trains.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seq2seq.comparison import RunDirectoryError, compare


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="a run directory, or a sweep directory holding run directories",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="directory for comparison.md and the plots"
    )
    args = parser.parse_args(argv)
    try:
        table, written = compare(args.dirs, args.out)
    except RunDirectoryError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(table)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
