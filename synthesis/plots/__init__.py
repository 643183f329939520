"""Figures drawn from result objects (matplotlib), one module per figure.

Every plot function takes result objects (:class:`~synthesis.models.results.FitResult`,
:class:`~synthesis.sweeps.SweepResult`, :class:`~synthesis.studies.StudyTable`, the frequentist
pooled and trim-and-fill results), draws into the ``ax=`` (one-panel plots) or ``fig=``
(multi-panel plots) it is given or into a new figure outside pyplot's registry, and returns the
figure. Nothing here computes a statistic: the numbers drawn are those the results hold. The
only arithmetic is drawing geometry (axis limits, marker areas, the pseudo-confidence lines of a
funnel plot, a prior density evaluated from the :class:`~synthesis.models.priors.PriorSpec` the
fit carries).

Importing this package leaves the matplotlib backend alone (the command line chooses ``Agg``
when it runs headless). Hazard ratios are drawn on a log axis labelled in HR units; every
interval is the 95% equal-tailed interval the results hold (:data:`synthesis.base.INTERVAL_PROB`).
Study names and other user strings are drawn as plain text, never as mathtext.

==========================  =====================================================
module                      holds
==========================  =====================================================
``plots.style``             fonts, HR axis, design markers, plain-text protection
``plots.forest``            :func:`plot_forest`
``plots.sensitivity``       :func:`plot_sensitivity`, :func:`plot_bias_sensitivity`
``plots.funnel``            :func:`plot_funnel`
``plots.bubble``            :func:`plot_bubble`
``plots.densities``         :func:`plot_prior_posterior`
``plots.tipping``           :func:`plot_tipping_map`, :func:`plot_alpha_curve`
``plots.reconcile``         :func:`plot_reconcile_ladder` (published pools to this tool's answer)
``plots.plan``              :func:`plot_plan` (the next trial, issue #14)
``plots.timeline``          :func:`plot_timeline` (cumulative evidence, issue #14)
``plots.save``              :func:`save_figure` (PNG and SVG)
``plots.standard``          :func:`standard_figures` (the report's set)
==========================  =====================================================
"""

from synthesis.plots.bubble import STRIP_NAMES_MAX, plot_bubble
from synthesis.plots.densities import PARAMETER_AXIS_LABELS, plot_prior_posterior
from synthesis.plots.forest import FAVOURS, FOREST_MAX_STUDIES, plot_forest
from synthesis.plots.funnel import FUNNEL_Z, plot_funnel
from synthesis.plots.plan import plot_plan
from synthesis.plots.reconcile import plot_reconcile_ladder
from synthesis.plots.save import PNG_DPI, save_figure
from synthesis.plots.sensitivity import (
    FAMILY_LABELS,
    MAX_SHADED_BANDS,
    SCALE_TICKS,
    plot_bias_sensitivity,
    plot_sensitivity,
)
from synthesis.plots.standard import standard_figures
from synthesis.plots.style import (
    DESIGN_COLOURS,
    DESIGN_HEADINGS,
    DESIGN_MARKERS,
    FONT_SIZE,
    HR_AXIS_LIMITS,
    HR_TICK_SETS,
    LABEL_WIDTH,
    MIN_TICKS,
    RASTER_MIN_POINTS,
)
from synthesis.plots.timeline import plot_timeline
from synthesis.plots.tipping import plot_alpha_curve, plot_tipping_map

__all__ = [
    "DESIGN_COLOURS",
    "DESIGN_HEADINGS",
    "DESIGN_MARKERS",
    "FAMILY_LABELS",
    "FAVOURS",
    "FONT_SIZE",
    "FOREST_MAX_STUDIES",
    "FUNNEL_Z",
    "HR_AXIS_LIMITS",
    "HR_TICK_SETS",
    "LABEL_WIDTH",
    "MAX_SHADED_BANDS",
    "MIN_TICKS",
    "PARAMETER_AXIS_LABELS",
    "PNG_DPI",
    "RASTER_MIN_POINTS",
    "SCALE_TICKS",
    "STRIP_NAMES_MAX",
    "plot_alpha_curve",
    "plot_bias_sensitivity",
    "plot_bubble",
    "plot_forest",
    "plot_funnel",
    "plot_plan",
    "plot_prior_posterior",
    "plot_reconcile_ladder",
    "plot_sensitivity",
    "plot_timeline",
    "plot_tipping_map",
    "save_figure",
    "standard_figures",
]
