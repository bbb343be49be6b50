"""Reading corpora strictly, the Tatoeba split, sentencepiece caching and batching."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq.config.schema import PROJECT_ROOT
from seq2seq.data.batching import BucketBatchSampler, collate
from seq2seq.data.corpus import CorpusError, read_parallel_tsv
from seq2seq.data.tatoeba import ensure_tatoeba, split_pairs_by_group
from seq2seq.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, t2s_characters, train_tokenizer


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_reads_pairs_in_either_direction(tiny_tsv_dir: Path) -> None:
    zh_en, skipped = read_parallel_tsv(tiny_tsv_dir / "train.tsv", ["zh", "en"], "zh", "en")
    en_zh, _ = read_parallel_tsv(tiny_tsv_dir / "train.tsv", ["zh", "en"], "en", "zh")
    assert skipped == 0 and len(zh_en) == 136
    assert (zh_en[0].source, zh_en[0].target) == (en_zh[0].target, en_zh[0].source)
    assert zh_en[0].origin == "train.tsv:1"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b"only one column\n", "expected 2 tab-separated columns, found 1"),
        (b"a\tb\tc\n", "expected 2 tab-separated columns, found 3"),
        (b"\xe6\x88\x91\t \n", "empty sentence"),
        (b"\xff\xfe\tI\n", "not UTF-8"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, line: bytes, problem: str) -> None:
    path = write(tmp_path / "bad.tsv", "我爱你。\tI love you.\n".encode() + line)
    with pytest.raises(CorpusError, match=rf"bad\.tsv:2: .*{problem}"):
        read_parallel_tsv(path, ["zh", "en"], "zh", "en")
    examples, skipped = read_parallel_tsv(path, ["zh", "en"], "zh", "en", on_malformed="skip")
    assert skipped == 1 and [e.target for e in examples] == ["I love you."]


def test_blank_lines_at_the_end_are_dropped_and_elsewhere_malformed(tmp_path: Path) -> None:
    pair = "我爱你。\tI love you.\n".encode()
    trailing = write(tmp_path / "end.tsv", pair + b"\n  \r\n\n")
    examples, skipped = read_parallel_tsv(trailing, ["zh", "en"], "zh", "en")
    assert skipped == 0 and [e.target for e in examples] == ["I love you."]
    inside = write(tmp_path / "inside.tsv", pair + b"\n\n" + pair)
    with pytest.raises(CorpusError, match=r"inside\.tsv:2: blank line \(set data.on_malformed"):
        read_parallel_tsv(inside, ["zh", "en"], "zh", "en")
    examples, skipped = read_parallel_tsv(inside, ["zh", "en"], "zh", "en", on_malformed="skip")
    assert skipped == 2 and len(examples) == 2


def test_bom_crlf_and_unicode_line_separators(tmp_path: Path) -> None:
    """A UTF-8 BOM is not part of the first sentence; CRLF ends a line; U+2028 inside a
    sentence does not (only \\n and \\r\\n end lines)."""
    data = "\ufeff我爱你。\tI love you.\r\n他\u2028来了。\tHe came.\n".encode()
    examples, skipped = read_parallel_tsv(write(tmp_path / "x.tsv", data), ["zh", "en"], "zh", "en")
    assert skipped == 0
    assert [(e.source, e.target) for e in examples] == [
        ("我爱你。", "I love you."),
        ("他\u2028来了。", "He came."),
    ]


def test_missing_file_and_unknown_language(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="file not found"):
        read_parallel_tsv(tmp_path / "nope.tsv", ["zh", "en"], "zh", "en")
    with pytest.raises(ValueError, match="'fr' is not one of the TSV columns"):
        read_parallel_tsv(tmp_path / "nope.tsv", ["zh", "en"], "fr", "en")


def test_tatoeba_split_keeps_shared_sentences_together() -> None:
    pairs = [(f"中{i}", f"en{i}") for i in range(200)]
    pairs += [("中0", "another translation"), ("new source", "en5"), ("中7", "en8")]
    splits = split_pairs_by_group(pairs, {"dev": 20, "test": 30}, seed=3)
    assert sum(len(v) for v in splits.values()) == len(pairs)
    assert splits == split_pairs_by_group(pairs, {"dev": 20, "test": 30}, seed=3)
    train_sentences = {s for pair in splits["train"] for s in pair}
    for name in ("dev", "test"):
        assert len(splits[name]) >= (20 if name == "dev" else 30)
        assert not {s for pair in splits[name] for s in pair} & train_sentences


def cmn_eng_zip(path: Path, pairs: int = 3000) -> Path:
    """An archive laid out like manythings.org's cmn-eng.zip."""
    lines = "".join(
        f"Sentence {i}.\t句子{i}。\tCC-BY 2.0 (France) Attribution\n" for i in range(pairs)
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cmn.txt", lines)
    return write(path, buffer.getvalue())


def test_tatoeba_download_from_archive(tmp_path: Path) -> None:
    zip_path = cmn_eng_zip(tmp_path / "cmn-eng.zip")
    target = tmp_path / "tatoeba"
    target.mkdir()  # empty: downloaded into
    ensure_tatoeba(target, zip_path.as_uri(), hashlib.sha256(zip_path.read_bytes()).hexdigest())
    test_lines = (target / "test.tsv").read_text(encoding="utf-8").splitlines()
    assert len(test_lines) == 1500 and test_lines[0].split("\t")[0].startswith("句子")
    assert len((target / "train.tsv").read_text(encoding="utf-8").splitlines()) == 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmn-eng.zip", "tatoeba"]


def test_tatoeba_download_never_writes_over_a_users_corpus(tmp_path: Path) -> None:
    """train.tsv and test.tsv of one's own, dev.tsv missing: stop, naming what is missing."""
    zip_path = cmn_eng_zip(tmp_path / "cmn-eng.zip")
    corpus = tmp_path / "mine"
    corpus.mkdir()
    write(corpus / "train.tsv", "我的\tmine\n".encode())
    write(corpus / "test.tsv", "你的\tyours\n".encode())
    with pytest.raises(CorpusError, match=r"lacks dev.tsv and is not empty") as error:
        ensure_tatoeba(corpus, zip_path.as_uri())
    assert "\n" not in str(error.value)
    assert sorted(p.name for p in corpus.iterdir()) == ["test.tsv", "train.tsv"]
    assert (corpus / "train.tsv").read_text(encoding="utf-8") == "我的\tmine\n"


@pytest.mark.parametrize(
    ("archive", "sha256", "message"),
    [
        (b"PK not really a zip", "", "not a readable cmn-eng zip archive"),
        (None, "0" * 64, "has sha256 .* not data.sha256=0000"),
    ],
)
def test_tatoeba_a_bad_or_changed_archive_stops_with_one_line_and_writes_nothing(
    tmp_path: Path, archive: bytes | None, sha256: str, message: str
) -> None:
    zip_path = tmp_path / "cmn-eng.zip"
    if archive is None:
        cmn_eng_zip(zip_path)
    else:
        write(zip_path, archive)
    with pytest.raises(CorpusError, match=message) as error:
        ensure_tatoeba(tmp_path / "t", zip_path.as_uri(), sha256)
    assert "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmn-eng.zip"]


def test_tatoeba_offline_message_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="train.tsv, dev.tsv and test.tsv") as error:
        ensure_tatoeba(tmp_path / "t", (tmp_path / "missing.zip").as_uri())
    assert "\n" not in str(error.value)


def test_sentencepiece_model_is_cached(tmp_path: Path, tiny_tsv_dir: Path) -> None:
    texts = [
        e.target for e in read_parallel_tsv(tiny_tsv_dir / "train.tsv", ["zh", "en"], "zh", "en")[0]
    ]
    first = train_tokenizer(texts, "en", 60, "unigram", tmp_path)
    (cached,) = (tmp_path / "spm").iterdir()
    stamp = cached.stat().st_mtime_ns
    second = train_tokenizer(texts, "en", 60, "unigram", tmp_path)
    assert cached.stat().st_mtime_ns == stamp and first.model_proto == second.model_proto
    assert second.decode(second.encode(["I love you."])[0]) == "I love you."
    train_tokenizer(texts[:-1], "en", 60, "unigram", tmp_path)
    assert len(list((tmp_path / "spm").iterdir())) == 2  # another corpus, another model


def test_simplify_source_maps_traditional_characters_inside_the_model(
    tmp_path: Path, tiny_tsv_dir: Path
) -> None:
    """The sentencepiece model itself converts 這/愛/們 to 这/爱/们: traditional and simplified
    text get the same ids, each piece still covers its span of the text as written, and the
    plain model is another cache entry that keeps the traditional characters apart."""
    texts = [
        e.source for e in read_parallel_tsv(tiny_tsv_dir / "train.tsv", ["zh", "en"], "zh", "en")[0]
    ]
    simplified = train_tokenizer(texts, "zh", 40, "unigram", tmp_path, simplify=True)
    plain = train_tokenizer(texts, "zh", 40, "unigram", tmp_path)
    assert len(list((tmp_path / "spm").iterdir())) == 2
    assert simplified.encode(["他們愛我。"]) == simplified.encode(["他们爱我。"])
    assert plain.encode(["他們愛我。"]) != plain.encode(["他们爱我。"])
    ids, spans = simplified.piece_char_spans("他們愛我。")
    assert ids == simplified.encode(["他們愛我。"])[0]
    assert spans[-1][1] == len("他們愛我。")
    assert t2s_characters()["這"] == "这" and "这" not in t2s_characters()


def test_collate_pads_sorts_and_shifts_targets() -> None:
    batch = collate([[5], [6, 7, 8]], [[9, 10], [11]], indices=[40, 41])
    assert batch.indices == [41, 40]
    assert batch.src.tolist() == [[6, 7, 8, EOS_ID], [5, EOS_ID, PAD_ID, PAD_ID]]
    assert batch.src_lengths.tolist() == [4, 2]
    assert batch.tgt_in.tolist() == [[BOS_ID, 11, PAD_ID], [BOS_ID, 9, 10]]
    assert batch.tgt_out.tolist() == [[11, EOS_ID, PAD_ID], [9, 10, EOS_ID]]
    assert batch.target_tokens == 5


def test_sampler_covers_each_example_once_with_little_padding() -> None:
    lengths = [(i * 7919) % 50 + 1 for i in range(1000)]
    sampler = BucketBatchSampler(lengths, "sentences", 32, bucket_batches=10, seed=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    unbucketed = list(BucketBatchSampler(lengths, "sentences", 32, bucket_batches=1, seed=0))

    def padded(batches: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    assert padded(batches) < 1.2 * sum(lengths) < 0.8 * padded(unbucketed)
    assert sampler.epoch == 1 and list(sampler) != batches  # a new epoch, a new order


def test_a_buckets_batches_come_in_random_order_not_shortest_first() -> None:
    """One bucket holds the whole epoch, sorted by length: served in that order, every epoch
    would run from the shortest sentences to the longest."""
    lengths = [(i * 7919) % 50 + 1 for i in range(320)]
    batches = BucketBatchSampler(lengths, "sentences", 32, bucket_batches=10, seed=0)
    longest = [max(lengths[i] for i in batch) for batch in batches]
    assert len(longest) == 10 and longest != sorted(longest)


def test_token_batches_respect_the_budget() -> None:
    lengths = [(i * 31) % 40 + 1 for i in range(500)]
    sampler = BucketBatchSampler(lengths, "tokens", 200, bucket_batches=5, seed=0)
    for batch in sampler:
        assert len(batch) * max(lengths[i] for i in batch) <= 200


def test_sampler_resumes_mid_epoch() -> None:
    lengths = list(range(1, 301))
    reference = BucketBatchSampler(lengths, "sentences", 16, 4, seed=5)
    expected = list(reference) + list(reference)
    sampler = BucketBatchSampler(lengths, "sentences", 16, 4, seed=5)
    seen = []
    for batch in sampler:
        seen.append(batch)
        if len(seen) == 7:
            break
    restored = BucketBatchSampler(lengths, "sentences", 16, 4, seed=5)
    restored.load_state_dict(sampler.state_dict())
    seen += list(restored) + list(restored)
    assert seen == expected


def test_ranks_take_disjoint_shares_of_every_global_batch_and_resume_exactly() -> None:
    """Two ranks: each global batch split in two disjoint halves of nearly equal length, the
    batches with fewer sentences than ranks skipped by both, and a resumed rank continues with
    exactly its shares."""
    lengths = [(i * 37) % 30 + 1 for i in range(97)]  # 97 = 6 × 16 + 1: one batch of 1
    global_batches = BucketBatchSampler(lengths, "sentences", 16, 7, seed=3).batches_for_epoch(0)
    assert min(len(b) for b in global_batches) == 1
    first, second = (
        list(BucketBatchSampler(lengths, "sentences", 16, 7, seed=3, rank=r, world_size=2))
        for r in (0, 1)
    )
    kept = [b for b in global_batches if len(b) >= 2]
    assert len(first) == len(second) == len(kept) == len(global_batches) - 1
    for share0, share1, batch in zip(first, second, kept, strict=True):
        assert sorted(share0 + share1) == sorted(batch) and not set(share0) & set(share1)
        assert abs(len(share0) - len(share1)) <= 1
        assert abs(sum(lengths[i] for i in share0) - sum(lengths[i] for i in share1)) <= 30

    sampler = BucketBatchSampler(lengths, "sentences", 16, 7, seed=3, rank=1, world_size=2)
    seen = [batch for _, batch in zip(range(3), sampler, strict=False)]
    restored = BucketBatchSampler(lengths, "sentences", 16, 7, seed=3, rank=1, world_size=2)
    restored.load_state_dict(sampler.state_dict())
    assert seen + list(restored) == second


def test_collate_without_targets_is_for_translation() -> None:
    batch = collate([[5, 6]], None, [0])
    assert batch.tgt_in.shape == (1, 0) and torch.equal(batch.src, torch.tensor([[5, 6, EOS_ID]]))


def test_over_long_pairs_are_dropped_from_train_and_cut_elsewhere(
    tmp_path: Path, tiny_tsv_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from helpers import tsv_config

    from seq2seq.data.dataset import load_training_data, tokenize_split

    examples, _ = read_parallel_tsv(tiny_tsv_dir / "train.tsv", ["zh", "en"], "zh", "en")
    limit = 10  # dropping: cuts some pairs (long English), keeps most
    overrides = (f"data.max_length={limit}",)
    cfg = tsv_config(tiny_tsv_dir, tmp_path, tiny_tsv_dir / "train.tsv", *overrides).data
    data = load_training_data(cfg)
    source, target = data.source_tokenizer, data.target_tokenizer
    full = tokenize_split("train", examples, source, target)
    over = sum(
        max(len(s), len(t)) > limit for s, t in zip(full.source_ids, full.target_ids, strict=True)
    )
    assert 0 < over < len(examples)

    dropped = data.splits["train"]
    assert len(dropped) == len(examples) - over
    assert all(len(ids) <= limit for ids in [*dropped.source_ids, *dropped.target_ids])

    limit = 4  # cutting: reaches some of the (short) Chinese sources too
    with caplog.at_level("WARNING"):
        cut = tokenize_split("dev", examples, source, target, limit)
    assert cut.examples == examples  # every sentence is still translated and scored
    assert cut.source_ids == [ids[:limit] for ids in full.source_ids]
    long_sources = sum(len(ids) > limit for ids in full.source_ids)
    assert long_sources > 0
    assert f"dev sources: truncated {long_sources} of {len(examples)}" in caplog.text


def test_subword_sampling_redraws_each_epoch_from_the_seed_and_keeps_the_text(
    tmp_path: Path, tiny_tsv_dir: Path
) -> None:
    """Subword regularisation: a draw is a function of (seed, epoch, sentence), not of the batch
    the sentence is in; it differs between epochs and seeds, only re-segments each sentence (it
    decodes to the same text), and never draws a segmentation longer than data.max_length."""
    from seq2seq.data.dataset import tokenize_split
    from seq2seq.data.subword_sampling import SubwordSampler

    examples, _ = read_parallel_tsv(tiny_tsv_dir / "train.tsv", ["zh", "en"], "zh", "en")
    source = train_tokenizer([e.source for e in examples], "zh", 40, "unigram", tmp_path)
    target = train_tokenizer([e.target for e in examples], "en", 40, "unigram", tmp_path)
    usual = tokenize_split("train", examples, source, target)

    everything = list(range(len(usual)))

    def draw(seed: int, epoch: int, max_length: int = 100) -> tuple[list, list]:
        return SubwordSampler(usual, source, target, 0.5, seed, max_length).pairs(everything, epoch)

    first = draw(seed=1, epoch=0)
    assert draw(seed=1, epoch=0) == first
    some = [7, 3, 90, 41]  # in another batch, another order: each sentence drawn the same
    drawn = SubwordSampler(usual, source, target, 0.5, 1, 100).pairs(some, 0)
    assert drawn == ([first[0][i] for i in some], [first[1][i] for i in some])
    # ... in another process too (sentencepiece's own sampler draws differently in each one)
    script = (
        "import json, sys\nfrom pathlib import Path\n"
        "from seq2seq.data.corpus import read_parallel_tsv\n"
        "from seq2seq.data.dataset import tokenize_split\n"
        "from seq2seq.data.subword_sampling import SubwordSampler\n"
        "from seq2seq.data.tokenizer import train_tokenizer\n"
        "examples, _ = read_parallel_tsv(Path(sys.argv[1]), ['zh', 'en'], 'zh', 'en')\n"
        "source = train_tokenizer([e.source for e in examples], 'zh', 40, 'unigram', sys.argv[2])\n"
        "target = train_tokenizer([e.target for e in examples], 'en', 40, 'unigram', sys.argv[2])\n"
        "usual = tokenize_split('train', examples, source, target)\n"
        "sampler = SubwordSampler(usual, source, target, 0.5, 1, 100)\n"
        "print(json.dumps(sampler.pairs(range(len(usual)), 0)))\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, str(tiny_tsv_dir / "train.tsv"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert json.loads(other.stdout) == list(first)
    assert draw(seed=1, epoch=1) != first and draw(seed=2, epoch=0) != first
    fixed = (usual.source_ids, usual.target_ids)
    for drawn, ids, tokenizer in zip(first, fixed, (source, target), strict=True):
        assert drawn != ids
        assert [tokenizer.decode(x) for x in drawn] == [tokenizer.decode(x) for x in ids]

    limit = max(len(ids) for ids in usual.target_ids)
    epochs = range(40)  # some draws are longer than any usual one, but never than max_length
    assert max(len(ids) for epoch in epochs for ids in draw(1, epoch)[1]) > limit
    assert max(len(ids) for epoch in epochs for ids in draw(1, epoch, limit)[1]) == limit


def test_subword_sampling_draws_in_proportion_to_the_probability_to_the_power_alpha() -> None:
    """Two segmentations of probability 0.75 and 0.25: drawn 75% / 25% of the time with α = 1,
    √0.75 : √0.25 (63% / 37%) with α = 0.5; the other sentence has one and always gets it."""
    from seq2seq.data.subword_sampling import draw_segmentations, uniform_hash

    piece_log_probs = np.log([1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.25, 1.0, 1.0])
    candidates = [[[5], [6, 7]], [[8]]]  # P = 0.75 and 0.25 · 1; P = 1
    draws = 4000
    for alpha, expected in ((1.0, 0.75), (0.5, 0.75**0.5 / (0.75**0.5 + 0.25**0.5))):
        drawn = [
            draw_segmentations(
                candidates,
                piece_log_probs,
                alpha,
                uniform_hash((0, epoch, 0), np.array([0, 0, 1]), np.array([0, 1, 0])),
            )
            for epoch in range(draws)
        ]
        assert all(second == [8] for _, second in drawn)
        share = sum(first == [5] for first, _ in drawn) / draws
        assert share == pytest.approx(expected, abs=0.025)
        assert {tuple(first) for first, _ in drawn} == {(5,), (6, 7)}


def test_the_sampling_hash_is_uniform_and_a_function_of_every_key() -> None:
    """The noise subword sampling draws with: uniform on (0, 1), and changed by the seed, the
    epoch, the side, the sentence and the candidate alike."""
    from seq2seq.data.subword_sampling import uniform_hash

    sentences, candidates = np.repeat(np.arange(2000), 5), np.tile(np.arange(5), 2000)
    u = uniform_hash((1, 0, 0), sentences, candidates)
    assert u.min() > 0 and u.max() < 1 and len(np.unique(u)) == len(u)
    assert np.histogram(u, bins=10, range=(0, 1))[0] == pytest.approx([1000] * 10, rel=0.15)
    assert np.array_equal(u, uniform_hash((1, 0, 0), sentences, candidates))
    for keys, rows, ranks in (
        ((2, 0, 0), sentences, candidates),
        ((1, 1, 0), sentences, candidates),
        ((1, 0, 1), sentences, candidates),
        ((1, 0, 0), sentences + 1, candidates),
        ((1, 0, 0), sentences, candidates + 1),
    ):
        other = uniform_hash(keys, rows, ranks)
        assert np.mean(other == u) < 0.01 and abs(np.corrcoef(other, u)[0, 1]) < 0.1


def test_subword_sampling_needs_a_unigram_model() -> None:
    from hydra import compose, initialize_config_dir

    from seq2seq.config.schema import register_configs
    from seq2seq.config.validation import check_settings

    register_configs()
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            "config", overrides=["data.subword_sampling_alpha=0.1", "data.spm_model_type=bpe"]
        )
    with pytest.raises(ValueError, match="needs data.spm_model_type=unigram .*, not bpe"):
        check_settings(cfg)


def test_the_sampler_shows_the_batch_it_yields_next_without_moving_on() -> None:
    """What subword sampling prefetches: ``upcoming()`` is the next yielded share (rank 1 of
    2 here), None at an epoch's end, and asking leaves the position where it was."""
    sampler = BucketBatchSampler([3, 5, 2, 7, 4, 6, 1, 8] * 4, "sentences", 4, 2, 0, 1, 2)
    stream = iter(sampler)
    seen = []
    for indices in stream:
        state = sampler.state_dict()
        upcoming = sampler.upcoming()
        assert sampler.state_dict() == state
        seen.append((indices, upcoming))
    assert [up for _, up in seen[:-1]] == [indices for indices, _ in seen[1:]]
    assert seen[-1][1] is None and len(seen) == 8


def test_a_prefetched_subword_batch_is_the_batch_drawn_then(
    tmp_path: Path, tiny_tsv_dir: Path
) -> None:
    from seq2seq.data.dataset import tokenize_split
    from seq2seq.data.subword_sampling import SubwordSampler

    examples, _ = read_parallel_tsv(tiny_tsv_dir / "train.tsv", ["zh", "en"], "zh", "en")
    source = train_tokenizer([e.source for e in examples], "zh", 40, "unigram", tmp_path)
    target = train_tokenizer([e.target for e in examples], "en", 40, "unigram", tmp_path)
    usual = tokenize_split("train", examples, source, target)
    sampler = SubwordSampler(usual, source, target, 0.5, 3, 100)
    direct = sampler.batch([5, 9, 2], 4)
    sampler.prefetch([5, 9, 2], 4)
    assert sampler.pending is not None
    prefetched = sampler.batch([5, 9, 2], 4)
    assert sampler.pending is None
    assert torch.equal(prefetched.src, direct.src) and torch.equal(
        prefetched.tgt_out, direct.tgt_out
    )
    sampler.prefetch([1, 2], 4)  # another batch asked for: drawn afresh, the prefetch dropped
    again = sampler.batch([5, 9, 2], 4)
    assert sorted(again.indices) == [2, 5, 9] and torch.equal(again.src, direct.src)
