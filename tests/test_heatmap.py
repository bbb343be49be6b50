"""Alignment heatmaps: Chinese renders with a real CJK font, gold overlays, saving."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pylopdf_fonts_zh_cn
import pytest
from matplotlib import font_manager, ft2font
from matplotlib.patches import Rectangle

from seq2seq.viz import fonts
from seq2seq.viz.heatmap import (
    PART_COLUMNS,
    column_parts,
    figure_to_png,
    plot_alignment,
    png_to_image_array,
    save_alignment,
)

SOURCE = ["我", "爱", "你"]
TARGET = ["I", "love", "you", "</s>"]
WEIGHTS = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.1, 0.8, 0.1],
        [0.1, 0.1, 0.8],
        [0.3, 0.3, 0.4],
    ]
)


@pytest.fixture
def fresh_font_cache() -> Iterator[None]:
    """Forget the process-wide font lookup before and after, so tests don't see each other's."""
    fonts._cached_font_properties.cache_clear()
    yield
    fonts._cached_font_properties.cache_clear()


def _glyph_warnings(records: list[warnings.WarningMessage]) -> list[str]:
    return [str(r.message) for r in records if "glyph" in str(r.message).lower()]


def test_chinese_renders_with_the_installed_cjk_font(
    fresh_font_cache: None, caplog: pytest.LogCaptureFixture
) -> None:
    path = fonts.find_cjk_font()
    assert path is not None, "the pylopdf-fonts-zh-cn dependency is not installed"
    # The font comes with the Python dependencies, not from the system's font directories.
    assert path.parent == Path(pylopdf_fonts_zh_cn.__file__).parent
    font = ft2font.FT2Font(str(path))
    missing = [c for c in "我爱你" if font.get_char_index(ord(c)) == 0]
    assert not missing, f"{path} has no glyphs for {missing}"

    props = fonts.cjk_font_properties()
    assert props is not None
    assert Path(font_manager.findfont(props)) == path
    fig = plot_alignment(WEIGHTS, SOURCE, TARGET, title="我爱你")
    caplog.set_level(logging.DEBUG, logger="matplotlib")
    # Drawn here, outside plot_alignment's silencer: matplotlib warns for every glyph it can
    # find in no font, so a box instead of 我 would show up as a warning.
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        fig.canvas.draw()
    assert _glyph_warnings(records) == []
    assert not [r for r in caplog.records if "glyph" in r.getMessage().lower()]
    chinese_labels = [t for t in fig.axes[0].get_xticklabels() if t.get_text() in SOURCE]
    assert [t.get_text() for t in chinese_labels] == SOURCE
    for label in chinese_labels:
        assert Path(font_manager.findfont(label.get_fontproperties())) == path
    assert figure_to_png(fig).startswith(b"\x89PNG")


def test_missing_cjk_font_warns_once_and_still_plots(
    fresh_font_cache: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fonts, "find_cjk_font", lambda configured=None: None)
    caplog.set_level(logging.WARNING, logger=fonts.__name__)

    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        pngs = [figure_to_png(plot_alignment(WEIGHTS, SOURCE, TARGET)) for _ in range(2)]

    font_warnings = [r for r in caplog.records if r.name == fonts.__name__]
    assert len(font_warnings) == 1, [r.getMessage() for r in font_warnings]
    assert "pylopdf-fonts-zh-cn" in font_warnings[0].getMessage()
    assert "viz.font" in font_warnings[0].getMessage()
    # Matplotlib warns per missing Chinese glyph; plot_alignment must keep that quiet.
    assert _glyph_warnings(records) == []
    for png in pngs:
        assert png.startswith(b"\x89PNG")
        image = png_to_image_array(png)
        assert image.dtype == np.uint8
        assert image.ndim == 3 and image.shape[2] == 3
        assert image.shape[0] > 50 and image.shape[1] > 50


def test_configured_font_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such font file"):
        fonts.find_cjk_font(str(tmp_path / "missing.ttf"))


def test_figure_grows_with_sentence_length_within_bounds() -> None:
    short = plot_alignment(WEIGHTS, SOURCE, TARGET).get_size_inches()
    n_source, n_target = 20, 25
    longer = plot_alignment(
        np.full((n_target, n_source), 1 / n_source), ["字"] * n_source, ["word"] * n_target
    ).get_size_inches()
    huge = plot_alignment(np.zeros((300, 300)), ["字"] * 300, ["w"] * 300).get_size_inches()

    assert longer[0] > short[0] and longer[1] > short[1]
    assert huge[0] >= longer[0] and huge[1] >= longer[1]
    assert max(huge) <= 30, "figure size must stay bounded for very long sentences"


def test_gold_overlay_outlines_sure_solid_and_possible_dashed() -> None:
    fig = plot_alignment(
        WEIGHTS,
        SOURCE,
        TARGET,
        sure=[(0, 0), (1, 1), (2, 2)],
        possible=[(2, 2), (2, 3)],  # (2, 2) is also sure, so it is drawn once, as sure
    )
    matrix_axes = fig.axes[0]
    outlines = {
        (round(p.get_x() + 0.5), round(p.get_y() + 0.5)): p.get_linestyle()
        for p in matrix_axes.patches
        if isinstance(p, Rectangle) and not p.get_fill()
    }
    assert len(matrix_axes.patches) == 4
    assert outlines == {(0, 0): "-", (1, 1): "-", (2, 2): "-", (2, 3): "--"}
    assert fig.legends, "a legend should explain the outlines"


def test_invalid_inputs_raise_actionable_errors() -> None:
    with pytest.raises(ValueError, match="shape"):
        plot_alignment(WEIGHTS.T, SOURCE, TARGET)
    with pytest.raises(ValueError, match="outside"):
        plot_alignment(WEIGHTS, SOURCE, TARGET, sure=[(3, 0)])


def test_save_alignment_writes_png_and_round_tripping_npz(tmp_path: Path) -> None:
    png = figure_to_png(plot_alignment(WEIGHTS, SOURCE, TARGET))
    directory = tmp_path / "alignments" / "step_100"
    sure = np.array([[0, 0], [1, 1], [2, 2]])

    save_alignment(directory, "dev_0", WEIGHTS, SOURCE, TARGET, png, sure=sure)

    assert sorted(p.name for p in directory.iterdir()) == ["dev_0.npz", "dev_0.png"]
    assert (directory / "dev_0.png").read_bytes() == png
    with np.load(directory / "dev_0.npz") as saved:  # no allow_pickle: labels are str arrays
        np.testing.assert_allclose(saved["weights"], WEIGHTS)
        assert saved["source_labels"].tolist() == SOURCE
        assert saved["target_labels"].tolist() == TARGET
        np.testing.assert_array_equal(saved["sure"], sure)


def test_long_sentences_split_into_even_parts_of_few_columns() -> None:
    assert column_parts(5) == [slice(0, 5)]
    assert column_parts(PART_COLUMNS) == [slice(0, PART_COLUMNS)]
    for n in range(PART_COLUMNS + 1, 80):
        parts = column_parts(n)
        assert parts[0].start == 0 and parts[-1].stop == n
        assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))
        sizes = [part.stop - part.start for part in parts]
        assert max(sizes) <= PART_COLUMNS and max(sizes) - min(sizes) <= 1
        assert len(parts) == -(-n // PART_COLUMNS)  # no more parts than needed


def test_a_tensorboard_card_gets_labels_it_can_show() -> None:
    """Labels fill most of a cell: a short sentence's are larger than the old 11-pt cap, so
    they survive TensorBoard's shrinking of the image to its card."""
    fig = plot_alignment(WEIGHTS, SOURCE, TARGET)
    ax = fig.axes[0]
    assert ax.get_xticklabels()[0].get_fontsize() > 11
    long = plot_alignment(np.full((30, 60), 1 / 60), ["字"] * 60, ["w"] * 30)
    assert long.axes[0].get_xticklabels()[0].get_fontsize() < ax.get_xticklabels()[0].get_fontsize()
