"""The explorer's page, built with Gradio: one column per checkpoint, side by side.

Import this module only after :func:`seq2seq.explorer.cli.explorer_environment`: Gradio reads
its temporary directory and analytics switch from the environment when it is imported.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from seq2seq.explorer.figures import alignment_figure, attention_grid_figure, step_figure
from seq2seq.explorer.predict import (
    MAX_CHARACTERS,
    NO_WEIGHTS,
    Explanation,
    LoadedModel,
    Output,
    explain,
    to_words,
)
from seq2seq.inference import InferenceError
from seq2seq.viz.fonts import bundled_cjk_font

# Sentences of the built-in synthetic corpus (data=synthetic): its 我爱你 family, two
# word-order pairs (the same words, roles swapped) and one of its "long" test split.
EXAMPLES = (
    ("我爱你。", "the 我爱你 family"),
    ("你爱我。", "word order: 我爱你 / 你爱我"),
    ("汤姆帮助玛丽。", "the 我爱你 family"),
    ("玛丽帮助汤姆。", "word order: 汤姆帮助玛丽 / 玛丽帮助汤姆"),
    (
        "这个朋友很好，但是刘洋的哥哥已经卖了那三个旧玩具，但是李娜和汤姆喜欢他的椅子。",
        "a long sentence",
    ),
)
STEP_TEXT = (
    "**Position {i}: `{piece}`.** The decoder's state so far is the *query*; it is compared "
    "with every source annotation h_j (*similarity* e_ij), a *softmax* turns the similarities "
    "into the weights a_ij drawn here (they sum to 1), and their *weighted sum* "
    "C_i = Σ_j a_ij h_j is the context from which the next word is predicted."
)
STEP_TEXT_NO_WEIGHTS = (
    "**Position {i}: `{piece}`.** " + NO_WEIGHTS + " Only the previous word and the decoder's "
    "state change from one position to the next."
)


@dataclass
class Column:
    """The components of one checkpoint's column, in the order the handlers fill them."""

    translation: gr.Markdown
    choice: gr.Radio  # which translation of the n-best list the views below show
    notice: gr.Markdown
    heatmap: gr.Plot
    heads: gr.Plot
    encoder: gr.Plot
    position: gr.Slider
    step_text: gr.Markdown
    step_plot: gr.Plot
    top_words: gr.Dataframe
    beam: gr.Dataframe
    save: gr.Button
    files: gr.File

    def outputs(self) -> list[Any]:
        return [
            self.translation,
            self.choice,
            self.notice,
            self.heatmap,
            self.heads,
            self.encoder,
            self.position,
            *self.step_outputs(),
        ]

    def step_outputs(self) -> list[Any]:
        return [self.step_text, self.step_plot, self.top_words, self.beam]


def build(models: Sequence[LoadedModel], temp_dir: Path) -> gr.Blocks:
    """The page; ``temp_dir`` receives the matrices people download (and nothing else)."""
    first = models[0].translator
    with gr.Blocks(title="seq2seq attention explorer", analytics_enabled=False) as page:
        gr.Markdown(
            "# Watch each word find its source\n"
            f"Type a sentence ({first.source_lang}) and press Enter: every checkpoint translates "
            "it, side by side. Hover a cell of a heatmap for the source piece, the output piece "
            "and the weight; move the slider to step through the decoding."
        )
        with gr.Row():
            source = gr.Textbox(
                label=f"sentence ({first.source_lang})",
                placeholder="我爱你。",
                max_length=MAX_CHARACTERS,
                elem_id="source",
                scale=4,
            )
            go_button = gr.Button("Translate", variant="primary", elem_id="translate", scale=1)
        with gr.Row():
            search = gr.Radio(["greedy", "beam"], value="greedy", label="search", elem_id="search")
            beam_size = gr.Slider(2, 10, value=5, step=1, label="beam size")
            length_penalty = gr.Number(
                value=float(first.config.search.alpha),
                label="length penalty α",
                info="beam ranks by log-probability / ((5+len)/6)^α",
            )
            nbest = gr.Slider(
                1, 10, value=1, step=1, label="n-best (beam widens to fit)", elem_id="nbest"
            )
            units = gr.Radio(["pieces", "words"], value="pieces", label="heatmap units")
        with gr.Row():
            gr.Markdown("Examples:")
            example_buttons = [
                (gr.Button(f"{text}  ({what})", size="sm"), text) for text, what in EXAMPLES
            ]
        explanations = gr.State([])
        columns = []
        with gr.Row(equal_height=False):
            for index, model in enumerate(models):
                with gr.Column():
                    gr.Markdown(f"## {model.name}\n{model.describe()}")
                    columns.append(_column(index))

        def translate(
            text: str, mode: str, beam: float, alpha: float | None, best: float, unit: str
        ) -> list[Any]:
            greedy = mode == "greedy"
            choices = {  # the page's controls, over each checkpoint's own search settings
                "beam_size": 1 if greedy else max(int(beam), int(best)),  # n-best widens it
                "nbest": 1 if greedy else int(best),
                "alpha": float(alpha or 0.0),
            }
            try:
                results = [
                    explain(model.translator, text, model.translator.search_settings(**choices))
                    for model in models
                ]
            except InferenceError as error:
                raise gr.Error(str(error), print_exception=False) from error
            updates: list[Any] = [results]
            for model, result in zip(models, results, strict=True):
                updates += _column_values(model, result, unit, None)
            return updates

        inputs = [source, search, beam_size, length_penalty, nbest, units]
        outputs = [explanations, *(item for column in columns for item in column.outputs())]
        source.submit(translate, inputs, outputs)
        go_button.click(translate, inputs, outputs)
        for button, text in example_buttons:
            button.click(lambda text=text: text, None, source).then(translate, inputs, outputs)

        all_outputs = [item for column in columns for item in column.outputs()]
        choices = [column.choice for column in columns]

        def redraw(results: list[Explanation], unit: str, *chosen: str) -> list[Any]:
            if not results:
                return [gr.update()] * len(all_outputs)
            updates: list[Any] = []
            for model, result, choice in zip(models, results, chosen, strict=True):
                updates += _column_values(model, result, unit, int(choice) - 1)
            return updates

        units.change(redraw, [explanations, units, *choices], all_outputs)
        for index, column in enumerate(columns):

            def show(
                results: list[Explanation], unit: str, choice: str, index: int = index
            ) -> list[Any]:
                return _column_values(models[index], results[index], unit, int(choice) - 1)

            column.choice.input(show, [explanations, units, column.choice], column.outputs())

            def step(
                results: list[Explanation], position: float, choice: str, index: int = index
            ) -> list[Any]:
                if not results:
                    return [gr.update()] * 4
                output = results[index].outputs[int(choice) - 1]
                return _step_values(results[index], output, int(position))

            column.position.change(
                step, [explanations, column.position, column.choice], column.step_outputs()
            )

            def save(results: list[Explanation], unit: str, choice: str, index: int = index) -> Any:
                if not results:
                    raise gr.Error("translate a sentence first", print_exception=False)
                model, result = models[index], results[index]
                output = result.outputs[int(choice) - 1]
                paths = _save_matrix(model, result, output, unit, temp_dir, index)
                return gr.update(value=paths, visible=True)

            column.save.click(save, [explanations, units, column.choice], column.files)
    return page


def _column(index: int) -> Column:
    translation = gr.Markdown(elem_id=f"translation-{index}")
    choice = gr.Radio(
        ["1"], value="1", label="show translation", visible=False, elem_id=f"choice-{index}"
    )
    notice = gr.Markdown(visible=False, elem_id=f"notice-{index}")
    heatmap = gr.Plot(
        label="alignment: output (rows) × source (columns)",
        visible=False,
        elem_id=f"heatmap-{index}",
    )
    heads = gr.Plot(label="attention per head", visible=False, elem_id=f"heads-{index}")
    encoder = gr.Plot(label="encoder self-attention", visible=False, elem_id=f"encoder-{index}")
    position = gr.Slider(
        0, 1, value=0, step=1, label="output position i", elem_id=f"position-{index}"
    )
    step_text = gr.Markdown(elem_id=f"step-{index}")
    step_plot = gr.Plot(label="a_i·", visible=False, elem_id=f"step-plot-{index}")
    top_words = gr.Dataframe(
        headers=["next piece", "probability"], label="top next pieces", interactive=False
    )
    beam = gr.Dataframe(
        headers=["live prefix", "log-probability"], label="beam after step i", interactive=False
    )
    save = gr.Button("Download this matrix (.npz with labels, .png)", size="sm")
    files = gr.File(label="files", file_count="multiple", visible=False, elem_id=f"files-{index}")
    return Column(
        translation,
        choice,
        notice,
        heatmap,
        heads,
        encoder,
        position,
        step_text,
        step_plot,
        top_words,
        beam,
        save,
        files,
    )


def _matrix(
    model: LoadedModel, result: Explanation, output: Output, unit: str
) -> tuple[np.ndarray, list[str], list[str]] | None:
    """``output``'s (target, source) heatmap in ``unit``, with its labels; None if none."""
    if output.alignment is None:
        return None
    if unit == "words":
        translator = model.translator
        return to_words(
            output.alignment,
            result.source_labels,
            output.target_labels,
            translator.source_lang,
            translator.target_lang,
        )
    return output.alignment, result.source_labels, output.target_labels


def _column_values(
    model: LoadedModel, result: Explanation, unit: str, choice: int | None
) -> list[Any]:
    """Values of :meth:`Column.outputs`: the views of translation ``choice`` (from 0), or of
    the best one with the choice reset, for a new sentence (None)."""
    # Stripped: Markdown bold ends at "**" only straight after text ("he **" shows the stars).
    lines = [
        f"{rank}. **{escape(output.text.strip()) or '(empty)'}**  "
        f"<small>score {output.score:.3f}</small>"
        for rank, output in enumerate(result.outputs, start=1)
    ]
    took = f"{escape(result.source)} in {result.seconds * 1000:.0f} ms"
    translation = "\n".join(lines) + f"\n\n<small>{took}</small>"
    ranks = [str(rank) for rank in range(1, len(result.outputs) + 1)]
    chosen = gr.update()
    if choice is None:
        choice = 0
        chosen = gr.update(choices=ranks, value="1", visible=len(ranks) > 1)
    output = result.outputs[min(choice, len(result.outputs) - 1)]
    matrix = _matrix(model, result, output, unit)
    notice = gr.update(value="\n\n".join(result.notes), visible=bool(result.notes))
    heatmap = heads = gr.update(visible=False, value=None)
    if matrix is not None:
        heatmap = gr.update(visible=True, value=alignment_figure(*matrix))
        assert output.weights is not None, "an output with an alignment has weights"
        if output.weights.shape[1] > 1:
            grid = _grid(model, result, output, output.weights, unit, False)
            heads = gr.update(visible=True, value=grid)
    encoder = gr.update(visible=False, value=None)
    if result.encoder_attention is not None:
        grid = _grid(model, result, output, result.encoder_attention, unit, True)
        encoder = gr.update(visible=True, value=grid)
    position = gr.update(minimum=0, maximum=max(len(output.steps) - 1, 1), value=0)
    steps = _step_values(result, output, 0)
    return [translation, chosen, notice, heatmap, heads, encoder, position, *steps]


def _grid(
    model: LoadedModel,
    result: Explanation,
    output: Output,
    maps: np.ndarray,
    unit: str,
    self_attention: bool,
) -> go.Figure:
    """Per-layer, per-head heatmaps: encoder self-attention or the decoder's attention."""
    translator = model.translator
    source = result.source_labels
    rows = source if self_attention else output.target_labels
    row_lang = translator.source_lang if self_attention else translator.target_lang
    if unit == "words":
        maps, source, rows = to_words(maps, source, rows, translator.source_lang, row_lang)
    if self_attention:
        return attention_grid_figure(
            maps, rows, source, "encoder self-attention by layer and head", ("key", "query")
        )
    return attention_grid_figure(maps, rows, source, "attention by head", ("source", "output"))


def _step_values(result: Explanation, output: Output, position: int) -> list[Any]:
    """Values of :meth:`Column.step_outputs` for ``output``'s position ``position``."""
    if not output.steps:
        return ["", gr.update(visible=False), [], []]
    position = min(max(position, 0), len(output.steps) - 1)
    step = output.steps[position]
    words = [[piece, round(probability, 4)] for piece, probability in step.top_words]
    beam = [[prefix, round(score, 4)] for prefix, score in step.beam]
    if step.weights is None:
        text = STEP_TEXT_NO_WEIGHTS.format(i=position, piece=step.piece)
        return [text, gr.update(visible=False, value=None), words, beam]
    title = f"a_{position}· while choosing {step.piece!r}"
    plot = gr.update(visible=True, value=step_figure(step.weights, result.source_labels, title))
    return [STEP_TEXT.format(i=position, piece=step.piece), plot, words, beam]


def _save_matrix(
    model: LoadedModel,
    result: Explanation,
    output: Output,
    unit: str,
    temp_dir: Path,
    index: int,
) -> list[str]:
    """Write the current heatmap as .npz (weights and labels) and .png under ``temp_dir``."""
    from seq2seq.viz.heatmap import figure_to_png, plot_alignment, save_alignment

    matrix = _matrix(model, result, output, unit)
    if matrix is None:
        raise gr.Error(NO_WEIGHTS, print_exception=False)
    weights, source_labels, target_labels = matrix
    font = model.translator.config.viz.font
    png = figure_to_png(plot_alignment(weights, source_labels, target_labels, font=font))
    directory = temp_dir / uuid.uuid4().hex
    name = f"alignment-{index + 1}-{unit}"
    save_alignment(directory, name, weights, source_labels, target_labels, png)
    return [str(directory / f"{name}.npz"), str(directory / f"{name}.png")]


def escape(text: str) -> str:
    """Typed and translated text shown as text, never read as Markdown or HTML."""
    return html.escape(text, quote=False).replace("*", "\\*").replace("_", "\\_")


def page_css() -> str:
    """Serve the bundled Noto Sans SC to the browser, so Chinese labels render everywhere."""
    font = bundled_cjk_font()
    if font is None:
        return ""
    return (
        "@font-face { font-family: 'Noto Sans SC'; "
        f"src: url('/gradio_api/file={font}') format('opentype'); }}"
    )


def font_paths() -> list[str]:
    """The files the page may serve besides Gradio's own: the bundled font."""
    font = bundled_cjk_font()
    return [] if font is None else [str(font)]


def theme() -> gr.themes.Base:
    """Gradio's default look with Noto Sans SC after its Latin font, for the Chinese text.

    Its fonts are served by the app itself (Gradio's LocalFont), never fetched from the web.
    """
    return gr.themes.Default(
        font=[gr.themes.LocalFont("Source Sans Pro"), "Noto Sans SC", "ui-sans-serif", "sans-serif"]
    )
