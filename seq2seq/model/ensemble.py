"""Several trained models of one vocabulary decoding together, word by word.

Independently trained models err differently, so combining their next-word distributions at
every step of the same search translates better than any one of them (Sutskever et al. 2014,
Sennrich et al. 2016). :class:`Ensemble` presents the interface search uses (``encode``, then
a decoder with ``prepare``, ``init_state`` and ``next_logits`` whose state and memory select
rows by beam), so greedy and beam search run an ensemble unchanged, in one batched search.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from seq2seq.data.batching import Batch
from seq2seq.model.encoding import EncoderOutput
from seq2seq.model.seq2seq import Decoder, Seq2Seq


@dataclass
class MemberStates:
    """One object per member (its decoder state, or its prepared memory), selected together."""

    members: list[Any]

    def select(self, index: torch.Tensor) -> MemberStates:
        return MemberStates([member.select(index) for member in self.members])


class EnsembleDecoder:
    """The members' decoders stepped together; their log-probabilities averaged per word.

    The combined distribution is the normalised geometric mean of the members',
    p(y | ·) ∝ Π_m p_m(y | ·)^(1/M): ``next_logits`` returns the mean log-probability
    (1/M) Σ_m log p_m, which search's log-softmax normalises. A product of experts rather than
    the mixture (1/M) Σ_m p_m of fairseq: a word scores well only if every member finds it
    likely, which is the average of log-probabilities the issue asks for and what OpenNMT-py
    and Marian sum; normalising keeps each step a distribution, so beam scores stay
    log-probabilities and the length penalty means the same as for one model.
    """

    def __init__(self, decoders: Sequence[Decoder]) -> None:
        self.decoders = list(decoders)

    @property
    def has_attention_weights(self) -> bool:
        return all(decoder.has_attention_weights for decoder in self.decoders)

    def prepare(self, encoders: Sequence[EncoderOutput]) -> MemberStates:
        return MemberStates(
            [
                decoder.prepare(encoder)
                for decoder, encoder in zip(self.decoders, encoders, strict=True)
            ]
        )

    def init_state(self, encoders: Sequence[EncoderOutput]) -> MemberStates:
        return MemberStates(
            [
                decoder.init_state(encoder)
                for decoder, encoder in zip(self.decoders, encoders, strict=True)
            ]
        )

    def next_logits(
        self, previous: torch.Tensor, state: MemberStates, memory: MemberStates
    ) -> tuple[MemberStates, torch.Tensor, torch.Tensor | None]:
        """One word for every member: their new states, the mean of their float32
        log-probabilities (rows, vocab) and the mean of their attention weights (or None)."""
        states, log_probs, weights = [], [], []
        for decoder, member_state, member_memory in zip(
            self.decoders, state.members, memory.members, strict=True
        ):
            new_state, logits, member_weights = decoder.next_logits(
                previous, member_state, member_memory
            )
            states.append(new_state)
            log_probs.append(torch.log_softmax(logits.float(), dim=-1))
            weights.append(member_weights)
        mean_log_probs = torch.stack(log_probs).mean(0)
        return MemberStates(states), mean_log_probs, mean_weights(weights)


def mean_weights(weights: list[torch.Tensor | None]) -> torch.Tensor | None:
    """The members' attention weights (rows, heads, src) averaged; members with different
    numbers of heads are first averaged over their heads (rows, 1, src). None if any has none."""
    if any(w is None for w in weights):
        return None
    present = [w for w in weights if w is not None]
    if len({w.shape for w in present}) > 1:
        present = [w.float().mean(dim=1, keepdim=True) for w in present]
    return torch.stack(present).mean(0)


class Ensemble(nn.Module):
    """Models trained on the same sentencepiece vocabularies, decoded as one (see module)."""

    def __init__(self, members: Sequence[Seq2Seq]) -> None:
        super().__init__()
        assert members, "an ensemble needs at least one model"
        self.members = nn.ModuleList(members)
        self.decoder = EnsembleDecoder([member.decoder for member in members])

    @contextmanager
    def search_scope(self, precision: str, rows: int) -> Iterator[None]:
        """Every member's own search scope, for the whole search."""
        with ExitStack() as stack:
            for member in self.members:
                stack.enter_context(member.search_scope(precision, rows))
            yield

    @property
    def has_attention_weights(self) -> bool:
        return self.decoder.has_attention_weights

    def encode(self, batch: Batch) -> list[EncoderOutput]:
        return [member.encode(batch) for member in self.members]
