"""Prior specifications: parsed from strings in this one place, used by every engine.

A prior is written as ``family(p1, p2, ...)`` or as the name of an empirical preset, e.g.
``halfnormal(0.5)``, ``lognormal_tau2(-4.17, 1.55)``, ``turner2015-acm-nonpharm``.

Scale parameters (tau, kappa) accept:

==========================  ==========================================================
``halfnormal(s)``           half-normal with scale s
``halfcauchy(s)``           half-Cauchy with scale s
``halft(nu, s)``            half-Student-t with nu degrees of freedom and scale s
``exponential(rate)``       exponential with the given rate (mean 1/rate)
``uniform(a, b)``           uniform on [a, b], 0 <= a < b
``lognormal_tau2(m, s)``    log(tau^2) ~ N(m, s^2), the form of Turner et al. (2015);
                            equivalently log(tau) ~ N(m/2, (s/2)^2)
``invgamma(a, b)``          tau ~ inverse-gamma(shape a, scale b) (the form of Bartoš
                            et al. 2023 and RoBMA: a prior on tau itself)
``invgamma_tau2(a, b)``     tau^2 ~ inverse-gamma(shape a, scale b)
==========================  ==========================================================

Location parameters (mu, delta, beta) accept ``normal(m, s)`` and ``studentt(nu, m, s)``.

Presets (the ``PRESETS`` table; each carries its citation):

* ``turner2015-acm-nonpharm``: tau, log(tau^2) ~ N(-4.17, 1.55^2). Turner RM, Jackson D, Wei Y,
  Thompson SG, Higgins JPT (2015). Predictive distributions for between-study heterogeneity and
  simple methods for their application in Bayesian meta-analysis. Stat Med 34(6):984-998,
  doi:10.1002/sim.6381, Table IV: all-cause mortality, non-pharmacological intervention vs
  control. (Derived for log odds ratios; used here for log hazard ratios.)
* ``bartos2023-loghr``: tau ~ inverse-gamma(2.42, 0.30) and mu ~ Student-t(df 2, 0, 0.13).
  Bartoš F, Otte WM, Gronau QF, Timmers B, Ly A, Wagenmakers E-J (2023). Empirical prior
  distributions for Bayesian meta-analyses of binary and time-to-event outcomes.
  arXiv:2306.11468: the Cochrane-wide time-to-event (log HR) priors, as implemented in
  BayesTools::prior_informed("Cochrane", type = "logHR").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import stats

from synthesis.errors import InputError


class _HalfStudentT(stats.rv_continuous):
    """|T| for T ~ Student-t(nu, 0, s): density 2 t(x; nu, s) on x >= 0 (shapes nu, s)."""

    def _logpdf(self, x: np.ndarray, nu: np.ndarray, s: np.ndarray) -> np.ndarray:
        return np.log(2.0) + stats.t.logpdf(x, nu, scale=s)

    def _pdf(self, x: np.ndarray, nu: np.ndarray, s: np.ndarray) -> np.ndarray:
        return np.exp(self._logpdf(x, nu, s))

    def _cdf(self, x: np.ndarray, nu: np.ndarray, s: np.ndarray) -> np.ndarray:
        return 2.0 * stats.t.cdf(x, nu, scale=s) - 1.0

    def _ppf(self, q: np.ndarray, nu: np.ndarray, s: np.ndarray) -> np.ndarray:
        return stats.t.ppf(0.5 + q / 2.0, nu, scale=s)


class _SqrtInverseGamma(stats.rv_continuous):
    """tau = sqrt(X) for X = tau^2 ~ inverse-gamma(shape a, scale b) (shapes a, b): the change of
    variables gives p(tau) = IG(tau^2; a, b) * 2 tau."""

    def _logpdf(self, x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return stats.invgamma.logpdf(x**2, a, scale=b) + np.log(2.0 * x)

    def _pdf(self, x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(self._logpdf(x, a, b))

    def _cdf(self, x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return stats.invgamma.cdf(x**2, a, scale=b)

    def _ppf(self, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sqrt(stats.invgamma.ppf(q, a, scale=b))


_half_t = _HalfStudentT(a=0.0, name="half_t")
_sqrt_invgamma = _SqrtInverseGamma(a=0.0, name="sqrt_invgamma")


def _positive(*names: str) -> Callable[[tuple[float, ...]], str | None]:
    """A validator: the named parameters (by position in the family's list) must be > 0."""

    def check(params: tuple[float, ...], param_names: tuple[str, ...]) -> str | None:
        values = dict(zip(param_names, params, strict=True))
        if any(values[n] <= 0 for n in names):
            return f"{' and '.join(names)} must be > 0"
        return None

    return check


@dataclass(frozen=True)
class Family:
    """One prior family: everything every engine needs to know about it, in one row.

    Attributes
    ----------
    name
        The family as written in a prior string (``halfnormal``).
    kind
        ``"scale"`` (tau, kappa: on [0, inf)) or ``"location"`` (mu, delta, beta).
    params
        Parameter names, in the order the prior string gives them.
    title
        The family as printed in labels (``half-normal``).
    valid, requirement
        ``valid(params)`` is False for parameters outside the family's domain; ``requirement``
        says what is required, in words.
    distribution
        ``distribution(params)``: the frozen scipy distribution of the parameter itself (for the
        ``*_tau2`` families the distribution of tau, by the change of variables from tau^2).
    pymc
        ``pymc(pm, name, hyper, dims)``: the PyMC random variable, given the :mod:`pymc` module
        (imported by the caller: this module never imports PyMC), the variable's name, the
        hyperparameters (data containers, in ``params`` order) and its dims.
    pymc_form
        The PyMC distribution in words (documentation).
    """

    name: str
    kind: str
    params: tuple[str, ...]
    title: str
    valid: Callable[[tuple[float, ...]], bool]
    requirement: str
    distribution: Callable[[tuple[float, ...]], Any]
    pymc: Callable[..., Any]
    pymc_form: str

    def label(self, params: tuple[float, ...]) -> str:
        """``title(name=value, ...)``, e.g. ``half-normal(scale=0.5)``."""
        named = ", ".join(f"{n}={v:g}" for n, v in zip(self.params, params, strict=True))
        return f"{self.title}({named})"


def _pymc_sqrt_inverse_gamma(pm: Any, name: str, hyper: Sequence[Any], dims: Any) -> Any:
    """tau^2 ~ InverseGamma(a, b), tau = sqrt(tau^2): a CustomDist whose log density PyMC
    derives, log IG(tau^2; a, b) + log(2 tau), sampled on log tau."""
    return pm.CustomDist(
        name, hyper[0], hyper[1], dist=_sqrt_inverse_gamma_dist,
        transform=pm.distributions.transforms.log, dims=dims,
    )


def _sqrt_inverse_gamma_dist(alpha: Any, beta: Any, size: Any) -> Any:
    import pymc as pm
    import pytensor.tensor as pt

    return pt.sqrt(pm.InverseGamma.dist(alpha=alpha, beta=beta, size=size))


#: Every prior family, by name. ``logpdf``, ``cdf``, ``ppf``, validation, labels and the PyMC
#: graph (:func:`synthesis.models.pymc_models.prior_rv`) all read this table.
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "halfnormal", "scale", ("scale",), "half-normal",
            lambda p: p[0] > 0, "the parameter must be > 0",
            lambda p: stats.halfnorm(scale=p[0]),
            lambda pm, name, h, dims: pm.HalfNormal(name, sigma=h[0], dims=dims),
            "HalfNormal(sigma=s)",
        ),
        Family(
            "halfcauchy", "scale", ("scale",), "half-Cauchy",
            lambda p: p[0] > 0, "the parameter must be > 0",
            lambda p: stats.halfcauchy(scale=p[0]),
            lambda pm, name, h, dims: pm.HalfCauchy(name, beta=h[0], dims=dims),
            "HalfCauchy(beta=s)",
        ),
        Family(
            "halft", "scale", ("nu", "scale"), "half-Student-t",
            lambda p: p[0] > 0 and p[1] > 0, "nu and scale must be > 0",
            lambda p: _half_t(p[0], p[1]),
            lambda pm, name, h, dims: pm.HalfStudentT(name, nu=h[0], sigma=h[1], dims=dims),
            "HalfStudentT(nu, sigma=s)",
        ),
        Family(
            "exponential", "scale", ("rate",), "exponential",
            lambda p: p[0] > 0, "the parameter must be > 0",
            lambda p: stats.expon(scale=1.0 / p[0]),
            lambda pm, name, h, dims: pm.Exponential(name, lam=h[0], dims=dims),
            "Exponential(lam=r)",
        ),
        Family(
            "uniform", "scale", ("lower", "upper"), "uniform",
            lambda p: 0 <= p[0] < p[1], "need 0 <= a < b",
            lambda p: stats.uniform(loc=p[0], scale=p[1] - p[0]),
            lambda pm, name, h, dims: pm.Uniform(name, lower=h[0], upper=h[1], dims=dims),
            "Uniform(a, b)",
        ),
        Family(
            "lognormal_tau2", "scale", ("mean_log_tau2", "sd_log_tau2"), "log-normal on tau^2",
            lambda p: p[1] > 0, "the SD must be > 0",
            lambda p: stats.lognorm(s=p[1] / 2.0, scale=math.exp(p[0] / 2.0)),
            lambda pm, name, h, dims: pm.LogNormal(name, mu=h[0] / 2.0, sigma=h[1] / 2.0, dims=dims),
            "log tau^2 ~ N(m, s^2)  <=>  tau ~ LogNormal(m / 2, s / 2)",
        ),
        Family(
            "invgamma", "scale", ("shape", "scale"), "inverse-gamma on tau",
            lambda p: p[0] > 0 and p[1] > 0, "shape and scale must be > 0",
            lambda p: stats.invgamma(p[0], scale=p[1]),
            lambda pm, name, h, dims: pm.InverseGamma(name, alpha=h[0], beta=h[1], dims=dims),
            "tau ~ InverseGamma(alpha=a, beta=b)",
        ),
        Family(
            "invgamma_tau2", "scale", ("shape", "scale"), "inverse-gamma on tau^2",
            lambda p: p[0] > 0 and p[1] > 0, "shape and scale must be > 0",
            lambda p: _sqrt_invgamma(p[0], p[1]),
            _pymc_sqrt_inverse_gamma,
            "tau^2 ~ InverseGamma(a, b), tau = sqrt(tau^2) (CustomDist sampled on log tau)",
        ),
        Family(
            "normal", "location", ("mean", "sd"), "normal",
            lambda p: p[1] > 0, "the SD must be > 0",
            lambda p: stats.norm(p[0], p[1]),
            lambda pm, name, h, dims: pm.Normal(name, mu=h[0], sigma=h[1], dims=dims),
            "Normal(mu=m, sigma=s)",
        ),
        Family(
            "studentt", "location", ("nu", "mean", "scale"), "Student-t",
            lambda p: p[0] > 0 and p[2] > 0, "nu and scale must be > 0",
            lambda p: stats.t(p[0], loc=p[1], scale=p[2]),
            lambda pm, name, h, dims: pm.StudentT(name, nu=h[0], mu=h[1], sigma=h[2], dims=dims),
            "StudentT(nu, mu=m, sigma=s)",
        ),
    )
}
#: Parameter names of the scale (tau, kappa) and location (mu, delta, beta) families.
SCALE_FAMILIES: dict[str, tuple[str, ...]] = {n: f.params for n, f in FAMILIES.items() if f.kind == "scale"}
LOCATION_FAMILIES: dict[str, tuple[str, ...]] = {n: f.params for n, f in FAMILIES.items() if f.kind == "location"}
ROLES: dict[str, str] = {
    "mu": "location",
    "delta": "location",
    "beta": "location",
    "tau": "scale",
    "kappa": "scale",
}
DEFAULT_PRIORS: dict[str, str] = {
    "mu": "normal(0, 1)",
    "tau": "halfnormal(0.5)",
    "delta": "normal(0, 0.5)",
    "beta": "normal(0, 1)",
    "kappa": "halfnormal(0.25)",
}

TURNER_2015 = (
    "Turner et al. 2015, Stat Med 34:984-998 (doi:10.1002/sim.6381), Table IV, all-cause mortality, "
    "non-pharmacological vs control"
)
BARTOS_2023 = (
    "Bartoš et al. 2023, arXiv:2306.11468, Cochrane-wide time-to-event (log HR) priors "
    "(BayesTools::prior_informed('Cochrane', type = 'logHR'))"
)
#: name -> {role kind: (family, params, citation)}
PRESETS: dict[str, dict[str, tuple[str, tuple[float, ...], str]]] = {
    "turner2015-acm-nonpharm": {"scale": ("lognormal_tau2", (-4.17, 1.55), TURNER_2015)},
    "bartos2023-loghr": {
        "scale": ("invgamma", (2.42, 0.30), BARTOS_2023),
        "location": ("studentt", (2.0, 0.0, 0.13), BARTOS_2023),
    },
}

#: A scale prior (tau, kappa: SDs on the log-HR scale) must put at least SCALE_PRIOR_MIN_MASS of
#: its probability on SCALE_PRIOR_RANGE. Below 1e-6 a prior is a fixed-effect model in all but
#: name; 1e4 admits the broadest "vague" priors in use (bayesmeta's improper uniform tau,
#: approximated by uniform(0, 1e4), and BUGS's invgamma_tau2(0.001, 0.001), both reproduced in
#: tests/test_exact.py). A prior with (almost) all its mass outside -- uniform(0, 1e308),
#: exponential(1e-300), lognormal_tau2(1e5, 1) -- says nothing a user can mean about a log hazard
#: ratio (a study table holds |log HR| <= 13.8), and the exact engine's quadrature grid would
#: return the tau = 0 answer for it; it is refused.
#: A prior with more than SCALE_PRIOR_MAX_MASS_BELOW of its mass below 1e-6 (e.g.
#: lognormal_tau2(0, 440), spread over hundreds of log-units) is a point mass at tau = 0 in
#: disguise, whose posterior the grid cannot resolve; it is refused too.
SCALE_PRIOR_RANGE = (1e-6, 1e4)
SCALE_PRIOR_MIN_MASS = 1e-3
SCALE_PRIOR_MAX_MASS_BELOW = 1e-3
#: Location priors (mu, delta, beta): |mean| at most this, and SD/scale within the range below.
LOCATION_PRIOR_MEAN_MAX = 1e6
LOCATION_PRIOR_SCALE_RANGE = (1e-6, 1e6)
#: Degrees of freedom of Student-t priors at least this (0.5 already gives a 99.9% quantile
#: 1e5 scales out).
MIN_NU = 0.5

_SPEC = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(([^()]*)\)\s*$")
_ALIASES = {
    "half_normal": "halfnormal",
    "half-normal": "halfnormal",
    "half_cauchy": "halfcauchy",
    "half-cauchy": "halfcauchy",
    "half_t": "halft",
    "halfstudentt": "halft",
    "exp": "exponential",
    "student_t": "studentt",
    "t": "studentt",
    "gaussian": "normal",
    "inverse_gamma": "invgamma",
}


@dataclass(frozen=True)
class PriorSpec:
    """A parsed prior: family, numeric parameters, a printable label and, for presets, a source."""

    family: str
    params: tuple[float, ...]
    label: str
    source: str | None = None

    @property
    def param_names(self) -> tuple[str, ...]:
        return FAMILIES[self.family].params

    @property
    def kind(self) -> str:
        """``"scale"`` or ``"location"`` (the family's kind)."""
        return FAMILIES[self.family].kind

    def distribution(self) -> Any:
        """The frozen scipy distribution of the parameter itself (for ``*_tau2`` families, of tau)."""
        return _frozen(self.family, self.params)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["params"] = dict(zip(self.param_names, self.params, strict=True))
        return d

    # ---- densities on the parameter's own scale (used by the exact engine and plots) ----
    def logpdf(self, x: np.ndarray) -> np.ndarray:
        """Log density at x (for scale families, -inf at x < 0; the density of tau itself)."""
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = self.distribution().logpdf(x)
        if self.kind == "location":
            return out
        return np.where(x >= 0, out, -np.inf)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Cumulative distribution function on the parameter's own scale."""
        x = np.asarray(x, dtype=float)
        if self.kind == "location":
            return self.distribution().cdf(x)
        return np.where(x >= 0, self.distribution().cdf(np.maximum(x, 0.0)), 0.0)

    def ppf(self, q: np.ndarray) -> np.ndarray:
        """Quantile function (used to place the quadrature grid for tau)."""
        return self.distribution().ppf(np.asarray(q, dtype=float))

    def rvs(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """Random draws (inverse-CDF sampling; used by simulation-based calibration)."""
        return self.ppf(rng.uniform(1e-12, 1 - 1e-12, size=size))

    @property
    def is_normal(self) -> bool:
        return self.family == "normal"


@lru_cache(maxsize=256)
def _frozen(family: str, params: tuple[float, ...]) -> Any:
    """The family's frozen scipy distribution (cached: freezing one is not free)."""
    return FAMILIES[family].distribution(params)


def _label(family: str, params: tuple[float, ...]) -> str:
    return FAMILIES[family].label(params)


def accepted_forms(kind: str) -> str:
    """A one-line list of the accepted prior forms for a parameter kind.

    Examples
    --------
    >>> accepted_forms("location")  # doctest: +ELLIPSIS
    'normal(mean, sd), ...'
    >>> accepted_forms("scale").split(";")[0]  # doctest: +ELLIPSIS
    'halfnormal(scale), halfcauchy(scale), halft(nu, scale), exponential(rate), ...'
    """
    fams = SCALE_FAMILIES if kind == "scale" else LOCATION_FAMILIES
    forms = [f"{f}({', '.join(p)})" for f, p in fams.items()]
    presets = [n for n, roles in PRESETS.items() if kind in roles]
    return ", ".join(forms) + (f"; presets: {', '.join(presets)}" if presets else "")


def prior_help(parameter: str) -> str:
    """Help text for a parameter's prior option: accepted forms and presets with citations.

    Examples
    --------
    >>> text = prior_help("tau")
    >>> text.startswith("Accepted: halfnormal(scale), halfcauchy(scale)")
    True
    >>> "turner2015-acm-nonpharm: Turner et al. 2015" in text
    True
    """
    kind = ROLES[parameter]
    text = f"Accepted: {accepted_forms(kind)}."
    cites = [f"{n}: {roles[kind][2]}" for n, roles in PRESETS.items() if kind in roles]
    if cites:
        text += " Presets: " + "; ".join(cites) + "."
    return text.replace("%", "%%")


def _check_params(family: str, params: tuple[float, ...], text: str, parameter: str) -> None:
    def bad(msg: str) -> InputError:
        return InputError(f"prior {text!r} for {parameter}: {msg}; accepted forms: {accepted_forms(ROLES[parameter])}")

    if not all(math.isfinite(v) for v in params):
        raise bad("parameters must be finite numbers")
    if not FAMILIES[family].valid(params):
        raise bad(FAMILIES[family].requirement)
    _check_representable(family, params, parameter, bad)


def _check_representable(
    family: str, params: tuple[float, ...], parameter: str, bad: Callable[[str], InputError]
) -> None:
    """Refuse hyperparameters outside the ranges the engines can hold (the module's constants)."""
    names = FAMILIES[family].params
    if "nu" in names and params[0] < MIN_NU:
        raise bad(f"nu = {params[0]:g} is below the accepted minimum {MIN_NU:g}")
    if FAMILIES[family].kind == "location":
        mean, scale = params[-2], params[-1]
        if abs(mean) > LOCATION_PRIOR_MEAN_MAX:
            raise bad(f"the mean {mean:g} is outside the accepted range ±{LOCATION_PRIOR_MEAN_MAX:g}")
        lo, hi = LOCATION_PRIOR_SCALE_RANGE
        if not lo <= scale <= hi:
            raise bad(f"{names[-1]} = {scale:g} is outside the accepted range {lo:g} to {hi:g}")
        return
    lo, hi = SCALE_PRIOR_RANGE
    try:
        with np.errstate(all="ignore"):
            cdf = PriorSpec(family, params, family).cdf(np.array([lo, hi]))
        mass, below = float(cdf[1] - cdf[0]), float(cdf[0])
    except (OverflowError, ValueError, ZeroDivisionError):
        mass, below = 0.0, math.nan
    if not mass >= SCALE_PRIOR_MIN_MASS:  # also refuses NaN
        raise bad(
            f"it puts {f'{mass:.3g}' if math.isfinite(mass) else 'none'} of its probability on {parameter} between {lo:g} and {hi:g}, less "
            f"than the accepted minimum {SCALE_PRIOR_MIN_MASS:g} ({parameter} is an SD of log hazard "
            "ratios; the exact engine's quadrature grid cannot hold this prior)"
        )
    if not below <= SCALE_PRIOR_MAX_MASS_BELOW:
        raise bad(
            f"it puts {below:.3g} of its probability on {parameter} below {lo:g}, more than the "
            f"accepted maximum {SCALE_PRIOR_MAX_MASS_BELOW:g} (a point mass at {parameter} = 0 in "
            "disguise: use a common-effect model, or a prior on a representable scale)"
        )


def parse_prior(text: str, parameter: str) -> PriorSpec:
    """Parse a prior string for a named parameter (``mu``, ``tau``, ``delta``, ``beta``, ``kappa``).

    Raises :class:`InputError` listing the accepted forms when the string is not one of them.

    Examples
    --------
    >>> p = parse_prior("halfnormal(0.5)", "tau")
    >>> p.label
    'half-normal(scale=0.5)'
    >>> round(float(p.ppf(0.5)), 3)  # median of a half-normal: 0.5 * 0.6745
    0.337
    >>> parse_prior("normal(0, 2)", "mu").params
    (0.0, 2.0)
    >>> parse_prior("cauchy(0, 1)", "tau")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: prior family 'cauchy' is not available for tau; accepted forms: ...
    """
    if parameter not in ROLES:
        raise InputError(f"unknown model parameter {parameter!r}; priors exist for {', '.join(ROLES)}")
    kind = ROLES[parameter]
    families = SCALE_FAMILIES if kind == "scale" else LOCATION_FAMILIES
    raw = (text or "").strip()
    key = raw.lower().replace("_", "-")
    if key in PRESETS:
        if kind not in PRESETS[key]:
            raise InputError(
                f"preset {raw!r} has no prior for {parameter}; accepted forms: {accepted_forms(kind)}"
            )
        family, params, source = PRESETS[key][kind]
        return PriorSpec(family, params, f"{_label(family, params)} [{key}]", source)
    m = _SPEC.match(raw)
    if not m:
        raise InputError(
            f"cannot parse prior {raw!r} for {parameter}; accepted forms: {accepted_forms(kind)}"
        )
    family = m.group(1).lower()
    family = _ALIASES.get(family, family)
    if family not in families:
        raise InputError(
            f"prior family {m.group(1)!r} is not available for {parameter}; accepted forms: {accepted_forms(kind)}"
        )
    args = [a.strip() for a in m.group(2).split(",")] if m.group(2).strip() else []
    names = families[family]
    if len(args) != len(names):
        raise InputError(
            f"prior {raw!r} for {parameter}: {family} takes {len(names)} parameter(s) "
            f"({', '.join(names)}), got {len(args)}; accepted forms: {accepted_forms(kind)}"
        )
    try:
        params = tuple(float(a) for a in args)
    except ValueError:
        raise InputError(
            f"prior {raw!r} for {parameter}: parameters must be numbers; accepted forms: {accepted_forms(kind)}"
        ) from None
    _check_params(family, params, raw, parameter)
    return PriorSpec(family, params, _label(family, params))


@dataclass(frozen=True)
class PriorConfig:
    """The priors of one model: defaults merged with the user's overrides (``DEFAULTS | user``)."""

    mu: PriorSpec
    tau: PriorSpec
    delta: PriorSpec
    beta: PriorSpec
    kappa: PriorSpec

    def to_dict(self, parameters: tuple[str, ...] | None = None) -> dict[str, dict]:
        names = tuple(ROLES) if parameters is None else parameters
        return {n: getattr(self, n).to_dict() for n in names}

    def labels(self, parameters: tuple[str, ...] | None = None) -> dict[str, str]:
        names = tuple(ROLES) if parameters is None else parameters
        return {n: getattr(self, n).label for n in names}


def resolve_priors(overrides: Mapping[str, str | None] | None = None) -> PriorConfig:
    """Parse the default priors merged with the user's (``None`` values keep the default).

    Examples
    --------
    >>> config = resolve_priors({"tau": "halfcauchy(0.25)", "mu": None})
    >>> config.tau.label, config.mu.label
    ('half-Cauchy(scale=0.25)', 'normal(mean=0, sd=1)')
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(given) - set(ROLES)
    if unknown:
        raise InputError(f"unknown prior parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(ROLES)}")
    merged = DEFAULT_PRIORS | given
    return PriorConfig(**{name: parse_prior(text, name) for name, text in merged.items()})

