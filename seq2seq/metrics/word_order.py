"""Word-order accuracy: can the model tell 我爱你 from 你爱我?

A word-order set lists sentence pairs whose sources hold the same words and whose meanings
differ only by their order, one pair per two consecutive entries. Corpus BLEU hides the
difference (a swapped subject and object keeps every unigram); exact match does not. A model
that sees a bag of words gives both members of a pair the same translation, so at most one of
them can be right: its pair accuracy is 0, its sentence accuracy at most one half.

Subword pieces can carry order of their own: sentencepiece marks the sentence start (▁我 is not
我) and may learn a piece across two words (爱你, 爱我). So the pair accuracy is also given over
the pairs whose two sources are the same bag of pieces, where an encoder without positions
cannot but fail.
"""

from __future__ import annotations

from collections.abc import Sequence

WORD_ORDER_METRICS = ("word_order_acc", "word_order_pair_acc")


def word_order_accuracy(
    hypotheses: Sequence[str],
    references: Sequence[str],
    same_pieces: Sequence[bool] | None = None,
) -> dict[str, float]:
    """Exact-match accuracies of word-order pairs (entries 2k, 2k+1).

    ``word_order_acc``: share of sentences translated exactly (whitespace aside);
    ``word_order_pair_acc``: share of pairs with both members exact. With ``same_pieces`` (per
    pair: do both sources hold the same multiset of pieces?) also ``word_order_same_pieces``,
    the share of such pairs, and ``word_order_same_pieces_pair_acc``, the pair accuracy over
    them (where there are any).
    """
    assert len(hypotheses) == len(references), "one hypothesis per reference"
    assert len(hypotheses) % 2 == 0 and hypotheses, "word-order pairs need an even, nonzero count"
    exact = [
        " ".join(h.split()) == " ".join(r.split())
        for h, r in zip(hypotheses, references, strict=True)
    ]
    pairs = [a and b for a, b in zip(exact[0::2], exact[1::2], strict=True)]
    accuracies = (sum(exact) / len(exact), sum(pairs) / len(pairs))
    scores = dict(zip(WORD_ORDER_METRICS, accuracies, strict=True))
    if same_pieces is not None:
        bags = [right for right, same in zip(pairs, same_pieces, strict=True) if same]
        scores["word_order_same_pieces"] = len(bags) / len(pairs)
        if bags:
            scores["word_order_same_pieces_pair_acc"] = sum(bags) / len(bags)
    return scores
