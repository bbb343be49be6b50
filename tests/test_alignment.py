"""AER on hand-counted examples, and hard links read off subword attention."""

import numpy as np
import pytest

from seq2seq.data.synthetic import generate_pairs
from seq2seq.metrics.alignment import (
    alignment_error_rate,
    corpus_alignment_error_rate,
    hard_links_from_attention,
    piece_word_indices_by_boundaries,
    piece_word_indices_by_spans,
)

SURE = {(0, 0), (1, 1)}
POSSIBLE = {(2, 1)}  # e.g. 了 → "ate": allowed, not required


def test_perfect_alignment_scores_zero():
    assert alignment_error_rate(SURE, SURE, POSSIBLE) == 0.0


def test_disjoint_alignment_scores_one():
    assert alignment_error_rate({(0, 1), (1, 0)}, SURE, POSSIBLE) == 1.0


def test_possible_links_are_never_punished_nor_required():
    assert alignment_error_rate(SURE | POSSIBLE, SURE, POSSIBLE) == 0.0
    # A = {(2,1)} hits only a possible link: 1 - (0 + 1) / (1 + 2)
    assert alignment_error_rate(POSSIBLE, SURE, POSSIBLE) == pytest.approx(2 / 3)


def test_wrong_extra_link_and_missing_sure_link():
    # A∩S = 2, A∩P = 2, |A| = 3, |S| = 2
    assert alignment_error_rate(SURE | {(2, 2)}, SURE, POSSIBLE) == pytest.approx(1 - 4 / 5)
    # A∩S = 1, A∩P = 1, |A| = 1, |S| = 2
    assert alignment_error_rate({(0, 0)}, SURE, POSSIBLE) == pytest.approx(1 - 2 / 3)


def test_sure_links_count_as_possible_even_if_not_listed():
    assert alignment_error_rate(SURE, SURE, set()) == 0.0


def test_nothing_to_align_scores_zero():
    assert alignment_error_rate([], [], []) == 0.0


def test_corpus_aer_sums_counts_rather_than_averaging_sentences():
    long_perfect = ({(0, 0), (1, 1), (2, 2)}, {(0, 0), (1, 1), (2, 2)}, set())
    short_wrong = ({(0, 1)}, {(0, 0)}, set())
    # counts: A∩S = 3, A∩P = 3, |A| = 4, |S| = 4; the sentence mean would be 0.5
    assert corpus_alignment_error_rate([long_perfect, short_wrong]) == pytest.approx(1 - 6 / 8)
    assert corpus_alignment_error_rate([long_perfect]) == 0.0
    assert corpus_alignment_error_rate([]) == 0.0


def test_hard_links_aggregate_subword_pieces_into_words():
    # source: word 0 = pieces 0, 1; word 1 = piece 2; piece 3 = EOS
    # target: word 0 = piece 0; word 1 = pieces 1, 2; row 3 = EOS
    weights = np.array(
        [
            [0.3, 0.3, 0.4, 0.0],  # piece 2 is the single largest, but word 0 gets 0.6 in total
            [0.1, 0.0, 0.2, 0.7],  # the EOS column is ignored
            [0.0, 0.1, 0.8, 0.1],
            [0.9, 0.0, 0.0, 0.1],  # the EOS row is ignored
        ]
    )
    links = hard_links_from_attention(weights, [0, 0, 1, -1], [0, 1, 1, -1])
    assert links == {(0, 0), (1, 1)}


def test_hard_links_average_over_target_pieces():
    # target word 0 has two pieces that disagree; their mean prefers source word 1
    weights = np.array([[0.6, 0.4], [0.0, 1.0]])
    assert hard_links_from_attention(weights, [0, 1], [0, 0]) == {(1, 0)}


def test_hard_links_reject_mismatched_shapes_and_handle_no_words():
    with pytest.raises(ValueError, match="target"):
        hard_links_from_attention(np.ones((2, 3)), [0, 1], [0, 1])
    assert hard_links_from_attention(np.ones((1, 2)), [-1, -1], [0]) == set()


def test_piece_word_indices_by_spans():
    words = [(0, 1), (1, 2), (2, 4), (4, 5)]  # 我 爱 北京 。
    pieces = [(0, 0), (0, 2), (2, 3), (3, 5), (5, 5)]  # "▁", "我爱", "北", "京。", past the end
    assert piece_word_indices_by_spans(pieces, words) == [0, 0, 2, 2, -1]
    assert piece_word_indices_by_spans([(0, 1)], []) == [-1]


def test_piece_word_indices_by_boundaries():
    pieces = ["▁I", "▁lo", "ve", "▁you", ".", "</s>"]
    assert piece_word_indices_by_boundaries(pieces) == [0, 1, 1, 2, 2, -1]
    assert piece_word_indices_by_boundaries(["ab", "▁c"]) == [0, 1]
    assert piece_word_indices_by_boundaries(["▁", "He", "▁is"]) == [0, 0, 1]
    assert piece_word_indices_by_boundaries(["<s>", "▁a"]) == [-1, 0]


def test_attention_peaked_on_gold_links_is_read_back_exactly():
    """Characters as source pieces, two pieces per English word: the formats fit together."""
    for pair in generate_pairs(50, seed=3):
        source_pieces = [(i, i + 1) for i in range(len(pair.source))]
        source_words = piece_word_indices_by_spans(source_pieces, pair.source_words) + [-1]
        target_pieces = [p for w in pair.target_words for p in ("▁" + w[:1], w[1:] or "x")]
        target_words = piece_word_indices_by_boundaries([*target_pieces, "</s>"])
        chosen = {}
        for j in range(len(pair.target_words)):
            sure = sorted(i for i, t in pair.sure if t == j)
            chosen[j] = (sure or sorted(i for i, t in pair.possible if t == j))[0]
        weights = np.full((len(target_words), len(source_words)), 0.01)
        for row, word in enumerate(target_words):
            if word >= 0:
                start, end = pair.source_words[chosen[word]]
                weights[row, start:end] = 1.0 / (end - start)  # spread over the word's pieces
        links = hard_links_from_attention(weights, source_words, target_words)
        assert links == {(i, j) for j, i in chosen.items()}
        assert links <= pair.possible
