"""The long-range split of the synthetic corpus and its accuracy by distance."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers import train_synthetic
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.checkpoint import load_checkpoint
from seq2seq.data.synthetic import generate_splits, load_lexicon
from seq2seq.data.synthetic.lexicon import CONNECTORS
from seq2seq.data.synthetic.links import LongRangePair
from seq2seq.data.tokenizer import EOS_ID, SubwordTokenizer
from seq2seq.metrics.long_range import long_range_accuracy, probe_word

SIZES = dict(train=300, dev=20, test=20, long_test=10, seed=3, word_order_train=10, word_order=5)


@pytest.fixture(scope="module")
def splits() -> dict:
    return generate_splits(**SIZES, long_range_train=150, long_range=150)


def source_words(pair: LongRangePair) -> list[str]:
    return [pair.source[start:end] for start, end in pair.source_words]


def test_labels_follow_the_rule_they_were_generated_by(splits: dict) -> None:
    """The first word is a subject pronoun; after its clause, a comma and a connector, Chinese
    leaves the subject out and English writes that pronoun's subject form, the label."""
    pronouns = load_lexicon().pronouns
    connectors = {zh: en for zh, en, _ in CONNECTORS.values()}
    pairs = splits["long_range"]
    assert len(pairs) == 150 and all(isinstance(p, LongRangePair) for p in pairs)
    for pair in pairs:
        words = source_words(pair)
        subject = pronouns[words[pair.antecedent]]
        assert pair.antecedent == 0
        assert pair.label == subject.subject.lower()
        assert pair.target_words[pair.probe].lower() == pair.label
        assert words[pair.distance - 2] == "，" and words[pair.distance - 1] in connectors
        assert pair.target_words[pair.probe - 1].rstrip(",") == connectors[words[pair.distance - 1]]
        assert words[pair.distance] not in pronouns  # the subject is left out
    assert {p.label for p in pairs} == {"i", "you", "he", "she", "we", "they"}
    assert len({p.distance for p in pairs}) >= 5  # a spread of distances to bucket


def test_long_range_pairs_are_held_out_and_leave_the_other_splits_as_they_were(
    splits: dict,
) -> None:
    without = generate_splits(**SIZES)
    for name in ("dev", "test", "long", "word_order"):
        assert splits[name] == without[name]
    assert splits["train"][: len(without["train"])] == without["train"]
    trained = {p.source for p in splits["train"]}
    assert len(splits["train"]) == len(without["train"]) + 150
    assert not trained & {p.source for p in splits["long_range"]}
    # Every long-test sentence stays longer than every training sentence, these included.
    assert min(len(p.source) for p in splits["long"]) > max(len(p.source) for p in splits["train"])


def test_probe_word_is_the_word_after_the_clause_connector() -> None:
    assert probe_word("He bought tea and milk, so he is tired.", "so") == "he"
    assert probe_word("They left because she was tired.", "because") == "she"
    assert probe_word("I am tired, and I went home.", "and") == "i"
    assert probe_word("He bought tea and milk.", "and") is None  # no comma: not a clause
    assert probe_word("He is tired.", "so") is None


def test_long_range_accuracy_counts_the_pronoun_per_distance_bucket(splits: dict) -> None:
    pairs = splits["long_range"]
    perfect = long_range_accuracy([p.target for p in pairs], pairs)
    assert perfect["long_range_acc"] == 1.0
    buckets = {k: v for k, v in perfect.items() if "/" in k}
    assert len(buckets) >= 3 and set(buckets.values()) == {1.0}
    # The pronoun after the connector swapped for another: wrong, only where it was swapped.
    swapped = [
        " ".join(("it" if i == p.probe else w) for i, w in enumerate(p.target_words))
        if p.distance > 8
        else p.target
        for p in pairs
    ]
    scores = long_range_accuracy(swapped, pairs)
    far = sum(p.distance > 8 for p in pairs) / len(pairs)
    assert scores["long_range_acc"] == pytest.approx(1 - far)
    assert scores["long_range_acc/01-06"] == scores["long_range_acc/07-08"] == 1.0
    assert scores["long_range_acc/09-10"] == scores["long_range_acc/11+"] == 0.0


@pytest.mark.slow
def test_a_tfidf_run_logs_long_range_accuracy_and_saves_the_training_idf(tmp_path: Path) -> None:
    """model/attention=tfidf on the synthetic corpus with a long-range split: valid/ and test
    long_range_acc by distance, and best.pt's IDF is the one of the training sources."""
    sizes = {
        "train_size": 200,
        "dev_size": 10,
        "test_size": 10,
        "long_test_size": 5,
        "word_order_train": 10,
        "word_order_size": 5,
        "long_range_train": 40,
        "long_range_size": 30,
    }
    run_dir = train_synthetic(
        tmp_path,
        4,
        2,
        "model/attention=tfidf",
        "model.embed_size=16",
        "model.encoder.rnn.hidden=8",
        "model.decoder.rnn.hidden=16",
        *(f"data.synthetic.{key}={value}" for key, value in sizes.items()),
    )
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    values = [e.value for e in accumulator.Scalars("valid/long_range_acc")]
    assert len(values) == 2 and all(0 <= v <= 1 for v in values)
    final = json.loads((run_dir / "metrics.json").read_text())["long_range"]
    assert 0 <= final["long_range_acc"] <= 1 and "long_range_acc/07-08" in final
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    generated = generate_splits(
        train=200, dev=10, test=10, long_test=5, seed=1, word_order_train=10,
        word_order=5, long_range_train=40, long_range=30,
    )  # fmt: skip
    pieces = SubwordTokenizer(best["source_spm"]).encode([p.source for p in generated["train"]])
    df = Counter(piece for ids in pieces for piece in {*ids, EOS_ID})
    idf = best["model"]["decoder.attention.idf"]
    expected = [math.log((1 + len(pieces)) / (1 + df[p])) + 1 for p in range(len(idf))]
    torch.testing.assert_close(idf, torch.tensor(expected))
