"""Word-order pairs of the synthetic corpus and the word_order_acc metric."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from seq2seq.config.schema import DataConfig
from seq2seq.data.corpus import CorpusError
from seq2seq.data.dataset import load_corpus
from seq2seq.data.synthetic import AlignedPair, generate_splits
from seq2seq.metrics.word_order import word_order_accuracy

TINY = Path(__file__).resolve().parent / "data" / "tiny"


def chinese_words(pair: AlignedPair) -> Counter[str]:
    return Counter(pair.source[start:end] for start, end in pair.source_words)


@pytest.fixture(scope="module")
def splits() -> dict[str, list[AlignedPair]]:
    return generate_splits(300, 20, 20, 20, seed=1, word_order_train=40, word_order=30)


def test_word_order_pairs_share_their_words_and_differ_in_meaning(splits) -> None:
    held_out = splits["word_order"]
    assert len(held_out) == 60
    for first, second in zip(held_out[0::2], held_out[1::2], strict=True):
        assert chinese_words(first) == chinese_words(second)
        assert first.source != second.source and first.target != second.target
        # subject and object swap: the first word of one is a later word of the other
        words = [[p.source[a:b] for a, b in p.source_words] for p in (first, second)]
        assert words[0][0] != words[1][0] and words[0][0] in words[1]


def test_the_word_order_split_is_held_out_and_the_other_splits_stay_as_they_were(splits) -> None:
    seen = {p.source for name in ("train", "dev", "test", "long") for p in splits[name]}
    assert not seen & {p.source for p in splits["word_order"]}
    without = generate_splits(300, 20, 20, 20, seed=1)
    assert "word_order" not in without
    for name in ("dev", "test", "long"):
        assert splits[name] == without[name]
    assert splits["train"][:300] == without["train"]
    trained_pairs = splits["train"][300:]
    assert len(trained_pairs) == 80
    assert all(
        chinese_words(a) == chinese_words(b)
        for a, b in zip(trained_pairs[0::2], trained_pairs[1::2], strict=True)
    )


def test_word_order_accuracy_counts_sentences_and_pairs() -> None:
    references = ["I love you.", "You love me.", "He likes her.", "She likes him."]
    assert word_order_accuracy(references, references) == {
        "word_order_acc": 1.0,
        "word_order_pair_acc": 1.0,
    }
    bag_of_words = ["I love you.", "I love you.", "He likes her.", "He likes her."]
    assert word_order_accuracy(bag_of_words, references) == {
        "word_order_acc": 0.5,
        "word_order_pair_acc": 0.0,
    }
    spaced = ["I  love you.", "You love me.", "She likes him.", "She likes him."]
    assert word_order_accuracy(spaced, references) == {
        "word_order_acc": 0.75,
        "word_order_pair_acc": 0.5,
    }
    # only the second pair is the same bag of source pieces: it is the one a bag gets wrong
    assert word_order_accuracy(spaced, references, [False, True]) == {
        "word_order_acc": 0.75,
        "word_order_pair_acc": 0.5,
        "word_order_same_pieces": 0.5,
        "word_order_same_pieces_pair_acc": 0.0,
    }
    assert "word_order_same_pieces_pair_acc" not in word_order_accuracy(
        spaced, references, [False, False]
    )


def test_a_word_order_file_must_hold_whole_pairs(tmp_path: Path) -> None:
    cfg = OmegaConf.structured(DataConfig(name="tsv"))
    cfg.train = cfg.dev = cfg.test = str(TINY / "test.tsv")
    cfg.word_order = str(TINY / "word_order.tsv")
    assert len(load_corpus(cfg).splits["word_order"]) == 4
    odd = tmp_path / "odd.tsv"
    odd.write_text("我爱你。\tI love you.\n", encoding="utf-8")
    cfg.word_order = str(odd)
    with pytest.raises(CorpusError, match=f"{odd}: 1 sentence pairs"):
        load_corpus(cfg)
