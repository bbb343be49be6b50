"""Subword regularisation: each training batch in a newly drawn segmentation (Kudo 2018).

A word seen split in several ways teaches the model its pieces more robustly than one fixed
split, which matters most on a small corpus. For every sentence of a batch, the segmentations
among its :data:`NBEST` most probable ones (under its unigram sentencepiece model) that fit in
``data.max_length`` pieces are found when the batch is made, and one is drawn with probability
∝ P(x)^α (Kudo 2018, section 3.3: sampling from the l-best). Dev, test and the commands always
use the best one.

Nothing is precomputed: a table of 16 segmentations for every sentence needs ~20 GB for a
million pairs, while finding them for one batch takes a few milliseconds (sentencepiece does it
outside the GIL). The draw is a function of (``trainer.seed``, epoch, side, sentence) alone, a
hash rather than a generator's stream, so a run resumed mid-epoch, or a torchrun rank taking its
share of a batch, sees the pieces the uninterrupted single process saw. Sentencepiece's own
sampler (``enable_sampling``) is not used: with sentencepiece 0.2.3 it draws differently in every
process even after ``set_random_generator_seed``, which would break exact resume.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from seq2seq.data.batching import Batch, collate
from seq2seq.data.dataset import TokenizedSplit
from seq2seq.data.tokenizer import SubwordTokenizer

# Segmentations per sentence to draw from: Tatoeba's English sentences have at least this many,
# its Chinese ones about 7 on average.
NBEST = 16


def uniform_hash(keys: Sequence[int], sentences: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """A uniform number in (0, 1) for each (sentence, candidate), fixed by ``keys`` (seed,
    epoch, side): splitmix64's finaliser over the packed integers, no generator state."""
    state = np.uint64(0)
    with np.errstate(over="ignore"):
        for key in keys:
            state = _mix(state ^ np.uint64(key & 0xFFFFFFFFFFFFFFFF))
        x = _mix(state ^ sentences.astype(np.uint64))
        x = _mix(x ^ (candidates.astype(np.uint64) << np.uint64(40)))
    return (np.right_shift(x, np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def _mix(x: np.ndarray | np.uint64) -> np.ndarray | np.uint64:
    x = (x + np.uint64(0x9E3779B97F4A7C15)) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def draw_segmentations(
    candidates: Sequence[Sequence[Sequence[int]]],
    piece_log_probs: np.ndarray,
    alpha: float,
    uniforms: np.ndarray,
) -> list[list[int]]:
    """One candidate per sentence, with probability ∝ P(x)^α among that sentence's, where
    log P(x) is the sum of its pieces' log-probabilities.

    Gumbel-max: the candidate maximising α·log P(x) + Gumbel noise is such a draw; ``uniforms``
    (one per candidate, sentence after sentence) give the noise.
    """
    flat = [option for options in candidates for option in options]
    lengths = np.fromiter(map(len, flat), np.int64, len(flat))
    pieces = np.fromiter(itertools.chain.from_iterable(flat), np.int64, int(lengths.sum()))
    log_probs = np.bincount(
        np.repeat(np.arange(len(flat)), lengths),  # the candidate of each piece
        weights=piece_log_probs[pieces],
        minlength=len(flat),
    )
    keys = alpha * log_probs - np.log(-np.log(uniforms))
    owner = np.repeat(np.arange(len(candidates)), [len(options) for options in candidates])
    order = np.lexsort((-keys, owner))  # by sentence, the highest key first
    first = np.flatnonzero(np.diff(owner[order], prepend=-1))
    return [list(flat[c]) for c in order[first]]


class SubwordSampler:
    """Batches of the training split in the segmentation drawn for their epoch, both sides."""

    def __init__(
        self,
        split: TokenizedSplit,
        source: SubwordTokenizer,
        target: SubwordTokenizer,
        alpha: float,
        seed: int,
        max_length: int,
    ) -> None:
        self.split, self.alpha, self.seed, self.max_length = split, alpha, seed, max_length
        self.tokenizers = (source, target)
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="subword-sampling")
        self.pending: tuple[tuple[tuple[int, ...], int], Future[Batch]] | None = None
        self.piece_log_probs = [
            np.asarray(tokenizer.piece_log_probs(), dtype=np.float64)
            for tokenizer in (source, target)
        ]

    def batch(self, indices: Sequence[int], epoch: int) -> Batch:
        """The batch at ``indices`` drawn for ``epoch``: the one :meth:`prefetch` began, if it
        was asked for these, else drawn now."""
        key = (tuple(indices), epoch)
        pending, self.pending = self.pending, None
        if pending is not None and pending[0] == key:
            return pending[1].result()
        return collate(*self.pairs(indices, epoch), list(indices))

    def prefetch(self, indices: Sequence[int], epoch: int) -> None:
        """Begin drawing the next batch in a thread while the update runs: sentencepiece's
        n-best search (most of a draw) releases the GIL."""
        work = self.worker.submit(lambda: collate(*self.pairs(indices, epoch), list(indices)))
        self.pending = ((tuple(indices), epoch), work)

    def pairs(self, indices: Sequence[int], epoch: int) -> tuple[list[list[int]], list[list[int]]]:
        """The pairs at ``indices`` (source ids, target ids) as drawn for ``epoch``: a function
        of the seed, the epoch and each sentence alone, not of the batch it is drawn in."""
        split = self.split
        examples = [split.examples[i] for i in indices]
        source = [split.source_ids[i] for i in indices]
        target = [split.target_ids[i] for i in indices]
        return (
            self.draw(0, [e.source for e in examples], source, indices, epoch),
            self.draw(1, [e.target for e in examples], target, indices, epoch),
        )

    def draw(
        self,
        side: int,
        texts: Sequence[str],
        usual: Sequence[Sequence[int]],
        indices: Sequence[int],
        epoch: int,
    ) -> list[list[int]]:
        """Each text's draw among its ``usual`` segmentation (the one training uses without
        sampling) and the others of its :data:`NBEST` best that fit in ``max_length``."""
        candidates = [
            [ids, *(x for x in best if len(x) <= self.max_length and list(x) != list(ids))]
            for best, ids in zip(self.tokenizers[side].nbest(texts, NBEST), usual, strict=True)
        ]
        counts = [len(options) for options in candidates]
        sentences = np.repeat(np.asarray(indices, dtype=np.int64), counts)
        ranks = np.concatenate([np.arange(count) for count in counts])
        uniforms = uniform_hash((self.seed, epoch, side), sentences, ranks)
        return draw_segmentations(candidates, self.piece_log_probs[side], self.alpha, uniforms)
