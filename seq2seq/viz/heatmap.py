"""Attention alignment heatmaps: draw, overlay gold alignments, and save.

Figures are built with the object-oriented API (``Figure`` + ``FigureCanvasAgg``), never
pyplot, so no global figure state leaks between calls, threads or Hydra multirun jobs.
"""

from __future__ import annotations

import contextlib
import io
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Patch, Rectangle
from numpy.typing import ArrayLike
from PIL import Image

from seq2seq.files import atomic_write_bytes
from seq2seq.viz.fonts import cjk_font_properties

_CELL_INCHES = 0.45  # side of one matrix cell before the figure hits its size bounds
_MARGIN_INCHES = (2.5, 2.0)  # room for tick labels, axis labels and the colour bar
_MIN_FIGSIZE = (4.0, 3.0)
_MAX_FIGSIZE = (24.0, 24.0)
# Points; labels fill 0.6 of a cell, so they shrink with the cells of long sentences. The top
# of the range is what keeps them readable where TensorBoard shrinks an image to its ~330-px card.
_FONT_SIZE_RANGE = (5.0, 16.0)
# TensorBoard shows a long sentence's heatmap also in parts of at most this many source pieces
# (tensorboard_parts): at the card's width a whole 23-piece matrix had 4-px labels.
PART_COLUMNS = 12
_UPRIGHT_MIN_POINTS = 9.0  # the smallest font source labels are shrunk to rather than turned
_SURE_STYLE = {"edgecolor": "#d62728", "linestyle": "-"}
_POSSIBLE_STYLE = {"edgecolor": "#ff7f0e", "linestyle": "--"}


@contextlib.contextmanager
def _missing_glyph_warnings_silenced() -> Iterator[None]:
    """Hide matplotlib's per-character "Glyph ... missing" warnings while drawing.

    Without a CJK font every Chinese character would warn on every draw; fonts.py already
    says once what is wrong and how to fix it.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .*missing from", category=UserWarning)
        yield


def _check_shape(weights: np.ndarray, n_source: int, n_target: int) -> None:
    if weights.ndim != 2 or weights.shape != (n_target, n_source):
        raise ValueError(
            f"attention weights have shape {weights.shape}, expected (target, source) = "
            f"({n_target}, {n_source}) from the labels"
        )
    if n_source == 0 or n_target == 0:
        raise ValueError("cannot plot an alignment for an empty source or target sentence")


def _label_ems(label: str) -> float:
    """Approximate width of a label in ems: CJK characters are full width, others about half."""
    return sum(1.0 if unicodedata.east_asian_width(c) in "WF" else 0.6 for c in label)


def _figure_size(n_source: int, n_target: int) -> tuple[float, float]:
    """Grow the figure with the sentence so cells stay legible, within fixed bounds."""
    width = _MARGIN_INCHES[0] + _CELL_INCHES * n_source
    height = _MARGIN_INCHES[1] + _CELL_INCHES * n_target
    return (
        float(np.clip(width, _MIN_FIGSIZE[0], _MAX_FIGSIZE[0])),
        float(np.clip(height, _MIN_FIGSIZE[1], _MAX_FIGSIZE[1])),
    )


def _gold_cells(
    cells: Iterable[tuple[int, int]], n_source: int, n_target: int, kind: str
) -> set[tuple[int, int]]:
    checked = set()
    for source_index, target_index in cells:
        if not (0 <= source_index < n_source and 0 <= target_index < n_target):
            raise ValueError(
                f"{kind} gold cell (source={source_index}, target={target_index}) lies outside "
                f"the {n_target}x{n_source} attention matrix; pass piece indices, not word indices"
            )
        checked.add((int(source_index), int(target_index)))
    return checked


def plot_alignment(
    weights: ArrayLike,
    source_labels: Sequence[str],
    target_labels: Sequence[str],
    *,
    sure: Iterable[tuple[int, int]] = (),
    possible: Iterable[tuple[int, int]] = (),
    font: str | None = None,
    title: str | None = None,
    axis_labels: tuple[str, str] = ("source", "generated target"),
) -> Figure:
    """Draw attention weights as a heatmap, source pieces across the top, targets down the side.

    Args:
        weights: (len(target_labels), len(source_labels)); row i is the attention paid while
            generating target piece i (including "</s>").
        sure, possible: gold (source_index, target_index) cells in piece coordinates, outlined
            solid and dashed so agreement between attention and the gold alignment shows.
            A cell in both is drawn as sure.
        font: CJK font file to use instead of the bundled Noto Sans SC.
        title: drawn above the figure (may contain Chinese).
        axis_labels: (across the top, down the side); encoder self-attention has source pieces
            on both axes.
    """
    weights = np.asarray(weights, dtype=float)
    n_source, n_target = len(source_labels), len(target_labels)
    _check_shape(weights, n_source, n_target)
    sure_cells = _gold_cells(sure, n_source, n_target, "sure")
    possible_cells = _gold_cells(possible, n_source, n_target, "possible") - sure_cells

    fig = Figure(figsize=_figure_size(n_source, n_target), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    props = cjk_font_properties(font) or FontProperties()
    cell_points = 72 * min(
        (fig.get_figwidth() - _MARGIN_INCHES[0]) / n_source,
        (fig.get_figheight() - _MARGIN_INCHES[1]) / n_target,
    )
    font_size = float(np.clip(0.6 * cell_points, *_FONT_SIZE_RANGE))
    # Source labels stay upright (Chinese on its side is hard to read) when a smaller font,
    # still readable, lets the widest fit its cell; otherwise they are turned on their side.
    widest_ems = max(_label_ems(label) for label in source_labels)
    upright = 0.9 * cell_points / widest_ems
    rotate = widest_ems * font_size > 0.9 * cell_points
    if rotate and upright >= _UPRIGHT_MIN_POINTS:
        font_size, rotate = upright, False
    # parse_math=False: a piece such as "$5" is text, not the start of a formula.
    text = {"fontproperties": props, "fontsize": font_size, "parse_math": False}

    with _missing_glyph_warnings_silenced():
        image = ax.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal")
        fig.colorbar(image, ax=ax, label="attention weight", shrink=0.8)

        ax.xaxis.tick_top()
        ax.xaxis.set_label_position("top")
        ax.set_xticks(
            range(n_source),
            labels=list(source_labels),
            rotation=90 if rotate else 0,
            **text,
        )
        ax.set_yticks(range(n_target), labels=list(target_labels), **text)
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
        # Thin white lines between cells make rows and columns easy to follow.
        ax.set_xticks(np.arange(-0.5, n_source), minor=True)
        ax.set_yticks(np.arange(-0.5, n_target), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.8)
        ax.tick_params(which="minor", length=0)
        ax.tick_params(which="major", length=0)

        for cells, style in ((sure_cells, _SURE_STYLE), (possible_cells, _POSSIBLE_STYLE)):
            for source_index, target_index in sorted(cells):
                ax.add_patch(
                    Rectangle(
                        (source_index - 0.5, target_index - 0.5),
                        1.0,
                        1.0,
                        fill=False,
                        linewidth=2.0,
                        zorder=3,  # above the white cell grid
                        clip_on=False,  # keep the full line width on the matrix border
                        **style,
                    )
                )
        handles = [
            Patch(fill=False, linewidth=2.0, label=label, **style)
            for label, cells, style in (
                ("gold sure", sure_cells, _SURE_STYLE),
                ("gold possible", possible_cells, _POSSIBLE_STYLE),
            )
            if cells
        ]
        if handles:
            fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
        if title:
            fig.suptitle(title, fontproperties=props, parse_math=False)
    return fig


def plot_attention_grid(
    weights: ArrayLike,
    source_labels: Sequence[str],
    target_labels: Sequence[str],
    *,
    font: str | None = None,
    title: str | None = None,
) -> Figure:
    """Every layer × head of a Transformer's cross-attention, one small heatmap each.

    ``weights``: (layers, heads, len(target_labels), len(source_labels)). Rows are layers (first
    at the top), columns heads; labels only on the outer panels, so heads that align and heads
    that look elsewhere (at </s>, at the previous word) can be told apart at a glance.
    """
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 4:
        raise ValueError(f"expected (layers, heads, target, source) weights, got {weights.shape}")
    layers, heads = weights.shape[:2]
    n_source, n_target = len(source_labels), len(target_labels)
    _check_shape(weights[0, 0], n_source, n_target)
    panel = _figure_size(n_source, n_target)
    scale = min(1.0, _MAX_FIGSIZE[0] / (panel[0] * heads), _MAX_FIGSIZE[1] / (panel[1] * layers))
    fig = Figure(
        figsize=(panel[0] * heads * scale, panel[1] * layers * scale), layout="constrained"
    )
    FigureCanvasAgg(fig)
    props = cjk_font_properties(font) or FontProperties()
    text = {"fontproperties": props, "fontsize": 5.0, "parse_math": False}
    axes = fig.subplots(layers, heads, squeeze=False)
    with _missing_glyph_warnings_silenced():
        for layer in range(layers):
            for head in range(heads):
                ax = axes[layer][head]
                ax.imshow(weights[layer, head], cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal")
                ax.set_xticks(range(n_source), labels=list(source_labels) if layer == 0 else [])
                ax.set_yticks(range(n_target), labels=list(target_labels) if head == 0 else [])
                ax.xaxis.tick_top()
                ax.tick_params(length=0, labelsize=text["fontsize"])
                for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
                    label.set_fontproperties(props)
                    label.set_fontsize(text["fontsize"])
                ax.set_title(f"layer {layer}, head {head}", fontsize=8, y=-0.12)
        if title:
            fig.suptitle(title, fontproperties=props, parse_math=False)
    return fig


def column_parts(n_source: int, columns: int = PART_COLUMNS) -> list[slice]:
    """Consecutive source slices of at most ``columns`` pieces, as even as they come (one
    slice, the whole sentence, when it is short enough)."""
    parts = -(-n_source // columns)
    bounds = [round(k * n_source / parts) for k in range(parts + 1)]
    return [slice(start, end) for start, end in zip(bounds, bounds[1:], strict=False)]


def figure_to_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes, then clear it so its artists can be freed."""
    buffer = io.BytesIO()
    with _missing_glyph_warnings_silenced():
        fig.savefig(buffer, format="png", dpi=dpi)
    fig.clear()
    return buffer.getvalue()


def png_to_image_array(png: bytes) -> np.ndarray:
    """Decode PNG bytes to an (height, width, 3) uint8 RGB array.

    This is what ``SummaryWriter.add_image(tag, array, step, dataformats="HWC")`` expects.
    """
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def save_alignment(
    directory: Path,
    name: str,
    weights: ArrayLike,
    source_labels: Sequence[str],
    target_labels: Sequence[str],
    png: bytes,
    **extra_arrays: ArrayLike,
) -> None:
    """Write ``<name>.png`` and ``<name>.npz`` into ``directory`` (created if missing).

    The npz holds ``weights``, ``source_labels`` and ``target_labels`` (numpy str arrays, so
    ``np.load`` needs no pickle) plus ``extra_arrays``, so a plot can be redrawn or analysed.
    """
    if not name or Path(name).name != name:
        raise ValueError(f"alignment name {name!r} must be a plain file name, not a path")
    weights = np.asarray(weights)
    _check_shape(weights, len(source_labels), len(target_labels))
    arrays = {
        "weights": weights,
        "source_labels": np.asarray(list(source_labels), dtype=str),
        "target_labels": np.asarray(list(target_labels), dtype=str),
    }
    for key, value in extra_arrays.items():
        arrays[key] = np.asarray(value)
        if arrays[key].dtype == object:
            raise ValueError(
                f"extra array {key!r} has dtype object, which np.load cannot read without "
                "pickle; pass numbers or strings"
            )
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / f"{name}.npz", buffer.getvalue())
    atomic_write_bytes(directory / f"{name}.png", png)
