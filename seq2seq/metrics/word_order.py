"""Word-order accuracy: can the model tell 我爱你 from 你爱我?

A word-order set lists sentence pairs whose sources hold the same words and whose meanings
differ only by their order, one pair per two consecutive entries. Corpus BLEU hides the
difference (a swapped subject and object keeps every unigram); exact match does not. A model
that sees a bag of words gives both members of a pair the same translation, so at most one of
them can be right: its pair accuracy is 0, its sentence accuracy at most one half.
"""

from __future__ import annotations

from collections.abc import Sequence

WORD_ORDER_METRICS = ("word_order_acc", "word_order_pair_acc")


def word_order_accuracy(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """``word_order_acc``: share of sentences translated exactly (whitespace aside);
    ``word_order_pair_acc``: share of pairs (entries 2k, 2k+1) with both members exact."""
    assert len(hypotheses) == len(references), "one hypothesis per reference"
    assert len(hypotheses) % 2 == 0 and hypotheses, "word-order pairs need an even, nonzero count"
    exact = [
        " ".join(h.split()) == " ".join(r.split())
        for h, r in zip(hypotheses, references, strict=True)
    ]
    pairs = [a and b for a, b in zip(exact[0::2], exact[1::2], strict=True)]
    accuracies = (sum(exact) / len(exact), sum(pairs) / len(pairs))
    return dict(zip(WORD_ORDER_METRICS, accuracies, strict=True))
