"""Prior and posterior densities of the model parameters, one row per model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from synthesis.base import PARAMETER_SYMBOLS
from synthesis.models.results import FitResult
from synthesis.plots.style import FONT_SIZE, LABEL_WIDTH, styled, target_figure, wrap_label

PARAMETER_AXIS_LABELS: dict[str, str] = {
    "tau": f"{PARAMETER_SYMBOLS['tau']} (between-study SD of log HR)",
    "delta": f"{PARAMETER_SYMBOLS['delta']} (design bias, log HR scale)",
    "mu": f"{PARAMETER_SYMBOLS['mu']} (log HR of a randomised comparison)",
    "kappa": PARAMETER_SYMBOLS["kappa"],
}
POSTERIOR_COLOUR = "#1b4f8a"
PRIOR_COLOUR = "#c25e00"


def posterior_densities(fit: FitResult) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Parameter -> (grid, posterior density) that ``fit`` holds (tau also from its tau grid).

    Examples
    --------
    >>> import synthesis as syn
    >>> fit = syn.fit(syn.load_dataset("dnmbc_lrt"), model="bias", tau_prior="halfnormal(0.5)", engine="exact")
    >>> densities = posterior_densities(fit)
    >>> sorted(densities)
    ['delta', 'mu', 'tau']
    >>> grid, density = densities["tau"]
    >>> len(grid) == len(density), bool((density >= 0).all())
    (True, True)
    """
    densities = dict(fit.densities)
    if "tau" not in densities and fit.tau_grid is not None and fit.tau_density is not None:
        densities["tau"] = (fit.tau_grid, fit.tau_density)
    return densities


@styled
def plot_prior_posterior(
    fits: FitResult | Mapping[str, FitResult],
    *,
    parameters: Sequence[str] = ("tau", "delta"),
    title: str | None = None,
    fig: Figure | None = None,
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
    fig
        An empty figure (or subfigure) to draw into; default a new figure.

    Returns
    -------
    Figure
        ``fig`` when given. One visible panel per (model, parameter) with a posterior density.

    Raises
    ------
    ValueError
        When no fit holds a posterior density for any of ``parameters``.

    Examples
    --------
    >>> import synthesis
    >>> from synthesis.models.fit import fit
    >>> from synthesis.models.spec import ModelSpec
    >>> from synthesis.plots import plot_prior_posterior
    >>> table = synthesis.load_dataset("dnmbc_lrt")
    >>> fits = {"Random effects": fit(table, ModelSpec("re"), engine="exact"),
    ...         "Design bias": fit(table, ModelSpec("bias"), engine="exact")}
    >>> fig = plot_prior_posterior(fits)
    >>> [ax.get_title() for ax in fig.axes if ax.axison]
    ['Random effects: τ', 'Design bias: τ', 'Design bias: δ']
    """
    if isinstance(fits, FitResult):
        fits = {f"{fits.spec.model} model": fits}
    drawable = _drawable(fits, parameters)
    columns = [n for n in parameters if any(n in names for names in drawable.values())]
    fig = target_figure(fig, 4.8 * len(columns), 3.9 * len(drawable), plot="plot_prior_posterior")
    axes = fig.subplots(len(drawable), len(columns), squeeze=False)
    for i, (label, names) in enumerate(drawable.items()):
        for j, name in enumerate(columns):
            if name in names:
                _draw_density(axes[i, j], label, fits[label], name)
            else:
                _empty_panel(axes[i, j], label, name)
    fig.suptitle(title or "Prior and posterior densities")
    return fig


def _drawable(fits: Mapping[str, FitResult], parameters: Sequence[str]) -> dict[str, list[str]]:
    """Label -> the parameters its fit has a posterior density for (fits with none left out)."""
    drawable = {
        label: [n for n in parameters if n in posterior_densities(fit) and n in fit.spec.parameters]
        for label, fit in fits.items()
    }
    drawable = {label: names for label, names in drawable.items() if names}
    if not drawable:
        raise ValueError(
            f"plot_prior_posterior: no fit holds a posterior density for {', '.join(parameters)} "
            f"(fits: {', '.join(fits) or 'none'})"
        )
    return drawable


def _draw_density(ax: Axes, label: str, fit: FitResult, name: str) -> None:
    grid, density = (np.asarray(a, dtype=float) for a in posterior_densities(fit)[name])
    prior = getattr(fit.spec.priors, name)
    ax.plot(grid, density, color=POSTERIOR_COLOUR, lw=1.6, label=f"posterior ({fit.engine} engine)")
    ax.plot(grid, np.exp(prior.logpdf(grid)), color=PRIOR_COLOUR, lw=1.3, ls="--",
            label=wrap_label(f"prior: {prior.label}"))
    ax.set_xlabel(PARAMETER_AXIS_LABELS.get(name, name))
    ax.set_ylabel("density")
    ax.set_ylim(bottom=0.0)
    ax.set_title(wrap_label(f"{label}: {PARAMETER_SYMBOLS.get(name, name)}", LABEL_WIDTH + 6))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False, fontsize=FONT_SIZE)


def _empty_panel(ax: Axes, label: str, name: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, f"{label}:\nno {PARAMETER_SYMBOLS.get(name, name)} in this model", ha="center",
            va="center", transform=ax.transAxes, color="#777777")
