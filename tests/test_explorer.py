"""The explorer's prediction function and figures, called directly (no server, no browser)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq.data.batching import collate
from seq2seq.explorer import cli as explorer_cli
from seq2seq.explorer.cli import load_models, main
from seq2seq.explorer.figures import alignment_figure, attention_grid_figure, step_figure
from seq2seq.explorer.predict import (
    NO_WEIGHTS,
    explain,
    prefix_text,
    to_words,
)
from seq2seq.inference import InferenceError, Translator, load_translator
from seq2seq.search import beam_search

SENTENCE = "我爱你。"


@pytest.fixture(scope="module")
def translator(tiny_checkpoint: Path) -> Translator:
    return load_translator(tiny_checkpoint, "cpu", "fp32")


@pytest.fixture(scope="module")
def variant_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A distracted and a self-attention-encoder checkpoint, trained a few steps (seconds)."""
    from test_training import run

    base = tmp_path_factory.mktemp("explorer-variants")
    runs = {
        "distracted": ("model=distracted",),
        "self_attention": ("model/encoder=self_attention", "model.encoder.self_attention.heads=2"),
        "transformer": (
            "model=transformer",
            "model.attention.multihead.heads=2",
            "model.encoder.self_attention.heads=2",
            "model.decoder.transformer.heads=2",
            "model.decoder.transformer.alignment_layer=1",
        ),
    }
    return {
        name: run(base, name, *overrides, "trainer.max_steps=4") / "checkpoints" / "best.pt"
        for name, overrides in runs.items()
    }


def test_alignment_rows_sum_to_one_and_steps_replay_the_search(translator: Translator) -> None:
    result = explain(translator, SENTENCE, translator.search_settings(), top_k=3)
    best = result.outputs[0]
    assert result.source_labels[-1] == "</s>" and best.target_labels[-1] == "</s>"
    assert best.text == translator.detokenize(translator.translate([SENTENCE])[0][0])
    alignment = best.alignment
    assert alignment is not None
    assert alignment.shape == (len(best.target_labels), len(result.source_labels))
    np.testing.assert_allclose(alignment.sum(axis=1), 1.0, atol=1e-5)
    assert (alignment >= 0).all()
    # The step-by-step replay sees the weights and the words greedy search saw.
    assert [step.piece for step in best.steps] == best.target_labels
    for i, step in enumerate(best.steps):
        assert step.weights is not None
        np.testing.assert_allclose(step.weights, alignment[i], atol=1e-5)
        assert len(step.top_words) == 3 and step.top_words[0][0] == step.piece
        probabilities = [p for _, p in step.top_words]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    for i, step in enumerate(best.steps[:-1]):  # the last step ends the sentence: no live prefix
        assert [prefix for prefix, _ in step.beam] == [" ".join(best.target_labels[: i + 1])]
    # Greedy's trace, read off the replay, is the beam trace of beam size 1 (until greedy ends).
    (ids,) = translator.encode_sources([SENTENCE])
    batch = collate([ids], None, [0])
    trace: list[list[tuple[list[int], float]]] = []
    with torch.no_grad():
        beam_search(
            translator.model,
            batch,
            translator.search_settings(),
            lambda beam: trace.append(beam.live_prefixes(0)),
        )
    trace = trace[: len(best.steps)] + [[] for _ in range(len(best.steps) - len(trace))]
    for step, live in zip(best.steps[:-1], trace[:-1], strict=True):
        assert [p for p, _ in step.beam] == [prefix_text(translator, t) for t, _ in live]
        np.testing.assert_allclose([s for _, s in step.beam], [s for _, s in live], atol=1e-4)
    assert result.encoder_attention is None and result.notes == []


def test_beam_gives_nbest_and_a_live_beam_per_step(translator: Translator) -> None:
    settings = translator.search_settings(beam_size=3, nbest=2, alpha=1.0)
    result = explain(translator, SENTENCE, settings)
    (expected,) = translator.translate([SENTENCE], settings)
    assert [o.text for o in result.outputs] == [translator.detokenize(h) for h in expected]
    scores = [output.score for output in result.outputs]
    assert scores == sorted(scores, reverse=True)
    assert 1 <= len(result.outputs[0].steps[0].beam) <= 3
    for output in result.outputs:  # each translation's steps replay its own words and weights
        assert [step.piece for step in output.steps] == output.target_labels
        assert output.alignment is not None
        for i, step in enumerate(output.steps):
            np.testing.assert_allclose(step.weights, output.alignment[i], atol=1e-5)
            log_probs = [score for _, score in step.beam]
            assert log_probs == sorted(log_probs, reverse=True) and all(s <= 0 for s in log_probs)
    # Every kept translation was a live prefix of the beam one step before it ended.
    for output in result.outputs:
        if len(output.steps) > 1:
            live = [prefix for prefix, _ in output.steps[-2].beam]
            assert " ".join(output.target_labels[:-1]) in live


def test_distracted_model_reports_no_weights(variant_checkpoints: dict[str, Path]) -> None:
    translator = load_translator(variant_checkpoints["distracted"], "cpu", "fp32")
    result = explain(translator, SENTENCE, translator.search_settings(beam_size=2, nbest=2))
    assert all(output.weights is None and output.alignment is None for output in result.outputs)
    assert result.notes == [NO_WEIGHTS] and "same context C" in NO_WEIGHTS
    steps = result.outputs[0].steps
    assert steps and all(step.weights is None and step.top_words for step in steps)


def test_self_attention_encoder_maps_per_layer_and_head(
    variant_checkpoints: dict[str, Path],
) -> None:
    translator = load_translator(variant_checkpoints["self_attention"], "cpu", "fp32")
    result = explain(translator, SENTENCE, translator.search_settings())
    maps = result.encoder_attention
    layers = int(translator.config.model.encoder.self_attention.layers)
    assert maps is not None
    assert maps.shape == (layers, 2, len(result.source_labels), len(result.source_labels))
    np.testing.assert_allclose(maps.sum(axis=-1), 1.0, atol=1e-5)


def test_blank_and_over_long_sentences_are_refused(translator: Translator) -> None:
    with pytest.raises(InferenceError, match="type a sentence"):
        explain(translator, "   ", translator.search_settings())
    cap = int(translator.config.data.max_length)
    with pytest.raises(InferenceError, match=f"data.max_length={cap}"):
        explain(translator, SENTENCE * cap, translator.search_settings())
    with pytest.raises(InferenceError, match="characters"):
        explain(translator, "我" * 5000, translator.search_settings())


def test_to_words_sums_source_pieces_and_averages_target_pieces() -> None:
    weights = np.array(
        [
            [0.5, 0.25, 0.25],  # ▁I
            [0.1, 0.6, 0.3],  # ▁lo
            [0.3, 0.4, 0.3],  # ve
            [0.0, 0.0, 1.0],  # </s>
        ]
    )
    merged, source, target = to_words(
        weights, ["▁我", "爱", "</s>"], ["▁I", "▁lo", "ve", "</s>"], "zh", "en"
    )
    assert source == ["我", "爱", "</s>"] and target == ["I", "love", "</s>"]
    np.testing.assert_allclose(merged[1], [0.2, 0.5, 0.3])  # mean of the rows of ▁lo, ve
    np.testing.assert_allclose(merged.sum(axis=1), 1.0)
    # Spaced source words: ▁lo + ve is one column holding both pieces' mass.
    columns, words, _ = to_words(
        weights.T[:3, :3], ["▁lo", "ve", "▁I"], ["a", "b", "c"], "en", "zh"
    )
    assert words == ["love", "I"]
    np.testing.assert_allclose(columns[:, 0], weights.T[:3, 0] + weights.T[:3, 1])


def test_figures_hover_names_both_pieces_and_escape_tags() -> None:
    weights = np.full((2, 3), 1 / 3)
    figure = alignment_figure(weights, ["▁我", "你", "</s>"], ["▁you", "</s>"])
    heatmap = figure.data[0]
    assert heatmap.customdata[1][0].tolist() == ["&lt;/s&gt;", "▁我"]  # (target, source) of a cell
    assert "weight: %{z:.3f}" in heatmap.hovertemplate
    assert list(figure.layout.xaxis.ticktext) == ["▁我", "你", "&lt;/s&gt;"]
    grid = attention_grid_figure(
        np.full((2, 3, 3, 3), 1 / 3), ["a", "b", "c"], ["a", "b", "c"], "t"
    )
    assert len(grid.data) == 6 and grid.layout.annotations[-1].text == "L2 H3"
    assert grid.layout.xaxis.tickangle == -90  # upright labels: one line of text wide each
    long = [f"p{i}" for i in range(40)]
    long_grid = attention_grid_figure(np.full((1, 4, 2, 40), 1 / 40), ["a", "b"], long, "t")
    sizes = grid.layout.xaxis.tickfont.size, long_grid.layout.xaxis.tickfont.size
    assert sizes[0] > sizes[1] and 40 * sizes[1] <= 260  # forty labels fit a panel's width
    bars = step_figure(np.array([0.2, 0.8]), ["我", "</s>"], "a_0")
    assert list(bars.data[0].y) == [0.2, 0.8]


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([str(tmp_path / "missing.pt")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "missing.pt: checkpoint not found" in error
    with pytest.raises(SystemExit):
        main(["best.pt", "--port", "70000"])
    assert "must be a port number from 1 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "warned"), [(None, False), ("localhost", False), ("::1", False), ("0.0.0.0", True)]
)
def test_the_page_is_served_on_loopback_unless_asked_and_says_so(
    host: str | None,
    warned: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = {}

    def fake_serve(checkpoints: list[Path], device: str, port: int, host: str) -> None:
        served.update(host=host, port=port)
        raise KeyboardInterrupt

    monkeypatch.setattr(explorer_cli, "serve", fake_serve)
    argv = ["best.pt", "--port", "7861"] + ([] if host is None else ["--host", host])
    assert main(argv) == 130
    assert served == {"host": host or "127.0.0.1", "port": 7861}
    error = capsys.readouterr().err
    assert ("not only this machine" in error) == warned
    if warned:
        assert f"serving on {host}" in error and "port 7861" in error


def test_models_are_named_by_file_unless_names_repeat(tiny_checkpoint: Path) -> None:
    models = load_models([tiny_checkpoint, tiny_checkpoint], "cpu")
    assert [model.name for model in models] == [str(tiny_checkpoint)] * 2
    assert models[0].translator is not models[1].translator
    assert models[0].translator.precision == "fp32"
    assert load_models([tiny_checkpoint], "cpu")[0].name == "best.pt"


def test_a_transformer_shows_every_layers_cross_attention(
    variant_checkpoints: dict[str, Path],
) -> None:
    """(layers, heads, tgt, src) for the grid; the heatmap and the steps show the checkpoint's
    alignment layer, the weights its search saw."""
    translator = load_translator(variant_checkpoints["transformer"], "cpu", "fp32")
    result = explain(translator, SENTENCE, translator.search_settings(beam_size=2), top_k=2)
    (hypothesis,) = translator.translate([SENTENCE], translator.search_settings(beam_size=2))[0]
    best = result.outputs[0]
    assert best.weights is not None
    assert best.weights.shape == (3, 2, len(best.target_labels), len(result.source_labels))
    assert best.alignment_layer == 1
    assert hypothesis.weights is not None
    np.testing.assert_allclose(best.alignment, hypothesis.weights.mean(dim=1).numpy(), atol=1e-5)
    np.testing.assert_allclose(best.weights.sum(axis=-1), 1.0, atol=1e-5)
    for i, step in enumerate(best.steps):
        np.testing.assert_allclose(step.weights, best.alignment[i], atol=1e-5)
