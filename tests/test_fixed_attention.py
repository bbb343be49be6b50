"""Fixed-weight contexts (model/attention=mean|tfidf): the same context at every output step,
TF-IDF weights as the formula says, an IDF table that checkpoints carry."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from helpers import model_config

from seq2seq.data.batching import collate
from seq2seq.data.tokenizer import EOS_ID
from seq2seq.model.attention import (
    MeanAttention,
    TfidfAttention,
    build_attention,
    fit_source_idf,
)
from seq2seq.model.encoding import EncoderOutput
from seq2seq.model.seq2seq import Seq2Seq, build_model
from seq2seq.search import greedy_search

VOCAB = 12
TRAIN = [[4, 5, 6], [4, 7], [4, 5, 8, 8], [4, 9]]  # training sources' piece ids: 4 is everywhere
SOURCES = [[4, 5, 5, 6, 10], [8, 4], [11, 11, 11]]


def expected_idf(piece: int) -> float:
    """Smoothed IDF, ln((1 + N) / (1 + df)) + 1, counted straight from TRAIN as the encoder
    reads it (EOS at the end of every sentence)."""
    df = sum(piece in [*sentence, EOS_ID] for sentence in TRAIN)
    return math.log((1 + len(TRAIN)) / (1 + df)) + 1


def expected_tfidf_weights(sentence: list[int]) -> list[float]:
    """w_j = tf(x_j) · idf(x_j), normalised over the sentence."""
    counts = Counter(sentence)
    raw = [counts[piece] * expected_idf(piece) for piece in sentence]
    return [value / sum(raw) for value in raw]


def padded(sentences: list[list[int]], pad_with: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Piece ids (padding filled with ``pad_with``) and the mask of real tokens."""
    width = max(map(len, sentences))
    tokens = torch.tensor([s + [pad_with] * (width - len(s)) for s in sentences])
    mask = torch.arange(width)[None, :] < torch.tensor([len(s) for s in sentences])[:, None]
    return tokens, mask


def encoder_output(tokens: torch.Tensor, mask: torch.Tensor, size: int = 5) -> EncoderOutput:
    states = torch.randn(*tokens.shape, size, generator=torch.Generator().manual_seed(0))
    states = states * mask[..., None]
    return EncoderOutput(states, states[:, 0], mask, tokens)


def fitted_tfidf(size: int = 5) -> TfidfAttention:
    attention = build_attention("tfidf", size, size, size, 1, source_vocab_size=VOCAB)
    assert isinstance(attention, TfidfAttention)
    attention.fit(TRAIN)
    return attention


def test_idf_is_the_smoothed_idf_of_the_training_sources() -> None:
    idf = fitted_tfidf().idf
    torch.testing.assert_close(idf, torch.tensor([expected_idf(p) for p in range(VOCAB)]))
    # 4 and EOS are in every sentence: the least
    assert idf[4] == idf[EOS_ID] == 1.0 and (idf > 1.0).sum() == VOCAB - 2


def test_tfidf_weights_are_tf_times_idf_sum_to_one_and_ignore_padding() -> None:
    attention = fitted_tfidf()
    tokens, mask = padded(SOURCES)
    memory = attention.prepare(encoder_output(tokens, mask))
    _, weights = attention(torch.randn(3, 5), memory)
    assert weights is not None
    for row, sentence in enumerate(SOURCES):
        expected = torch.tensor(expected_tfidf_weights(sentence))
        torch.testing.assert_close(weights[row, 0, : len(sentence)], expected)
        assert (weights[row, 0, len(sentence) :] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 1))
    # Padding that holds a real piece id (11, already in the third sentence) changes nothing.
    tokens_11, _ = padded(SOURCES, pad_with=11)
    _, same = attention(torch.randn(3, 5), attention.prepare(encoder_output(tokens_11, mask)))
    torch.testing.assert_close(same, weights)


def test_mean_weights_every_real_token_alike() -> None:
    tokens, mask = padded(SOURCES)
    encoder = encoder_output(tokens, mask)
    attention = MeanAttention(5)
    context, weights = attention(torch.randn(3, 5), attention.prepare(encoder))
    lengths = mask.sum(1, keepdim=True)
    assert weights is not None
    torch.testing.assert_close(weights[:, 0], mask / lengths)
    torch.testing.assert_close(context, encoder.states.sum(1) / lengths)


def small_model(attention: str, decoder: str = "rnn", style: str = "bahdanau") -> Seq2Seq:
    cfg = model_config(
        "embed_size=8",
        "dropout=0.0",
        f"encoder.name={'self_attention' if decoder == 'transformer' else 'rnn'}",
        "encoder.rnn.hidden=4",
        "encoder.self_attention.heads=2",
        "encoder.self_attention.ff_size=16",
        f"decoder.name={decoder}",
        "decoder.rnn.hidden=8",
        f"decoder.rnn.style={style}",
        f"decoder.rnn.input_feeding={style == 'bahdanau'}",  # luong without: its own wiring
        "decoder.transformer.layers=2",
        "decoder.transformer.heads=2",
        "decoder.transformer.ff_size=16",
        f"attention.name={attention}",
    )
    torch.manual_seed(0)
    model = build_model(cfg, VOCAB, VOCAB).eval()
    assert fit_source_idf(model, TRAIN) == (attention == "tfidf")
    return model


@pytest.mark.parametrize("attention", ["mean", "tfidf"])
@pytest.mark.parametrize(
    ("decoder", "style"), [("rnn", "bahdanau"), ("rnn", "luong"), ("transformer", "bahdanau")]
)
def test_fixed_scorers_give_every_output_step_the_same_context(
    attention: str, decoder: str, style: str
) -> None:
    """Teacher forcing and greedy search alike: every call of every scorer returns, for every
    output step, Σ_j w_j h_j with the weights of the formula (mean, or TF-IDF of TRAIN)."""
    model = small_model(attention, decoder, style)
    batch = collate(SOURCES, [[4, 5, 6], [7, 8], [9, 10, 11, 4]], [0, 1, 2])
    encoder = model.encode(batch)
    read = [[*SOURCES[index], EOS_ID] for index in batch.indices]  # batch rows, as encoded
    if attention == "mean":
        weights = [[1 / len(s)] * len(s) for s in read]
    else:
        weights = [expected_tfidf_weights(s) for s in read]
    expected = torch.stack(
        [
            torch.tensor(w) @ encoder.states[row, : len(w)]
            for row, w in enumerate(weights)  # (batch, d)
        ]
    )
    scorers = [m for m in model.modules() if type(m).__name__.lower().startswith(attention)]
    # (context (rows, steps, d), the batch row of each row): greedy search drops finished rows.
    contexts: list[tuple[torch.Tensor, list[int]]] = []
    row_of_length = {len(s): row for row, s in enumerate(read)}  # SOURCES' lengths differ

    def keep(module: torch.nn.Module, inputs: tuple, output: tuple) -> None:
        rows = [row_of_length[int(n)] for n in inputs[1].mask.sum(-1)]
        contexts.append((output[0].view(len(rows), -1, output[0].size(-1)), rows))

    hooks = [scorer.register_forward_hook(keep) for scorer in scorers]
    with torch.no_grad():
        model(batch)
        greedy_search(model, batch, max_extra=3)
    for hook in hooks:
        hook.remove()
    assert contexts
    for context, rows in contexts:  # (rows, steps, d), each layer's own values for a Transformer
        if decoder == "rnn":
            torch.testing.assert_close(context, expected[rows, None].expand_as(context))
        torch.testing.assert_close(context, context[:, :1].expand_as(context))
    per_layer = len(scorers)
    first_call = [context for context, _ in contexts[:per_layer]]
    for call, (context, rows) in enumerate(contexts):  # later steps: the first's again
        torch.testing.assert_close(context[:, 0], first_call[call % per_layer][rows, 0])


def test_the_idf_table_travels_in_the_state_dict_and_other_scorers_have_none() -> None:
    model = small_model("tfidf")
    state = model.state_dict()
    assert "decoder.attention.idf" in state
    fresh = small_model("mean")
    assert not any(name.endswith("idf") for name in fresh.state_dict())
    unfitted = build_attention("tfidf", 8, 8, 8, 1, source_vocab_size=VOCAB)
    unfitted.load_state_dict({"idf": state["decoder.attention.idf"]})
    torch.testing.assert_close(unfitted.idf, fitted_tfidf().idf)
    with pytest.raises(ValueError, match="source vocabulary size"):
        build_attention("tfidf", 8, 8, 8, 1)
