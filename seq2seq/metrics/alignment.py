"""Alignment error rate, and hard word links read off a subword attention matrix.

AER (Och & Ney 2003) scores a set of links A against gold sure links S and possible links P
(S ⊆ P): AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|). A link that is merely possible is never
required but never punished, which is how function words without a counterpart (了, 的, "the")
are treated. The model attends over subword pieces, the gold links join words, so pieces are
first mapped to the words they belong to.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterable, Sequence

import numpy as np

Link = tuple[int, int]  # (source word, target word)
SPECIAL_PIECES = ("<s>", "</s>", "<pad>")


def _counts(
    hypothesis: Iterable[Link], sure: Iterable[Link], possible: Iterable[Link]
) -> tuple[int, int, int, int]:
    """|A∩S|, |A∩P|, |A|, |S| with P taken as possible ∪ sure."""
    a, s = set(hypothesis), set(sure)
    p = set(possible) | s
    return len(a & s), len(a & p), len(a), len(s)


def _rate(a_s: int, a_p: int, a: int, s: int) -> float:
    return 0.0 if a + s == 0 else 1.0 - (a_s + a_p) / (a + s)


def alignment_error_rate(
    hypothesis: Iterable[Link], sure: Iterable[Link], possible: Iterable[Link]
) -> float:
    """AER of one sentence; 0 when there is nothing to align and nothing was aligned."""
    return _rate(*_counts(hypothesis, sure, possible))


def corpus_alignment_error_rate(
    items: Iterable[tuple[Iterable[Link], Iterable[Link], Iterable[Link]]],
) -> float:
    """AER of a corpus from counts summed over (hypothesis, sure, possible) sentences.

    Summing counts (the standard definition) weights long sentences by their links; a mean of
    sentence AERs would let a two-word sentence count as much as a forty-word one.
    """
    totals = [0, 0, 0, 0]
    for hypothesis, sure, possible in items:
        for i, count in enumerate(_counts(hypothesis, sure, possible)):
            totals[i] += count
    return _rate(*totals)


def _one_hot(word_of_piece: np.ndarray) -> np.ndarray:
    """(pieces, words) 0/1 matrix; pieces of word -1 (EOS, specials) get an all-zero row."""
    n_words = int(word_of_piece.max(initial=-1)) + 1
    onehot = np.zeros((len(word_of_piece), n_words))
    kept = np.flatnonzero(word_of_piece >= 0)
    onehot[kept, word_of_piece[kept]] = 1.0
    return onehot


def hard_links_from_attention(
    weights: np.ndarray,
    source_piece_words: Sequence[int],
    target_piece_words: Sequence[int],
) -> set[Link]:
    """Link every target word to the source word it attends to most.

    ``weights`` is (target pieces, source pieces); ``*_piece_words`` give each piece's word
    index, -1 for pieces outside any word (EOS), which are ignored. A source word's attention
    is the sum over its pieces (the mass the decoder put on the word); a target word's is the
    mean over its pieces, so words split into many pieces do not weigh more.
    """
    weights = np.asarray(weights, dtype=float)
    source = np.asarray(source_piece_words, dtype=int)
    target = np.asarray(target_piece_words, dtype=int)
    if weights.shape != (len(target), len(source)):
        raise ValueError(
            f"attention is {weights.shape} (target, source) but there are {len(target)} target "
            f"and {len(source)} source piece-word indices"
        )
    to_source = _one_hot(source)  # (source pieces, source words)
    to_target = _one_hot(target)  # (target pieces, target words)
    if to_source.shape[1] == 0 or to_target.shape[1] == 0:
        return set()
    per_source_word = weights @ to_source  # (target pieces, source words)
    pieces_per_word = to_target.sum(axis=0)  # (target words,)
    summed = to_target.T @ per_source_word  # (target words, source words)
    present = np.flatnonzero(pieces_per_word)
    mean = summed[present] / pieces_per_word[present, None]
    return {(int(s), int(t)) for t, s in zip(present, mean.argmax(axis=1), strict=True)}


def piece_word_indices_by_spans(
    piece_spans: Sequence[tuple[int, int]], word_spans: Sequence[tuple[int, int]]
) -> list[int]:
    """The word whose character span [start, end) holds each piece's first character, or -1.

    For Chinese, where words are not separated by spaces and only character offsets tie
    pieces to the gold segmentation. ``word_spans`` must be sorted and non-overlapping.
    """
    starts = [start for start, _ in word_spans]
    indices = []
    for piece_start, _ in piece_spans:
        word = bisect_right(starts, piece_start) - 1
        inside = word >= 0 and piece_start < word_spans[word][1]
        indices.append(word if inside else -1)
    return indices


def piece_word_indices_by_boundaries(
    pieces: Sequence[str], specials: Collection[str] = SPECIAL_PIECES
) -> list[int]:
    """Word index of each sentencepiece piece: "▁" (U+2581) opens a new word; specials get -1.

    Words are then the whitespace-separated words of the detokenized text, punctuation
    included ("you."), as in :class:`seq2seq.data.synthetic.AlignedPair`.
    """
    indices = []
    current, count = -1, 0
    for piece in pieces:
        if piece in specials:
            indices.append(-1)
            continue
        if piece.startswith("\u2581") or current < 0:
            current, count = count, count + 1
        indices.append(current)
    return indices
