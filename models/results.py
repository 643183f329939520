"""The fitted object every Bayesian engine returns, and its JSON form (the ``fit --json`` contract).

Both engines (PyMC/nutpie and exact quadrature) fill a :class:`FitResult`; summaries, sweeps,
plots and reports read it and compute nothing themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from synthesis.base import DEFAULT_SEED, INTERVAL_PROB
from synthesis.models.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

#: Loads the plotting layer for :meth:`FitResult.plot_forest` and
#: :meth:`FitResult.plot_densities`. The package registers :mod:`synthesis.plots` here
#: (:func:`register_plotting`, called by ``synthesis/__init__.py``), so the model layer never
#: imports the pipeline itself.
_PLOTTING: list[Callable[[], ModuleType]] = []


def register_plotting(loader: Callable[[], ModuleType]) -> None:
    """Tell fit results where their plot methods find the figures (a loader of the module).

    Examples
    --------
    The package registers :mod:`synthesis.plots` on import; registering a loader replaces it
    (a ``functools.partial``, not a lambda: a lambda would look ``importlib`` up in globals that
    a doctest clears when it ends, leaving a broken loader behind for later plot calls):

    >>> import functools, importlib
    >>> register_plotting(functools.partial(importlib.import_module, "synthesis.plots"))
    >>> _plotting().__name__
    'synthesis.plots'
    """
    _PLOTTING[:] = [loader]


def _plotting() -> ModuleType:
    if not _PLOTTING:
        raise RuntimeError("no plotting layer registered: import synthesis (the package) first")
    return _PLOTTING[0]()


#: The posterior variables :meth:`FitResult.draws` returns from a PyMC fit, where the model
#: has them (the exact engine's iid draws carry the same names).
DRAW_NAMES: tuple[str, ...] = ("mu", "tau", "delta", "kappa", "tau_within", "beta", "theta", "theta_new")


@dataclass(frozen=True)
class ParamSummary:
    """Posterior summary of one scalar parameter (log scale for mu, delta, beta).

    MCMC-only fields (ess_bulk, ess_tail, r_hat, mcse_mean) are ``None`` for the exact engine and
    then omitted from the JSON.
    """

    mean: float
    median: float
    sd: float
    q025: float
    q975: float
    ess_bulk: float | None = None
    ess_tail: float | None = None
    r_hat: float | None = None
    mcse_mean: float | None = None
    #: Monte Carlo SEs of the median and the 2.5%/97.5% quantiles (MCMC only; not in the contract).
    mcse_quantiles: dict[str, float] | None = None

    def to_dict(self) -> dict[str, float]:
        d = {
            "mean": self.mean,
            "median": self.median,
            "sd": self.sd,
            "q025": self.q025,
            "q975": self.q975,
        }
        for key in ("ess_bulk", "ess_tail", "r_hat", "mcse_mean"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        return d


@dataclass(frozen=True)
class RatioSummary:
    """A hazard ratio: posterior median and equal-tailed 95% interval, optionally P(HR < T)."""

    median: float
    q025: float
    q975: float
    p_below: dict[str, float] | None = None
    #: For ``FitResult.hr_at`` entries: the covariate point ``{covariate: value}`` the HR is at
    #: (covariates not named are at their centres); ``None`` otherwise.
    point: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"median": self.median, "q025": self.q025, "q975": self.q975}
        if self.p_below is not None:
            d["p_below"] = dict(self.p_below)
        if self.point is not None:
            d["point"] = dict(self.point)
        return d


@dataclass(frozen=True)
class Diagnostics:
    """Sampler diagnostics. ``converged`` is False when R-hat > 1.01, a headline ESS_bulk < 400,
    any divergence, or too few draws per chain to compute R-hat and ESS at all; ``messages``
    says which, in words."""

    divergences: int
    max_r_hat: float
    min_ess_bulk: float
    converged: bool
    messages: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "divergences": self.divergences,
            "max_r_hat": self.max_r_hat,
            "min_ess_bulk": self.min_ess_bulk,
            "converged": self.converged,
            "messages": list(self.messages),
        }


@dataclass(frozen=True)
class StudyEffect:
    """One study's observed HR with its 95% CI beside its shrunken (posterior) HR."""

    study: str
    design: str | None
    observed_hr: float
    observed_lower: float
    observed_upper: float
    hr: RatioSummary

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "design": self.design,
            "observed_hr": self.observed_hr,
            "observed_ci": [self.observed_lower, self.observed_upper],
            "hr": self.hr.to_dict(),
        }


@dataclass
class FitResult:
    """Everything downstream needs from one Bayesian fit."""

    spec: ModelSpec
    engine: str
    k: int
    parameters: dict[str, ParamSummary]
    beta: dict[str, ParamSummary]
    hr: RatioSummary
    p_hr_below: dict[str, float]
    predictive_hr: RatioSummary
    p_predictive_hr_below: dict[str, float]
    study_effects: list[StudyEffect]
    seed: int | None
    timing: dict[str, float]
    hr_at: dict[str, RatioSummary] = field(default_factory=dict)
    diagnostics: Diagnostics | None = None
    imputed: int = 0
    #: ArviZ DataTree of the posterior (PyMC engine); None for the exact engine.
    posterior: Any = None
    #: Exact engine: tau grid and its normalised posterior density (for plots).
    tau_grid: np.ndarray | None = None
    tau_density: np.ndarray | None = None
    #: Marginal posterior densities on a grid, {"tau": (grid, density), "delta": (...), "mu": (...)},
    #: computed by the engine (exact: analytically; PyMC: kernel density of the draws).
    densities: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    source: str = ""
    notes: list[str] = field(default_factory=list)
    interval_prob: float = INTERVAL_PROB
    #: Exact engine: log p(y | model), the log marginal likelihood of the observed log HRs with
    #: every normalising constant (comparable across models fitted to the same data: Bayes
    #: factors, model weights); ``None`` for the PyMC engine.
    log_marginal_likelihood: float | None = None
    #: Exact engine: the marginal posterior of kappa (the second variance parameter of the
    #: ``random`` and ``three-level`` bias variants) on its quadrature grid, for plots.
    kappa_grid: np.ndarray | None = None
    kappa_density: np.ndarray | None = None
    #: Exact engine: the grid posterior itself posterior itself (:class:`synthesis.models.exact.ExactPosterior`),
    #: from which :meth:`draws` and :meth:`to_datatree` draw iid samples; ``None`` otherwise.
    exact_posterior: Any = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        """The fit as ``synthesis fit`` prints it (:func:`synthesis.models.display.format_fit`)."""
        from synthesis.models.display import format_fit

        return format_fit(self)

    def _repr_html_(self) -> str:
        from synthesis.models.display import fit_html

        return fit_html(self)

    def to_frame(self, what: str = "parameters") -> pd.DataFrame:
        """The posterior summaries as a table.

        Parameters
        ----------
        what
            ``"parameters"``: one row per parameter (``mu``, ``tau``, ``delta``, ``kappa``,
            ``beta[c]``; log scale), columns ``mean``, ``median``, ``sd``, ``q025``, ``q975`` and
            the MCMC diagnostics where they apply. ``"studies"``: one row per study, the observed
            HR and its CI beside the posterior (shrunken) HR.

        Examples
        --------
        >>> import synthesis as syn
        >>> fit = syn.fit(syn.load_dataset("dnmbc_lrt"), model="bias", engine="exact")
        >>> fit.to_frame().round(3)  # doctest: +NORMALIZE_WHITESPACE
                mean  median     sd   q025   q975
        mu    -0.098  -0.098  0.078 -0.250  0.055
        tau    0.055   0.046  0.042  0.002  0.159
        delta -0.360  -0.360  0.084 -0.525 -0.196
        >>> fit.to_frame("studies").shape
        (17, 7)
        """
        import pandas as pd

        if what == "parameters":
            rows = {n: s.to_dict() for n, s in self.parameters.items()}
            rows |= {f"beta[{c}]": s.to_dict() for c, s in self.beta.items()}
            return pd.DataFrame.from_dict(rows, orient="index")
        if what == "studies":
            return pd.DataFrame.from_records(
                [
                    {
                        "study": s.study,
                        "design": s.design,
                        "observed_hr": s.observed_hr,
                        "observed_lower": s.observed_lower,
                        "observed_upper": s.observed_upper,
                        "hr_median": s.hr.median,
                        "hr_q025": s.hr.q025,
                        "hr_q975": s.hr.q975,
                    }
                    for s in self.study_effects
                ]
            ).set_index("study")
        raise ValueError(f"what must be 'parameters' or 'studies', got {what!r}")

    def draws(self, n: int = 4000, *, seed: int | None = DEFAULT_SEED) -> dict[str, np.ndarray]:
        """Posterior draws of ``mu``, ``tau``, ``delta``, ``kappa`` (the ``random`` and
        ``three-level`` bias variants), ``tau_within`` (a multilevel model), ``beta`` (n,
        covariates), ``theta`` (n, studies) and ``theta_new`` as arrays, flattened over chains
        (the names that apply to the model).

        The exact engine draws ``n`` iid samples from its exact posterior (tau by inverse CDF of
        its grid posterior, then the coefficients and study effects from their conditional
        normals at that tau); a PyMC fit returns its own draws (``n`` and ``seed`` unused), without
        ``theta`` when it has k >= ``MARGINAL_MIN_STUDIES`` studies (study effects integrated out:
        :func:`synthesis.models.pymc_models.build_marginal_model`).

        Examples
        --------
        >>> import synthesis as syn
        >>> fit = syn.fit(syn.load_dataset("dnmbc_lrt"), model="re", engine="exact")
        >>> d = fit.draws(1000, seed=1)
        >>> sorted(d), d["mu"].shape, d["theta"].shape
        (['mu', 'tau', 'theta', 'theta_new'], (1000,), (1000, 17))
        """
        if self.posterior is not None:
            post = self.posterior.posterior
            out = {}
            for name in DRAW_NAMES:
                if name in post:
                    da = post[name].stack(sample=("chain", "draw")).transpose("sample", ...)
                    out[name] = da.to_numpy()
            return out
        if self.exact_posterior is None:
            raise ValueError("this fit holds no posterior to draw from (a sweep's summary-only fit)")
        return self.exact_posterior.sample(n, np.random.default_rng(seed))

    def to_datatree(self, *, draws: int = 1000, chains: int = 4, seed: int | None = DEFAULT_SEED) -> xr.DataTree:
        """The posterior as the ``xarray.DataTree`` ArviZ 1.x reads (a ``posterior`` group with
        dimensions ``chain`` and ``draw``; ``beta`` over ``covariate``, ``theta`` over ``study``).

        A PyMC fit returns its sampled DataTree (:attr:`posterior`); the exact engine fills one
        with ``chains`` x ``draws`` iid draws (:meth:`draws`), so ArviZ tools work on both.

        Examples
        --------
        >>> import synthesis as syn
        >>> from arviz_stats import summary
        >>> fit = syn.fit(syn.load_dataset("dnmbc_lrt"), model="re", engine="exact")
        >>> dt = fit.to_datatree(draws=500, seed=1)
        >>> dict(dt.posterior.sizes)
        {'chain': 4, 'draw': 500, 'study': 17}
        >>> list(summary(dt, var_names=["mu", "tau"], kind="stats").index)
        ['mu', 'tau']
        """
        if self.posterior is not None:
            return self.posterior
        from arviz_base import from_dict

        flat = self.draws(draws * chains, seed=seed)
        dims = {"beta": ["covariate"], "theta": ["study"]}
        coords = {"covariate": list(self.spec.covariates), "study": [s.study for s in self.study_effects]}
        data = {k: v.reshape(chains, draws, *v.shape[1:]) for k, v in flat.items()}
        dt = from_dict(
            {"posterior": data},
            dims={k: v for k, v in dims.items() if k in data},
            coords={k: v for k, v in coords.items() if v},
        )
        dt.attrs.update({"engine": "exact", "draws": "iid from the exact posterior", "seed": str(seed)})
        return dt

    def plot_forest(self, *, ax: Any = None, label: str | None = None, **kwargs: Any) -> Any:
        """Forest plot of this fit (:func:`synthesis.plots.plot_forest`): observed and shrunken
        study HRs and the pooled diamond; keyword arguments go to the plot function.

        Examples
        --------
        >>> import synthesis as syn
        >>> fit = syn.fit(syn.load_dataset("dnmbc_lrt"), model="bias", engine="exact")
        >>> fig = fit.plot_forest()
        >>> type(fig).__name__
        'Figure'
        """
        if ax is not None:
            kwargs["ax"] = ax
        return _plotting().plot_forest({label or self.spec.model: self}, **kwargs)

    def plot_densities(self, *, fig: Any = None, label: str | None = None, **kwargs: Any) -> Any:
        """Prior and posterior densities of tau and delta
        (:func:`synthesis.plots.plot_prior_posterior`)."""
        if fig is not None:
            kwargs["fig"] = fig
        return _plotting().plot_prior_posterior({label or self.spec.model: self}, **kwargs)

    def to_json(self) -> dict[str, Any]:
        """The ``synthesis fit --json`` document (keys that do not apply are omitted)."""
        out: dict[str, Any] = {
            "model": self.spec.model,
            "engine": self.engine,
            "k": self.k,
            # no free parameters (mu and tau fixed): no priors (labels(()) would list them all)
            "priors": self.spec.priors.labels(self.spec.parameters) if self.spec.parameters else {},
            "priors_detail": self.spec.priors.to_dict(self.spec.parameters) if self.spec.parameters else {},
        }
        for name in ("effect", "heterogeneity"):  # False: mu / tau fixed at 0 (exact engine only)
            out[name] = bool(getattr(self.spec, name))
        if self.spec.multilevel:  # tau is then the between-cluster SD, tau_within the within-cluster one
            out["cluster"] = self.spec.cluster
            out["rho"] = self.spec.rho
            if self.spec.heterogeneity:
                out["priors"]["tau_within"] = self.spec.tau_within.label
                out["priors_detail"]["tau_within"] = self.spec.tau_within.to_dict()
        if self.spec.has_bias:
            out["bias_variant"] = self.spec.bias_variant
            if self.spec.bias_variant == "downweight":
                out["alpha"] = self.spec.alpha
        for name in ("mu", "tau", "delta", "kappa", "tau_within"):
            if name in self.parameters:
                out[name] = self.parameters[name].to_dict()
        if self.spec.has_covariates:
            out["covariates"] = list(self.spec.covariates)
            out["beta"] = {c: s.to_dict() for c, s in self.beta.items()}
        out["hr"] = self.hr.to_dict()
        out["p_hr_below"] = dict(self.p_hr_below)
        out["predictive_hr"] = self.predictive_hr.to_dict()
        out["p_predictive_hr_below"] = dict(self.p_predictive_hr_below)
        if self.hr_at:
            out["hr_at"] = {key: s.to_dict() for key, s in self.hr_at.items()}
        out["study_hr"] = [s.to_dict() for s in self.study_effects]
        if self.diagnostics is not None:
            out["diagnostics"] = self.diagnostics.to_dict()
        if self.spec.has_covariates:
            out["imputed"] = self.imputed
        out["interval"] = {"prob": self.interval_prob, "kind": "equal-tailed"}
        out["seed"] = self.seed
        out["timing"] = dict(self.timing)
        if self.log_marginal_likelihood is not None:
            out["log_marginal_likelihood"] = self.log_marginal_likelihood
        if self.notes:
            out["notes"] = list(self.notes)
        return out
