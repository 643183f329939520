"""Figures drawn from fitted result objects (matplotlib, headless ``Agg`` backend).

Every function takes result objects (:class:`~synthesis.models.results.FitResult`,
:class:`~synthesis.sweep.SweepResult`, :class:`~synthesis.studies.StudyTable`, the frequentist
pooled and trim-and-fill results) and returns a :class:`matplotlib.figure.Figure`. Nothing here
computes a statistic: the numbers drawn are those the results hold. The only arithmetic is
drawing geometry (axis limits, marker areas, the pseudo-confidence lines of a funnel plot, a
prior density evaluated from the :class:`~synthesis.models.priors.PriorSpec` the fit carries).

Hazard ratios are drawn on a log axis labelled in HR units (0.25, 0.5, 1, 2, ...). Every interval
is the 95% equal-tailed interval the results hold (``synthesis.models.spec.INTERVAL_PROB``).
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Polygon  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from synthesis.base import (
    DESIGNS,  # noqa: E402
    INTERVAL_PROB,  # noqa: E402
)
from synthesis.models.results import FitResult, RatioSummary, StudyEffect  # noqa: E402
from synthesis.models.spec import threshold_key  # noqa: E402
from synthesis.studies import StudyTable  # noqa: E402
from synthesis.sweep import SweepResult, SweepRow  # noqa: E402

if TYPE_CHECKING:
    from synthesis.analysis import AnalysisResult

#: Resolution of the PNG files (SVG is vector).
PNG_DPI = 150
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
#: Tick values of a log axis of prior scales (tau).
SCALE_TICKS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: Outermost HR drawn (wider intervals are clipped at the frame).
HR_AXIS_LIMITS: tuple[float, float] = (0.02, 50.0)
#: Characters per line of a wrapped legend entry or panel title.
LABEL_WIDTH = 44
#: Studies without the covariate are named in the bubble plot's strip only up to this many.
STRIP_NAMES_MAX = 5
#: A forest plot draws at most this many study rows: above it the most precise studies (narrowest
#: observed CI) are drawn and the title says how many of how many.
FOREST_MAX_STUDIES = 60
#: Scatter plots with more points than this are rasterised inside the vector (SVG) file.
RASTER_MIN_POINTS = 2000
#: A sensitivity plot shades the credible bands of at most this many lines (else draws edges).
MAX_SHADED_BANDS = 6
#: Labels either side of HR = 1 (HR < 1: the treatment arm has the lower hazard).
FAVOURS: tuple[str, str] = ("favours LRT", "favours no LRT")
#: Heading of each design group in the forest plot.
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
GREEK: dict[str, str] = {"mu": "μ", "tau": "τ", "delta": "δ", "kappa": "κ", "beta": "β"}
_PCT = f"{100 * INTERVAL_PROB:g}%"
_RC = {
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


# --------------------------------------------------------------------------------------------
# shared drawing helpers
# --------------------------------------------------------------------------------------------
def _styled[**P, R](func: Callable[P, R]) -> Callable[P, R]:
    """Draw under the report style (font sizes >= ``FONT_SIZE``), every text as plain text."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with plt.rc_context(_RC):
            result = func(*args, **kwargs)
            if isinstance(result, Figure):
                _plain_text(result)
            return result

    return wrapper


def _plain_text(fig: Figure) -> None:
    """Turn off mathtext on every text of ``fig``, tick labels included, so that the figure
    draws user-supplied strings literally even when saved outside the report style.

    Tick labels are made here (under ``text.parse_math: False``) rather than lazily at the
    first draw, which may happen under another style.
    """
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            axis.get_major_ticks()
            axis.get_minor_ticks()
    for text in fig.findobj(Text):
        text.set_parse_math(False)


def _figure(width: float, height: float) -> Figure:
    """A figure outside pyplot's registry (nothing to close; garbage-collected like any object)."""
    return Figure(figsize=(width, height), layout="constrained")


def _wrap(text: str, width: int = LABEL_WIDTH) -> str:
    """Break a long label at spaces (never inside 'half-normal' and the like)."""
    return textwrap.fill(text, width, break_on_hyphens=False, break_long_words=False)


def _hr_label(value: float) -> str:
    return f"{value:g}"


def _hr_axis(ax: Any, lower: float, upper: float, *, axis: str = "x") -> None:
    """Log scale labelled in HR units, spanning [lower, upper] (clipped to ``HR_AXIS_LIMITS``)."""
    lo = max(min(lower, 0.9), HR_AXIS_LIMITS[0])
    hi = min(max(upper, 1.1), HR_AXIS_LIMITS[1])
    ticks: list[float] = []
    for candidates in HR_TICK_SETS:
        ticks = [t for t in candidates if lo <= t <= hi]
        if len(ticks) >= MIN_TICKS:
            break
    if axis == "x":
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        target = ax.xaxis
    else:
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        target = ax.yaxis
    target.set_major_locator(FixedLocator(ticks))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: _hr_label(v)))
    target.set_minor_locator(NullLocator())


def _fmt_interval(median: float, lower: float, upper: float) -> str:
    return f"{median:.2f} [{lower:.2f}, {upper:.2f}]"


def _prior_text(fit: FitResult, names: Sequence[str] = ("tau", "delta")) -> str:
    """Labelled priors of the parameters in ``names`` that the fit's model has."""
    labels = fit.spec.priors.labels(fit.spec.parameters)
    return "; ".join(f"{GREEK.get(n, n)} ~ {labels[n]}" for n in names if n in labels)


def _ratio_bounds(values: Sequence[RatioSummary | None]) -> list[float]:
    out: list[float] = []
    for v in values:
        if v is not None:
            out.extend([v.q025, v.q975])
    return out


def _finite_positive(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]


def _design_order(design: str | None) -> int:
    return DESIGNS.index(design) if design in DESIGNS else len(DESIGNS)


def save_figure(fig: Figure, path_stem: str | Path) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.png`` (150 dpi) and ``<path_stem>.svg``.

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
    """
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")]
    with plt.rc_context(_RC):
        fig.savefig(paths[0], dpi=PNG_DPI, format="png", metadata={"Software": None})
        # The layout is settled by the PNG pass: reuse it for the SVG (same geometry, faster).
        engine = fig.get_layout_engine()
        fig.set_layout_engine("none")
        try:
            fig.savefig(paths[1], format="svg", metadata={"Date": None})
        finally:
            fig.set_layout_engine(engine)
    return paths


# --------------------------------------------------------------------------------------------
# forest plot
# --------------------------------------------------------------------------------------------
@_styled
def plot_forest(
    fits: Mapping[str, FitResult],
    *,
    shrinkage_from: str | None = None,
    favours: tuple[str, str] = FAVOURS,
    title: str | None = None,
) -> Figure:
    """Posterior forest plot: observed and shrunken study HRs, pooled diamonds, prediction bars.

    Each study row shows the observed HR with its 95% CI (square, black) and, just below, its
    shrunken posterior HR with its 95% equal-tailed credible interval (open circle, coloured)
    from one model. Studies are grouped by design under headers (randomised, prospective,
    retrospective). Below them, one row per model: a diamond spanning the 95% credible interval
    of the pooled HR and a translucent bar spanning the 95% prediction interval of the HR of a
    new randomised study; the label names the model and its tau (and bias) prior.

    Parameters
    ----------
    fits
        Display label -> fitted model, in the order the pooled rows are drawn.
    shrinkage_from
        Label (a key of ``fits``) of the model whose shrunken study HRs are drawn; default the
        first fit with the most studies.
    favours
        Labels written left and right of HR = 1.
    title
        Figure title.

    Returns
    -------
    Figure
        One y tick per study and per pooled row; the x axis is logarithmic.
    """
    if not fits:
        raise ValueError("plot_forest needs at least one fitted model")
    labels = list(fits)
    if shrinkage_from is None:
        shrinkage_from = max(labels, key=lambda key: len(fits[key].study_effects))
    if shrinkage_from not in fits:
        raise ValueError(f"shrinkage_from={shrinkage_from!r} is not one of the fits ({', '.join(labels)})")
    effects: list[StudyEffect] = sorted(
        fits[shrinkage_from].study_effects, key=lambda e: _design_order(e.design)
    )
    shown_note = ""
    if len(effects) > FOREST_MAX_STUDIES:  # unreadable beyond: the most precise, in design order
        width = [math.log(e.observed_upper / e.observed_lower) for e in effects]
        chosen = sorted(sorted(range(len(effects)), key=width.__getitem__)[:FOREST_MAX_STUDIES])
        shown_note = f"\n({FOREST_MAX_STUDIES} most precise of {len(effects)} studies shown)"
        effects = [effects[i] for i in chosen]
    has_design = any(e.design is not None for e in effects)

    # Layout, top to bottom: (header, studies) per design, a gap, pooled header, pooled rows.
    rows: list[tuple[str, float, Any]] = []  # kind, y, payload
    y = 0.0
    current: object = object()
    for e in effects:
        if has_design and e.design != current:
            if rows:
                y -= 0.4
            rows.append(("header", y, DESIGN_HEADINGS.get(e.design, str(e.design))))
            y -= 1.0
            current = e.design
        rows.append(("study", y, e))
        y -= 1.0
    y -= 0.5
    rows.append(("pooled-header", y, None))
    y -= 1.2
    for label in labels:
        rows.append(("pooled", y, label))
        y -= 1.6
    y_min = y + 0.6

    n_units = -y_min + 1.0
    fig = _figure(11.0, 1.9 + 0.27 * n_units)
    ax, tax = fig.subplots(1, 2, sharey=True, width_ratios=[3.0, 2.4])
    fig.get_layout_engine().set(wspace=0.0)
    values: list[float] = []
    for e in effects:
        values += [e.observed_lower, e.observed_upper, e.hr.q025, e.hr.q975]
    for fit in fits.values():
        values += _ratio_bounds([fit.hr, fit.predictive_hr])
    values = _finite_positive(values) or [0.5, 2.0]
    _hr_axis(ax, min(values) / 1.15, max(values) * 1.15)
    ax.axvline(1.0, color="black", lw=0.8, zorder=1)
    yaxis = ax.get_yaxis_transform()

    tick_pos: list[float] = []
    tick_lab: list[str] = []
    text_kw = {"fontsize": FONT_SIZE, "va": "center", "transform": tax.transData}
    tax.set_xlim(0.0, 1.0)
    tax.axis("off")
    shrink_colour = "#b2182b"
    pooled_colours = plt.get_cmap("tab10")
    columns_done = False
    for kind, yy, payload in rows:
        if kind in ("header", "study") and not columns_done:
            top = yy if kind == "header" else yy + 0.8
            tax.text(0.03, top, f"Observed [{_PCT} CI]", fontweight="bold", **text_kw)
            tax.text(0.52, top, f"Shrunken [{_PCT} CrI]", fontweight="bold", **text_kw)
            columns_done = True
        if kind == "header":
            ax.text(-0.01, yy, payload, transform=yaxis, ha="right", va="center", fontweight="bold", fontsize=FONT_SIZE)
        elif kind == "study":
            e: StudyEffect = payload
            ax.hlines(yy, e.observed_lower, e.observed_upper, color="black", lw=1.2, zorder=2)
            ax.plot(
                e.observed_hr, yy, marker=DESIGN_MARKERS.get(e.design, "s"), ms=5.5, color="black",
                ls="none", zorder=3,
            )
            ys = yy - 0.3
            ax.hlines(ys, e.hr.q025, e.hr.q975, color=shrink_colour, lw=1.0, zorder=2)
            ax.plot(e.hr.median, ys, marker="o", ms=4.5, mfc="white", mec=shrink_colour, ls="none", zorder=3)
            tick_pos.append(yy - 0.15)
            tick_lab.append(e.study)
            tax.text(0.03, yy - 0.15, _fmt_interval(e.observed_hr, e.observed_lower, e.observed_upper), **text_kw)
            tax.text(0.52, yy - 0.15, _fmt_interval(e.hr.median, e.hr.q025, e.hr.q975), color=shrink_colour, **text_kw)
        elif kind == "pooled-header":
            ax.text(-0.01, yy, "Pooled (posterior)", transform=yaxis, ha="right", va="center", fontweight="bold", fontsize=FONT_SIZE)
            ax.axhline(yy + 0.6, color="#999999", lw=0.6)
            tax.text(0.03, yy, f"Pooled [{_PCT} CrI]", fontweight="bold", **text_kw)
            tax.text(0.52, yy, f"New RCT [{_PCT} PrI]", fontweight="bold", **text_kw)
        else:
            label = payload
            fit = fits[label]
            colour = pooled_colours(labels.index(label) % 10)
            pred = fit.predictive_hr
            if pred is not None:
                ax.hlines(yy, pred.q025, pred.q975, color=colour, lw=6, alpha=0.3, zorder=2)
            h = fit.hr
            diamond = Polygon(
                [(h.q025, yy), (h.median, yy + 0.32), (h.q975, yy), (h.median, yy - 0.32)],
                closed=True, facecolor=colour, edgecolor="black", lw=0.6, zorder=3,
            )
            ax.add_patch(diamond)
            tick_pos.append(yy)
            prior = _prior_text(fit)
            tick_lab.append(f"{label}\n{prior}" if prior else label)
            tax.text(0.03, yy, _fmt_interval(h.median, h.q025, h.q975), **text_kw)
            if pred is not None:
                tax.text(0.52, yy, _fmt_interval(pred.median, pred.q025, pred.q975), **text_kw)

    ax.set_ylim(y_min, 0.8 if has_design else 1.6)
    ax.yaxis.set_major_locator(FixedLocator(tick_pos))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda _v, pos: tick_lab[pos] if pos is not None and pos < len(tick_lab) else ""))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel(f"Hazard ratio (log scale); {_PCT} intervals", labelpad=22)
    ax.annotate(f"← {favours[0]}", xy=(1.0, 0.0), xycoords=("data", "axes fraction"), xytext=(-6, -24),
                textcoords="offset points", ha="right", va="top", fontsize=FONT_SIZE)
    ax.annotate(f"{favours[1]} →", xy=(1.0, 0.0), xycoords=("data", "axes fraction"), xytext=(6, -24),
                textcoords="offset points", ha="left", va="top", fontsize=FONT_SIZE)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    handles = [
        Line2D([], [], color="black", marker="s", ms=5, lw=1.2, label=f"observed HR, {_PCT} CI"),
        Line2D([], [], color=shrink_colour, marker="o", mfc="white", ms=4.5, lw=1.0,
               label=f"shrunken HR, {_PCT} CrI ({shrinkage_from})"),
        Patch(facecolor="#888888", edgecolor="black", label=f"pooled HR, {_PCT} CrI"),
        Line2D([], [], color="#888888", lw=6, alpha=0.3, label=f"{_PCT} prediction interval, new RCT"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False, fontsize=FONT_SIZE)
    fig.suptitle((title or "Posterior forest plot") + shown_note)
    return fig


# --------------------------------------------------------------------------------------------
# sensitivity plot
# --------------------------------------------------------------------------------------------
_DASHES: tuple[Any, ...] = (
    "solid",
    (0, (5, 2)),
    (0, (1, 1.5)),
    (0, (6, 2, 1, 2)),
    (0, (2, 3)),
    (0, (10, 3)),
    (0, (4, 1, 1, 1, 1, 1)),
    (0, (8, 2, 2, 2, 2, 2)),
)
FAMILY_LABELS: dict[str, str] = {
    "halfnormal": "half-normal",
    "halfcauchy": "half-Cauchy",
    "halft": "half-Student-t",
    "exponential": "exponential",
    "uniform": "uniform",
    "lognormal_tau2": "log-normal on τ²",
    "invgamma": "inverse-gamma",
    "invgamma_tau2": "inverse-gamma on τ²",
    "turner2015": "Turner 2015 (empirical)",
    "turner2015-acm-nonpharm": "Turner 2015 (empirical)",
}


def _groups(rows: Sequence[SweepRow]) -> dict[tuple[str, str | None], list[SweepRow]]:
    """Rows by (tau family, bias prior), each sorted by the prior median of tau (for lines)."""
    out: dict[tuple[str, str | None], list[SweepRow]] = {}
    for r in rows:
        out.setdefault((r.tau_family, r.bias_prior), []).append(r)
    return {k: sorted(v, key=lambda r: r.tau_prior_median) for k, v in out.items()}


@_styled
def plot_sensitivity(
    sweep: SweepResult,
    *,
    thresholds: Sequence[float] | None = None,
    title: str | None = None,
) -> Figure:
    """Prior-sensitivity plot of a sweep: the posterior HR and P(HR < T) against the tau prior.

    The x axis is the prior median of tau (``SweepRow.tau_prior_median``, log scale). The first
    panel shows the posterior median HR with its 95% equal-tailed credible band; one further
    panel per threshold shows P(HR < T). One colour per tau-prior family and, for sweeps over
    bias priors too, one line style per bias prior.

    Parameters
    ----------
    sweep
        The sweep result.
    thresholds
        Thresholds to draw (default all of ``sweep.thresholds``); each must be in the sweep.
    title
        Figure title (default: the model label of the sweep's rows).

    Returns
    -------
    Figure
        ``1 + len(thresholds)`` panels.
    """
    if not sweep.rows:
        raise ValueError("plot_sensitivity: the sweep has no rows")
    chosen = tuple(sweep.thresholds if thresholds is None else thresholds)
    missing = [t for t in chosen if threshold_key(t) not in sweep.rows[0].p_hr_below]
    if missing:
        raise ValueError(
            f"plot_sensitivity: threshold(s) {', '.join(f'{t:g}' for t in missing)} not in the sweep "
            f"(it has {', '.join(sweep.rows[0].p_hr_below)})"
        )
    groups = _groups(sweep.rows)
    families = list(dict.fromkeys(k[0] for k in groups))
    biases = list(dict.fromkeys(k[1] for k in groups))
    cmap = plt.get_cmap("tab10")
    colour = {f: cmap(i % 10) for i, f in enumerate(families)}
    style = {b: _DASHES[i % len(_DASHES)] for i, b in enumerate(biases)}
    n_panels = 1 + len(chosen)
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig = _figure(4.0 * ncols, 3.2 * nrows + 0.6 + 0.22 * (len(families) + len(biases)) / 2)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for extra in axes[n_panels:]:
        extra.set_visible(False)
    # Few lines: shaded credible bands; many (bias sweeps): the band edges as thin lines, since
    # dozens of overlapping shaded bands hide each other.
    shade = len(groups) <= MAX_SHADED_BANDS
    x_all = _finite_positive([r.tau_prior_median for r in sweep.rows]) or [0.1, 1.0]
    hr_all = _finite_positive([v for r in sweep.rows for v in (r.hr_q025, r.hr_q975)]) or [0.5, 2.0]

    ax = axes[0]
    for (fam, bias), rs in groups.items():
        x = [r.tau_prior_median for r in rs]
        lower, upper = [r.hr_q025 for r in rs], [r.hr_q975 for r in rs]
        if shade:
            ax.fill_between(x, lower, upper, color=colour[fam], alpha=0.15, lw=0)
        else:
            for edge in (lower, upper):
                ax.plot(x, edge, color=colour[fam], ls=style[bias], lw=0.6, alpha=0.6)
        ax.plot(x, [r.hr_median for r in rs], color=colour[fam], ls=style[bias], marker="o", ms=3, lw=1.3)
    _hr_axis(ax, min(hr_all) / 1.1, max(hr_all) * 1.1, axis="y")
    ax.axhline(1.0, color="black", lw=0.8)
    for t in chosen:
        if t != 1.0:
            ax.axhline(t, color="#777777", lw=0.6, ls=":")
    ax.set_ylabel(f"Posterior median HR ({_PCT} CrI {'band' if shade else 'thin lines'})")
    ax.set_title("Pooled HR")
    for ax, t in zip(axes[1:n_panels], chosen, strict=True):
        key = threshold_key(t)
        for (fam, bias), rs in groups.items():
            ax.plot([r.tau_prior_median for r in rs], [r.p_hr_below.get(key, np.nan) for r in rs],
                    color=colour[fam], ls=style[bias], marker="o", ms=3, lw=1.3)
        ax.set_ylim(-0.02, 1.02)
        ax.axhline(0.5, color="#bbbbbb", lw=0.6, ls=":")
        ax.set_ylabel(f"P(HR < {t:g})")
        ax.set_title(f"Posterior probability HR < {t:g}")
    for ax in axes[:n_panels]:
        ax.set_xscale("log")
        lo, hi = min(x_all) / 1.3, max(x_all) * 1.3
        ax.set_xlim(lo, hi)
        ax.xaxis.set_major_locator(FixedLocator([t for t in SCALE_TICKS if lo <= t <= hi]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("Prior median of τ (log scale)")
        ax.grid(True, which="major", color="#eeeeee", lw=0.6)
    handles = [Line2D([], [], color=colour[f], marker="o", ms=3, lw=1.3, label=f"τ prior: {FAMILY_LABELS.get(f, f)}")
               for f in families]
    if any(b is not None for b in biases):
        handles += [Line2D([], [], color="black", ls=style[b], lw=1.3, label=f"δ prior: {b}") for b in biases]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False, fontsize=FONT_SIZE)
    model = sweep.rows[0].model
    fig.suptitle(title or f"Prior sensitivity: {model}")
    return fig



@_styled
def plot_bias_sensitivity(
    sweep: SweepResult,
    *,
    tau_prior: str | None = None,
    thresholds: Sequence[float] | None = None,
    title: str | None = None,
) -> Figure:
    """Bias-prior sensitivity of a sweep: the posterior HR and P(HR < T) against the SD of the
    design-bias prior (log scale), one line per bias-prior mean, at one tau prior.

    ``tau_prior`` is a tau-prior label of the sweep (default: the half-normal(scale=0.5) default
    prior when swept, else the first). Rows without a bias prior are refused.
    """
    rows = [r for r in sweep.rows if r.bias_prior is not None and r.bias_sd is not None]
    if not rows:
        raise ValueError("plot_bias_sensitivity: the sweep has no bias priors")
    labels = list(dict.fromkeys(r.tau_prior for r in rows))
    chosen_tau = tau_prior or next((t for t in labels if t == "half-normal(scale=0.5)"), labels[0])
    rows = [r for r in rows if r.tau_prior == chosen_tau]
    if not rows:
        raise ValueError(f"plot_bias_sensitivity: no rows with tau prior {chosen_tau!r}")
    chosen = tuple(sweep.thresholds if thresholds is None else thresholds)
    means = sorted({r.bias_mean for r in rows})
    cmap = plt.get_cmap("tab10")
    n_panels = 1 + len(chosen)
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig = _figure(4.0 * ncols, 3.2 * nrows + 0.8)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for extra in axes[n_panels:]:
        extra.set_visible(False)
    hr_all = _finite_positive([v for r in rows for v in (r.hr_q025, r.hr_q975)]) or [0.5, 2.0]
    for i, m in enumerate(means):
        rs = sorted((r for r in rows if r.bias_mean == m), key=lambda r: r.bias_sd)
        x = [r.bias_sd for r in rs]
        colour = cmap(i % 10)
        label = f"δ prior mean {m:g} (HR ×{math.exp(m):.2f})"
        axes[0].fill_between(x, [r.hr_q025 for r in rs], [r.hr_q975 for r in rs], color=colour, alpha=0.15, lw=0)
        axes[0].plot(x, [r.hr_median for r in rs], color=colour, marker="o", ms=3, lw=1.3, label=label)
        for ax, t in zip(axes[1:n_panels], chosen, strict=True):
            ax.plot(x, [r.p_hr_below.get(threshold_key(t), np.nan) for r in rs], color=colour, marker="o", ms=3, lw=1.3)
    _hr_axis(axes[0], min(hr_all) / 1.1, max(hr_all) * 1.1, axis="y")
    axes[0].axhline(1.0, color="black", lw=0.8)
    axes[0].set_ylabel(f"Posterior median HR ({_PCT} CrI band)")
    axes[0].set_title("Pooled HR of a randomised comparison")
    for ax, t in zip(axes[1:n_panels], chosen, strict=True):
        ax.set_ylim(-0.02, 1.02)
        ax.axhline(0.5, color="#bbbbbb", lw=0.6, ls=":")
        ax.set_ylabel(f"P(HR < {t:g})")
        ax.set_title(f"Posterior probability HR < {t:g}")
    sds = sorted({r.bias_sd for r in rows})
    for ax in axes[:n_panels]:
        ax.set_xscale("log")
        ax.set_xlim(min(sds) / 1.3, max(sds) * 1.3)
        ax.xaxis.set_major_locator(FixedLocator(sds))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("SD of the design-bias prior δ (log scale)")
        ax.grid(True, which="major", color="#eeeeee", lw=0.6)
    handles, texts = axes[0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="outside lower center", ncols=2, frameon=False, fontsize=FONT_SIZE)
    fig.suptitle(title or f"Bias-prior sensitivity: {rows[0].model} (τ ~ {chosen_tau})")
    return fig

# --------------------------------------------------------------------------------------------
# funnel plot
# --------------------------------------------------------------------------------------------
#: Multiplier of the pseudo-confidence lines of a funnel plot (95%, normal).
FUNNEL_Z = 1.959964


def _pooled_log_estimate(pooled: Any) -> float | None:
    """The pooled log HR a frequentist result holds (``PoolResult.estimate``), or a number."""
    if pooled is None:
        return None
    if isinstance(pooled, (int, float, np.floating)):
        return float(pooled)
    value = getattr(pooled, "estimate", None)
    return None if value is None else float(value)


def _filled_studies(trimfill: Any) -> tuple[np.ndarray, np.ndarray]:
    """Log HRs and SEs of the studies a trim-and-fill result imputed (empty when none)."""
    if trimfill is None:
        return np.zeros(0), np.zeros(0)
    y = getattr(trimfill, "filled_y", None)
    se = getattr(trimfill, "filled_se", None)
    if se is None and getattr(trimfill, "filled_v", None) is not None:
        se = np.sqrt(np.asarray(trimfill.filled_v, dtype=float))
    if y is None or se is None:
        return np.zeros(0), np.zeros(0)
    return np.asarray(y, dtype=float), np.asarray(se, dtype=float)


def _safe_log(v: np.ndarray) -> np.ndarray:
    """Inverse of the HR axis transform, defined for the non-positive values matplotlib probes."""
    return np.log(np.clip(np.asarray(v, dtype=float), 1e-300, None))


@_styled
def plot_funnel(
    table: StudyTable,
    *,
    pooled: Any = None,
    trimfill: Any = None,
    title: str | None = None,
) -> Figure:
    """Funnel plot: each study's observed log HR against its standard error (inverted axis).

    Parameters
    ----------
    table
        The studies (``log_hr``, ``se`` and ``design`` are drawn; markers by design).
    pooled
        The pooled estimate the funnel is centred on: a frequentist result with ``estimate``
        (log HR), e.g. :class:`synthesis.pooling.PoolResult`, or a number. ``None``: no funnel.
    trimfill
        A trim-and-fill result (``filled_y`` and ``filled_se`` or ``filled_v``, and its
        adjusted ``estimate``); its imputed studies are drawn as open markers. ``None``: none.
    title
        Figure title.

    Returns
    -------
    Figure
        One axes; the pseudo 95% limits are the lines ``estimate +/- 1.96 se``.
    """
    fig = _figure(6.5, 5.2)
    ax = fig.subplots()
    y, se = table.y, table.se
    designs = table.designs
    fy, fse = _filled_studies(trimfill)
    se_max = float(np.max(np.concatenate([se, fse]))) * 1.08 if len(se) else 1.0
    est = _pooled_log_estimate(pooled)
    if est is not None:
        edge = np.array([0.0, se_max])
        ax.fill_betweenx(edge, est - FUNNEL_Z * edge, est + FUNNEL_Z * edge, color="#f0f0f0", lw=0, zorder=0)
        ax.plot(est - FUNNEL_Z * edge, edge, color="#777777", lw=0.8, ls="--", label="pseudo 95% limits")
        ax.plot(est + FUNNEL_Z * edge, edge, color="#777777", lw=0.8, ls="--")
        method = getattr(pooled, "method", None)
        ax.axvline(est, color="black", lw=1.0, label=f"pooled estimate{f' ({method})' if method else ''}")
    for design in dict.fromkeys(designs):
        mask = np.array([d == design for d in designs])
        name = DESIGN_HEADINGS.get(design, str(design)) if design is not None else "studies"
        ax.plot(y[mask], se[mask], ls="none", marker=DESIGN_MARKERS.get(design, "o"), ms=6,
                color=DESIGN_COLOURS.get(design, "#333333"), label=name, zorder=3,
                rasterized=len(y) > RASTER_MIN_POINTS)
    if fy.size:
        ax.plot(fy, fse, ls="none", marker="o", ms=6, mfc="none", mec="black", mew=1.0,
                label=f"filled by trim-and-fill ({fy.size})", zorder=3)
        adjusted = _pooled_log_estimate(trimfill)
        if adjusted is not None:
            ax.axvline(adjusted, color="black", lw=1.0, ls=":", label="trim-and-fill adjusted estimate")
    ax.set_ylim(se_max, 0.0)
    ax.axvline(0.0, color="#bbbbbb", lw=0.6, zorder=0)
    ax.set_xlabel("Observed log hazard ratio")
    ax.set_ylabel("Standard error (inverted)")
    top = ax.secondary_xaxis("top", functions=(np.exp, _safe_log))
    top.set_xlabel("Hazard ratio")
    top.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    fig.legend(loc="outside lower center", ncols=2, frameon=False, fontsize=FONT_SIZE)
    fig.suptitle(title or "Funnel plot")
    return fig


# --------------------------------------------------------------------------------------------
# meta-regression bubble plot
# --------------------------------------------------------------------------------------------
def _curve(fit: FitResult, covariate: str) -> list[tuple[float, RatioSummary]]:
    """``fit.hr_at`` entries of the form ``"<covariate>=<value>"``, sorted by value."""
    out = []
    for key, summary in fit.hr_at.items():
        name, sep, value = key.partition("=")
        if sep and name.strip() == covariate:
            try:
                out.append((float(value), summary))
            except ValueError:
                continue
    return sorted(out, key=lambda item: item[0])


@_styled
def plot_bubble(
    table: StudyTable,
    fit: FitResult,
    covariate: str,
    *,
    label: str | None = None,
    title: str | None = None,
) -> Figure:
    """Meta-regression bubble plot with the posterior HR curve across covariate values.

    Studies are bubbles at (covariate value, observed HR) with area proportional to 1/se^2
    (markers by design). Studies without the covariate are drawn in a strip at the right marked
    "imputed/missing" (the model imputes their value). The line and band are the posterior median
    and 95% equal-tailed credible band of the HR of a randomised comparison at each covariate
    value, read from ``fit.hr_at`` entries ``"<covariate>=<value>"``.

    Parameters
    ----------
    table
        The studies the model was fitted to.
    fit
        The meta-regression fit.
    covariate
        The covariate column.
    label
        Model label for the legend.
    title
        Figure title.

    Returns
    -------
    Figure
        The main axes and, when some studies lack the covariate, a strip axes.
    """
    x = table.covariate(covariate)
    hr = np.exp(table.y)
    weight = 1.0 / table.v
    area = 30.0 + 370.0 * weight / weight.max()
    missing = np.isnan(x)
    curve = _curve(fit, covariate)
    fig = _figure(8.0 if missing.any() else 6.5, 5.6)
    if missing.any():
        ax, strip = fig.subplots(1, 2, sharey=True, width_ratios=[5.0, 1.3])
    else:
        ax, strip = fig.subplots(), None
    if curve:
        cx = [c[0] for c in curve]
        ax.fill_between(cx, [c[1].q025 for c in curve], [c[1].q975 for c in curve], color="#1b4f8a",
                        alpha=0.18, lw=0, label=f"{_PCT} credible band")
        ax.plot(cx, [c[1].median for c in curve], color="#1b4f8a", lw=1.6, label="posterior median HR")
    designs = np.array(table.designs, dtype=object)
    studies = np.array(table.studies, dtype=object)
    # Strip positions: the studies without the covariate spread across the strip in HR order.
    strip_x = np.full(table.k, np.nan)
    order = np.flatnonzero(missing)[np.argsort(hr[missing])]
    strip_x[order] = np.linspace(-0.7, 0.7, order.size) if order.size > 1 else 0.0
    handles: list[Any] = []
    for design in dict.fromkeys(table.designs):
        marker = DESIGN_MARKERS.get(design, "o")
        colour = DESIGN_COLOURS.get(design, "#333333")
        mask = (designs == design) & ~missing
        ax.scatter(x[mask], hr[mask], s=area[mask], marker=marker, color=colour, alpha=0.6,
                   edgecolors="black", linewidths=0.5, zorder=3, rasterized=table.k > RASTER_MIN_POINTS)
        name = DESIGN_HEADINGS.get(design, str(design)) if design is not None else "studies"
        handles.append(Line2D([], [], ls="none", marker=marker, ms=7, color=colour, alpha=0.6,
                              mec="black", mew=0.5, label=name))
        m = (designs == design) & missing
        if strip is not None and m.any():
            strip.scatter(strip_x[m], hr[m], s=area[m], marker=marker, color=colour, alpha=0.35,
                          edgecolors="black", linewidths=0.5, linestyle="--", zorder=3,
                          rasterized=table.k > RASTER_MIN_POINTS)
            if missing.sum() <= STRIP_NAMES_MAX:
                for name_i, x_i, hr_i in zip(studies[m], strip_x[m], hr[m], strict=True):
                    strip.annotate(str(name_i), (x_i, hr_i), xytext=(0, -10), textcoords="offset points",
                                   ha="center", va="top", fontsize=8)
    values = _finite_positive(list(hr) + [v for c in curve for v in (c[1].q025, c[1].q975)]) or [0.5, 2.0]
    _hr_axis(ax, min(values) / 1.15, max(values) * 1.15, axis="y")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xlabel(covariate)
    ax.set_ylabel("Hazard ratio (log scale)")
    curve_handles, _ = ax.get_legend_handles_labels()
    handles = curve_handles + handles
    handles.append(Line2D([], [], ls="none", label="bubble area ∝ 1/SE²"))
    fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False, fontsize=FONT_SIZE)
    if strip is not None:
        strip.set_xlim(-1.0, 1.0)
        strip.set_xticks([])
        strip.axhline(1.0, color="black", lw=0.8)
        strip.set_title(f"imputed/missing\n{covariate}\n({int(missing.sum())} studies)", fontsize=FONT_SIZE)
        strip.set_facecolor("#f5f5f5")
        strip.tick_params(axis="y", left=False)
    fig.suptitle(title or (f"{label}\n(HR of a randomised comparison)" if label else f"Meta-regression on {covariate}"))
    return fig


# --------------------------------------------------------------------------------------------
# prior vs posterior
# --------------------------------------------------------------------------------------------
PARAMETER_AXIS_LABELS: dict[str, str] = {
    "tau": "τ (between-study SD of log HR)",
    "delta": "δ (design bias, log HR scale)",
    "mu": "μ (log HR of a randomised comparison)",
    "kappa": "κ",
}


def _densities(fit: FitResult) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    densities = dict(fit.densities)
    if "tau" not in densities and fit.tau_grid is not None and fit.tau_density is not None:
        densities["tau"] = (fit.tau_grid, fit.tau_density)
    return densities


@_styled
def plot_prior_posterior(
    fits: FitResult | Mapping[str, FitResult],
    *,
    parameters: Sequence[str] = ("tau", "delta"),
    title: str | None = None,
) -> Figure:
    """Prior and posterior densities of tau and delta, one row per model.

    The posterior curve is ``fit.densities[name]`` (computed by the engine); the prior curve is
    the density of ``fit.spec.priors.<name>`` evaluated on the same grid, labelled with the
    prior's label.

    Parameters
    ----------
    fits
        One fitted model, or display label -> fitted model (one row each).
    parameters
        Parameters to draw, one column each; a model without a posterior density for a
        parameter (e.g. no delta in a random-effects model) leaves that panel empty.
    title
        Figure title.

    Returns
    -------
    Figure
        One visible panel per (model, parameter) with a posterior density.

    Raises
    ------
    ValueError
        When no fit holds a posterior density for any of ``parameters``.
    """
    if isinstance(fits, FitResult):
        fits = {f"{fits.spec.model} model": fits}
    drawable = {
        label: [n for n in parameters if n in _densities(fit) and n in fit.spec.parameters]
        for label, fit in fits.items()
    }
    drawable = {label: names for label, names in drawable.items() if names}
    if not drawable:
        raise ValueError(
            f"plot_prior_posterior: no fit holds a posterior density for {', '.join(parameters)} "
            f"(fits: {', '.join(fits) or 'none'})"
        )
    columns = [n for n in parameters if any(n in names for names in drawable.values())]
    fig = _figure(4.8 * len(columns), 3.9 * len(drawable))
    axes = fig.subplots(len(drawable), len(columns), squeeze=False)
    for i, (label, names) in enumerate(drawable.items()):
        fit = fits[label]
        densities = _densities(fit)
        for j, name in enumerate(columns):
            ax = axes[i, j]
            if name not in names:
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{label}:\nno {GREEK.get(name, name)} in this model", ha="center",
                        va="center", transform=ax.transAxes, color="#777777")
                continue
            grid, density = (np.asarray(a, dtype=float) for a in densities[name])
            prior = getattr(fit.spec.priors, name)
            ax.plot(grid, density, color="#1b4f8a", lw=1.6, label=f"posterior ({fit.engine} engine)")
            ax.plot(grid, np.exp(prior.logpdf(grid)), color="#c25e00", lw=1.3, ls="--",
                    label=_wrap(f"prior: {prior.label}"))
            ax.set_xlabel(PARAMETER_AXIS_LABELS.get(name, name))
            ax.set_ylabel("density")
            ax.set_ylim(bottom=0.0)
            ax.set_title(_wrap(f"{label}: {GREEK.get(name, name)}", LABEL_WIDTH + 6))
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False, fontsize=FONT_SIZE)
    fig.suptitle(title or "Prior and posterior densities")
    return fig


# --------------------------------------------------------------------------------------------
# the report's figures
# --------------------------------------------------------------------------------------------
def standard_figures(result: AnalysisResult) -> dict[str, Figure]:
    """The figures of the report for an analysis result, keyed by file stem.

    ``forest`` (every model's pooled diamond), ``sensitivity_<key>`` per sweep, ``funnel``,
    ``bubble`` (when a meta-regression was fitted) and ``prior_posterior`` (one row per fit with
    posterior densities).
    """
    labels = {run.key: run.label for run in result.runs}
    figures: dict[str, Figure] = {}
    fits = {labels.get(key, key): fit for key, fit in result.fits.items()}
    if fits:
        # Shrink the studies under the design-bias model when there is one: under plain random
        # effects on all studies the trials are pulled towards the (larger) observational studies.
        bias_label = labels.get("bias")
        shrink = bias_label if bias_label in fits and fits[bias_label].study_effects else None
        figures["forest"] = plot_forest(fits, shrinkage_from=shrink, title=f"Posterior forest plot: {result.name}")
    for key, sweep in result.sweeps.items():
        if sweep.rows:
            figures[f"sensitivity_{key}"] = plot_sensitivity(
                sweep, title=f"Prior sensitivity: {labels.get(key, key)}"
            )
            if any(r.bias_prior is not None for r in sweep.rows):
                figures[f"bias_sensitivity_{key}"] = plot_bias_sensitivity(sweep)
    pools_all = result.pools.get("all") or {}
    method = str(getattr(result.pubbias, "method", "REML")).upper()
    pooled = pools_all.get(method, pools_all.get("REML"))
    trimfill = getattr(result.pubbias, "trimfill", None)
    figures["funnel"] = plot_funnel(result.table, pooled=pooled, trimfill=trimfill,
                                    title=f"Funnel plot: {result.name}")
    for key, fit in result.fits.items():
        if fit.spec.has_covariates and result.covariate in fit.spec.covariates and _curve(fit, result.covariate):
            figures["bubble"] = plot_bubble(result.table, fit, result.covariate, label=labels.get(key, key))
            break
    with_density = {label: fit for label, fit in fits.items() if _densities(fit)}
    if with_density:
        figures["prior_posterior"] = plot_prior_posterior(with_density)
    return figures
