"""Melody -> engraved sheet music: SVG drawn by verovio from our MusicXML, and PNG from that SVG where cheap.

Step of the flow: melody -> notation -> picture. Entry points: `melody_to_svg(melody, primer_steps=..., title=...)`,
`svg_to_png(svg)` (None without cairosvg and its cairo library) and `write_score(melody, stem, ...) -> [paths]`.
verovio (the MEI community's engraver, a pip wheel) comes with the `[notation]` extra and is imported only here,
only when a score is asked for. The continuation is drawn in render.py's orange, after the word "continuation";
the primer stays black.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from melody_plugin.music.melody import Melody
from melody_plugin.notation.layout import NotationError
from melody_plugin.notation.musicxml_out import melody_to_musicxml
from melody_plugin.runtime import atomic

INSTALL_HINT = 'pip install "melody_plugin[notation]"'
SVG_OPTIONS = {
    "pageWidth": 2100,  # verovio's units: tenths of a millimetre at scale 100
    "pageHeight": 60000,  # the most verovio allows: one page holds about 100 lines of music
    "adjustPageHeight": True,
    "scale": 45,
    "breaks": "auto",
    "footer": "none",
    "svgViewBox": True,  # scales to its container in a page
    "xmlIdSeed": 1,  # the same melody, the same SVG bytes
}
PNG_WIDTH_PX = 1400


class ScoreError(NotationError):
    """Engraving failed: verovio missing, or it refused the score."""


def _verovio():
    try:
        import verovio
    except ImportError:
        raise ScoreError(f"sheet music needs verovio: {INSTALL_HINT}") from None
    verovio.enableLog(verovio.LOG_OFF)
    return verovio


def available() -> bool:
    """Whether verovio can be imported (the `[notation]` extra)."""
    return importlib.util.find_spec("verovio") is not None


def require() -> None:
    """Raises ScoreError with the install command where verovio is missing (checked before any work)."""
    if not available():
        raise ScoreError(f"--render=score needs verovio: {INSTALL_HINT}")


def music_to_svg(data: str, options: dict | None = None, name: str = "score") -> str:
    """One SVG of all of `data` (MusicXML, ABC or MEI text, told apart by verovio), every page stacked.

    Raises:
      ScoreError: verovio missing, or the text not loadable (named by `name`).
    """
    verovio = _verovio()
    toolkit = verovio.toolkit()
    toolkit.setOptions({**SVG_OPTIONS, **(options or {})})
    if not toolkit.loadData(data) or toolkit.getPageCount() < 1:
        raise ScoreError(f"{name}: verovio could not engrave it")
    pages = [toolkit.renderToSVG(page) for page in range(1, toolkit.getPageCount() + 1)]
    return pages[0] if len(pages) == 1 else "\n".join(pages)


def melody_to_svg(melody: Melody, primer_steps: int = 0, title: str = "", header: bool = True) -> str:
    """The melody as engraved sheet music (SVG text), the continuation from `primer_steps` in orange.

    Args:
      melody: what to draw.
      primer_steps: where the continuation starts (0: all of it is drawn as continuation-free black notes).
      title: drawn above the music when `header` is set.
      header: False leaves out the title (a page that shows its own).

    Raises:
      ScoreError: verovio missing or refusing the score; NotationError: lengths with no written values.
    """
    xml = melody_to_musicxml(melody, title, highlight_from_step=primer_steps if primer_steps else None,
                             tempo_words=True)
    return music_to_svg(xml, {"header": "auto" if header and title else "none"}, title or "melody")


def svg_to_png(svg: str, width_px: int = PNG_WIDTH_PX) -> bytes | None:
    """PNG bytes of an SVG on white, or None where cairosvg (or its cairo library) is missing."""
    try:
        import cairosvg
    except (ImportError, OSError):  # OSError: the package is there, libcairo is not
        return None
    # cairo takes each glyph from the text's own font: the quarter-note sign needs one that has it
    svg = svg.replace("\u2669", '<tspan font-family="DejaVu Sans, sans-serif">\u2669</tspan>')
    return cairosvg.svg2png(bytestring=svg.encode("utf-8"), output_width=width_px, background_color="white")


def write_score(melody: Melody, stem, primer_steps: int = 0, title: str = "") -> list[Path]:
    """Writes STEM.svg, and STEM.png where cairosvg is installed (STEM is used whole: "x.score" -> "x.score.svg").
    Returns the paths written."""
    stem = Path(stem)
    svg_path, png_path = stem.parent / f"{stem.name}.svg", stem.parent / f"{stem.name}.png"
    svg = melody_to_svg(melody, primer_steps, title)
    atomic.write_bytes(svg_path, svg.encode("utf-8"))
    png = svg_to_png(svg)
    if png is None:
        return [svg_path]
    atomic.write_bytes(png_path, png)
    return [svg_path, png_path]
