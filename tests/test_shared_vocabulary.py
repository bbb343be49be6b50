"""One vocabulary for both languages (data.shared_vocab_size) and one embedding matrix for both
sides (model.share_embeddings)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import model_config
from hydra import compose, initialize_config_dir
from test_training import run

from seq2seq.checkpoint import load_checkpoint
from seq2seq.config.schema import (
    PROJECT_ROOT,
    register_configs,
)
from seq2seq.config.validation import check_settings
from seq2seq.data.batching import collate
from seq2seq.data.tokenizer import UNK_ID, normalization_rule
from seq2seq.inference import load_translator
from seq2seq.model.seq2seq import Seq2Seq, build_model

VOCAB, EMBED = 30, 16


def model(
    decoder: str, share: bool, src_vocab: int = VOCAB, attention: str = "multihead"
) -> Seq2Seq:
    cfg = model_config(
        f"embed_size={EMBED}",
        "dropout=0.0",
        f"share_embeddings={share}",
        "encoder.name=self_attention",
        "encoder.self_attention.layers=1",
        "encoder.self_attention.heads=2",
        "encoder.self_attention.ff_size=32",
        f"decoder.name={decoder}",
        "decoder.rnn.hidden=16",
        f"decoder.rnn.style={'luong' if attention == 'bahdanau' else 'bahdanau'}",
        "decoder.transformer.layers=1",
        "decoder.transformer.heads=2",
        "decoder.transformer.ff_size=32",
        f"attention.name={attention}",
        "attention.bahdanau.size=16",
        "attention.multihead.size=16",
        "attention.multihead.heads=2",
    )
    torch.manual_seed(0)
    return build_model(cfg, src_vocab, VOCAB)


@pytest.mark.parametrize(
    ("decoder", "attention"),
    [("rnn", "multihead"), ("rnn", "bahdanau"), ("transformer", "multihead")],
)
def test_shared_embeddings_are_one_matrix_whose_gradient_is_both_sides(
    decoder: str, attention: str
) -> None:
    """The RNN with additive attention trains through the hand-written loop (Luong style)."""
    shared = model(decoder, share=True, attention=attention)
    untied = model(decoder, share=False, attention=attention)
    assert shared.encoder.embedding.weight is shared.decoder.embedding.weight
    count = sum(p.numel() for p in shared.parameters())
    assert count == sum(p.numel() for p in untied.parameters()) - VOCAB * EMBED
    untied.load_state_dict(shared.state_dict())  # both of its matrices now hold the shared one
    batch = collate([[5, 6, 7, 8], [9, 10]], [[11, 5, 12], [6, 13, 14, 15]], [0, 1])
    for m in (shared, untied):
        logits = m(batch)[0]
        logits.log_softmax(-1).gather(-1, batch.tgt_out.unsqueeze(-1)).sum().backward()
    expected = untied.encoder.embedding.weight.grad + untied.decoder.embedding.weight.grad
    torch.testing.assert_close(shared.decoder.embedding.weight.grad, expected)


def test_shared_embeddings_need_one_vocabulary() -> None:
    with pytest.raises(ValueError, match="source embedding is \\(40, 16\\), the target's"):
        model("rnn", share=True, src_vocab=40)
    register_configs()
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["model.share_embeddings=true"])
    with pytest.raises(ValueError, match="set data.shared_vocab_size"):
        check_settings(cfg)


def test_a_shared_model_keeps_chinese_exact() -> None:
    assert normalization_rule("zh+en") == normalization_rule("zh") == "identity"
    assert normalization_rule("en") == "nmt_nfkc"


def test_a_run_with_one_vocabulary_trains_saves_and_translates(tmp_path: Path) -> None:
    run_dir = run(tmp_path, "shared", "data.shared_vocab_size=70", "model.share_embeddings=true")
    state = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    assert state["source_spm"] == state["target_spm"]
    weights = state["model"]
    torch.testing.assert_close(
        weights["encoder.embedding.weight"], weights["decoder.embedding.weight"]
    )
    translator = load_translator(run_dir / "checkpoints" / "best.pt", "cpu", "fp32")
    assert translator.model.encoder.embedding.weight is translator.model.decoder.embedding.weight
    chinese, english = translator.source_tokenizer.encode(["他们爱我", "They love me"])
    assert UNK_ID not in chinese + english  # one model covers both scripts
    (best,) = translator.translate(["他们爱我。"])[0]
    assert best.tokens and translator.detokenize(best)
