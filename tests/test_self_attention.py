"""The self-attention encoder: a bag of words without positions, ordered with them."""

from __future__ import annotations

import pytest
import torch
from helpers import model_config

from seq2seq.data.batching import collate
from seq2seq.model.encoder import SelfAttentionEncoder
from seq2seq.model.positions import POSITIONS, RotaryPositions
from seq2seq.model.seq2seq import build_model

VOCAB = 30
SENTENCE = [5, 9, 12, 7, 21, 3]  # ids of real pieces; collate appends EOS


def encoder(positions: str, max_positions: int = 64) -> SelfAttentionEncoder:
    torch.manual_seed(0)
    return SelfAttentionEncoder(
        VOCAB,
        embed_size=16,
        layers=2,
        heads=2,
        ff_size=32,
        dropout=0.0,
        positions=positions,
        max_positions=max_positions,
    ).eval()


def encode(model: SelfAttentionEncoder, *sentences: list[int]):
    """Encoder output of ``sentences`` in the order given (collate sorts longest first)."""
    batch = collate(list(sentences), None, list(range(len(sentences))))
    out = model(batch.src, batch.src_lengths)
    order = torch.tensor(batch.indices).argsort()
    return out.states[order], out.summary[order], out.mask[order]


def test_without_positions_permuting_the_source_permutes_the_annotations() -> None:
    model = encoder("none")
    permutation = torch.tensor([3, 0, 5, 1, 4, 2, 6])  # EOS (index 6) may move too
    ids = torch.tensor([*SENTENCE, 2]).unsqueeze(0)  # with EOS, as collate writes it
    lengths = torch.tensor([ids.size(1)])
    original = model(ids, lengths)
    permuted = model(ids[:, permutation], lengths)
    torch.testing.assert_close(permuted.states, original.states[:, permutation])
    torch.testing.assert_close(permuted.summary, original.summary)  # the mean forgets order


@pytest.mark.parametrize("positions", ["sinusoidal", "learned", "rotary"])
def test_with_positions_permuting_the_source_changes_the_annotations(positions: str) -> None:
    model = encoder(positions)
    permutation = torch.tensor([3, 0, 5, 1, 4, 2])
    states, summary, _ = encode(model, SENTENCE)
    swapped_states, swapped_summary, _ = encode(model, [SENTENCE[i] for i in permutation])
    moved = states[:, torch.cat([permutation, torch.tensor([6])])]
    assert (swapped_states - moved).abs().max() > 1e-3
    assert (swapped_summary - summary).abs().max() > 1e-3


@pytest.mark.parametrize("positions", POSITIONS)
def test_padding_changes_nothing(positions: str) -> None:
    model = encoder(positions)
    short = SENTENCE[:3]
    states, summary, mask = encode(model, SENTENCE, short)
    alone_states, alone_summary, _ = encode(model, short)
    real = len(short) + 1  # with EOS
    torch.testing.assert_close(states[1, :real], alone_states[0])
    torch.testing.assert_close(summary[1], alone_summary[0])
    assert mask[1].tolist() == [True] * real + [False] * (len(SENTENCE) + 1 - real)
    assert torch.all(states[1, real:] == 0)
    batch = collate([SENTENCE, short], None, [0, 1])
    for weights in model.attention_maps(batch.src):  # (batch, heads, src, src), short is row 1
        assert torch.all(weights[1, :, :, real:] == 0)
        torch.testing.assert_close(weights[1].sum(-1), torch.ones(2, len(SENTENCE) + 1))


def test_without_positions_the_whole_model_cannot_tell_word_order() -> None:
    """我爱你 and 你爱我 get the same output distribution at every step: a bag of words."""
    cfg = model_config(
        "embed_size=16",
        "dropout=0.0",
        "encoder.name=self_attention",
        "encoder.self_attention.heads=2",
        "encoder.self_attention.ff_size=32",
        "encoder.self_attention.positions=none",
        "decoder.rnn.hidden=12",
        "attention.name=bahdanau",
        "attention.bahdanau.size=12",
    )
    torch.manual_seed(0)
    model = build_model(cfg, VOCAB, VOCAB).eval()
    target = [[4, 8, 15]]
    i_love_you, you_love_me = [5, 9, 12], [12, 9, 5]
    forward = model(collate([i_love_you], target, [0]))[0]
    backward = model(collate([you_love_me], target, [0]))[0]
    torch.testing.assert_close(forward, backward)
    cfg.encoder.self_attention.positions = "sinusoidal"
    torch.manual_seed(0)
    ordered = build_model(cfg, VOCAB, VOCAB).eval()
    assert not torch.allclose(
        ordered(collate([i_love_you], target, [0]))[0],
        ordered(collate([you_love_me], target, [0]))[0],
    )


def test_rotary_scores_depend_only_on_the_distance() -> None:
    rotary = RotaryPositions(8)
    torch.manual_seed(0)
    q, k = torch.randn(8), torch.randn(8)

    def score(m: int, n: int) -> torch.Tensor:
        length = max(m, n) + 1
        queries = torch.zeros(1, 1, length, 8)
        keys = torch.zeros(1, 1, length, 8)
        queries[0, 0, m], keys[0, 0, n] = q, k
        return rotary(queries)[0, 0, m] @ rotary(keys)[0, 0, n]

    torch.testing.assert_close(score(2, 5), score(9, 12))
    torch.testing.assert_close(score(7, 1), score(10, 4))
    assert not torch.allclose(score(2, 5), score(2, 6))


def test_a_source_longer_than_the_learned_table_fails_with_advice() -> None:
    model = encoder("learned", max_positions=4)
    with pytest.raises(ValueError, match="model.encoder.self_attention.max_positions=4"):
        encode(model, SENTENCE)


def test_bad_settings_fail_with_the_key_named() -> None:
    with pytest.raises(ValueError, match="model.encoder.self_attention.positions"):
        encoder("absolute")
    with pytest.raises(ValueError, match="model.encoder.self_attention.heads"):
        SelfAttentionEncoder(VOCAB, 16, 1, 3, 32, 0.0, "none", 64)


@pytest.mark.parametrize("stack", ["encoder.self_attention", "decoder.transformer"])
def test_each_stack_names_its_own_key_for_unknown_positions_and_heads_that_do_not_split(
    stack: str,
) -> None:
    transformer = [
        "embed_size=16",
        "encoder.name=self_attention",
        "decoder.name=transformer",
        "attention.name=multihead",
        "attention.multihead.size=16",
        "attention.multihead.heads=2",
    ]
    unknown = model_config(*transformer, f"{stack}.positions=absolute")
    with pytest.raises(ValueError, match=rf"model\.{stack}\.positions must be one of"):
        build_model(unknown, VOCAB, VOCAB)
    odd_heads = model_config(*transformer, f"{stack}.heads=16")  # heads of size 1
    with pytest.raises(ValueError, match=rf"into model\.{stack}\.heads \(16\) heads of even"):
        build_model(odd_heads, VOCAB, VOCAB)
    too_long = build_model(model_config(*transformer, f"{stack}.max_positions=4"), VOCAB, VOCAB)
    batch = collate([SENTENCE], [SENTENCE], [0])  # 7 source tokens, 7 target tokens
    with pytest.raises(ValueError, match=rf"longer than model\.{stack}\.max_positions=4"):
        too_long(batch)
