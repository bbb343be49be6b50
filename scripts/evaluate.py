"""Score a checkpoint on a parallel TSV (the ``seq2seq-evaluate`` command).

python scripts/evaluate.py outputs/<date>/<time>/checkpoints/best.pt test.tsv [--beam 5]
"""

from seq2seq.cli import evaluate_main

if __name__ == "__main__":
    raise SystemExit(evaluate_main())
