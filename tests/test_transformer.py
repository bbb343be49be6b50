"""The Transformer decoder: causal, blind to padding, cached decoding equal to the parallel pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import model_config, train_synthetic
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.checkpoint import load_checkpoint
from seq2seq.data.batching import Batch, collate
from seq2seq.data.tokenizer import BOS_ID, PAD_ID
from seq2seq.inference import load_translator
from seq2seq.model.seq2seq import Seq2Seq, build_model
from seq2seq.search import SearchSettings, beam_search, greedy_search
from seq2seq.training.schedule import step_lr

VOCAB = 30


def transformer(
    seed: int = 0,
    positions: str = "sinusoidal",
    attention: str = "multihead",
    tie: bool = False,
    encoder: str = "self_attention",
    layers: int = 2,
) -> Seq2Seq:
    cfg = model_config(
        "embed_size=16",
        "dropout=0.0",
        f"encoder.name={encoder}",
        "encoder.rnn.hidden=8",
        "encoder.self_attention.layers=2",
        "encoder.self_attention.heads=2",
        "encoder.self_attention.ff_size=32",
        f"encoder.self_attention.positions={positions}",
        "decoder.name=transformer",
        f"decoder.tie_embeddings={tie}",
        f"decoder.transformer.layers={layers}",
        "decoder.transformer.heads=2",
        "decoder.transformer.ff_size=32",
        f"decoder.transformer.positions={positions}",
        f"attention.name={attention}",
        "attention.bahdanau.size=16",
        "attention.multihead.size=16",
        "attention.multihead.heads=2",
    )
    torch.manual_seed(seed)
    return build_model(cfg, VOCAB, VOCAB).eval()


def batch_with_targets(seed: int, size: int = 5) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    src_lengths = torch.randint(1, 9, (size,), generator=generator).tolist()
    tgt_lengths = torch.randint(1, 9, (size,), generator=generator).tolist()
    sources = [torch.randint(4, VOCAB, (n,), generator=generator).tolist() for n in src_lengths]
    targets = [torch.randint(4, VOCAB, (n,), generator=generator).tolist() for n in tgt_lengths]
    return collate(sources, targets, list(range(size)))


def stepwise_logits(model: Seq2Seq, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and alignment weights of every target position, one cached step at a time."""
    decoder = model.decoder
    encoder = model.encode(batch)
    memory, state = decoder.prepare(encoder), decoder.init_state(encoder)
    logits, weights = [], []
    for previous in batch.tgt_in.unbind(1):
        state, step_logits, step_weights = decoder.next_logits(previous, state, memory)
        logits.append(step_logits)
        weights.append(step_weights)
    return torch.stack(logits, 1), torch.stack(weights, 1)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned", "rotary", "none"])
@pytest.mark.parametrize("encoder", ["self_attention", "rnn"])
def test_cached_decoding_gives_the_logits_of_the_parallel_forward(
    positions: str, encoder: str
) -> None:
    model, batch = transformer(1, positions, encoder=encoder), batch_with_targets(1)
    with torch.no_grad():
        parallel_logits, parallel_weights = model(batch)
        cached_logits, cached_weights = stepwise_logits(model, batch)
    real = batch.tgt_in != PAD_ID
    torch.testing.assert_close(cached_logits[real], parallel_logits[real], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cached_weights[real], parallel_weights[real], atol=1e-6, rtol=1e-5)


def test_a_future_target_word_changes_nothing_before_it() -> None:
    model, batch = transformer(2), batch_with_targets(2)
    with torch.no_grad():
        before, _ = model(batch)
        changed = batch.tgt_in.clone()
        changed[:, 3] = (changed[:, 3] + 1 - 4) % (VOCAB - 4) + 4  # another real word at 3
        after, _ = model(Batch(batch.src, batch.src_lengths, changed, batch.tgt_out, batch.indices))
    torch.testing.assert_close(after[:, :3], before[:, :3])
    assert not torch.allclose(after[:, 3:], before[:, 3:])


def test_padding_changes_nothing() -> None:
    model = transformer(3)
    short = collate([[5, 6, 7]], [[8, 9]], [0])
    padded = collate([[5, 6, 7], [5, 6, 7, 8, 9, 10, 11]], [[8, 9], [8, 9, 10, 11, 12, 13]], [0, 1])
    row = padded.indices.index(0)  # collate sorts longest first: the short pair is padded
    with torch.no_grad():
        alone, alone_weights = model(short)
        together, together_weights = model(padded)
    steps = short.tgt_in.size(1)
    torch.testing.assert_close(together[row, :steps], alone[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        together_weights[row, :steps, :, :4], alone_weights[0], atol=1e-6, rtol=1e-5
    )
    assert together_weights[row, :, :, 4:].abs().max() == 0  # no weight on padded source


def test_every_layers_cross_attention_rows_sum_to_one_over_real_source_tokens() -> None:
    model, batch = transformer(4, layers=3), batch_with_targets(4)
    with torch.no_grad():
        layers = model.decoder.cross_attention(batch.tgt_in, model.encode(batch))
    assert len(layers) == 3
    mask = batch.src != PAD_ID  # (batch, src)
    for weights in layers:
        assert weights is not None
        assert weights.shape[:3] == (*batch.tgt_in.shape, 2)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
        assert weights.masked_select(~mask[:, None, None, :]).abs().max() == 0


@pytest.mark.parametrize("attention", ["multihead", "bahdanau", "none"])
def test_beam_size_one_is_greedy(attention: str) -> None:
    for seed in range(3):
        model, batch = transformer(seed, attention=attention), batch_with_targets(seed)
        greedy = greedy_search(model, batch)
        beam = beam_search(model, batch, SearchSettings(beam_size=1))
        assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]
        for g, (b,) in zip(greedy, beam, strict=True):
            assert g.score == pytest.approx(b.score, abs=1e-4)


def test_beam_search_scores_are_the_models_log_probabilities() -> None:
    model, batch = transformer(5), batch_with_targets(5)
    for sentence, hypotheses in enumerate(
        beam_search(model, batch, SearchSettings(beam_size=4, nbest=3))
    ):
        for hypothesis in hypotheses:
            tokens = hypothesis.tokens
            source = batch.src[sentence, : batch.src_lengths[sentence] - 1].tolist()  # no EOS
            one = collate([source], None, [0])
            tgt_in = torch.tensor([[BOS_ID, *tokens[:-1]]])
            with torch.no_grad():
                logits = model.decoder(tgt_in, model.encode(one))[0].log_softmax(-1)
            expected = logits[0, torch.arange(len(tokens)), tokens].sum()
            assert hypothesis.score == pytest.approx(float(expected), abs=1e-4)


def test_tied_embeddings_share_one_matrix_and_train_as_one() -> None:
    model = transformer(6, tie=True)
    assert model.decoder.output.weight is model.decoder.embedding.weight
    untied = transformer(6)
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in untied.parameters()) - VOCAB * 16


def test_distracted_transformer_has_no_weights() -> None:
    model = transformer(7, attention="none")
    assert not model.has_attention_weights
    assert model(batch_with_targets(7))[1] is None


def test_alignment_layer_is_validated_and_chosen() -> None:
    cfg = model_config(
        "embed_size=16",
        "decoder.name=transformer",
        "decoder.transformer.layers=2",
        "attention.name=multihead",
        "attention.multihead.size=16",
    )
    cfg.decoder.transformer.alignment_layer = 2
    with pytest.raises(ValueError, match="alignment_layer=2"):
        build_model(cfg, VOCAB, VOCAB)
    cfg.decoder.transformer.alignment_layer = 0
    model = build_model(cfg, VOCAB, VOCAB).eval()
    batch = batch_with_targets(8)
    with torch.no_grad():
        first = model.decoder.cross_attention(batch.tgt_in, model.encode(batch))[0]
        torch.testing.assert_close(model(batch)[1], first)


def test_inverse_sqrt_warms_up_then_falls_as_one_over_root_step() -> None:
    rates = [step_lr(s, 1e-3, 0.0, 100, 0, "inverse_sqrt") for s in (1, 50, 100, 400, 10000)]
    assert rates == pytest.approx([1e-5, 5e-4, 1e-3, 5e-4, 1e-4])


@pytest.mark.slow
def test_transformer_trains_and_shows_each_layers_alignment(tmp_path: Path) -> None:
    """On the synthetic corpus (gold links): AER per layer, the dev-chosen alignment layer in
    best.pt, and the layer × head grid beside the alignment heatmaps."""
    run_dir = train_synthetic(
        tmp_path,
        8,
        4,
        "model=transformer",
        "model.embed_size=16",
        "model.attention.multihead.size=16",
        "model.attention.multihead.heads=2",
        "model.encoder.self_attention.heads=2",
        "model.encoder.self_attention.ff_size=32",
        "model.decoder.transformer.heads=2",
        "model.decoder.transformer.ff_size=32",
        "data.synthetic.train_size=300",
        "data.synthetic.dev_size=20",
        "data.synthetic.test_size=20",
        "data.synthetic.long_test_size=10",
        "data.synthetic.word_order_train=20",
        "data.synthetic.word_order_size=10",
        "trainer.lr_schedule=inverse_sqrt",
        "trainer.warmup_steps=4",
    )
    accumulator = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    assert {"valid/aer", "valid/aer_layer0", "valid/aer_layer1", "valid/aer_layer2"} <= scalars
    layer_aers = [accumulator.Scalars(f"valid/aer_layer{k}")[-1].value for k in range(3)]
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    chosen = int(best["model"]["decoder.alignment_layer"])
    assert best["progress"]["best_step"] in (4, 8)
    by_step = {
        e.step: [accumulator.Scalars(f"valid/aer_layer{k}")[i].value for k in range(3)]
        for i, e in enumerate(accumulator.Scalars("valid/aer"))
    }
    assert chosen == min(range(3), key=by_step[best["progress"]["best_step"]].__getitem__)
    assert accumulator.Scalars("valid/aer")[-1].value == pytest.approx(min(layer_aers))
    for tag in ("alignment/0", "alignment_heads/0"):
        assert [image.step for image in accumulator.Images(tag)] == [4, 8]
    assert (run_dir / "alignments" / "step_0000008" / "dev_1_heads.png").is_file()
    assert "aer_layer0" in json.loads((run_dir / "metrics.json").read_text())["test"]

    # translate.py --alignments reads the chosen layer's cross-attention from best.pt alone.
    translator = load_translator(run_dir / "checkpoints" / "best.pt", "cpu", "fp32")
    assert translator.model.decoder.alignment_index == chosen
    source = "我爱你。"
    (hypothesis,) = translator.translate([source], translator.search_settings(beam_size=3))[0][:1]
    alignment = translator.alignment(source, hypothesis)
    assert alignment.weights.shape == (len(hypothesis.tokens), len(alignment.source_labels))
    np.testing.assert_allclose(alignment.weights.sum(axis=1), 1.0, rtol=1e-5)


TINY_TRANSFORMER = [
    "model=transformer",
    "model.attention.multihead.heads=2",
    "model.encoder.self_attention.heads=2",
    "model.encoder.self_attention.ff_size=32",
    "model.decoder.transformer.heads=2",
    "model.decoder.transformer.ff_size=32",
    "model.decoder.tie_embeddings=true",
    "trainer.lr_schedule=inverse_sqrt",
    "trainer.warmup_steps=2",
    "trainer.ema_decay=0.9",
]


@pytest.mark.slow
def test_transformer_resumes_exactly(tmp_path: Path) -> None:
    from test_training import run  # the tiny TSV corpus and its run helper

    straight = run(tmp_path, "straight", *TINY_TRANSFORMER)
    half = run(tmp_path, "half", *TINY_TRANSFORMER, "trainer.max_steps=3")
    resumed = run(
        tmp_path, "resumed", *TINY_TRANSFORMER, f"trainer.resume={half / 'checkpoints' / 'last.pt'}"
    )
    expected = load_checkpoint(straight / "checkpoints" / "last.pt")
    continued = load_checkpoint(resumed / "checkpoints" / "last.pt")
    for name, tensor in expected["model"].items():
        torch.testing.assert_close(continued["model"][name], tensor, msg=name)
    for name, tensor in expected["ema"]["average"].items():
        torch.testing.assert_close(continued["ema"]["average"][name], tensor, msg=name)
