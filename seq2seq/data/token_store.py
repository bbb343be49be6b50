"""The training split tokenized once into flat arrays, cached on disk and memory-mapped.

A million pairs held as Python lists of ids and strings take ~2 GB and ~13 s to read and
encode again at every start. Here each side is two flat arrays, every sentence's ids one after
another and where each sentence starts (fairseq's indexed dataset has this shape), written
once under ``data.cache_dir/tokens/`` and opened with ``numpy.load(mmap_mode="r")``: a second
start opens them in milliseconds, memory holds only the pages batches touch, and under torchrun
each rank reads the pages of its own share. The texts are kept alike, for subword sampling
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
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from seq2seq.data.corpus import CorpusError, CorpusPart, Example, PairReader
from seq2seq.data.tokenizer import SubwordTokenizer
from seq2seq.files import TEMPORARY, process_exists

log = logging.getLogger(__name__)

# Bump when the files' layout changes: older stores are then simply not found.
FORMAT = 1


@dataclass(frozen=True)
class Ragged(Sequence[list[int]]):
    """Int sequences of varying length, flat: sequence i is ``values[offsets[i]:offsets[i+1]]``."""

    values: np.ndarray  # (total,) every sequence, one after another
    offsets: np.ndarray  # (sequences + 1,) int64, from 0 to total

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

    def take(self, indices: np.ndarray) -> Ragged:
        """The sequences at ``indices``, in that order, as a new (in-memory) Ragged."""
        starts, lengths = self.offsets[:-1][indices], self.lengths()[indices]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # position of each kept value in self.values: its sequence's start + its rank in it
        within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
        return type(self)(np.asarray(self.values)[np.repeat(starts, lengths) + within], offsets)


class Texts(Ragged):
    """Strings stored as their UTF-8 bytes, flat (a :class:`Ragged` of ``uint8``)."""

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(f"text {index} of {len(self)}")
        return self.values[self.offsets[index] : self.offsets[index + 1]].tobytes().decode()


class TextsBuilder:
    """Appends strings to a growing byte buffer: a million sentences without a million ``str``."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.ends: list[int] = []

    def append(self, text: str) -> None:
        self.buffer += text.encode()
        self.ends.append(len(self.buffer))

    def build(self) -> Texts:
        offsets = np.array([0, *self.ends], dtype=np.int64)
        return Texts(np.frombuffer(bytes(self.buffer), np.uint8), offsets)


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

    ARRAYS = ("source_text", "target_text", "source_ids", "target_ids")

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

    def save(self, directory: Path, files: dict[str, bytes]) -> None:
        """Write every array and ``files`` (its sentencepiece models) into a fresh sibling
        folder, then rename that into place: a store is whole or absent. A store another
        process finished first is kept and ours dropped."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        remove_orphaned_stores(directory)
        partial = directory.with_name(f".{directory.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        partial.mkdir()
        try:
            for name in self.ARRAYS:
                ragged = getattr(self, name)
                _write(partial / f"{name}.npy", ragged.values)
                _write(partial / f"{name}_offsets.npy", ragged.offsets)
            _write(partial / "corpus.npy", self.corpus)
            _write(partial / "line.npy", self.line)
            for name, data in files.items():
                _write(partial / name, data)
            manifest = {"format": FORMAT, "pairs": len(self), **self.manifest}
            _write(partial / "manifest.json", (json.dumps(manifest, indent=1) + "\n").encode())
            try:
                partial.rename(directory)
            except OSError:  # another rank or run wrote it meanwhile
                if not (directory / "manifest.json").is_file():
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    @classmethod
    def open(cls, directory: Path) -> TokenStore | None:
        """The store in ``directory``, memory-mapped; None where there is none (or an old one)."""
        manifest_path = directory / "manifest.json"
        if not manifest_path.is_file():
            return None
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            return None

        def mapped(name: str) -> np.ndarray:
            return np.load(directory / f"{name}.npy", mmap_mode="r")

        arrays = {
            name: (Texts if name.endswith("text") else Ragged)(
                mapped(name), np.asarray(mapped(f"{name}_offsets"))
            )
            for name in cls.ARRAYS
        }
        return cls(**arrays, corpus=mapped("corpus"), line=mapped("line"), manifest=manifest)


def _write(path: Path, data: np.ndarray | bytes) -> None:
    with path.open("wb") as handle:
        if isinstance(data, bytes):
            handle.write(data)
        else:
            np.save(handle, data)
        handle.flush()
        os.fsync(handle.fileno())


def remove_orphaned_stores(directory: Path) -> None:
    """Delete the half-written siblings of ``directory`` whose writing process is gone."""
    for candidate in directory.parent.iterdir():
        match = TEMPORARY.fullmatch(candidate.name)
        if match and match["name"] == directory.name and not process_exists(int(match["pid"])):
            shutil.rmtree(candidate, ignore_errors=True)


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
    parts: list[dict[str, Any]]  # {name, file, pairs} of each corpus, in data.train's order


def collect_texts(corpora: Iterable[tuple[str, PairReader]]) -> PairTexts:
    """The pairs of each ``(name, reader)`` corpus, into flat byte buffers as they are read (a
    progress bar counts them)."""
    source, target = TextsBuilder(), TextsBuilder()
    corpus: list[int] = []
    lines: list[int] = []
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
            corpus += [index] * pairs
            parts.append(
                {"name": name, "file": reader.path.name, "pairs": pairs, "skipped": reader.skipped}
            )
    return PairTexts(
        source.build(),
        target.build(),
        np.array(corpus, dtype=np.int16),
        np.array(lines, dtype=np.int64),
        parts,
    )


# Pairs handed to sentencepiece at once: its batch encoding runs on every core.
ENCODE_CHUNK = 50_000


def encode_store(
    texts: PairTexts,
    source: SubwordTokenizer,
    target: SubwordTokenizer,
    max_length: int | None,
) -> TokenStore:
    """Encode both sides in chunks (a progress bar counts them); with ``max_length``, pairs
    longer than that on either side are dropped and counted."""
    pairs = len(texts.source)
    chunks: list[list[Ragged]] = [[], []]
    with tqdm(
        total=pairs, desc="tokenizing train", unit=" pairs", unit_scale=True, disable=None
    ) as bar:
        for start in range(0, pairs, ENCODE_CHUNK):
            stop = min(start + ENCODE_CHUNK, pairs)
            for side, (tokenizer, side_texts) in enumerate(
                ((source, texts.source), (target, texts.target))
            ):
                encoded = tokenizer.encode([side_texts[i] for i in range(start, stop)])
                chunks[side].append(Ragged.of(encoded))
            bar.update(stop - start)
    source_ids, target_ids = (_joined(side) for side in chunks)
    keep = np.arange(pairs)
    if max_length is not None:
        longest = np.maximum(source_ids.lengths(), target_ids.lengths())
        keep = np.flatnonzero(longest <= max_length)
    filtered = pairs - len(keep)
    if not len(keep):
        origin = texts.parts[0]["file"] if texts.parts else "train"
        raise CorpusError(
            f"{origin}: all {pairs} pairs of the train split are longer than "
            f"data.max_length={max_length} subword tokens; raise data.max_length"
        )
    return TokenStore(
        texts.source.take(keep) if filtered else texts.source,
        texts.target.take(keep) if filtered else texts.target,
        source_ids.take(keep) if filtered else source_ids,
        target_ids.take(keep) if filtered else target_ids,
        texts.corpus[keep],
        texts.line[keep],
        {"read": pairs, "filtered": filtered, "max_length": max_length, "parts": texts.parts},
    )


def _joined(chunks: list[Ragged]) -> Ragged:
    if not chunks:
        return Ragged(np.zeros(0, np.int32), np.zeros(1, np.int64))
    ends = np.cumsum([chunk.offsets[-1] for chunk in chunks])
    starts = np.concatenate([[0], ends[:-1]])
    offsets = np.concatenate(
        [[0], *(chunk.offsets[1:] + start for chunk, start in zip(chunks, starts, strict=True))]
    ).astype(np.int64)
    return Ragged(np.concatenate([chunk.values for chunk in chunks]), offsets)
