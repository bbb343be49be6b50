"""Subword regularisation: the training pairs in a new segmentation every epoch (Kudo 2018).

A word seen split in several ways teaches the model its pieces more robustly than one fixed
split, which matters most on a small corpus. Each training sentence keeps its :data:`NBEST`
most probable segmentations under its unigram sentencepiece model, found once per run; every
epoch draws one per sentence with probability ∝ P(x)^α among them (Kudo 2018, section 3.3:
sampling from the l-best). Dev, test and the commands always use the best one.

The draw comes from a generator seeded by ``trainer.seed``, the epoch and the side, so a run
resumed mid-epoch sees the pieces the uninterrupted one saw. Sentencepiece's own sampler
(``enable_sampling``) is not used: with sentencepiece 0.2.3 it draws differently in every
process even after ``set_random_generator_seed``, which would break exact resume.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seq2seq.data.dataset import TokenizedSplit
from seq2seq.data.tokenizer import SubwordTokenizer

# Segmentations per sentence to draw from: Tatoeba's English sentences have at least this many,
# its Chinese ones about 7 on average; finding 16 for 27k pairs takes about 2 s per side.
NBEST = 16


@dataclass
class Segmentations:
    """Each sentence's candidate segmentations, flat: numpy arrays, not a list per candidate."""

    ids: np.ndarray  # (pieces,) every candidate's ids, one candidate after another
    bounds: np.ndarray  # (candidates + 1,) candidate c is ids[bounds[c] : bounds[c + 1]]
    log_probs: np.ndarray  # (candidates,) log P(x): the sum of its pieces' log-probabilities
    owner: np.ndarray  # (candidates,) the sentence each candidate segments, in order

    @classmethod
    def of(
        cls,
        tokenizer: SubwordTokenizer,
        texts: Sequence[str],
        usual: Sequence[Sequence[int]],
        max_length: int,
    ) -> Segmentations:
        """The ``usual`` segmentation of each text (the one training would use), then the other
        ones of its :data:`NBEST` best that fit in ``max_length`` pieces."""
        candidates: list[list[Sequence[int]]] = []
        for best, ids in zip(tokenizer.nbest(texts, NBEST), usual, strict=True):
            others = [x for x in best if len(x) <= max_length and list(x) != list(ids)]
            candidates.append([ids, *others])
        flat = [x for sentence in candidates for x in sentence]
        lengths = np.array([len(x) for x in flat], dtype=np.int64)
        pieces = np.fromiter(itertools.chain.from_iterable(flat), np.int32, int(lengths.sum()))
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        piece_log_probs = np.asarray(tokenizer.piece_log_probs(), dtype=np.float64)
        log_probs = np.bincount(
            np.repeat(np.arange(len(flat)), lengths),  # the candidate of each piece
            weights=piece_log_probs[pieces],
            minlength=len(flat),
        )
        owner = np.repeat(np.arange(len(candidates)), [len(c) for c in candidates])
        return cls(pieces, bounds, log_probs, owner)

    def draw(self, alpha: float, generator: np.random.Generator) -> list[list[int]]:
        """One candidate per sentence, with probability ∝ P(x)^α among that sentence's.

        Gumbel-max: the candidate maximising α·log P(x) + Gumbel noise is such a draw.
        """
        keys = alpha * self.log_probs + generator.gumbel(size=len(self.log_probs))
        order = np.lexsort((-keys, self.owner))  # by sentence, the highest key first
        first = np.flatnonzero(np.diff(self.owner[order], prepend=-1))
        return [self.ids[self.bounds[c] : self.bounds[c + 1]].tolist() for c in order[first]]


class SubwordSampler:
    """The training split in the segmentation drawn for each epoch, both sides."""

    def __init__(
        self,
        split: TokenizedSplit,
        source: SubwordTokenizer,
        target: SubwordTokenizer,
        alpha: float,
        seed: int,
        max_length: int,
    ) -> None:
        self.split, self.alpha, self.seed = split, alpha, seed
        self.sides = [
            Segmentations.of(
                source, [e.source for e in split.examples], split.source_ids, max_length
            ),
            Segmentations.of(
                target, [e.target for e in split.examples], split.target_ids, max_length
            ),
        ]

    def split_for_epoch(self, epoch: int) -> TokenizedSplit:
        """The pairs drawn for ``epoch``: a function of the seed and the epoch alone."""
        source_ids, target_ids = (
            side.draw(self.alpha, np.random.default_rng([self.seed, epoch, k]))
            for k, side in enumerate(self.sides)
        )
        return TokenizedSplit(self.split.name, self.split.examples, source_ids, target_ids)
