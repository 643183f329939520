"""Writing a figure as PNG and SVG under the report style."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from synthesis.plots.style import REPORT_STYLE

#: Resolution of the PNG files (SVG is vector).
PNG_DPI = 150


def save_figure(fig: Figure, path_stem: str | Path) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.png`` (150 dpi) and ``<path_stem>.svg``.

    Works with any backend: the files are written by matplotlib's Agg and SVG renderers
    whatever backend the session uses.

    Parameters
    ----------
    fig
        The figure.
    path_stem
        Path without suffix; its folder is created if needed.

    Returns
    -------
    list of Path
        The PNG and SVG paths written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from matplotlib.figure import Figure
    >>> from synthesis.plots import save_figure
    >>> fig = Figure(figsize=(2, 1))
    >>> _ = fig.subplots().plot([1, 2], [2, 1])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     [p.name for p in save_figure(fig, Path(folder) / "figures" / "tiny")]
    ['tiny.png', 'tiny.svg']
    """
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")]
    with matplotlib.rc_context(REPORT_STYLE):
        fig.savefig(paths[0], dpi=PNG_DPI, format="png", metadata={"Software": None})
        # The layout is settled by the PNG pass: reuse it for the SVG (same geometry, faster).
        engine = fig.get_layout_engine()
        fig.set_layout_engine("none")
        try:
            fig.savefig(paths[1], format="svg", metadata={"Date": None})
        finally:
            fig.set_layout_engine(engine)
    return paths
