"""The attention explorer in the browser (the ``seq2seq-explore`` command).

python scripts/explore.py outputs/<date>/<time>/checkpoints/best.pt [more.pt ...] [--port 7860]
"""

from seq2seq.explorer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
