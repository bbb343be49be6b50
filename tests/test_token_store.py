"""The training split's token store: flat arrays written once, memory-mapped, found again by the
corpus bytes and the data settings, never half-written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import tsv_config
from omegaconf import DictConfig

from seq2seq.data import dataset, token_store
from seq2seq.data.corpus import read_parallel_tsv
from seq2seq.data.dataset import load_training_data
from seq2seq.data.token_store import FileArray, Ragged, TextsBuilder, TokenStore


def data_config(tiny_tsv_dir: Path, cache: Path, *overrides: str) -> DictConfig:
    return tsv_config(tiny_tsv_dir, cache, tiny_tsv_dir / "train.tsv", *overrides).data


def stores(cache: Path) -> list[Path]:
    return sorted((cache / "tokens").iterdir())


def test_ragged_arrays_index_take_and_measure_like_lists(tmp_path: Path) -> None:
    sequences = [[4, 5, 6], [7], [], [8, 9]]
    ragged = Ragged.of(sequences)
    assert list(ragged) == sequences and len(ragged) == 4
    assert ragged.lengths().tolist() == [3, 1, 0, 2]
    assert list(ragged.take(np.array([3, 0, 3]))) == [[8, 9], [4, 5, 6], [8, 9]]
    with pytest.raises(IndexError):
        ragged[4]
    builder = TextsBuilder(tmp_path / "texts.spool")
    for text in ("我爱你。", "I love you.", "这是一个例子"):
        builder.append(text)
    texts = builder.build()
    assert isinstance(texts.values, FileArray)  # spooled to the file, not held
    assert list(texts.rows(0, 3).take(np.array([2, 0]))) == ["这是一个例子", "我爱你。"]
    assert list(texts.rows(1, 3)) == ["I love you.", "这是一个例子"]
    assert list(ragged.rows(1, 4)) == [[7], [], [8, 9]]


def test_a_file_array_reads_the_slices_numpy_would(tmp_path: Path) -> None:
    values = np.arange(1000, dtype=np.int32) * 7
    values.tofile(tmp_path / "values.bin")
    array = FileArray(tmp_path / "values.bin", np.int32)
    assert len(array) == 1000
    for start, stop in ((0, 3), (997, 1000), (500, 500), (10, 2000), (-3, None)):
        np.testing.assert_array_equal(array[start:stop], values[start:stop])
    (tmp_path / "empty.bin").write_bytes(b"")
    assert FileArray(tmp_path / "empty.bin", np.int32)[0:0].size == 0
    with pytest.raises(ValueError, match="contiguous"):
        array[::2]


def test_a_store_file_cut_short_after_opening_names_the_file(tmp_path: Path) -> None:
    np.arange(100, dtype=np.int32).tofile(tmp_path / "values.bin")
    array = FileArray(tmp_path / "values.bin", np.int32)
    os.truncate(tmp_path / "values.bin", 40)
    with pytest.raises(OSError, match="values.bin: read 0 of 8 bytes at value 50"):
        array[50:52]


def test_the_store_is_built_once_and_read_row_by_row_after(
    tiny_tsv_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second run on the same corpus reads no corpus line and trains no sentencepiece model:
    the same ids, texts, origins and models come from the store's files, read row by row."""
    cfg = data_config(tiny_tsv_dir, tmp_path / "cache")
    first = load_training_data(cfg)
    (directory,) = stores(tmp_path / "cache")

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the corpus was read again")

    monkeypatch.setattr(dataset, "pair_reader", no_reading)
    monkeypatch.setattr(dataset, "build_tokenizers", no_reading)
    second = load_training_data(cfg)
    train, again = first.splits["train"], second.splits["train"]
    assert isinstance(again.source_ids.values, FileArray)
    assert list(again.source_ids) == list(train.source_ids)
    assert list(again.target_ids) == list(train.target_ids)
    assert list(again.examples) == list(train.examples)
    expected, _ = read_parallel_tsv(tiny_tsv_dir / "train.tsv", ["zh", "en"], "zh", "en")
    assert list(again.examples) == expected  # the texts and train.tsv:<line> origins
    assert second.source_tokenizer.model_proto == first.source_tokenizer.model_proto
    assert (directory / "source.model").read_bytes() == first.source_tokenizer.model_proto
    assert stores(tmp_path / "cache") == [directory]
    assert not list(directory.glob("*.spool"))  # the texts as read were a spool, removed


def test_the_store_follows_the_corpus_bytes_and_the_settings(
    tiny_tsv_dir: Path, tmp_path: Path
) -> None:
    """The same bytes elsewhere find the store; a changed corpus or length limit makes a new
    one (the old one stays for the runs that use it)."""
    cache = tmp_path / "cache"
    load_training_data(data_config(tiny_tsv_dir, cache))
    copy = tmp_path / "copy"
    shutil.copytree(tiny_tsv_dir, copy)
    assert len(load_training_data(data_config(copy, cache)).splits["train"]) == 136
    assert len(stores(cache)) == 1
    with (copy / "train.tsv").open("a", encoding="utf-8") as handle:
        handle.write("他们好。\tThey are well.\n")
    assert len(load_training_data(data_config(copy, cache)).splits["train"]) == 137
    short = load_training_data(data_config(tiny_tsv_dir, cache, "data.max_length=8"))
    assert len(short.splits["train"]) < 136
    assert max(short.splits["train"].pair_lengths()) <= 9
    assert len(stores(cache)) == 3


def test_a_store_is_whole_or_absent(
    tiny_tsv_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails midway leaves no store (and no partial folder); one a killed process
    left behind is removed by the next write; a folder without its manifest never opens."""
    cache = tmp_path / "cache"
    cfg = data_config(tiny_tsv_dir, cache)
    write = token_store._write
    calls = []

    def failing(path: Path, data: object) -> None:
        calls.append(path.name)
        if len(calls) == 5:
            raise OSError("disk full")
        write(path, data)

    monkeypatch.setattr(token_store, "_write", failing)
    with pytest.raises(OSError, match="disk full"):
        load_training_data(cfg)
    assert list((cache / "tokens").iterdir()) == []
    monkeypatch.setattr(token_store, "_write", write)

    dead = 2**22 + 12345  # no such process
    while True:
        try:
            os.kill(dead, 0)
            dead += 1
        except ProcessLookupError:
            break
    load_training_data(cfg)
    (directory,) = stores(cache)
    orphan = directory.with_name(f".{directory.name}.{dead}.{'0' * 32}.tmp")
    orphan.mkdir()
    (orphan / "source_ids.npy").write_bytes(b"half")
    shutil.rmtree(directory)
    load_training_data(cfg)
    assert not orphan.exists() and stores(cache) == [directory]
    (directory / "manifest.json").unlink()
    assert TokenStore.open(directory) is None


def test_a_resumed_run_opens_the_store_of_its_models_and_only_theirs(
    tiny_tsv_dir: Path, tmp_path: Path
) -> None:
    """The checkpoint's sentencepiece models are the store's: it opens at once. Other models
    (another sentencepiece version trained them) get their own store, never the other ids."""
    cache = tmp_path / "cache"
    cfg = data_config(tiny_tsv_dir, cache)
    first = load_training_data(cfg)
    models = (first.source_tokenizer, first.target_tokenizer)
    resumed = load_training_data(cfg, models)
    assert len(stores(cache)) == 1
    assert list(resumed.splits["train"].source_ids) == list(first.splits["train"].source_ids)
    other = load_training_data(
        data_config(tiny_tsv_dir, tmp_path / "other", "data.src_vocab_size=60")
    )
    mixed = load_training_data(cfg, (other.source_tokenizer, first.target_tokenizer))
    assert len(stores(cache)) == 2
    assert list(mixed.splits["train"].source_ids) == other.source_tokenizer.encode(
        [e.source for e in first.splits["train"].examples]
    )
