"""Find a font that can draw Chinese, and make matplotlib use it.

Matplotlib's default DejaVu Sans has no CJK glyphs, so Chinese tick labels come out as empty
boxes. Matplotlib also caches its font list on first use, so a CJK font installed after that
cache was built stays invisible until it is registered with ``fontManager.addfont``.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from matplotlib import font_manager, ft2font

log = logging.getLogger(__name__)

FONT_SUFFIXES = (".ttf", ".ttc", ".otf", ".otc")

# Substrings of normalised file names (lower case, no "-", "_" or spaces), best first: sans
# faces read better at tick-label size than serif or brush (kai) faces.
CJK_FILE_NAME_HINTS = (
    "notosanscjk",  # NotoSansCJK-Regular.ttc, NotoSansCJKsc-Regular.otf
    "notosanssc",  # NotoSansSC-Regular.otf (Google Fonts)
    "sourcehansans",  # SourceHanSansSC-Regular.otf
    "wqymicrohei",  # Debian/Ubuntu fonts-wqy-microhei
    "wqyzenhei",  # fonts-wqy-zenhei
    "msyh",  # Microsoft YaHei (Windows)
    "simhei",  # SimHei (Windows)
    "pingfang",  # PingFang (macOS)
    "heiti",  # STHeiti (macOS)
    "droidsansfallback",  # Android / fonts-droid-fallback
    "notoserifcjk",
    "sourcehanserif",
    "uming",  # AR PL UMing (fonts-arphic-uming)
    "ukai",  # AR PL UKai (fonts-arphic-ukai)
)

# Words in a file name that mark a non-regular weight; regular is preferred for labels.
_NON_REGULAR_WEIGHTS = ("thin", "extralight", "light", "demilight", "medium", "bold", "black")

# A character every Chinese font has; used to sanity-check a configured font.
_PROBE_CHAR = "我"


def _font_dirs() -> list[Path]:
    """System and user font directories on Linux, macOS and Windows."""
    home = Path.home()
    dirs = [
        Path("/usr/share/fonts"),
        Path("/usr/local/share/fonts"),
        home / ".fonts",
        home / ".local" / "share" / "fonts",
    ]
    if sys.platform == "darwin":
        dirs += [Path("/System/Library/Fonts"), Path("/Library/Fonts"), home / "Library" / "Fonts"]
    if sys.platform == "win32":
        dirs.append(Path(os.environ.get("WINDIR", "C:/Windows")) / "Fonts")
        if "LOCALAPPDATA" in os.environ:
            dirs.append(Path(os.environ["LOCALAPPDATA"]) / "Microsoft" / "Windows" / "Fonts")
    return dirs


def _candidate_files() -> Iterator[Path]:
    """Font files in the font directories, then those matplotlib already knows about."""
    for directory in _font_dirs():
        if not directory.is_dir():
            continue
        for root, _dirs, files in os.walk(directory):
            for file in files:
                if file.lower().endswith(FONT_SUFFIXES):
                    yield Path(root) / file
    for entry in font_manager.fontManager.ttflist:
        yield Path(entry.fname)


def _rank(path: Path) -> tuple[int, int] | None:
    """Sort key for a CJK font file (lower is better), or None if the name is not a CJK font."""
    name = path.name.lower().replace("-", "").replace("_", "").replace(" ", "")
    for rank, hint in enumerate(CJK_FILE_NAME_HINTS):
        if hint in name:
            return rank, any(weight in name for weight in _NON_REGULAR_WEIGHTS)
    return None


def find_cjk_font(configured: str | None = None) -> Path | None:
    """Return the font file to draw Chinese with, or None if none is installed.

    ``configured`` (e.g. from ``viz.font``) wins when given. Otherwise installed font files are
    matched by file name against well-known CJK families; no font is opened or rendered, so
    the search stays fast.
    """
    if configured:
        path = Path(configured).expanduser().absolute()
        if not path.is_file():
            raise ValueError(
                f"viz.font={configured!r}: no such font file. Point it at a .ttf/.ttc/.otf "
                "file that has Chinese glyphs, or leave it unset to search the system fonts."
            )
        return path
    ranked = ((rank, str(path)) for path in _candidate_files() if (rank := _rank(path)))
    best = min(ranked, default=None)
    return Path(best[1]) if best else None


def cjk_font_properties(configured: str | None = None) -> font_manager.FontProperties | None:
    """Font properties that draw Chinese, or None (with one warning per process) if none exist.

    The font is registered with matplotlib's font manager on first use, so it works even when
    it was installed after matplotlib built its font cache. The returned object is shared
    between callers: copy it before changing it (``Text`` copies it already).
    """
    return _cached_font_properties(configured or None)


@functools.cache
def _cached_font_properties(configured: str | None) -> font_manager.FontProperties | None:
    """Search and register once per process per configured path; callers share the result."""
    path = find_cjk_font(configured)
    if path is None:
        log.warning(
            "No Chinese (CJK) font found: Chinese labels in attention plots will render as "
            "empty boxes. Install one (Debian/Ubuntu: apt install fonts-wqy-microhei or "
            "fonts-noto-cjk) or set viz.font=/path/to/font.ttf."
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
