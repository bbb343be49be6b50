"""Every scorer: weights are a distribution over real source positions, contexts follow them."""

from __future__ import annotations

import math

import pytest
import torch

from seq2seq.model.attention import (
    ATTENTION_TYPES,
    DotAttention,
    MultiHeadAttention,
    ScaledDotAttention,
    build_attention,
)
from seq2seq.model.encoder import EncoderOutput

SIZE = 8
VOCAB = 6  # source pieces: few, so that sentences repeat some (TF-IDF counts them)
SCORERS = [name for name in ATTENTION_TYPES if name != "none"]
FIXED = ("mean", "tfidf")  # weights from the source alone


def encoder_output(lengths: list[int], seed: int = 0) -> EncoderOutput:
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(len(lengths), max(lengths), SIZE, generator=generator)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    tokens = torch.randint(1, VOCAB, mask.shape, generator=generator) * mask  # 0: padding
    return EncoderOutput(states * mask[..., None], states[:, 0], mask, tokens)


@pytest.mark.parametrize("name", SCORERS)
def test_weights_sum_to_one_and_are_zero_on_padding(name: str) -> None:
    torch.manual_seed(0)
    attention = build_attention(
        name, SIZE, SIZE, attention_size=SIZE, heads=2, source_vocab_size=VOCAB
    )
    encoder = encoder_output([5, 3, 1])
    context, weights = attention(torch.randn(3, SIZE), attention.prepare(encoder))
    assert weights is not None and weights.shape[0] == 3 and weights.shape[-1] == 5
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    assert (weights[1, :, 3:] == 0).all() and (weights[2, :, 1:] == 0).all()
    assert context.shape == (3, attention.context_size)


@pytest.mark.parametrize("name", SCORERS)
def test_padding_values_do_not_change_the_context(name: str) -> None:
    torch.manual_seed(0)
    attention = build_attention(
        name, SIZE, SIZE, attention_size=SIZE, heads=2, source_vocab_size=VOCAB
    )
    encoder = encoder_output([4, 2])
    query = torch.randn(2, SIZE)
    noisy = EncoderOutput(
        encoder.states + 100 * (~encoder.mask)[..., None],
        encoder.summary,
        encoder.mask,
        encoder.tokens,
    )
    torch.testing.assert_close(
        attention(query, attention.prepare(encoder))[0],
        attention(query, attention.prepare(noisy))[0],
    )


@pytest.mark.parametrize("name", SCORERS)
def test_context_follows_the_encoder_states(name: str) -> None:
    torch.manual_seed(0)
    attention = build_attention(
        name, SIZE, SIZE, attention_size=SIZE, heads=2, source_vocab_size=VOCAB
    )
    encoder = encoder_output([4, 4])
    query = torch.randn(2, SIZE)
    changed = EncoderOutput(encoder.states.clone(), encoder.summary, encoder.mask, encoder.tokens)
    changed.states[:, 2] += 1.0
    before = attention(query, attention.prepare(encoder))[0]
    assert not torch.allclose(before, attention(query, attention.prepare(changed))[0])


@pytest.mark.parametrize("name", ATTENTION_TYPES)
def test_queries_sharing_a_memory_row_equal_queries_on_copies_of_it(name: str) -> None:
    """Beam search's rows of one sentence are consecutive queries on one memory row: they get
    what they would get from their own copies of that row."""
    torch.manual_seed(0)
    attention = build_attention(
        name, SIZE, SIZE, attention_size=SIZE, heads=2, source_vocab_size=VOCAB
    )
    memory = attention.prepare(encoder_output([5, 3]))
    query = torch.randn(6, SIZE)  # three queries per sentence
    context, weights = attention(query, memory)
    copies = memory.select(torch.tensor([0, 0, 0, 1, 1, 1]))
    expected_context, expected_weights = attention(query, copies)
    torch.testing.assert_close(context, expected_context)
    if name == "none":
        assert weights is None and expected_weights is None
    else:
        torch.testing.assert_close(weights, expected_weights)
        # each query its own weights, except where the source alone fixes them
        assert torch.allclose(weights[0], weights[1]) == (name in FIXED)
    with pytest.raises(ValueError, match="do not split evenly"):
        attention(torch.randn(5, SIZE), memory)


def test_no_attention_gives_every_step_the_same_summary() -> None:
    attention = build_attention("none", SIZE, SIZE, SIZE, 1)
    encoder = encoder_output([4, 2])
    memory = attention.prepare(encoder)
    first, weights = attention(torch.randn(2, SIZE), memory)
    second, _ = attention(torch.randn(2, SIZE), memory)
    assert weights is None
    torch.testing.assert_close(first, encoder.summary)
    torch.testing.assert_close(second, first)


def test_dot_and_scaled_dot_agree_up_to_the_scale() -> None:
    encoder = encoder_output([5, 3])
    query = torch.randn(2, SIZE)
    dot, scaled = DotAttention(SIZE, SIZE), ScaledDotAttention(SIZE, SIZE)
    dot_scores = dot.scores(query, dot.prepare(encoder))
    scaled_scores = scaled.scores(query, scaled.prepare(encoder))
    torch.testing.assert_close(scaled_scores, dot_scores / math.sqrt(SIZE))


def test_one_head_equals_scaled_dot_with_the_same_projections() -> None:
    multi = MultiHeadAttention(SIZE, SIZE, SIZE, heads=1)
    for projection in (multi.query_proj, multi.key_proj, multi.value_proj, multi.output_proj):
        torch.nn.init.eye_(projection.weight)
    encoder = encoder_output([5, 3])
    query = torch.randn(2, SIZE)
    scaled = ScaledDotAttention(SIZE, SIZE)
    expected_context, expected_weights = scaled(query, scaled.prepare(encoder))
    context, weights = multi(query, multi.prepare(encoder))
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(context, expected_context)


def test_dot_rejects_mismatched_sizes_with_advice() -> None:
    with pytest.raises(ValueError, match="model/attention=general"):
        build_attention("dot", 16, 8, 8, 1)
    with pytest.raises(ValueError, match="must be one of"):
        build_attention("cosine", 8, 8, 8, 1)


def reference_scores(
    attention: torch.nn.Module, name: str, query: torch.Tensor, states: torch.Tensor
) -> torch.Tensor:
    """e_ij written straight from each paper's formula with the module's own weights."""
    if name == "bahdanau":  # vᵀ tanh(W s + U h_j)
        W, U, v = attention.query_proj.weight, attention.key_proj.weight, attention.energy.weight
        return torch.einsum("a,bja->bj", v[0], torch.tanh((query @ W.T)[:, None] + states @ U.T))
    if name == "dot":  # sᵀ h_j
        return torch.einsum("bd,bjd->bj", query, states)
    if name == "scaled_dot":  # sᵀ h_j / √d
        return torch.einsum("bd,bjd->bj", query, states) / math.sqrt(states.size(-1))
    if name == "general":  # sᵀ W_a h_j
        return torch.einsum("bd,bjd->bj", query, states @ attention.key_proj.weight.T)
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["bahdanau", "dot", "scaled_dot", "general"])
def test_each_scorer_computes_its_papers_formula(name: str) -> None:
    """Golden check: weights = masked softmax of e_ij, context = Σ_j a_ij h_j."""
    torch.manual_seed(1)
    attention = build_attention(name, SIZE, SIZE, attention_size=6, heads=1)
    encoder = encoder_output([5, 3], seed=2)
    query = 3 * torch.randn(2, SIZE)  # large: a scorer that lost its non-linearity differs
    context, weights = attention(query, attention.prepare(encoder))
    scores = reference_scores(attention, name, query, encoder.states)
    expected = torch.softmax(scores.masked_fill(~encoder.mask, -math.inf), dim=-1)
    torch.testing.assert_close(weights[:, 0], expected)
    torch.testing.assert_close(context, torch.einsum("bj,bjd->bd", expected, encoder.states))


def test_multi_head_attention_computes_vaswanis_formula() -> None:
    """head_k = softmax(q W_q^k (K W_k^k)ᵀ / √d_k) V W_v^k; context = W_o [head_1; …; head_H]."""
    torch.manual_seed(1)
    heads, size = 2, 6
    attention = MultiHeadAttention(SIZE, SIZE, size, heads=heads)
    encoder = encoder_output([5, 3], seed=2)
    query = 3 * torch.randn(2, SIZE)
    context, weights = attention(query, attention.prepare(encoder))
    d = size // heads
    q = (query @ attention.query_proj.weight.T).view(2, heads, d)
    k = (encoder.states @ attention.key_proj.weight.T).view(2, 5, heads, d)
    v = (encoder.states @ attention.value_proj.weight.T).view(2, 5, heads, d)
    scores = torch.einsum("bhd,bjhd->bhj", q, k) / math.sqrt(d)
    expected = torch.softmax(scores.masked_fill(~encoder.mask[:, None], -math.inf), dim=-1)
    torch.testing.assert_close(weights, expected)
    mixed = torch.einsum("bhj,bjhd->bhd", expected, v).reshape(2, size)
    torch.testing.assert_close(context, mixed @ attention.output_proj.weight.T)
