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
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from synthesis.errors import InputError

SCALE_FAMILIES: dict[str, tuple[str, ...]] = {
    "halfnormal": ("scale",),
    "halfcauchy": ("scale",),
    "halft": ("nu", "scale"),
    "exponential": ("rate",),
    "uniform": ("lower", "upper"),
    "lognormal_tau2": ("mean_log_tau2", "sd_log_tau2"),
    "invgamma": ("shape", "scale"),
    "invgamma_tau2": ("shape", "scale"),
}
LOCATION_FAMILIES: dict[str, tuple[str, ...]] = {
    "normal": ("mean", "sd"),
    "studentt": ("nu", "mean", "scale"),
}
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
        return {**SCALE_FAMILIES, **LOCATION_FAMILIES}[self.family]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["params"] = dict(zip(self.param_names, self.params, strict=True))
        return d

    # ---- densities on the parameter's own scale (used by the exact engine and plots) ----
    def logpdf(self, x: np.ndarray) -> np.ndarray:
        """Log density at x (for scale families, -inf at x < 0; the density of tau itself)."""
        x = np.asarray(x, dtype=float)
        f, p = self.family, self.params
        with np.errstate(divide="ignore", invalid="ignore"):
            if f == "normal":
                return stats.norm.logpdf(x, p[0], p[1])
            if f == "studentt":
                return stats.t.logpdf(x, p[0], loc=p[1], scale=p[2])
            if f == "halfnormal":
                out = stats.halfnorm.logpdf(x, scale=p[0])
            elif f == "halfcauchy":
                out = stats.halfcauchy.logpdf(x, scale=p[0])
            elif f == "halft":
                out = np.log(2.0) + stats.t.logpdf(x, p[0], scale=p[1])
            elif f == "exponential":
                out = stats.expon.logpdf(x, scale=1.0 / p[0])
            elif f == "uniform":
                out = stats.uniform.logpdf(x, loc=p[0], scale=p[1] - p[0])
            elif f == "lognormal_tau2":
                out = stats.lognorm.logpdf(x, s=p[1] / 2.0, scale=math.exp(p[0] / 2.0))
            elif f == "invgamma":
                out = stats.invgamma.logpdf(x, p[0], scale=p[1])
            elif f == "invgamma_tau2":
                # tau^2 ~ IG(a, b): p(tau) = IG(tau^2; a, b) * 2 tau
                out = stats.invgamma.logpdf(x**2, p[0], scale=p[1]) + np.log(2.0 * x)
            else:  # pragma: no cover - parse_prior admits only known families
                raise ValueError(self.family)
            return np.where(x >= 0, out, -np.inf)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        """Cumulative distribution function on the parameter's own scale."""
        x = np.asarray(x, dtype=float)
        f, p = self.family, self.params
        if f == "normal":
            return stats.norm.cdf(x, p[0], p[1])
        if f == "studentt":
            return stats.t.cdf(x, p[0], loc=p[1], scale=p[2])
        xp = np.maximum(x, 0.0)
        if f == "halfnormal":
            out = stats.halfnorm.cdf(xp, scale=p[0])
        elif f == "halfcauchy":
            out = stats.halfcauchy.cdf(xp, scale=p[0])
        elif f == "halft":
            out = 2.0 * stats.t.cdf(xp, p[0], scale=p[1]) - 1.0
        elif f == "exponential":
            out = stats.expon.cdf(xp, scale=1.0 / p[0])
        elif f == "uniform":
            out = stats.uniform.cdf(xp, loc=p[0], scale=p[1] - p[0])
        elif f == "lognormal_tau2":
            out = stats.lognorm.cdf(xp, s=p[1] / 2.0, scale=math.exp(p[0] / 2.0))
        elif f == "invgamma":
            out = stats.invgamma.cdf(xp, p[0], scale=p[1])
        elif f == "invgamma_tau2":
            out = stats.invgamma.cdf(xp**2, p[0], scale=p[1])
        else:  # pragma: no cover
            raise ValueError(self.family)
        return np.where(x >= 0, out, 0.0)

    def ppf(self, q: np.ndarray) -> np.ndarray:
        """Quantile function (used to place the quadrature grid for tau)."""
        q = np.asarray(q, dtype=float)
        f, p = self.family, self.params
        if f == "normal":
            return stats.norm.ppf(q, p[0], p[1])
        if f == "studentt":
            return stats.t.ppf(q, p[0], loc=p[1], scale=p[2])
        if f == "halfnormal":
            return stats.halfnorm.ppf(q, scale=p[0])
        if f == "halfcauchy":
            return stats.halfcauchy.ppf(q, scale=p[0])
        if f == "halft":
            return stats.t.ppf(0.5 + q / 2.0, p[0], scale=p[1])
        if f == "exponential":
            return stats.expon.ppf(q, scale=1.0 / p[0])
        if f == "uniform":
            return stats.uniform.ppf(q, loc=p[0], scale=p[1] - p[0])
        if f == "lognormal_tau2":
            return stats.lognorm.ppf(q, s=p[1] / 2.0, scale=math.exp(p[0] / 2.0))
        if f == "invgamma":
            return stats.invgamma.ppf(q, p[0], scale=p[1])
        if f == "invgamma_tau2":
            return np.sqrt(stats.invgamma.ppf(q, p[0], scale=p[1]))
        raise ValueError(self.family)  # pragma: no cover

    def rvs(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """Random draws (inverse-CDF sampling; used by simulation-based calibration)."""
        return self.ppf(rng.uniform(1e-12, 1 - 1e-12, size=size))

    @property
    def is_normal(self) -> bool:
        return self.family == "normal"


def _label(family: str, params: tuple[float, ...]) -> str:
    names = {**SCALE_FAMILIES, **LOCATION_FAMILIES}[family]
    pretty = {
        "halfnormal": "half-normal",
        "halfcauchy": "half-Cauchy",
        "halft": "half-Student-t",
        "lognormal_tau2": "log-normal on tau^2",
        "invgamma": "inverse-gamma on tau",
        "invgamma_tau2": "inverse-gamma on tau^2",
        "studentt": "Student-t",
    }.get(family, family)
    return f"{pretty}(" + ", ".join(f"{n}={v:g}" for n, v in zip(names, params, strict=True)) + ")"


def accepted_forms(kind: str) -> str:
    """A one-line list of the accepted prior forms for a parameter kind."""
    fams = SCALE_FAMILIES if kind == "scale" else LOCATION_FAMILIES
    forms = [f"{f}({', '.join(p)})" for f, p in fams.items()]
    presets = [n for n, roles in PRESETS.items() if kind in roles]
    return ", ".join(forms) + (f"; presets: {', '.join(presets)}" if presets else "")


def prior_help(parameter: str) -> str:
    """Help text for a parameter's prior option: accepted forms and presets with citations."""
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
    if family in ("halfnormal", "halfcauchy", "exponential") and params[0] <= 0:
        raise bad("the parameter must be > 0")
    if family == "halft" and (params[0] <= 0 or params[1] <= 0):
        raise bad("nu and scale must be > 0")
    if family == "uniform" and not (0 <= params[0] < params[1]):
        raise bad("need 0 <= a < b")
    if family == "lognormal_tau2" and params[1] <= 0:
        raise bad("the SD must be > 0")
    if family in ("invgamma", "invgamma_tau2") and (params[0] <= 0 or params[1] <= 0):
        raise bad("shape and scale must be > 0")
    if family == "normal" and params[1] <= 0:
        raise bad("the SD must be > 0")
    if family == "studentt" and (params[0] <= 0 or params[2] <= 0):
        raise bad("nu and scale must be > 0")
    _check_representable(family, params, parameter, bad)


def _check_representable(
    family: str, params: tuple[float, ...], parameter: str, bad: Callable[[str], InputError]
) -> None:
    """Refuse hyperparameters outside the ranges the engines can hold (the module's constants)."""
    names = {**SCALE_FAMILIES, **LOCATION_FAMILIES}[family]
    if "nu" in names and params[0] < MIN_NU:
        raise bad(f"nu = {params[0]:g} is below the accepted minimum {MIN_NU:g}")
    if family in LOCATION_FAMILIES:
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
        names = parameters or tuple(ROLES)
        return {n: getattr(self, n).to_dict() for n in names}

    def labels(self, parameters: tuple[str, ...] | None = None) -> dict[str, str]:
        names = parameters or tuple(ROLES)
        return {n: getattr(self, n).label for n in names}


def resolve_priors(overrides: Mapping[str, str | None] | None = None) -> PriorConfig:
    """Parse the default priors merged with the user's (``None`` values keep the default)."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(given) - set(ROLES)
    if unknown:
        raise InputError(f"unknown prior parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(ROLES)}")
    merged = DEFAULT_PRIORS | given
    return PriorConfig(**{name: parse_prior(text, name) for name, text in merged.items()})

