"""A built-in Chinese→English corpus in which every sentence pair carries gold word alignments.

Why: a real corpus gives BLEU but no ground truth for where attention *should* look. This small
bilingual grammar writes natural sentence pairs with the reorderings that make attention matter
(time and place before the verb in Chinese but after the object in English, relative clauses
before their head noun, 吗 questions that invert in English, measure words, do-support) and
records which Chinese word each English word translates. Links follow the sure/possible
convention of Och & Ney (2003): content words get sure links, function words without a
counterpart (了, 的, 吗, measure words, "the", "did", "is", "that") possible ones, so the
alignment error rate of an attention map can be measured (:mod:`seq2seq.metrics.alignment`).
A "long" split of sentences longer than any training sentence tests the length generalisation
that Bahdanau et al. (2015, fig. 2) showed attention buys. **Word-order pairs** (我爱你 / 你爱我:
the same Chinese words, subject and object swapped, a different English sentence) test what a
bag of words cannot know; a held-out "word_order" split holds pairs neither of whose sentences
is trained on, one pair per two consecutive entries.

The package, read in this order:

- :mod:`~seq2seq.data.synthetic.lexicon`: the words: tenses, closed-class words (determiners,
  numerals, connectors), the word classes and the packaged ``lexicon.json``.
- :mod:`~seq2seq.data.synthetic.links`: words of both languages placed in each one's own order,
  the links between them, and their numbering into an :class:`AlignedPair`.
- :mod:`~seq2seq.data.synthetic.grammar`: the public builders (:func:`pronoun_np`,
  :func:`noun_np`, :func:`verb_clause`, :func:`sentence`, ...) make one construction with fixed
  choices.
- :mod:`~seq2seq.data.synthetic.generate`: :func:`generate_pairs` draws them at random;
  :func:`generate_splits` makes the corpus's splits, word-order pairs included.
"""

from seq2seq.data.synthetic.generate import generate_pairs, generate_splits
from seq2seq.data.synthetic.grammar import (
    adjective_clause,
    coordinate_np,
    name_np,
    noun_np,
    pronoun_np,
    relative_np,
    sentence,
    verb_clause,
)
from seq2seq.data.synthetic.lexicon import Lexicon, load_lexicon
from seq2seq.data.synthetic.links import AlignedPair, links_to_string

__all__ = [
    "AlignedPair",
    "Lexicon",
    "adjective_clause",
    "coordinate_np",
    "generate_pairs",
    "generate_splits",
    "links_to_string",
    "load_lexicon",
    "name_np",
    "noun_np",
    "pronoun_np",
    "relative_np",
    "sentence",
    "verb_clause",
]
