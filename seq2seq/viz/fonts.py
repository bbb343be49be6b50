"""The font that draws Chinese in the heatmaps, and registering it with matplotlib.

Matplotlib's default DejaVu Sans has no CJK glyphs, so Chinese tick labels come out as empty
boxes. The font comes with the Python dependencies (Noto Sans SC, SIL Open Font License 1.1, in
the data-only package ``pylopdf-fonts-zh-cn``), so no system package or sudo is needed and every
machine draws the same figures. Matplotlib only knows the fonts it found when it built its font
cache, so the file is registered with ``fontManager.addfont`` at run time.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from matplotlib import font_manager, ft2font

log = logging.getLogger(__name__)

# A character every Chinese font has; used to sanity-check a configured font.
_PROBE_CHAR = "我"


def bundled_cjk_font() -> Path | None:
    """Noto Sans SC from the ``pylopdf-fonts-zh-cn`` dependency, or None if it is not installed."""
    try:
        import pylopdf_fonts_zh_cn
    except ImportError:
        return None
    path = pylopdf_fonts_zh_cn.sans_path()
    return path if path.is_file() else None


def find_cjk_font(configured: str | None = None) -> Path | None:
    """Return the font file to draw Chinese with: ``configured`` (``viz.font``) when given,
    else the bundled Noto Sans SC; None if neither exists."""
    if configured:
        path = Path(configured).expanduser().absolute()
        if not path.is_file():
            raise ValueError(
                f"viz.font={configured!r}: no such font file. Point it at a .ttf/.ttc/.otf "
                "file that has Chinese glyphs, or leave it unset for the bundled Noto Sans SC."
            )
        return path
    return bundled_cjk_font()


def cjk_font_properties(configured: str | None = None) -> font_manager.FontProperties | None:
    """Font properties that draw Chinese, or None (with one warning per process) if none exist.

    The font is registered with matplotlib's font manager on first use, so it works even when
    it was installed after matplotlib built its font cache. The returned object is shared
    between callers: copy it before changing it (``Text`` copies it already).
    """
    return _cached_font_properties(configured or None)


@functools.cache
def _cached_font_properties(configured: str | None) -> font_manager.FontProperties | None:
    """Find and register the font once per process per configured path; callers share the result."""
    path = find_cjk_font(configured)
    if path is None:
        log.warning(
            "No Chinese (CJK) font: pylopdf-fonts-zh-cn, a dependency of seq2seq, is not "
            "installed, so Chinese labels in attention plots render as empty boxes. Install "
            "it (pip install -e .) or set viz.font=/path/to/font.ttf."
        )
        return None
    try:
        font = ft2font.FT2Font(os.fsdecode(path))
    except (OSError, RuntimeError) as err:
        raise ValueError(f"{path}: matplotlib cannot read this font file ({err}).") from err
    if font.get_char_index(ord(_PROBE_CHAR)) == 0:
        log.warning(
            "%s has no glyph for %r; Chinese labels may render as boxes.", path, _PROBE_CHAR
        )
    font_manager.fontManager.addfont(path)
    family = font_manager.ttfFontProperty(font).name
    # By family name, so matplotlib falls back to its default sans font for any glyph the CJK
    # font lacks; by file if another installed file claims the same family name.
    props = font_manager.FontProperties(family=[family, "sans-serif"])
    if Path(font_manager.findfont(props)) != path:
        props = font_manager.FontProperties(fname=path)
    log.info("Drawing Chinese labels with %s (%s).", family, path)
    return props
