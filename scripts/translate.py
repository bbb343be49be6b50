"""Translate sentences with a trained checkpoint (the ``seq2seq-translate`` command).

python scripts/translate.py outputs/<date>/<time>/checkpoints/best.pt [--beam 5] < zh.txt
"""

from seq2seq.cli import translate_main

if __name__ == "__main__":
    raise SystemExit(translate_main())
