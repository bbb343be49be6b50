"""The training split tokenized once into flat arrays, cached on disk and read row by row.

A million pairs held as Python lists of ids and strings take ~2 GB and ~13 s to read and
encode again at every start. Here each side is two flat arrays, every sentence's ids one after
another and where each sentence starts (fairseq's indexed dataset has this shape), written
once under ``data.cache_dir/tokens/`` and opened, not loaded: a second start opens them in
milliseconds, a batch reads only its own rows (:class:`FileArray`), and under torchrun each rank
reads its own share. The texts are kept alike, for subword sampling
(seq2seq/data/subword_sampling.py) to segment anew per batch. Why numpy files and not Arrow
through ``datasets``: docs/design.md.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import time
import weakref
from array import array
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np
from tqdm import tqdm

from seq2seq.data.corpus import CorpusError, CorpusPart, Example, PairReader
from seq2seq.data.tokenizer import SubwordTokenizer
from seq2seq.files import remove_orphaned_temporaries_in, temporary_sibling

log = logging.getLogger(__name__)

# Bump when the files' layout changes: older stores are then simply not found.
FORMAT = 2


@dataclass(frozen=True)
class Ragged(Sequence[list[int]]):
    """Int sequences of varying length, flat: sequence i is ``values[offsets[i]:offsets[i+1]]``."""

    values: np.ndarray | FileArray  # (total,) every sequence, one after another
    offsets: np.ndarray  # (sequences + 1,) int64, from 0 to total
    dtype: ClassVar[type] = np.int32  # what a store keeps its values as

    @classmethod
    def of(cls, sequences: Iterable[Sequence[int]], dtype: type = np.int32) -> Ragged:
        sequences = list(sequences)
        lengths = np.fromiter(map(len, sequences), np.int64, len(sequences))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        values = np.fromiter(itertools.chain.from_iterable(sequences), dtype, int(offsets[-1]))
        return cls(values, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> list[int]:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(f"sequence {index} of {len(self)}")
        return self.values[self.offsets[index] : self.offsets[index + 1]].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self[i] for i in range(len(self)))

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def rows(self, start: int, end: int) -> Ragged:
        """Sequences ``start`` to ``end - 1`` as a new (in-memory) Ragged, read in one piece."""
        first, last = int(self.offsets[start]), int(self.offsets[end])
        return type(self)(
            np.asarray(self.values[first:last]), self.offsets[start : end + 1] - first
        )

    def take(self, indices: np.ndarray) -> Ragged:
        """The sequences at ``indices``, in that order, as a new Ragged (of values in memory:
        a stored one is read a span at a time with :meth:`rows` first)."""
        starts, lengths = self.offsets[:-1][indices], self.lengths()[indices]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # position of each kept value in self.values: its sequence's start + its rank in it
        within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
        return type(self)(self.values[np.repeat(starts, lengths) + within], offsets)


class Texts(Ragged):
    """Strings stored as their UTF-8 bytes, flat (a :class:`Ragged` of ``uint8``)."""

    dtype: ClassVar[type] = np.uint8

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(f"text {index} of {len(self)}")
        return self.values[self.offsets[index] : self.offsets[index + 1]].tobytes().decode()


class TextsBuilder:
    """Appends strings to a file as UTF-8 (a spool in the store's unfinished folder): ten
    million sentences without ten million ``str`` objects, nor their bytes in memory (10M pairs
    held ~1.3 GB of them), nor an int object per end (the ends are a typed array)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("wb")
        self.ends = array("q", [0])

    def append(self, text: str) -> None:
        data = text.encode()
        self.file.write(data)
        self.ends.append(self.ends[-1] + len(data))

    def build(self) -> Texts:
        self.file.close()
        return Texts(FileArray(self.path, np.uint8), np.frombuffer(self.ends, np.int64))


@dataclass
class TokenStore:
    """The training pairs: texts and ids of both sides, each pair's corpus and line number."""

    source_text: Texts
    target_text: Texts
    source_ids: Ragged
    target_ids: Ragged
    corpus: np.ndarray  # (pairs,) int16: which corpus of data.train each pair comes from
    line: np.ndarray  # (pairs,) int64: its line (row) number there
    # read: pairs read (before the length filter), skipped: malformed lines skipped,
    # filtered: pairs dropped as longer than data.max_length, parts: [{name, file, pairs}]
    manifest: dict[str, Any] = field(default_factory=dict)

    ARRAYS: ClassVar[dict[str, type[Ragged]]] = {
        "source_text": Texts,
        "target_text": Texts,
        "source_ids": Ragged,
        "target_ids": Ragged,
    }

    def __len__(self) -> int:
        return len(self.source_ids)

    def examples(self) -> StoredExamples:
        return StoredExamples(self)

    def parts(self, weights: Sequence[float]) -> list[CorpusPart]:
        """The weighted corpora (``data.train`` as a list): none for one unweighted corpus."""
        if not weights:
            return []
        return [
            CorpusPart(part["name"], float(weight), int(part["pairs"]))
            for part, weight in zip(self.manifest["parts"], weights, strict=True)
        ]

    @classmethod
    def open(cls, directory: Path) -> TokenStore | None:
        """The store in ``directory``, opened (its rows are read as batches ask for them); None
        where there is none (or an old one)."""
        manifest_path = directory / "manifest.json"
        if not manifest_path.is_file():
            return None
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            return None
        arrays = {
            name: kind(
                FileArray(directory / f"{name}.bin", kind.dtype),
                np.load(directory / f"{name}_offsets.npy"),
            )
            for name, kind in cls.ARRAYS.items()
        }
        corpus, line = (
            np.load(directory / f"{name}.npy", mmap_mode="r") for name in ("corpus", "line")
        )
        return cls(**arrays, corpus=corpus, line=line, manifest=manifest)


class FileArray:
    """A flat array in a file, sliced with positioned reads (``os.pread``): ``a[i:j]``.

    Memory-mapped instead, each row a batch reads maps the page-cache block around it into the
    process (whole large folios on recent kernels): a 10M-pair store's two id maps reached
    1.4 GB of resident memory within 30 updates. Read, the file stays in the page cache, which
    the kernel reclaims as it needs, and the process holds only the rows it asked for. Reads are
    thread-safe (subword sampling reads texts in its prefetch thread).
    """

    def __init__(self, path: Path, dtype: type) -> None:
        self.path, self.dtype = path, np.dtype(dtype)
        self.size = path.stat().st_size // self.dtype.itemsize
        self._descriptor: tuple[int, int] | None = None  # (process id, file descriptor)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop, step = key.indices(self.size)
        if step != 1:
            raise ValueError(f"{self.path}: only contiguous slices are read, not step {step}")
        count = max(0, stop - start) * self.dtype.itemsize
        data = os.pread(self._file(), count, start * self.dtype.itemsize)
        if len(data) != count:
            raise OSError(f"{self.path}: read {len(data)} of {count} bytes at value {start}")
        return np.frombuffer(data, self.dtype)

    def _file(self) -> int:
        """This process's descriptor (a fork, e.g. a torchrun worker, opens its own)."""
        if self._descriptor is None or self._descriptor[0] != os.getpid():
            descriptor = os.open(self.path, os.O_RDONLY)
            weakref.finalize(self, os.close, descriptor)
            self._descriptor = (os.getpid(), descriptor)
        return self._descriptor[1]


def write_store(
    texts: PairTexts,
    source: SubwordTokenizer,
    target: SubwordTokenizer,
    max_length: int | None,
    partial: Path,
    files: dict[str, bytes],
) -> None:
    """Encode both sides chunk by chunk (a progress bar counts them) straight into the store's
    files in ``partial`` (a :func:`store_folder`), so memory holds one chunk of texts and ids,
    never all; with ``max_length``, pairs longer than that on either side are dropped and
    counted. ``files`` (the sentencepiece models) go in too."""
    pairs, start_time = len(texts.source), time.perf_counter()
    outputs = {name: (partial / f"{name}.bin").open("wb") for name in TokenStore.ARRAYS}
    offsets = {name: [np.zeros(1, np.int64)] for name in TokenStore.ARRAYS}
    kept: list[np.ndarray] = []
    bar = tqdm(total=pairs, desc="tokenizing train", unit=" pairs", unit_scale=True, disable=None)
    for start in range(0, pairs, ENCODE_CHUNK):
        rows = np.arange(start, min(start + ENCODE_CHUNK, pairs))
        chunk_texts = [side.rows(start, start + len(rows)) for side in (texts.source, texts.target)]
        ids = [
            Ragged.of(tokenizer.encode(list(side)))
            for tokenizer, side in zip((source, target), chunk_texts, strict=True)
        ]
        longest = np.maximum(ids[0].lengths(), ids[1].lengths())
        keep = np.flatnonzero(longest <= (max_length or longest.max()))
        chunk = {
            "source_text": chunk_texts[0].take(keep),
            "target_text": chunk_texts[1].take(keep),
            "source_ids": ids[0].take(keep),
            "target_ids": ids[1].take(keep),
        }
        for name, ragged in chunk.items():
            ragged.values.tofile(outputs[name])
            offsets[name].append(ragged.offsets[1:] + offsets[name][-1][-1])
        kept.append(rows[keep])
        bar.update(len(rows))
    bar.close()
    for name, handle in outputs.items():
        _close(handle)
        _write(partial / f"{name}_offsets.npy", np.concatenate(offsets[name]))
    rows = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    if not len(rows):
        origin = texts.parts[0]["file"] if texts.parts else "train"
        raise CorpusError(
            f"{origin}: all {pairs} pairs of the train split are longer than "
            f"data.max_length={max_length} subword tokens; raise data.max_length"
        )
    _write(partial / "corpus.npy", texts.corpus[rows])
    _write(partial / "line.npy", texts.line[rows])
    for name, data in files.items():
        _write(partial / name, data)
    seconds = texts.manifest.setdefault("seconds", {})
    seconds["tokenize"] = round(time.perf_counter() - start_time, 2)
    manifest = {
        "format": FORMAT,
        "pairs": len(rows),
        "read": pairs,
        "filtered": pairs - len(rows),
        "max_length": max_length,
        "parts": texts.parts,
        **texts.manifest,
    }
    _write(partial / "manifest.json", (json.dumps(manifest, indent=1) + "\n").encode())


# Pairs handed to sentencepiece at once: its batch encoding runs on every core.
ENCODE_CHUNK = 50_000


@contextmanager
def store_folder(directory: Path) -> Iterator[Path]:
    """A fresh hidden sibling folder to write the store into, renamed into place when the block
    ends without an error (its ``*.spool`` files removed first): a store is whole or absent,
    and one another process finished first is kept, ours dropped. Folders of dead processes
    are removed on the way in."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temporaries_in(directory.parent, directory.name, folders=True)
    partial = temporary_sibling(directory)
    partial.mkdir()
    try:
        yield partial
        for spool in partial.glob("*.spool"):
            spool.unlink()
        try:
            partial.rename(directory)
        except OSError:  # another rank or run wrote it meanwhile
            if not (directory / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _close(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _write(path: Path, data: np.ndarray | bytes) -> None:
    handle = path.open("wb")
    if isinstance(data, bytes):
        handle.write(data)
    else:
        np.save(handle, data)
    _close(handle)


class StoredExamples(Sequence[Example]):
    """A store's pairs as :class:`Example` objects, made when asked for (never all at once)."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        self.files = [part["file"] for part in store.manifest["parts"]]

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> Example:  # type: ignore[override]
        store, corpus = self.store, int(self.store.corpus[index])
        return Example(
            store.source_text[index],
            store.target_text[index],
            f"{self.files[corpus]}:{int(store.line[index])}",
            None,
            corpus,
        )

    def __iter__(self) -> Iterator[Example]:
        return (self[i] for i in range(len(self)))


def content_digest(paths: Iterable[Path]) -> str:
    """SHA-256 over the bytes of ``paths`` (a directory: its files by relative path): the same
    corpus copied elsewhere finds its store, a changed one never finds a stale one."""
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        if not files or not all(p.is_file() for p in files):
            raise CorpusError(f"{path}: file not found")
        for file in files:
            digest.update(str(file.relative_to(path) if path.is_dir() else "").encode() + b"\0")
            with file.open("rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


@dataclass
class PairTexts:
    """The training pairs as read, before tokenizing: both sides' texts, corpus, line."""

    source: Texts
    target: Texts
    corpus: np.ndarray
    line: np.ndarray
    parts: list[dict[str, Any]]  # {name, file, pairs, skipped} of each corpus, in order
    manifest: dict[str, Any] = field(default_factory=dict)  # more for the store's manifest


def collect_texts(corpora: Iterable[tuple[str, PairReader]], folder: Path) -> PairTexts:
    """The pairs of each ``(name, reader)`` corpus, spooled into ``folder`` as they are read (a
    progress bar counts them)."""
    source, target = (TextsBuilder(folder / f"{side}_text.spool") for side in ("source", "target"))
    corpus = array("h")
    lines = array("q")
    parts: list[dict[str, Any]] = []
    with tqdm(desc="reading train", unit=" pairs", unit_scale=True, disable=None) as bar:
        for index, (name, reader) in enumerate(corpora):
            before = len(lines)
            for source_text, target_text, line in reader:
                source.append(source_text)
                target.append(target_text)
                lines.append(line)
                bar.update()
            pairs = len(lines) - before
            corpus.extend(array("h", [index]) * pairs)
            parts.append(
                {"name": name, "file": reader.path.name, "pairs": pairs, "skipped": reader.skipped}
            )
    return PairTexts(
        source.build(),
        target.build(),
        np.frombuffer(corpus, np.int16),
        np.frombuffer(lines, np.int64),
        parts,
    )
