"""The look every figure shares: font sizes, the hazard-ratio axis, wrapped labels, design
markers, and the protection that draws user-supplied strings (study names, labels) as plain
text, never as mathtext.

Every plot function is wrapped in :func:`styled` and draws into a figure or axes it is given
(:func:`target_figure`, :func:`target_axes`) or into a new one outside pyplot's registry.
Nothing here selects a matplotlib backend.
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure, FigureBase
from matplotlib.text import Text
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

#: Smallest font used anywhere (points): readable when printed.
FONT_SIZE = 9.0
#: HR values that may label a log axis: powers of two, then finer sets for narrower ranges (the
#: first set giving at least ``MIN_TICKS`` ticks in the range is used).
HR_TICK_SETS: tuple[tuple[float, ...], ...] = (
    (0.03125, 0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
    (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 20.0),
    (0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5),
)
MIN_TICKS = 4
#: Outermost HR drawn (wider intervals are clipped at the frame).
HR_AXIS_LIMITS: tuple[float, float] = (0.02, 50.0)
#: Characters per line of a wrapped legend entry or panel title.
LABEL_WIDTH = 44
#: Scatter plots with more points than this are rasterised inside the vector (SVG) file.
RASTER_MIN_POINTS = 2000
#: Heading of each design group (forest plot) and legend name of its markers.
DESIGN_HEADINGS: dict[str | None, str] = {
    "rct": "Randomised trials",
    "prospective": "Prospective non-randomised studies",
    "retrospective": "Retrospective non-randomised studies",
    None: "Studies",
}
DESIGN_MARKERS: dict[str | None, str] = {"rct": "s", "prospective": "^", "retrospective": "o", None: "o"}
DESIGN_COLOURS: dict[str | None, str] = {
    "rct": "#1b4f8a",
    "prospective": "#c25e00",
    "retrospective": "#6b6b6b",
    None: "#333333",
}
#: Colours of lines drawn one per model, prior family or bias-prior mean.
LINE_COLOURS = matplotlib.colormaps["tab10"]
#: The report style (matplotlib rcParams) every figure is drawn and saved under.
REPORT_STYLE: dict[str, Any] = {
    "font.size": FONT_SIZE,
    "axes.titlesize": FONT_SIZE + 1,
    "axes.labelsize": FONT_SIZE,
    "xtick.labelsize": FONT_SIZE,
    "ytick.labelsize": FONT_SIZE,
    "legend.fontsize": FONT_SIZE,
    "figure.titlesize": FONT_SIZE + 2,
    "svg.fonttype": "none",
    # Study names, covariate names and labels come from the user's file: draw them as plain
    # text ("Trial $x^$ arm" is not mathtext). No label here uses mathtext (Greek is Unicode).
    "text.parse_math": False,
}


def styled[**P, R](func: Callable[P, R]) -> Callable[P, R]:
    """Draw under :data:`REPORT_STYLE`, then make every text drawn plain text.

    The texts made plain are those of the axes passed as ``ax=`` when one is given (the rest of
    the caller's figure is left alone), else those of the returned figure.

    Examples
    --------
    >>> @styled
    ... def draw(title):
    ...     fig = new_figure(3, 2)
    ...     fig.subplots().set_title(title)
    ...     return fig
    >>> fig = draw("Trial $x^2$ arm")
    >>> fig.axes[0].title.get_text(), fig.axes[0].title.get_parse_math()
    ('Trial $x^2$ arm', False)
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with matplotlib.rc_context(REPORT_STYLE):
            result = func(*args, **kwargs)
            target = kwargs.get("ax")
            if isinstance(target, Axes):
                plain_text(target)
            elif isinstance(result, FigureBase):
                plain_text(result)
            return result

    return wrapper


def plain_text(target: FigureBase | Axes) -> None:
    """Turn off mathtext on every text of ``target``, tick labels included, so that it draws
    user-supplied strings literally even when saved outside the report style.

    Tick labels are made here (under ``text.parse_math: False``) rather than lazily at the
    first draw, which may happen under another style.

    Examples
    --------
    >>> fig = new_figure(3, 2)
    >>> title = fig.subplots().set_title("Trial $x^2$ arm")
    >>> title.get_parse_math()
    True
    >>> plain_text(fig)
    >>> title.get_parse_math()
    False
    """
    for ax in target.findobj(Axes):
        for axis in (ax.xaxis, ax.yaxis):
            axis.get_major_ticks()
            axis.get_minor_ticks()
    for text in target.findobj(Text):
        text.set_parse_math(False)


def new_figure(width: float, height: float) -> Figure:
    """A figure outside pyplot's registry (nothing to close; garbage-collected like any object).

    Examples
    --------
    >>> fig = new_figure(4, 3)
    >>> fig.get_size_inches().tolist(), fig.axes
    ([4.0, 3.0], [])
    """
    return Figure(figsize=(width, height), layout="constrained")


def target_figure(fig: Figure | None, width: float, height: float, *, plot: str) -> Figure:
    """``fig`` when given (it must hold no axes yet), else a new ``width`` x ``height`` figure.

    A given figure keeps its size and layout; a :class:`~matplotlib.figure.SubFigure` works too.

    Examples
    --------
    >>> target_figure(None, 5, 2, plot="forest").get_size_inches().tolist()
    [5.0, 2.0]
    >>> fig = new_figure(4, 3)
    >>> target_figure(fig, 5, 2, plot="forest") is fig
    True
    >>> _ = fig.subplots()
    >>> target_figure(fig, 5, 2, plot="forest")
    Traceback (most recent call last):
    ...
    ValueError: forest: fig= must be an empty figure (it has 1 axes)
    """
    if fig is None:
        return new_figure(width, height)
    if fig.axes:
        raise ValueError(f"{plot}: fig= must be an empty figure (it has {len(fig.axes)} axes)")
    return fig


def target_axes(ax: Axes | None, width: float, height: float) -> tuple[Figure, Axes, bool]:
    """The figure and axes to draw into, and whether the figure is the plot's own.

    With ``ax`` the figure is ``ax.figure`` (the caller's); without, a new one with one axes.

    Examples
    --------
    >>> fig, ax, own = target_axes(None, 4, 3)
    >>> own, len(fig.axes)
    (True, 1)
    >>> target_axes(ax, 4, 3) == (fig, ax, False)
    True
    """
    if ax is not None:
        return ax.figure, ax, False
    fig = new_figure(width, height)
    return fig, fig.subplots(), True


def legend_below(fig: FigureBase, handles: Sequence[Any], labels: Sequence[str] | None = None) -> None:
    """A two-column legend under the figure's axes, without a frame.

    Examples
    --------
    >>> fig = new_figure(4, 3)
    >>> lines = fig.subplots().plot([1, 2], [1, 2])
    >>> legend_below(fig, lines, ["posterior median"])
    >>> [t.get_text() for t in fig.legends[0].get_texts()]
    ['posterior median']
    """
    extra = {} if labels is None else {"labels": labels}
    fig.legend(handles=handles, **extra, loc="outside lower center", ncols=2, frameon=False, fontsize=FONT_SIZE)


def wrap_label(text: str, width: int = LABEL_WIDTH) -> str:
    """Break a long label at spaces (never inside 'half-normal' and the like).

    Examples
    --------
    >>> print(wrap_label("Design-bias adjusted random effects, half-normal(scale=0.5) prior", 40))
    Design-bias adjusted random effects,
    half-normal(scale=0.5) prior
    """
    return textwrap.fill(text, width, break_on_hyphens=False, break_long_words=False)


def hr_axis(ax: Axes, lower: float, upper: float, *, axis: str = "x") -> None:
    """Log scale labelled in HR units, spanning [lower, upper] (clipped to ``HR_AXIS_LIMITS``).

    Examples
    --------
    >>> fig, ax, _ = target_axes(None, 4, 3)
    >>> hr_axis(ax, 0.6, 1.3)
    >>> ax.get_xscale(), [float(t) for t in ax.get_xticks()]
    ('log', [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25])
    """
    lo = max(min(lower, 0.9), HR_AXIS_LIMITS[0])
    hi = min(max(upper, 1.1), HR_AXIS_LIMITS[1])
    ticks: list[float] = []
    for candidates in HR_TICK_SETS:
        ticks = [t for t in candidates if lo <= t <= hi]
        if len(ticks) >= MIN_TICKS:
            break
    log_axis(ax, lo, hi, ticks, axis=axis)


def log_axis(ax: Axes, lo: float, hi: float, ticks: Sequence[float], *, axis: str = "x") -> None:
    """Log scale on [lo, hi] with major ticks at ``ticks`` labelled ``%g``, no minor ticks.

    Examples
    --------
    >>> fig, ax, _ = target_axes(None, 4, 3)
    >>> log_axis(ax, 0.1, 10, [0.1, 1, 10], axis="y")
    >>> ax.get_yscale(), [float(t) for t in ax.get_yticks()], [float(v) for v in ax.get_ylim()]
    ('log', [0.1, 1.0, 10.0], [0.1, 10.0])
    """
    if axis == "x":
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        target = ax.xaxis
    else:
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        target = ax.yaxis
    target.set_major_locator(FixedLocator(list(ticks)))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    target.set_minor_locator(NullLocator())


def format_interval(median: float, lower: float, upper: float) -> str:
    """``"0.75 [0.60, 0.93]"``.

    Examples
    --------
    >>> format_interval(0.7512, 0.6, 0.934)
    '0.75 [0.60, 0.93]'
    """
    return f"{median:.2f} [{lower:.2f}, {upper:.2f}]"


def finite_positive(values: Sequence[float | None]) -> list[float]:
    """The finite positive values (the ones a log axis can show).

    Examples
    --------
    >>> finite_positive([0.5, None, float("nan"), -1.0, 0.0, 2])
    [0.5, 2.0]
    """
    return [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]


def design_name(design: str | None) -> str:
    """Legend name of a design's markers.

    Examples
    --------
    >>> design_name("rct"), design_name("cohort"), design_name(None)
    ('Randomised trials', 'cohort', 'studies')
    """
    return DESIGN_HEADINGS.get(design, str(design)) if design is not None else "studies"
