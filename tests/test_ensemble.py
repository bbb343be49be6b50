"""Ensemble decoding: one model alone, and the normalised mean of members' log-probabilities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sentencepiece.sentencepiece_model_pb2 import ModelProto
from test_search import random_batch, random_model

from seq2seq.checkpoint import load_checkpoint, save_checkpoint
from seq2seq.cli import evaluate_main, translate_main
from seq2seq.data.batching import collate
from seq2seq.model.ensemble import Ensemble
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.search import SearchSettings, beam_search, greedy_search, translate_batch

TINY = Path(__file__).resolve().parent / "data" / "tiny"


@pytest.mark.parametrize(
    ("attention", "rnn", "style"),
    [("none", "gru", "bahdanau"), ("bahdanau", "gru", "luong"), ("multihead", "lstm", "bahdanau")],
)
def test_an_ensemble_of_one_is_the_model_alone(attention: str, rnn: str, style: str) -> None:
    """Greedy and beam search (n-best, length penalty) give the same words, scores and
    attention; the scores differ at most by the rounding of normalising log-probabilities."""
    for seed in range(3):
        model, batch = random_model(attention, rnn, seed, style), random_batch(seed)
        ensemble = Ensemble([model]).eval()
        for alone, together in [
            (
                [[h] for h in greedy_search(model, batch)],
                [[h] for h in greedy_search(ensemble, batch)],
            ),
            (
                beam_search(model, batch, SearchSettings(beam_size=4, nbest=3, alpha=1.0)),
                beam_search(ensemble, batch, SearchSettings(beam_size=4, nbest=3, alpha=1.0)),
            ),
        ]:
            for alone_hypotheses, hypotheses in zip(alone, together, strict=True):
                for a, h in zip(alone_hypotheses, hypotheses, strict=True):
                    assert h.tokens == a.tokens
                    assert h.score == pytest.approx(a.score, rel=1e-6, abs=1e-5)
                    assert h.penalized_score == pytest.approx(a.penalized_score, rel=1e-6, abs=1e-5)
                    if a.weights is None:
                        assert h.weights is None
                    else:
                        torch.testing.assert_close(h.weights, a.weights)


def forced_log_probs_and_weights(
    model: Seq2Seq, source: list[int], tokens: list[int]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Teacher-forced log-probabilities (len, vocab) and weights (len, heads, src) of ``tokens``."""
    with torch.no_grad():
        logits, weights = model(collate([source], [tokens[:-1]], [0]))
    return torch.log_softmax(logits[0], dim=-1), None if weights is None else weights[0]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_two_members_decode_the_normalised_mean_of_their_log_probabilities(
    beam_size: int,
) -> None:
    """Each hypothesis' score is the sum over its words of log-softmax of the members' mean
    log-probabilities, teacher-forced member by member; its attention is the members' mean,
    even with different numbers of heads (each averaged over its heads first)."""
    members = [random_model("bahdanau", "gru", 1), random_model("multihead", "gru", 2, "luong")]
    ensemble, batch = Ensemble(members).eval(), random_batch(seed=3)
    nbest_lists = translate_batch(
        ensemble, batch, SearchSettings(beam_size=beam_size, nbest=beam_size)
    )
    alone = translate_batch(members[0], batch, SearchSettings(beam_size=beam_size))
    assert [h[0].tokens for h in nbest_lists] != [h[0].tokens for h in alone]  # both count
    for row, hypotheses in enumerate(nbest_lists):
        source = batch.src[row, : int(batch.src_lengths[row]) - 1].tolist()
        for h in hypotheses:
            forced = [forced_log_probs_and_weights(m, source, h.tokens) for m in members]
            mean = torch.log_softmax(torch.stack([lp for lp, _ in forced]).mean(0), dim=-1)
            score = mean[torch.arange(len(h.tokens)), h.tokens].sum()
            assert h.score == pytest.approx(float(score), abs=1e-4)
            weights = torch.stack([w.mean(dim=1, keepdim=True) for _, w in forced]).mean(0)
            assert h.weights is not None
            torch.testing.assert_close(h.weights, weights, atol=1e-5, rtol=1e-4)
            if beam_size == 1:  # greedy: each word is the argmax of the combined distribution
                assert h.tokens == mean.argmax(-1)[: len(h.tokens)].tolist()


def test_an_ensemble_with_a_model_without_attention_has_no_alignment() -> None:
    members = [random_model("bahdanau", "gru", 1), random_model("none", "gru", 2)]
    ensemble = Ensemble(members).eval()
    assert not ensemble.has_attention_weights
    assert all(h.weights is None for h in greedy_search(ensemble, random_batch(seed=0)))


@pytest.mark.slow
def test_evaluate_and_translate_take_several_checkpoints(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two copies of one checkpoint: the mean of two equal log-probabilities is the model's, so
    the same translations and BLEU as the checkpoint alone; alignments are written."""
    tsv = str(TINY / "test.tsv")
    reports = []
    for checkpoints in ([tiny_checkpoint], [tiny_checkpoint, tiny_checkpoint]):
        out = tmp_path / f"eval{len(checkpoints)}"
        args = [*map(str, checkpoints), tsv, "--beam", "3", "--device", "cpu", "--out", str(out)]
        assert evaluate_main(args) == 0
        reports.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    alone, pair = reports
    assert pair["checkpoints"] == [str(tiny_checkpoint.resolve())] * 2
    assert pair["bleu"] == alone["bleu"] and pair["chrf"] == alone["chrf"]
    hypotheses = [(tmp_path / f"eval{n}" / "hypotheses.txt").read_text() for n in (1, 2)]
    assert hypotheses[0] == hypotheses[1]

    sources = tmp_path / "zh.txt"
    sources.write_text("我爱你。\n你爱我。\n", encoding="utf-8")
    alignments = tmp_path / "aligned"
    args = [str(tiny_checkpoint), str(tiny_checkpoint), "--input", str(sources), "--device", "cpu"]
    assert translate_main([*args, "--alignments", str(alignments)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert {p.name for p in alignments.iterdir()} >= {"0.png", "0.npz", "0.links", "1.links"}


@pytest.mark.slow
def test_checkpoints_of_another_vocabulary_are_refused_in_one_line(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target vocabulary of the same size with one piece renamed loads as a model, but its
    ids mean other words: the ensemble is refused, status 2, one line naming the file."""
    state = load_checkpoint(tiny_checkpoint)
    vocabulary = ModelProto()
    vocabulary.ParseFromString(state["target_spm"])
    vocabulary.pieces[10].piece = "▁renamed"
    other = tmp_path / "other.pt"
    save_checkpoint(other, {**state, "target_spm": vocabulary.SerializeToString()})
    args = [str(tiny_checkpoint), str(other), str(TINY / "test.tsv"), "--device", "cpu"]
    assert evaluate_main([*args, "--out", str(tmp_path / "eval")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "other.pt: its target sentencepiece model differs from" in error
    assert not (tmp_path / "eval").exists()
