"""Average the weights of checkpoints of one model into a new checkpoint.

    python scripts/average_checkpoints.py outputs/<run> --last 5 --out averaged.pt
    python scripts/average_checkpoints.py a/step_8000.pt a/step_8500.pt --out averaged.pt

One run directory: its last K validation checkpoints step_<n>.pt (trainer.keep_checkpoints);
or checkpoint files of one model (same config, same sentencepiece models). The result is a
checkpoint like best.pt, for translate.py and evaluate.py; an existing --out is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seq2seq.checkpoint import CheckpointError
from seq2seq.cli import positive_int
from seq2seq.training.checkpoint_averaging import write_average


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="CHECKPOINT",
        help="checkpoint files, or one run directory (or its checkpoints/)",
    )
    parser.add_argument(
        "--last",
        type=positive_int,
        metavar="K",
        help="with a run directory: its last K validation checkpoints (default: all it kept)",
    )
    parser.add_argument("--out", type=Path, required=True, help="the averaged checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    try:
        averaged = write_average(args.inputs, args.out, args.last, args.overwrite)
    except (CheckpointError, OSError) as error:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(error).split())}\n")
    names = ", ".join(str(path) for path in averaged)
    print(f"averaged {len(averaged)} checkpoints ({names}) into {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
