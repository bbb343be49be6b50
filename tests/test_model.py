"""Encoder packing, decoder masking, greedy search and checkpoints of small models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import VOCAB, model_config, small_model

from seq2seq.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from seq2seq.data.batching import collate
from seq2seq.data.tokenizer import EOS_ID
from seq2seq.metrics.loss import sequence_loss
from seq2seq.model.decoder import LuongDecoder
from seq2seq.model.seq2seq import Seq2Seq, build_model
from seq2seq.search import greedy_search


def toy_batch():
    sources = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    targets = [[15, 16, 17], [18, 19, 20, 21], [22]]
    return collate(sources, targets, [0, 1, 2])


@pytest.mark.parametrize(
    "attention", ["none", "bahdanau", "dot", "general", "scaled_dot", "multihead"]
)
@pytest.mark.parametrize(
    ("rnn", "style", "feeding"),
    [
        ("gru", "bahdanau", True),
        ("lstm", "bahdanau", True),
        ("gru", "luong", True),
        ("lstm", "luong", False),
    ],
)
def test_padding_changes_nothing(attention: str, rnn: str, style: str, feeding: bool) -> None:
    """A sentence scores the same alone as in a padded batch (packing + masks + loss mask)."""
    model = small_model(attention, rnn, style, feeding)
    batch = toy_batch()
    logits, weights = model(batch)
    row = batch.indices.index(1)  # the short sentence, padded in the batch
    alone = collate([[10, 11]], [[18, 19, 20, 21]], [1])
    alone_logits, alone_weights = model(alone)
    torch.testing.assert_close(logits[row, :5], alone_logits[0], atol=1e-5, rtol=1e-4)
    if attention == "none":
        assert weights is None
    else:
        assert weights is not None and (weights[row, :, :, 3:] == 0).all()
        torch.testing.assert_close(weights[row, :5, :, :3], alone_weights[0], atol=1e-5, rtol=1e-4)
    loss = sequence_loss(logits, batch.tgt_out)
    expected = sum(
        sequence_loss(logits[r : r + 1, :n], batch.tgt_out[r : r + 1, :n])
        for r, n in enumerate((batch.tgt_out != 0).sum(1).tolist())
    )
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("style", ["bahdanau", "luong"])
def test_training_reduces_the_loss(style: str) -> None:
    model = small_model(style=style).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = toy_batch()
    losses = []
    for _ in range(80):
        logits, _ = model(batch)
        loss = sequence_loss(logits, batch.tgt_out) / batch.target_tokens
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    outputs = greedy_search(model.eval(), toy_batch())
    by_index = dict(zip(toy_batch().indices, outputs, strict=True))
    assert by_index[1].tokens == [18, 19, 20, 21, EOS_ID]


def test_greedy_search_returns_one_attention_row_per_token() -> None:
    model = small_model()
    batch = toy_batch()
    for row, hypothesis in enumerate(greedy_search(model, batch, max_ratio=1.0, max_extra=2)):
        assert 1 <= len(hypothesis.tokens) <= int(batch.src_lengths.max()) + 2
        assert hypothesis.weights is not None
        assert hypothesis.weights.shape == (len(hypothesis.tokens), 1, int(batch.src_lengths[row]))
        assert hypothesis.score <= 0


def test_greedy_score_is_the_teacher_forced_log_probability() -> None:
    """In a batch whose sentences end at different steps: nothing after a sentence's EOS
    counts towards its score."""
    model = small_model().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(60):  # learn the toy batch: its targets have 1, 3 and 4 words
        logits, _ = model(toy_batch())
        optimizer.zero_grad()
        sequence_loss(logits, toy_batch().tgt_out).backward()
        optimizer.step()
    model.eval()
    sources = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    batch = collate(sources, None, [0, 1, 2])
    hypotheses = greedy_search(model, batch, max_extra=30)  # in batch row order
    assert len({len(h.tokens) for h in hypotheses}) == 3
    for index, hypothesis in zip(batch.indices, hypotheses, strict=True):
        source = sources[index]
        forced = collate([source], [hypothesis.tokens[:-1]], [0])
        logits, _ = model(forced)
        log_probs = torch.log_softmax(logits, -1)[0]  # position i predicts tokens[i]
        expected = log_probs.gather(1, torch.tensor(hypothesis.tokens).unsqueeze(1)).sum()
        torch.testing.assert_close(torch.tensor(hypothesis.score), expected, atol=1e-4, rtol=1e-4)


def test_multi_layer_unidirectional_encoder_builds() -> None:
    cfg = model_config(
        "embed_size=8",
        "encoder.rnn.layers=2",
        "encoder.rnn.bidirectional=false",
        "encoder.rnn.hidden=6",
        "decoder.rnn.hidden=6",
        "attention.name=dot",
    )
    model = build_model(cfg, VOCAB, VOCAB)
    logits, weights = model(toy_batch())
    assert logits.shape[-1] == VOCAB and weights is not None


def test_checkpoint_round_trip_and_errors(tmp_path: Path) -> None:
    model = small_model()
    path = tmp_path / "ckpt" / "best.pt"
    save_checkpoint(path, {"model": model.state_dict(), "source_spm": b"bytes", "step": 3})
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temporary file left
    state = load_checkpoint(path)
    restored = small_model()
    for p in restored.parameters():
        torch.nn.init.zeros_(p)
    restored.load_state_dict(state["model"])
    torch.testing.assert_close(restored(toy_batch())[0], model(toy_batch())[0])
    assert state["source_spm"] == b"bytes"

    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "corrupt.pt")


@pytest.mark.parametrize("style", ["bahdanau", "luong"])
def test_tied_rnn_output_scores_with_the_target_embedding(tmp_path: Path, style: str) -> None:
    """model.decoder.tie_embeddings: hidden (12) → embed (8), then the embedding matrix scores
    every piece; a word only ever scored, never fed, still trains its one embedding row."""
    model, untied = small_model(style=style, tie=True), small_model(style=style)
    assert model.decoder.output[1].weight is model.decoder.embedding.weight
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in untied.parameters()) - VOCAB * 12 + 12 * 8

    batch = toy_batch()
    logits, _ = model.train()(batch)
    sequence_loss(logits, batch.tgt_out).backward()
    fed = set(batch.tgt_in.flatten().tolist())
    never_fed = [word for word in range(4, VOCAB) if word not in fed]
    assert model.decoder.embedding.weight.grad[never_fed].abs().sum(-1).gt(0).all()

    path = tmp_path / "tied.pt"
    save_checkpoint(path, {"model": model.state_dict()})
    restored = small_model(style=style, tie=True)
    restored.load_state_dict(load_checkpoint(path)["model"])
    assert restored.decoder.output[1].weight is restored.decoder.embedding.weight
    torch.testing.assert_close(restored.eval()(batch)[0], model.eval()(batch)[0])


def test_checkpoint_refuses_pickled_code(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (print, ("pickled code ran",))

    torch.save({"format_version": 1, "evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")


@pytest.mark.parametrize("attention", ["none", "bahdanau", "general", "multihead"])
@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_luong_without_input_feeding_runs_all_steps_at_once_with_the_loops_numbers(
    attention: str, rnn: str
) -> None:
    """The whole-sequence path (one torch.gru/lstm call, one batched attention) must compute
    what the step-by-step loop computes, weights included."""
    from seq2seq.model.decoder import RNNDecoder

    model = small_model(attention, rnn, style="luong", feeding=False, kernels="reference")
    batch = toy_batch()
    encoder = model.encode(batch)
    with torch.no_grad():
        logits, weights = model.decoder(batch.tgt_in, encoder)
        loop_logits, loop_weights = RNNDecoder.forward(model.decoder, batch.tgt_in, encoder)
    torch.testing.assert_close(logits, loop_logits, atol=1e-5, rtol=1e-5)
    if attention == "none":
        assert weights is None and loop_weights is None
    else:
        torch.testing.assert_close(weights, loop_weights, atol=1e-6, rtol=1e-5)


def test_param_init_draws_every_weight_uniformly_and_keeps_padding_rows_zero() -> None:
    cfg = model_config(
        "embed_size=8",
        "param_init=0.05",
        "encoder.rnn.hidden=6",
        "decoder.rnn.hidden=12",
        "attention.name=bahdanau",
    )
    torch.manual_seed(0)
    model = build_model(cfg, VOCAB, VOCAB)
    for name, parameter in model.named_parameters():
        assert parameter.abs().max() <= 0.05, name
    embeddings = [model.encoder.embedding, model.decoder.embedding]
    for embedding in embeddings:
        assert embedding.weight[embedding.padding_idx].abs().sum() == 0
        assert embedding.weight.std() > 0.02  # uniform ±0.05 has std 0.029, not N(0, 1)'s 1


def reference_decoder(model: Seq2Seq, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The decoder's equations written out with torch's own GRU/LSTM cells (dropout off).

    Bahdanau: C_i from s_{i-1}; s_i = RNN([y_{i-1}; C_i], s_{i-1}); out = W_o tanh(W_r[s_i; C_i;
    y_{i-1}]). Luong: s_i = RNN([y_{i-1}; h̃_{i-1}], s_{i-1}) (h̃ only with input feeding); C_i
    from s_i; h̃_i = tanh(W_c[C_i; s_i]); out = W_o h̃_i. Both start at tanh(W_init summary).
    """
    decoder = model.decoder
    encoder = model.encode(batch)
    memory = decoder.attention.prepare(encoder)
    luong = isinstance(decoder, LuongDecoder)
    if luong:  # the RNN also reads h̃_{i-1} with input feeding
        extra = decoder.feed_proj if decoder.input_feeding else None
    else:  # the RNN also reads C_i
        extra = decoder.context_proj
    weight_ih = decoder.input_proj.weight
    if extra is not None:
        weight_ih = torch.cat([weight_ih, extra.weight], dim=1)
    cell = (torch.nn.LSTMCell if decoder.is_lstm else torch.nn.GRUCell)(
        weight_ih.size(1), decoder.hidden_size
    )
    cell.weight_ih.data, cell.bias_ih.data = weight_ih, decoder.input_proj.bias
    cell.weight_hh.data, cell.bias_hh.data = decoder.hidden_proj.weight, decoder.hidden_proj.bias
    init = torch.tanh(decoder.init_proj(encoder.summary))
    state = tuple(init.chunk(2, dim=-1)) if decoder.is_lstm else init
    attentional = torch.zeros_like(init[:, : decoder.hidden_size])
    logits, weights = [], []
    for embedded in decoder.embedding(batch.tgt_in).unbind(1):
        hidden = state[0] if decoder.is_lstm else state
        if luong:
            rnn_input = embedded if extra is None else torch.cat([embedded, attentional], -1)
            state = cell(rnn_input, state)
            hidden = state[0] if decoder.is_lstm else state
            context, step_weights = decoder.attention(hidden, memory)
            attentional = torch.tanh(decoder.combine(torch.cat([context, hidden], -1)))
            logits.append(decoder.output(attentional))
        else:
            context, step_weights = decoder.attention(hidden, memory)
            state = cell(torch.cat([embedded, context], -1), state)
            hidden = state[0] if decoder.is_lstm else state
            readout = decoder.readout(torch.cat([hidden, context, embedded], -1))
            logits.append(decoder.output(torch.tanh(readout)))
        weights.append(step_weights)
    stacked = None if weights[0] is None else torch.stack(weights, 1)
    return torch.stack(logits, 1), stacked


@pytest.mark.parametrize("attention", ["none", "bahdanau", "multihead"])
@pytest.mark.parametrize(
    ("rnn", "style", "feeding"),
    [
        ("gru", "bahdanau", True),
        ("lstm", "bahdanau", True),
        ("gru", "luong", True),
        ("lstm", "luong", True),
        ("gru", "luong", False),
    ],
)
def test_each_decoder_wiring_computes_its_equations(
    attention: str, rnn: str, style: str, feeding: bool
) -> None:
    """Golden check against an independent step loop: which state queries attention, what the
    RNN reads, the readout, the start state. Weights are scaled up so gates saturate
    differently when an equation is wrong. The reference modules: tests/test_fused_loops.py
    holds the fast kernels to them."""
    model = small_model(attention, rnn, style, feeding, kernels="reference")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3)
    batch = toy_batch()
    logits, weights = model(batch)
    expected_logits, expected_weights = reference_decoder(model, batch)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=1e-4)
    if attention == "none":
        assert weights is None and expected_weights is None
    else:
        torch.testing.assert_close(weights, expected_weights, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("layers", "rnn"), [(1, "gru"), (2, "gru"), (2, "lstm")])
def test_the_encoder_summary_is_the_last_forward_and_first_backward_state(
    layers: int, rnn: str
) -> None:
    """C = [→h_{T_x}; ←h_1] of the top layer, at each sentence's own last token (not the
    padding's), and the mask marks exactly the real tokens."""
    cfg = model_config(
        "embed_size=8",
        "dropout=0.0",
        f"encoder.rnn.cell={rnn}",
        f"encoder.rnn.layers={layers}",
        "encoder.rnn.hidden=6",
        f"decoder.rnn.cell={rnn}",
        "attention.name=bahdanau",
    )
    torch.manual_seed(0)
    model = build_model(cfg, VOCAB, VOCAB).eval()
    batch = toy_batch()
    encoder = model.encode(batch)
    half = 6
    for row, length in enumerate(batch.src_lengths.tolist()):
        forward_last = encoder.states[row, length - 1, :half]
        backward_first = encoder.states[row, 0, half:]
        torch.testing.assert_close(encoder.summary[row], torch.cat([forward_last, backward_first]))
        assert encoder.mask[row].tolist() == [i < length for i in range(batch.src.size(1))]
