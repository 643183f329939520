"""The fitted object every Bayesian engine returns, and its JSON form (the ``fit --json`` contract).

Both engines (PyMC/nutpie and exact quadrature) fill a :class:`FitResult`; summaries, sweeps,
plots and reports read it and compute nothing themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synthesis.base import INTERVAL_PROB
from synthesis.models.spec import ModelSpec


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

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"median": self.median, "q025": self.q025, "q975": self.q975}
        if self.p_below is not None:
            d["p_below"] = dict(self.p_below)
        return d


@dataclass(frozen=True)
class Diagnostics:
    """Sampler diagnostics. ``converged`` is False when R-hat > 1.01, a headline ESS_bulk < 400
    or any divergence; ``messages`` says which, in words."""

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

    def to_json(self) -> dict[str, Any]:
        """The ``synthesis fit --json`` document (keys that do not apply are omitted)."""
        out: dict[str, Any] = {
            "model": self.spec.model,
            "engine": self.engine,
            "k": self.k,
            "priors": self.spec.priors.labels(self.spec.parameters),
            "priors_detail": self.spec.priors.to_dict(self.spec.parameters),
        }
        if self.spec.has_bias:
            out["bias_variant"] = self.spec.bias_variant
            if self.spec.bias_variant == "downweight":
                out["alpha"] = self.spec.alpha
        for name in ("mu", "tau", "delta", "kappa"):
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
        if self.notes:
            out["notes"] = list(self.notes)
        return out
