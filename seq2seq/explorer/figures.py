"""Interactive Plotly figures of attention: hovering a cell names both pieces and the weight.

Plotly draws in the browser (SVG text), so Chinese labels use the page's font, which the app
serves from the bundled Noto Sans SC. Axes are positions with the pieces as tick text, not
categories: a sentence may hold the same piece twice ("▁the"), and categories would merge them.
Labels are escaped: Plotly reads its text as a small HTML dialect, where "</s>" is a tag.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

FONT_FAMILY = "Noto Sans SC, sans-serif"
COLOR_SCALE = "Blues"
_CELL_PIXELS = 34  # side of one cell before the figure hits its size bounds
_MAX_PIXELS = 900  # tallest heatmap; longer sentences shrink their rows
_GRID_PANEL_PIXELS = 260  # about one panel's width in a grid of four heads beside another model
_GRID_FONT_RANGE = (6.0, 11.0)  # a grid's tick labels: smaller for longer sentences


def _text(labels: Sequence[str]) -> list[str]:
    return [html.escape(label, quote=False) for label in labels]


def _hover_labels(row_labels: Sequence[str], column_labels: Sequence[str]) -> np.ndarray:
    """(rows, columns, 2) the row and column label of every cell, for the hover text."""
    shape = (len(row_labels), len(column_labels))
    rows = np.broadcast_to(np.asarray(_text(row_labels), dtype=object)[:, None], shape)
    columns = np.broadcast_to(np.asarray(_text(column_labels), dtype=object)[None, :], shape)
    return np.stack([rows, columns], axis=-1)


def _heatmap(
    weights: np.ndarray,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    names: tuple[str, str],
    show_scale: bool,
) -> go.Heatmap:
    return go.Heatmap(
        z=weights,
        customdata=_hover_labels(row_labels, column_labels),
        hovertemplate=(
            f"{names[0]}: %{{customdata[1]}}<br>{names[1]}: %{{customdata[0]}}"
            "<br>weight: %{z:.3f}<extra></extra>"
        ),
        colorscale=COLOR_SCALE,
        zmin=0.0,
        zmax=1.0,
        showscale=show_scale,
        xgap=1,
        ygap=1,
    )


def _height(rows: int) -> int:
    """Figure height in pixels (the width is the page column's): rows stay legible."""
    return int(np.clip(120 + _CELL_PIXELS * rows, 260, _MAX_PIXELS))


def alignment_figure(
    weights: np.ndarray,
    source_labels: Sequence[str],
    target_labels: Sequence[str],
    title: str = "",
) -> go.Figure:
    """Heatmap of (target, source) weights: source pieces across the top, output down the side."""
    weights = np.asarray(weights, dtype=float)
    assert weights.shape == (len(target_labels), len(source_labels)), (
        f"weights {weights.shape} do not match {len(target_labels)}x{len(source_labels)} labels"
    )
    figure = go.Figure(
        _heatmap(weights, target_labels, source_labels, ("source", "target"), show_scale=True)
    )
    figure.update_layout(
        title=html.escape(title, quote=False) or None,
        height=_height(len(target_labels)),
        font={"family": FONT_FAMILY},
        margin={"l": 10, "r": 10, "t": 80 if title else 50, "b": 10},
    )
    figure.update_xaxes(
        side="top",
        tickvals=list(range(len(source_labels))),
        ticktext=_text(source_labels),
    )
    figure.update_yaxes(
        autorange="reversed",
        tickvals=list(range(len(target_labels))),
        ticktext=_text(target_labels),
        title_text="output",
    )
    return figure


def attention_grid_figure(
    maps: np.ndarray,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    title: str,
    names: tuple[str, str] = ("key", "query"),
) -> go.Figure:
    """One heatmap per layer (rows of the grid, "L1") and head (columns, "H1") of ``maps``.

    ``maps`` is (layers, heads, rows, columns): an encoder's self-attention (source × source)
    or a decoder's cross-attention (output × source) alike. ``names`` say what the columns and
    rows of each map are, for the hover text.
    """
    maps = np.asarray(maps, dtype=float)
    assert maps.ndim == 4, (
        f"attention maps must be (layers, heads, rows, columns), got {maps.shape}"
    )
    layers, heads = maps.shape[:2]
    titles = [f"L{i + 1} H{j + 1}" for i in range(layers) for j in range(heads)]
    figure = make_subplots(
        rows=layers,
        cols=heads,
        subplot_titles=titles,
        horizontal_spacing=0.04,
        vertical_spacing=0.08 if layers > 1 else 0.0,
    )
    for layer in range(layers):
        for head in range(heads):
            trace = _heatmap(
                maps[layer, head],
                row_labels,
                column_labels,
                names,
                show_scale=layer == head == 0,
            )
            figure.add_trace(trace, row=layer + 1, col=head + 1)
    # Column labels stand upright (one label's width is then one line of text, whatever the
    # piece) in a font that fits a panel's width: 22 source pieces in 260 px overlapped lying.
    column_font = float(np.clip(0.8 * _GRID_PANEL_PIXELS / len(column_labels), *_GRID_FONT_RANGE))
    figure.update_xaxes(
        tickvals=list(range(len(column_labels))),
        ticktext=_text(column_labels),
        tickangle=-90,
        tickfont={"size": column_font},
    )
    figure.update_yaxes(
        autorange="reversed", tickvals=list(range(len(row_labels))), ticktext=_text(row_labels)
    )
    figure.update_layout(
        title=html.escape(title, quote=False),
        height=int(np.clip(110 + layers * (18 * len(row_labels) + 50), 260, 1400)),
        font={"family": FONT_FAMILY, "size": 11},
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
    )
    return figure


def step_figure(weights: np.ndarray, source_labels: Sequence[str], title: str) -> go.Figure:
    """The attention row a_i· of one output position as bars over the source pieces."""
    weights = np.asarray(weights, dtype=float)
    assert weights.shape == (len(source_labels),), (
        f"weights {weights.shape} do not match {len(source_labels)} source labels"
    )
    positions = list(range(len(source_labels)))
    figure = go.Figure(
        go.Bar(
            x=positions,
            y=weights,
            customdata=_text(source_labels),
            hovertemplate="source: %{customdata}<br>weight: %{y:.3f}<extra></extra>",
            marker={"color": weights, "colorscale": COLOR_SCALE, "cmin": 0.0, "cmax": 1.0},
            text=[f"{w:.2f}" for w in weights],
            textposition="outside",
        )
    )
    figure.update_layout(
        title=html.escape(title, quote=False),
        height=300,
        font={"family": FONT_FAMILY},
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        yaxis={"range": [0.0, 1.1], "title": {"text": "a_ij"}},
    )
    figure.update_xaxes(tickvals=positions, ticktext=_text(source_labels))
    return figure
