"""The formats corpora come in (TSV, one line-aligned file per language, either gzipped, a Hugging
Face dataset), several corpora mixed by weight, and sentencepiece on a fixed sample."""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import tsv_config
from omegaconf import OmegaConf

from seq2seq.config.schema import PROJECT_ROOT
from seq2seq.data.batching import BucketBatchSampler, corpus_quotas
from seq2seq.data.corpus import CorpusError, read_parallel, read_parallel_tsv
from seq2seq.data.dataset import load_training_data
from seq2seq.data.tokenizer import train_tokenizer, training_sample
from seq2seq.training.trainer import training_sampler

COLUMNS = ["zh", "en"]
TATOEBA = PROJECT_ROOT.parent / "shared" / "data" / "tatoeba-cmn-eng"


def split_into_files(tsv: Path, directory: Path, gzipped: bool) -> list[Path]:
    """The TSV's two columns as two line-aligned files, gzipped or not."""
    lines = tsv.read_text(encoding="utf-8").splitlines()
    paths = []
    for column, lang in enumerate(COLUMNS):
        text = "".join(line.split("\t")[column] + "\n" for line in lines).encode()
        path = directory / f"corpus.{lang}{'.gz' if gzipped else ''}"
        path.write_bytes(gzip.compress(text) if gzipped else text)
        paths.append(path)
    return paths


@pytest.mark.parametrize("gzipped", [False, True])
def test_two_aligned_files_read_as_the_tsv_of_the_same_pairs(
    tiny_tsv_dir: Path, tmp_path: Path, gzipped: bool
) -> None:
    tsv, _ = read_parallel_tsv(tiny_tsv_dir / "train.tsv", COLUMNS, "zh", "en")
    paths = split_into_files(tiny_tsv_dir / "train.tsv", tmp_path, gzipped)
    for source, target in (("zh", "en"), ("en", "zh")):
        examples, skipped = read_parallel(paths, COLUMNS, source, target)
        assert skipped == 0 and len(examples) == len(tsv)
        pairs = [(e.source, e.target) for e in examples]
        expected = [(e.source, e.target) for e in tsv]
        assert pairs == (expected if source == "zh" else [(t, s) for s, t in expected])
        assert examples[3].origin == f"{paths[COLUMNS.index(source)].name}:4"


def test_gzipped_tsv_reads_as_the_plain_one(tiny_tsv_dir: Path, tmp_path: Path) -> None:
    plain = tiny_tsv_dir / "train.tsv"
    packed = tmp_path / "train.tsv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_parallel(packed, COLUMNS, "zh", "en")[0] == [
        e.__class__(e.source, e.target, e.origin.replace("train.tsv", "train.tsv.gz"))
        for e in read_parallel(plain, COLUMNS, "zh", "en")[0]
    ]


def test_a_tab_inside_a_plain_text_line_is_part_of_the_sentence(tmp_path: Path) -> None:
    zh, en = tmp_path / "a.zh", tmp_path / "a.en"
    zh.write_text("我\t爱你。\n")
    en.write_text("I love\tyou.\n")
    [example], _ = read_parallel([zh, en], COLUMNS, "zh", "en")
    assert (example.source, example.target) == ("我\t爱你。", "I love\tyou.")


def test_a_bad_line_in_a_gzipped_file_names_the_file_and_line(tmp_path: Path) -> None:
    tsv = tmp_path / "bad.tsv.gz"
    tsv.write_bytes(gzip.compress("我爱你。\tI love you.\n他来了。\n".encode()))
    with pytest.raises(CorpusError, match=r"bad\.tsv\.gz:2: expected 2 tab-separated columns"):
        read_parallel(tsv, COLUMNS, "zh", "en")
    zh, en = tmp_path / "c.zh.gz", tmp_path / "c.en.gz"
    zh.write_bytes(gzip.compress("我爱你。\n他来了。\n她走了。\n".encode()))
    en.write_bytes(gzip.compress(b"I love you.\n \nShe left.\n"))
    with pytest.raises(CorpusError, match=r"c\.en\.gz:2: empty sentence"):
        read_parallel([zh, en], COLUMNS, "zh", "en")
    examples, skipped = read_parallel([zh, en], COLUMNS, "zh", "en", on_malformed="skip")
    assert skipped == 1 and [e.target for e in examples] == ["I love you.", "She left."]
    assert examples[1].origin == "c.zh.gz:3"


def test_files_of_unequal_length_are_an_error_even_when_skipping(tmp_path: Path) -> None:
    zh, en = tmp_path / "d.zh", tmp_path / "d.en"
    zh.write_text("我爱你。\n他来了。\n")
    en.write_text("I love you.\n")
    for policy in ("error", "skip"):
        with pytest.raises(CorpusError, match=r"d\.en: ends at line 1, but .*d\.zh has line 2"):
            read_parallel([zh, en], COLUMNS, "zh", "en", on_malformed=policy)


def test_a_file_that_is_not_gzip_and_a_wrong_number_of_files(tmp_path: Path) -> None:
    fake = tmp_path / "e.tsv.gz"
    fake.write_text("我爱你。\tI love you.\n")
    with pytest.raises(CorpusError, match=r"e\.tsv\.gz:1: not a readable gzip file"):
        read_parallel(fake, COLUMNS, "zh", "en")
    with pytest.raises(ValueError, match="3 files .* for the 2 languages of data.columns"):
        read_parallel([fake, fake, fake], COLUMNS, "zh", "en")


def test_data_tsv_takes_a_list_of_files_from_the_command_line(
    tiny_tsv_dir: Path, tmp_path: Path
) -> None:
    """``data.train=[corpus.zh.gz,corpus.en.gz]`` as a user types it, through Hydra."""
    paths = split_into_files(tiny_tsv_dir / "train.tsv", tmp_path, gzipped=True)
    cfg = tsv_config(tiny_tsv_dir, tmp_path / "cache", f"[{paths[0]},{paths[1]}]")
    train = load_training_data(cfg.data).splits["train"]
    expected, _ = read_parallel_tsv(tiny_tsv_dir / "train.tsv", COLUMNS, "zh", "en")
    assert [e.target for e in train.examples] == [e.target for e in expected]
    assert train.examples[2].origin == "corpus.zh.gz:3"


def test_sentencepiece_trains_on_a_fixed_sample_of_a_large_corpus(tmp_path: Path) -> None:
    texts = [f"sentence number {i} of many" for i in range(50)]
    sample = training_sample(texts, 20)
    assert len(sample) == 20 and len(set(sample)) == 20
    assert sample == training_sample(texts, 20)  # the same draw every run
    assert sample == sorted(sample, key=texts.index)  # in corpus order
    assert training_sample(texts, None) is texts and training_sample(texts, 50) is texts
    with pytest.raises(ValueError, match="data.spm_sample must be a positive number"):
        training_sample(texts, 0)
    # The model trained on the sample is the one trained on those sentences alone.
    sampled = train_tokenizer(texts, "en", 30, "unigram", tmp_path / "a", sample=20)
    alone = train_tokenizer(sample, "en", 30, "unigram", tmp_path / "b")
    assert sampled.model_proto == alone.model_proto
    everything = train_tokenizer(texts, "en", 30, "unigram", tmp_path / "c")
    assert everything.model_proto != sampled.model_proto


def test_a_saved_hugging_face_dataset_reads_as_the_tsv(tiny_tsv_dir: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets", reason="the hf extra (pip install 'seq2seq[hf]')")
    tsv, _ = read_parallel_tsv(tiny_tsv_dir / "train.tsv", COLUMNS, "zh", "en")
    pairs = [(e.source, e.target) for e in tsv]
    table = datasets.Dataset.from_dict({"zh": [s for s, _ in pairs], "en": [t for _, t in pairs]})
    table.save_to_disk(str(tmp_path / "saved"))
    examples, skipped = read_parallel(tmp_path / "saved", COLUMNS, "zh", "en")
    assert skipped == 0 and [(e.source, e.target) for e in examples] == pairs
    # The Hub's translation layout, as Parquet: one column of {"zh": ..., "en": ...} dicts.
    nested = datasets.Dataset.from_dict({"translation": [{"zh": s, "en": t} for s, t in pairs]})
    nested.to_parquet(str(tmp_path / "nested.parquet"))
    examples, _ = read_parallel(tmp_path / "nested.parquet", COLUMNS, "en", "zh")
    assert [(e.target, e.source) for e in examples] == pairs
    assert examples[1].origin == "nested.parquet:2"


def test_a_bad_row_of_a_hugging_face_dataset_is_named(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets", reason="the hf extra (pip install 'seq2seq[hf]')")
    table = datasets.Dataset.from_dict(
        {"zh": ["我爱你。", "他来了。", None], "en": ["I love you.", " ", "She left."]}
    )
    table.to_parquet(str(tmp_path / "bad.parquet"))
    with pytest.raises(CorpusError, match=r"bad\.parquet:2: empty or missing sentence"):
        read_parallel(tmp_path / "bad.parquet", COLUMNS, "zh", "en")
    examples, skipped = read_parallel(tmp_path / "bad.parquet", COLUMNS, "zh", "en", "skip")
    assert skipped == 2 and [e.target for e in examples] == ["I love you."]
    datasets.Dataset.from_dict({"fr": ["x"], "en": ["y"]}).to_parquet(str(tmp_path / "f.parquet"))
    with pytest.raises(CorpusError, match=r"no column 'zh' .* among \['fr', 'en'\]"):
        read_parallel(tmp_path / "f.parquet", COLUMNS, "zh", "en")
    splits = datasets.DatasetDict({"train": table, "test": table})
    splits.save_to_disk(str(tmp_path / "splits"))
    with pytest.raises(CorpusError, match=r"holds the splits \['test', 'train'\]; name one"):
        read_parallel(tmp_path / "splits", COLUMNS, "zh", "en")


def test_quotas_split_an_epoch_by_weight() -> None:
    assert corpus_quotas(100, [1, 3]) == [25, 75]
    assert corpus_quotas(10, [1, 1, 1]) in ([4, 3, 3], [3, 4, 3], [3, 3, 4])
    assert sum(corpus_quotas(997, [0.2, 5, 1.3])) == 997


def weighted_sampler(
    weights: list[float], epoch_state: dict | None = None, rank: int = 0, world_size: int = 1
) -> BucketBatchSampler:
    """A small corpus (20 pairs) and a large one (80), by weight."""
    groups = [0] * 20 + [1] * 80
    lengths = [3 + i % 7 for i in range(100)]
    sampler = BucketBatchSampler(lengths, "sentences", 10, 2, 7, rank, world_size, groups, weights)
    if epoch_state:
        sampler.load_state_dict(epoch_state)
    return sampler


def test_weights_change_the_mix_as_asked_and_stay_seeded() -> None:
    """1:1 draws the small corpus 50 times an epoch (each pair 2.5 times on average, every
    pair at least twice) and the large one 50 (a subsample); 1:4 draws them as they are."""
    drawn = [i for batch in weighted_sampler([1, 1]).batches_for_epoch(0) for i in batch]
    assert len(drawn) == 100
    small = [i for i in drawn if i < 20]
    assert len(small) == 50 and min(small.count(i) for i in range(20)) >= 2
    assert len(set(i for i in drawn if i >= 20)) == 50  # no large-corpus pair twice
    as_is = [i for batch in weighted_sampler([1, 4]).batches_for_epoch(0) for i in batch]
    assert sorted(as_is) == list(range(100))
    assert weighted_sampler([1, 1]).batches_for_epoch(3) == weighted_sampler(
        [1, 1]
    ).batches_for_epoch(3)
    assert weighted_sampler([1, 1]).batches_for_epoch(3) != weighted_sampler(
        [1, 1]
    ).batches_for_epoch(4)


def test_a_weighted_sampler_resumes_exactly_and_splits_over_ranks() -> None:
    whole = weighted_sampler([2, 1])
    stream = iter(whole)
    first = [next(stream) for _ in range(4)]
    state = whole.state_dict()
    rest_of_epoch = list(stream)
    resumed = list(weighted_sampler([2, 1], state))
    epoch = [batch.tolist() for batch in whole.batches_for_epoch(0)]
    assert resumed == rest_of_epoch and first + rest_of_epoch == epoch
    shares = [list(weighted_sampler([2, 1], rank=r, world_size=2)) for r in (0, 1)]
    for global_batch, left, right in zip(whole.batches_for_epoch(0), *shares, strict=True):
        assert sorted(left + right) == sorted(global_batch)  # each rank its share, none twice


def test_data_train_as_weighted_corpora(
    tiny_tsv_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``data.train=[{path: ..., weight: ...}, ...]`` from the command line: each part read in
    its own format, its examples tagged, and the log names each corpus with its share."""
    files = split_into_files(tiny_tsv_dir / "train.tsv", tmp_path, gzipped=True)
    small = f"{{path:{tiny_tsv_dir / 'dev.tsv'},weight:3,name:small}}"
    weighted = f"[{small},{{path:[{files[0]},{files[1]}]}}]"
    cfg = tsv_config(tiny_tsv_dir, tmp_path / "cache", weighted)
    train = load_training_data(cfg.data).splits["train"]
    dev, _ = read_parallel_tsv(tiny_tsv_dir / "dev.tsv", COLUMNS, "zh", "en")
    names = [part.name for part in train.parts]
    assert names == ["small", f"{files[0]}+{files[1]}"]
    assert [part.weight for part in train.parts] == [3.0, 1.0]
    assert list(train.corpus_of()) == [0] * len(dev) + [1] * 136
    assert [e.corpus for e in train.examples] == list(train.corpus_of())
    with caplog.at_level(logging.INFO, logger="seq2seq.training.trainer"):
        sampler = training_sampler(cfg.trainer, train)
    total = len(train)
    assert sampler.quotas == corpus_quotas(total, [3.0, 1.0])
    assert f"train corpus small: {len(dev)} pairs" in caplog.text and "weight 3" in caplog.text
    for bad, problem in (
        ("weight:0", "weight must be a positive number"),
        ("weight:1,size:2", r"unknown key\(s\) \['size'\]"),
    ):
        cfg.data.train = [
            OmegaConf.create(f"{{path: {tiny_tsv_dir / 'dev.tsv'}, {bad.replace(':', ': ')}}}")
        ]
        with pytest.raises(ValueError, match=problem):
            load_training_data(cfg.data)


@pytest.mark.skipif(not TATOEBA.is_dir(), reason="needs ../shared/data/tatoeba-cmn-eng")
def test_the_corpus_benchmark_writes_a_corpus_and_times_the_start(tmp_path: Path) -> None:
    """scripts/benchmark_corpus.py on a small corpus: the files, then one JSON line whose
    stages add up, the pairs counted, the second start served from the token store."""
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "benchmark_corpus.py")]
    command += ["--pairs", "300", "--out", str(tmp_path)]
    command += ["data.src_vocab_size=1500", "data.tgt_vocab_size=400"]
    reports = []
    for _ in range(2):
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        reports.append(json.loads(result.stdout.strip().splitlines()[-1]))
    first, second = reports
    assert (tmp_path / "train.zh.gz").is_file() and first["pairs"] == second["pairs"] == 300
    assert (first["store"], second["store"]) == ("built", "opened")
    stages = [first[f"{name}_s"] for name in ("read", "sentencepiece", "tokenize")]
    assert sum(stages) <= first["prepare_s"] + 0.2
    assert first["startup_s"] == pytest.approx(first["prepare_s"] + first["first_batch_s"], abs=0.2)
    assert "sentencepiece_s" not in second and second["first_batch_pairs"] > 0
