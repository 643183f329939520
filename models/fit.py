"""One entry point for a Bayesian fit: choose the engine, parse ``--at``, return a FitResult.

``engine="pymc"`` samples the model with NUTS (:func:`synthesis.models.pymc_fit.fit_pymc`);
``engine="exact"`` integrates over tau on a grid (:func:`synthesis.models.exact.fit_exact`) and refuses,
with the reason, the models it cannot compute exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

from synthesis.base import DEFAULT_THRESHOLDS
from synthesis.errors import InputError, ModelError
from synthesis.models.results import FitResult
from synthesis.models.spec import ModelData, ModelSpec, StudySource, check_seed, check_thresholds

ENGINES: tuple[str, ...] = ("pymc", "exact")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_AT_ITEM = re.compile(rf"^\s*([^=,]*[^=,\s])\s*=\s*({_NUMBER})\s*$")


def _number(value: float) -> str:
    """A value as printed in a label: ``:g`` when that reads back as the same float, otherwise
    the shortest text that does (so distinct values never print alike)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def at_label(values: Mapping[str, float]) -> str:
    """The label of a covariate point: ``{"frac": 0.5} -> "frac=0.5"`` (joined with ``,``).

    Distinct points have distinct labels: ``{"year": 2001.5}`` and ``{"year": 2001.5000001}``
    print as ``year=2001.5`` and ``year=2001.5000001``.

    Examples
    --------
    >>> at_label({"bone_only_fraction": 0.5, "year": 2010})
    'bone_only_fraction=0.5,year=2010'
    """
    return ",".join(f"{c}={_number(float(v))}" for c, v in values.items())


def parse_at(
    items: Iterable[str] | Mapping[str, Mapping[str, float]] | None,
    covariates: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Parse ``--at`` values (``"C=X"`` or ``"C1=X1,C2=X2"``) into ``{label: {covariate: value}}``.

    Every point names covariates of the model; those not named stay at their centres.
    Raises :class:`InputError` naming the parameter ``at`` for anything else.

    Examples
    --------
    >>> parse_at(["year=2010", "year=2015,frac=0.5"], ["year", "frac"])
    {'year=2010': {'year': 2010.0}, 'year=2015,frac=0.5': {'year': 2015.0, 'frac': 0.5}}
    >>> parse_at(["age=60"], ["year"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: at 'age=60': 'age' is not a covariate of the model; ...
    """
    if not items:
        return {}
    if isinstance(items, Mapping):
        parsed = {str(k): {str(c): float(v) for c, v in p.items()} for k, p in items.items()}
        for values in parsed.values():
            _check_at_names(values, covariates, at_label(values))
        return parsed
    out: dict[str, dict[str, float]] = {}
    for text in items:
        values: dict[str, float] = {}
        for part in str(text).split(","):
            m = _AT_ITEM.match(part)
            if not m:
                raise InputError(
                    f"at {text!r}: expected COVARIATE=VALUE (e.g. bone_only_fraction=0.5), "
                    "several joined by ','",
                    parameter="at",
                )
            name, value = m.group(1), float(m.group(2))
            if not math.isfinite(value):
                raise InputError(f"at {text!r}: the value must be a finite number", parameter="at")
            if name in values:
                raise InputError(f"at {text!r}: covariate {name!r} given twice", parameter="at")
            values[name] = value
        _check_at_names(values, covariates, text)
        label = at_label(values)
        if label in out:
            raise InputError(f"at {text!r}: the point {label} is given twice", parameter="at")
        out[label] = values
    return out


def _check_at_names(values: Mapping[str, float], covariates: Sequence[str], text: str) -> None:
    if not covariates:
        raise InputError(
            f"at {text!r}: only the meta-regressions (metareg, bias-metareg) take at", parameter="at"
        )
    for name in values:
        if name not in covariates:
            raise InputError(
                f"at {text!r}: {name!r} is not a covariate of the model; "
                f"covariates: {', '.join(covariates)} (add it to the model's covariates)",
                parameter="at",
            )


def fit(
    table: StudySource,
    spec: ModelSpec,
    *,
    engine: str = "pymc",
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    at: Iterable[str] | Mapping[str, Mapping[str, float]] | None = None,
    chains: int = 4,
    draws: int = 2000,
    tune: int = 1000,
    seed: int | None = None,
    target_accept: float | None = None,
    adaptation: str = "auto",
    log_likelihood: bool = False,
    log_prior: bool = False,
) -> FitResult:
    """Fit ``spec`` to the studies of ``table`` with the chosen engine.

    Parameters
    ----------
    table
        A validated study table (with the covariates ``spec`` names loaded).
    spec
        Model, bias variant, covariates and priors.
    engine
        ``"pymc"`` (NUTS via nutpie) or ``"exact"`` (quadrature over tau; linear-Gaussian models
        only: a :class:`ModelError` gives the reason otherwise).
    thresholds
        Report P(HR < T) for each T (each T > 0).
    at
        ``--at`` strings ``"C=X"`` (or an already parsed ``{label: {covariate: value}}``).
    chains, draws, tune, seed, target_accept, adaptation
        NUTS settings (PyMC engine only; ``target_accept=None`` takes the model's default,
        0.95 or 0.99 (:func:`synthesis.models.pymc_fit.default_target_accept`); ``adaptation`` is nutpie's
        mass-matrix adaptation).
    log_likelihood, log_prior
        PyMC engine: also store the pointwise log-likelihood (study effects integrated out, for
        PSIS-LOO) and the log prior densities as DataTree groups of ``result.posterior``
        (:func:`synthesis.models.pymc_fit.fit_pymc`); opt-in because at large k they are big.

    Examples
    --------
    The exact engine (no sampling) on the bundled studies, with the design-bias model:

    >>> import synthesis as syn
    >>> result = fit(syn.load_dataset("dnmbc_lrt"), ModelSpec("bias"), engine="exact")
    >>> result.engine, result.k
    ('exact', 17)
    >>> round(result.hr.median, 2), round(result.p_hr_below["1.0"], 2)
    (0.91, 0.9)
    """
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}", parameter="engine")
    thresholds = check_thresholds(thresholds)
    seed = check_seed(seed)
    points = parse_at(at, spec.covariates)
    data = ModelData.from_table(table, spec)
    if engine == "exact":
        from synthesis.models.exact import exact_unsupported_reason, fit_exact

        reason = exact_unsupported_reason(spec, data)
        if reason is not None:
            raise ModelError(f"engine='exact': {reason}", parameter="engine")
        return fit_exact(data, spec, thresholds=thresholds, at=points)
    fixed = [
        f"{name}=False ({what})"
        for name, what in (("effect", "mu fixed at 0"), ("heterogeneity", "tau fixed at 0"))
        if not getattr(spec, name)
    ]
    if fixed:
        raise ModelError(
            f"engine='pymc' does not fit models with {' and '.join(fixed)}; use engine='exact' "
            "(it computes them, and their marginal likelihood, in closed form or by quadrature)",
            parameter="engine",
        )
    from synthesis.models.pymc_fit import fit_pymc

    return fit_pymc(
        data,
        spec,
        thresholds=thresholds,
        at=points,
        chains=chains,
        draws=draws,
        tune=tune,
        seed=seed,
        target_accept=target_accept,
        adaptation=adaptation,
        log_likelihood=log_likelihood,
        log_prior=log_prior,
    )
