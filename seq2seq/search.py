"""Decoding a trained model: batched greedy search."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seq2seq.data.batching import Batch
from seq2seq.data.tokenizer import BOS_ID, EOS_ID
from seq2seq.model.seq2seq import Seq2Seq


@dataclass
class Hypothesis:
    tokens: list[int]  # output ids, ending with EOS unless the length limit cut it
    score: float  # sum of log-probabilities of ``tokens``
    weights: torch.Tensor | None  # (len(tokens), heads, src_len incl. EOS), None without attention


def max_output_length(src_lengths: torch.Tensor, ratio: float, extra: int) -> int:
    return int(src_lengths.max().item() * ratio) + extra


@torch.no_grad()
def greedy_search(
    model: Seq2Seq, batch: Batch, max_ratio: float = 2.0, max_extra: int = 10
) -> list[Hypothesis]:
    """Pick the most probable word at every step, for all sentences of ``batch`` at once.

    Results are in ``batch`` row order (``batch.indices`` maps them to the dataset).
    """
    encoder = model.encode(batch)
    decoder = model.decoder
    memory = decoder.prepare(encoder)
    state = decoder.init_state(encoder)
    size = batch.src.size(0)
    previous = torch.full((size,), BOS_ID, dtype=torch.long, device=batch.src.device)
    finished = torch.zeros(size, dtype=torch.bool, device=batch.src.device)
    tokens, scores, weights = [], [], []
    for _ in range(max_output_length(batch.src_lengths, max_ratio, max_extra)):
        embedded, input_gates = decoder.embed(previous)
        state, context, step_weights = decoder.step(input_gates, state, memory)
        log_probs = torch.log_softmax(decoder.logits(state.hidden, context, embedded), dim=-1)
        score, previous = log_probs.max(dim=-1)
        tokens.append(previous)
        scores.append(score.masked_fill(finished, 0.0))
        weights.append(step_weights)
        finished |= previous == EOS_ID
        if bool(finished.all()):
            break
    token_matrix = torch.stack(tokens, 1).tolist()
    total_scores = torch.stack(scores, 1).sum(1).tolist()
    weight_tensor = None if weights[0] is None else torch.stack(weights, 1).float().cpu()
    hypotheses = []
    for row, (ids, score) in enumerate(zip(token_matrix, total_scores, strict=True)):
        length = ids.index(EOS_ID) + 1 if EOS_ID in ids else len(ids)
        row_weights = None
        if weight_tensor is not None:
            row_weights = weight_tensor[row, :length, :, : int(batch.src_lengths[row])]
        hypotheses.append(Hypothesis(ids[:length], score, row_weights))
    return hypotheses
