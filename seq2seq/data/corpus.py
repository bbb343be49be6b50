"""Parallel corpora: strict reading of tab-separated or line-aligned files (gzipped or not), and
the container of splits."""

from __future__ import annotations

import gzip
import itertools
import logging
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    corpus: int = 0  # which of several weighted training corpora (data.train) it came from


@dataclass(frozen=True)
class CorpusPart:
    """One of several training corpora mixed by weight (``data.train`` as a list of corpora)."""

    name: str
    weight: float  # its share of each epoch's draws is weight / the sum of the weights
    pairs: int


@dataclass
class Corpus:
    """Named splits (train, dev, test and optionally long, word_order, long_range) of one
    direction."""

    splits: dict[str, list[Example]]
    source_lang: str
    target_lang: str
    has_gold_alignments: bool = False
    skipped: dict[str, int] = field(default_factory=dict)


def read_parallel(
    spec: str | Path | Sequence[str | Path],
    columns: Sequence[str],
    source_lang: str,
    target_lang: str,
    on_malformed: str = "error",
    skip_hint: str = "set data.on_malformed=skip to skip such lines",
) -> tuple[list[Example], int]:
    """A corpus as users bring it: one TSV file (a path), one line-aligned plain-text file per
    language in the order of ``columns`` (a list of paths: OPUS, WMT and UN corpora come so),
    any of them gzipped (``.gz``), or a local Hugging Face dataset (:func:`_dataset_records`).
    See :func:`read_parallel_tsv` for what is malformed."""
    return pair_reader(spec, columns, source_lang, target_lang, on_malformed, skip_hint).examples()


def pair_reader(
    spec: str | Path | Sequence[str | Path],
    columns: Sequence[str],
    source_lang: str,
    target_lang: str,
    on_malformed: str = "error",
    skip_hint: str = "set data.on_malformed=skip to skip such lines",
) -> PairReader:
    """The pairs of a corpus in any format :func:`read_parallel` reads, one at a time."""
    if isinstance(spec, (str, Path)):
        path = Path(spec).expanduser()
        records = (
            _dataset_records(path, columns)
            if is_hf_dataset(path)
            else _tsv_records(path, len(columns))
        )
    else:
        paths = [Path(path).expanduser() for path in spec]
        if len(paths) != len(columns):
            raise ValueError(
                f"{len(paths)} files {[str(p) for p in paths]} for the {len(columns)} languages "
                f"of data.columns {list(columns)}: give one line-aligned file per language, in "
                "that order"
            )
        # pairs are named after the source language's file (PairReader rejects an unknown one)
        path = paths[list(columns).index(source_lang)] if source_lang in columns else paths[0]
        records = _aligned_lines(paths)
    return PairReader(path, records, columns, source_lang, target_lang, on_malformed, skip_hint)


def read_parallel_tsv(
    path: Path,
    columns: Sequence[str],
    source_lang: str,
    target_lang: str,
    on_malformed: str = "error",
    skip_hint: str = "set data.on_malformed=skip to skip such lines",
) -> tuple[list[Example], int]:
    """Read ``path`` (one pair a line, columns named by ``columns``; gzipped if it ends in
    ``.gz``) as source→target examples.

    A line with the wrong number of columns, an empty side or bytes that are not UTF-8 raises
    :class:`CorpusError` naming file and line and ending with ``skip_hint`` (how the caller
    skips such lines), or is skipped and counted when ``on_malformed == "skip"``. Blank lines
    at the end of the file are dropped (editors add them); a blank line before a pair is
    malformed. Returns the examples and the number of skipped lines.
    """
    records = _tsv_records(path, len(columns))
    return PairReader(
        path, records, columns, source_lang, target_lang, on_malformed, skip_hint
    ).examples()


def _tsv_records(path: Path, n_columns: int) -> Iterator[Record]:
    for number, raw in _numbered_lines(path):
        yield (path, number, raw.strip() == b"", *_parse_line(raw, n_columns))


HF_FILE_SUFFIXES = (".parquet", ".arrow")


def is_hf_dataset(path: Path) -> bool:
    """A directory written by ``datasets``' ``save_to_disk``, or a Parquet or Arrow file."""
    return path.is_dir() or path.suffix in HF_FILE_SUFFIXES


def _dataset_records(path: Path, columns: Sequence[str]) -> Iterator[Record]:
    """The rows of a local Hugging Face dataset: a directory written by
    ``Dataset.save_to_disk`` (one split), or a ``.parquet`` / ``.arrow`` file. Each language is
    the column named by its code in ``columns``, or the key of that name in a ``translation``
    column of dicts (the layout of the Hub's translation sets, e.g. ``{"zh": ..., "en": ...}``).
    Row numbers (from 1) stand for line numbers in messages; an empty or missing sentence is
    malformed."""
    try:
        import datasets  # optional (the hf extra): only this input needs it
    except ImportError as error:
        raise CorpusError(
            f"{path}: reading a Hugging Face dataset needs the datasets package: "
            "pip install 'seq2seq[hf]'"
        ) from error
    if not path.exists():
        raise CorpusError(f"{path}: file not found")
    try:
        if path.is_dir():
            table = datasets.load_from_disk(str(path))
        elif path.suffix == ".parquet":
            table = datasets.Dataset.from_parquet(str(path), keep_in_memory=True)
        else:
            table = datasets.Dataset.from_file(str(path), in_memory=True)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise CorpusError(f"{path}: not a readable Hugging Face dataset ({error})") from error
    if isinstance(table, datasets.DatasetDict):
        raise CorpusError(
            f"{path}: holds the splits {sorted(table)}; name one split's directory, "
            f"e.g. {path / next(iter(table))}"
        )
    texts = [_hf_column(path, table, lang) for lang in columns]
    for row, values in enumerate(zip(*texts, strict=True), start=1):
        yield (path, row, False, *_hf_fields(values))


def _hf_column(path: Path, table: Any, lang: str) -> list[object]:
    """The sentences of ``lang``: its own column, or its key in the ``translation`` dicts."""
    names = table.column_names
    if lang in names:
        return table[lang]
    if "translation" in names:
        return [pair.get(lang) if pair else None for pair in table["translation"]]
    raise CorpusError(
        f"{path}: no column {lang!r} (nor a 'translation' column of dicts) among {names}; "
        "name the language columns in data.columns"
    )


def _hf_fields(values: Sequence[object]) -> tuple[str | None, list[str]]:
    if any(not isinstance(value, str) or not value.strip() for value in values):
        return "empty or missing sentence", []
    return None, [str(value) for value in values]


# One line of a corpus: the file to blame, its line number, whether it is blank, the problem
# (None when well-formed) and the fields in the order of data.columns.
Record = tuple[Path, int, bool, "str | None", list[str]]


def _check_languages(columns: Sequence[str], source_lang: str, target_lang: str) -> None:
    for lang in (source_lang, target_lang):
        if lang not in columns:
            raise ValueError(f"language {lang!r} is not one of the TSV columns {list(columns)}")


class PairReader:
    """The well-formed pairs of ``records`` as (source, target, line number), under the rules of
    :func:`read_parallel_tsv`; once read, :attr:`skipped` counts the malformed lines skipped."""

    def __init__(
        self,
        path: Path,
        records: Iterator[Record],
        columns: Sequence[str],
        source_lang: str,
        target_lang: str,
        on_malformed: str,
        skip_hint: str,
    ) -> None:
        _check_languages(columns, source_lang, target_lang)
        if on_malformed not in ("error", "skip"):
            raise ValueError(f"data.on_malformed must be 'error' or 'skip', got {on_malformed!r}")
        self.path, self.records, self.skipped = path, records, 0
        self.on_malformed, self.skip_hint = on_malformed, skip_hint
        self.source_column, self.target_column = (
            columns.index(source_lang),
            columns.index(target_lang),
        )

    def examples(self) -> tuple[list[Example], int]:
        """Every pair as an :class:`Example` named ``file:line``, and the lines skipped."""
        name = self.path.name
        return [Example(s, t, f"{name}:{line}") for s, t, line in self], self.skipped

    def __iter__(self) -> Iterator[tuple[str, str, int]]:
        pairs = 0
        blank: list[tuple[Path, int]] = []  # the blank lines since the last pair
        for where, line_number, is_blank, problem, fields in self.records:
            if is_blank:
                blank.append((where, line_number))
                continue
            if blank and self.on_malformed == "error":
                raise CorpusError(f"{blank[0][0]}:{blank[0][1]}: blank line ({self.skip_hint})")
            self.skipped, blank = self.skipped + len(blank), []
            if problem is None:
                pairs += 1
                source, target = fields[self.source_column], fields[self.target_column]
                yield source.strip(), target.strip(), line_number
                continue
            if self.on_malformed == "error":
                raise CorpusError(f"{where}:{line_number}: {problem} ({self.skip_hint})")
            self.skipped += 1
        if self.skipped:
            log.warning("%s: skipped %d malformed line(s)", self.path, self.skipped)
        if not pairs:
            raise CorpusError(f"{self.path}: no sentence pairs found")


def _numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of a file, gunzipped where it ends in ``.gz``; the first line
    without the UTF-8 byte order mark that editors on Windows start files with."""
    if not path.is_file():
        raise CorpusError(f"{path}: file not found")
    number = 0
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                yield number, raw.removeprefix(UTF8_BOM) if number == 1 else raw
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise CorpusError(f"{path}:{number + 1}: not a readable gzip file ({error})") from error


def _aligned_lines(paths: Sequence[Path]) -> Iterator[Record]:
    """One record per line number of line-aligned files; files of unequal length are an error
    whatever data.on_malformed says (every pair after the gap would be wrong)."""
    missing = object()
    streams = [_numbered_lines(path) for path in paths]
    for lines in itertools.zip_longest(*streams, fillvalue=missing):
        ended = [path for path, line in zip(paths, lines, strict=True) if line is missing]
        if ended:
            going = next(line for line in lines if line is not missing)
            raise CorpusError(
                f"{ended[0]}: ends at line {going[0] - 1}, but "
                f"{paths[lines.index(going)]} has line {going[0]}; the files must be "
                "line-aligned, one sentence a line"
            )
        number = lines[0][0]
        raws = [raw for _, raw in lines]
        if all(raw.strip() == b"" for raw in raws):
            yield paths[0], number, True, None, []
            continue
        fields: list[str] = []
        for path, raw in zip(paths, raws, strict=True):
            problem, text = _parse_line(raw, 1, tabs_allowed=True)
            if problem is not None:
                yield path, number, False, problem, []
                break
            fields.append(text[0])
        else:
            yield paths[0], number, False, None, fields


def _parse_line(
    raw: bytes, n_columns: int, tabs_allowed: bool = False
) -> tuple[str | None, list[str]]:
    """Return (problem, fields); problem is None for a well-formed line. ``tabs_allowed``: the
    whole line is one field (a plain-text file of one language)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"bytes that are not UTF-8 at column {error.start + 1}", []
    text = text.rstrip("\r\n")
    fields = [text] if tabs_allowed else text.split("\t")
    if len(fields) != n_columns:
        return f"expected {n_columns} tab-separated columns, found {len(fields)}", []
    if any(not f.strip() for f in fields):
        return "empty sentence", []
    return None, fields
