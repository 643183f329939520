"""The caption of each figure of the report, in words a reader can follow without the code."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synthesis.base import INTERVAL_LABEL
from synthesis.report.formats import INTERVAL_KIND
from synthesis.report.narrative import model_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from synthesis.analysis import AnalysisResult

FOREST = (
    f"Posterior forest plot. Each study's observed HR with its {INTERVAL_LABEL} confidence interval (black) and "
    f"its shrunken posterior HR with its {INTERVAL_KIND} (red); diamonds: pooled posterior HR of each "
    f"model ({INTERVAL_KIND}); translucent bars: {INTERVAL_LABEL} prediction interval of the HR of a new "
    "randomised trial. The priors are written under each model label. Log scale."
)
SENSITIVITY = (
    "Prior sensitivity of '{label}': posterior median HR with its " + INTERVAL_KIND + " "
    "(band) and P(HR < T), against the prior median of τ (log scale); one colour per τ-prior family, "
    "one line style per bias prior."
)
BIAS_SENSITIVITY = (
    "Bias-prior sensitivity of '{label}': posterior median HR of a randomised comparison "
    "with its " + INTERVAL_KIND + " (band) and P(HR < T) against the SD of the design-bias prior δ (log scale), "
    "one line per prior mean (0: no expected direction; log 0.8: non-randomised studies expected to "
    "exaggerate the benefit by 20%), at the default τ prior."
)
FUNNEL = (
    "Funnel plot: observed log HR against its standard error (inverted), centred on the pooled {method} "
    "estimate with pseudo 95% limits (estimate ± 1.96 SE); open circles: studies imputed by trim and fill."
)
BUBBLE = (
    "Meta-regression on {covariate}: observed study HRs (bubble area ∝ 1/SE²) and the posterior "
    "median HR of a randomised comparison with its " + INTERVAL_KIND + " across covariate values; studies "
    "without the covariate (imputed inside the model) are in the strip at the right."
)
PRIOR_POSTERIOR = (
    "Prior (dashed, labelled) and posterior (solid) densities of the between-study SD τ and of "
    "the design bias δ (log HR scale), one row per model; the posterior densities are the engines' own."
)

TIPPING_MAP = (
    "Tipping-point map: posterior P(HR < {threshold:g}) of a randomised comparison under the design-bias "
    "model (additive, exact engine) for each design-bias prior δ ~ normal(log b, sd²): its mean b as the "
    "factor multiplying a non-randomised study's HR (x, log scale) and its SD on the log-HR scale (y, log "
    "scale). The white line is the contour P(HR < {threshold:g}) = {level:g}; the star marks where it "
    "crosses b = 1 (no bias expected)."
)
TIPPING_ALPHA = (
    "Down-weighting the non-randomised studies (their variances divided by alpha; exact engine): "
    "posterior median HR with its " + INTERVAL_KIND + " (left) and P(HR < {threshold:g}) (right) "
    "against alpha, from 0 (randomised trials only) to 1 (all studies as equal); dashed lines: where "
    "P(HR < {threshold:g}) crosses {level:g}."
)


def figure_caption(name: str, fig: Figure, result: AnalysisResult) -> str:
    """The caption of figure ``name`` (a key of :func:`synthesis.plots.standard_figures`).

    Parameters
    ----------
    name
        The figure's key: ``forest``, ``sensitivity_<model>``, ``bias_sensitivity_<model>``,
        ``funnel``, ``bubble``, ``prior_posterior...``, ``tipping_map``, ``tipping_alpha``, or
        any other (then the figure's own title, or its name).
    fig
        The figure.
    result
        The analysis it draws.

    Returns
    -------
    str
        One paragraph.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import standard_runs
    >>> # a stand-in for an AnalysisResult: only the attributes this function reads
    >>> result = SimpleNamespace(runs=standard_runs(syn.load_dataset("dnmbc_lrt")), covariate="year")
    >>> print(figure_caption("sensitivity_bias", None, result))
    Prior sensitivity of 'Design-bias adjusted (additive)': posterior median HR with its 95%
    equal-tailed credible interval (band) and P(HR < T), ...
    >>> figure_caption("bubble", None, result)
    'Meta-regression on year: ...'
    """
    labels = model_labels(result)
    if name == "forest":
        return FOREST
    if name.startswith("sensitivity_"):
        key = name.removeprefix("sensitivity_")
        return SENSITIVITY.format(label=labels.get(key, key))
    if name.startswith("bias_sensitivity_"):
        key = name.removeprefix("bias_sensitivity_")
        return BIAS_SENSITIVITY.format(label=labels.get(key, key))
    if name == "funnel":
        return FUNNEL.format(method=getattr(result.pubbias, "method", "REML"))
    if name == "bubble":
        return BUBBLE.format(covariate=result.covariate)
    if name.startswith("prior_posterior"):
        return PRIOR_POSTERIOR
    tipping = getattr(getattr(result, "model_choice", None), "tipping", None)
    if name in ("tipping_map", "tipping_alpha") and tipping is not None:
        text = TIPPING_MAP if name == "tipping_map" else TIPPING_ALPHA
        return text.format(threshold=tipping.threshold, level=tipping.level)
    return fig.get_suptitle() or name
