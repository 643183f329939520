"""The report's set of figures for an analysis result."""

from __future__ import annotations

from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from synthesis.plots.bubble import hr_curve, plot_bubble
from synthesis.plots.densities import plot_prior_posterior, posterior_densities
from synthesis.plots.forest import plot_forest
from synthesis.plots.funnel import plot_funnel
from synthesis.plots.sensitivity import plot_bias_sensitivity, plot_sensitivity
from synthesis.plots.tipping import plot_alpha_curve, plot_tipping_map

if TYPE_CHECKING:
    from synthesis.analysis import AnalysisResult


def standard_figures(result: AnalysisResult) -> dict[str, Figure]:
    """The figures of the report for an analysis result, keyed by file stem.

    Parameters
    ----------
    result
        The analysis (:func:`synthesis.analysis.run_analysis`).

    Returns
    -------
    dict of str to Figure
        ``forest`` (every model's pooled diamond; study shrinkage under the design-bias model
        when there is one), ``sensitivity_<key>`` per sweep with rows and
        ``bias_sensitivity_<key>`` per sweep over bias priors, ``funnel`` (centred on the
        pooled estimate of the bias diagnostics' method, with its trim-and-fill studies),
        ``bubble`` (when a meta-regression holds an HR curve over the covariate),
        ``prior_posterior`` (one row per fit with posterior densities), and ``tipping_map`` (P(HR <
        T) over the design-bias prior with its contour) and ``tipping_alpha`` (the down-weighting
        curve) when the analysis holds a tipping-point analysis.

    Examples
    --------
    >>> import synthesis
    >>> from synthesis.analysis import run_analysis
    >>> from synthesis.plots import standard_figures
    >>> result = run_analysis(synthesis.load_dataset("dnmbc_lrt"), name="dnmbc", covariate="absent",
    ...                       tau_priors=["halfnormal(0.5)", "halfnormal(1)"],
    ...                       bias_priors=["normal(0, 0.5)", "normal(0, 1)"], progress=False)
    >>> sorted(standard_figures(result))  # doctest: +NORMALIZE_WHITESPACE
    ['bias_sensitivity_bias', 'forest', 'funnel', 'prior_posterior', 'sensitivity_bias',
     'sensitivity_re_all', 'sensitivity_re_rct', 'tipping_alpha', 'tipping_map']
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
            figures[f"sensitivity_{key}"] = plot_sensitivity(sweep, title=f"Prior sensitivity: {labels.get(key, key)}")
            if any(r.bias_prior is not None for r in sweep.rows):
                figures[f"bias_sensitivity_{key}"] = plot_bias_sensitivity(sweep)
    pools_all = result.pools.get("all") or {}
    method = str(getattr(result.pubbias, "method", "REML")).upper()
    pooled = pools_all.get(method, pools_all.get("REML"))
    trimfill = getattr(result.pubbias, "trimfill", None)
    figures["funnel"] = plot_funnel(result.table, pooled=pooled, trimfill=trimfill, title=f"Funnel plot: {result.name}")
    for key, fit in result.fits.items():
        if fit.spec.has_covariates and result.covariate in fit.spec.covariates and hr_curve(fit, result.covariate):
            figures["bubble"] = plot_bubble(result.table, fit, result.covariate, label=labels.get(key, key))
            break
    with_density = {label: fit for label, fit in fits.items() if posterior_densities(fit)}
    if with_density:
        figures["prior_posterior"] = plot_prior_posterior(with_density)
    tipping = getattr(result.model_choice, "tipping", None)
    if tipping is not None:
        figures["tipping_map"] = plot_tipping_map(tipping)
        figures["tipping_alpha"] = plot_alpha_curve(tipping)
    return figures
