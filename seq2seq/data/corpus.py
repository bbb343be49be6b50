"""Parallel corpora: strict reading of tab-separated files, and the container of splits."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seq2seq.data.synthetic import AlignedPair

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
UTF8_BOM = b"\xef\xbb\xbf"


class CorpusError(ValueError):
    """A corpus file a user supplied is unusable; the message names file, line and problem."""


@dataclass(frozen=True)
class Example:
    """One sentence pair in translation direction, with where it came from."""

    source: str
    target: str
    origin: str
    gold: AlignedPair | None = None


@dataclass
class Corpus:
    """Named splits (train, dev, test and optionally long, word_order, long_range) of one
    direction."""

    splits: dict[str, list[Example]]
    source_lang: str
    target_lang: str
    has_gold_alignments: bool = False
    skipped: dict[str, int] = field(default_factory=dict)


def read_parallel_tsv(
    path: Path,
    columns: Sequence[str],
    source_lang: str,
    target_lang: str,
    on_malformed: str = "error",
    skip_hint: str = "set data.on_malformed=skip to skip such lines",
) -> tuple[list[Example], int]:
    """Read ``path`` (one pair a line, columns named by ``columns``) as source→target examples.

    A line with the wrong number of columns, an empty side or bytes that are not UTF-8 raises
    :class:`CorpusError` naming file and line and ending with ``skip_hint`` (how the caller
    skips such lines), or is skipped and counted when ``on_malformed == "skip"``. Blank lines
    at the end of the file are dropped (editors add them); a blank line before a pair is
    malformed. Returns the examples and the number of skipped lines.
    """
    if on_malformed not in ("error", "skip"):
        raise ValueError(f"data.on_malformed must be 'error' or 'skip', got {on_malformed!r}")
    for lang in (source_lang, target_lang):
        if lang not in columns:
            raise ValueError(f"language {lang!r} is not one of the TSV columns {list(columns)}")
    if not path.is_file():
        raise CorpusError(f"{path}: file not found")
    src_col, tgt_col = columns.index(source_lang), columns.index(target_lang)
    examples: list[Example] = []
    skipped = 0
    blank: list[int] = []  # numbers of the blank lines since the last pair
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if line_number == 1:
                raw = raw.removeprefix(UTF8_BOM)  # editors on Windows start files with one
            if not raw.strip():
                blank.append(line_number)
                continue
            if blank and on_malformed == "error":
                raise CorpusError(f"{path}:{blank[0]}: blank line ({skip_hint})")
            skipped, blank = skipped + len(blank), []
            problem, fields = _parse_line(raw, len(columns))
            if problem is None:
                source, target = fields[src_col].strip(), fields[tgt_col].strip()
                examples.append(Example(source, target, f"{path.name}:{line_number}"))
                continue
            if on_malformed == "error":
                raise CorpusError(f"{path}:{line_number}: {problem} ({skip_hint})")
            skipped += 1
    if skipped:
        log.warning("%s: skipped %d malformed line(s)", path, skipped)
    if not examples:
        raise CorpusError(f"{path}: no sentence pairs found")
    return examples, skipped


def _parse_line(raw: bytes, n_columns: int) -> tuple[str | None, list[str]]:
    """Return (problem, fields); problem is None for a well-formed line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"bytes that are not UTF-8 at column {error.start + 1}", []
    fields = text.rstrip("\r\n").split("\t")
    if len(fields) != n_columns:
        return f"expected {n_columns} tab-separated columns, found {len(fields)}", []
    if any(not f.strip() for f in fields):
        return "empty sentence", []
    return None, fields
