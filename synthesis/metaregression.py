"""Mixed-effects meta-regression of log hazard ratios on study covariates (metafor
``rma(yi, vi, mods = ~ C1 + C2, method, test)``).

The model is ``y_i = b0 + b1 x_i1 + ... + bm x_im + u_i + e_i`` with ``u_i ~ N(0, tau^2)`` the
residual heterogeneity and ``e_i ~ N(0, v_i)``; it is fitted by :func:`synthesis.pooling.fit_model`
(weighted least squares with ``w_i = 1 / (v_i + tau^2)``, tau^2 by the chosen estimator on the
residuals, REML by default).

* ``QM`` (omnibus test of the covariates, all coefficients but the intercept):
  ``QM = b' Var(b)^-1 b`` ~ chi^2 with m df; with the Knapp-Hartung adjustment (Knapp & Hartung
  2003; metafor ``test = "knha"``) ``Var(b)`` is scaled by ``y'Py / (k - p)``, ``QM / m`` ~
  F(m, k - p) and the coefficients use t with ``k - p`` df.
* ``QE`` (residual heterogeneity) ``= y'P0 y`` ~ chi^2 with ``k - p`` df; I^2 and H^2 use the
  typical within-study variance ``(k - p) / tr(P0)`` as in metafor.
* ``R^2 = max(0, 100 (tau^2_RE - tau^2) / tau^2_RE)`` against the intercept-only model with
  the same estimator (Raudenbush 2009; metafor's default), 0 when ``tau^2_RE = 0``; for the FE
  model metafor's adjusted R^2 of the weighted regression, ``1 - (QE / Q) (k - 1) / (k - p)``.

Rows with a missing value (NaN) in any named covariate are dropped and counted in ``dropped``.

Knapp G, Hartung J (2003). Improved tests for a random effects meta-regression with a single
covariate. Stat Med 22:2693-2710.
Viechtbauer W (2005). Bias and efficiency of meta-analytic variance estimators in the
random-effects model. J Educ Behav Stat 30:261-293.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from synthesis.errors import InputError, ModelError
from synthesis.models.display import html_block, html_table
from synthesis.pooling import (
    DEFAULT_LEVEL,
    METHODS,
    estimate_tau2,
    finite_or_none,
    fit_model,
    format_p,
    format_p_equals,
    generalised_q,
)
from synthesis.studies import StudyTable

if TYPE_CHECKING:
    import pandas as pd

INTERCEPT = "intercept"


@dataclass(frozen=True)
class Coefficient:
    """One regression coefficient on the log scale."""

    estimate: float
    se: float
    ci_lower: float
    ci_upper: float
    statistic: float
    pvalue: float

    def to_dict(self) -> dict[str, float | None]:
        return {
            "estimate": finite_or_none(self.estimate),
            "se": finite_or_none(self.se),
            "ci_lower": finite_or_none(self.ci_lower),
            "ci_upper": finite_or_none(self.ci_upper),
            "statistic": finite_or_none(self.statistic),
            "pvalue": finite_or_none(self.pvalue),
        }


@dataclass(frozen=True)
class MetaRegResult:
    """A fitted meta-regression: coefficients keyed ``intercept`` and by covariate name."""

    method: str
    hksj: bool
    k: int
    dropped: int
    covariates: tuple[str, ...]
    tau2: float
    qm: float
    qm_df: tuple[int, int | None]
    qm_pvalue: float
    qe: float
    qe_pvalue: float
    i2: float
    h2: float
    r2: float | None
    coefficients: dict[str, Coefficient]
    level: float = DEFAULT_LEVEL
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    #: The table the studies came from (set by :func:`metaregression_table`).
    source: str = ""

    def __str__(self) -> str:
        """The result as ``synthesis metareg`` prints it.

        Examples
        --------
        >>> import synthesis as syn
        >>> r = syn.metareg(syn.load_dataset("dnmbc_lrt"), covariates=["bone_only_fraction"])
        >>> print(r)  # doctest: +ELLIPSIS
        dnmbc_lrt (bundled dnmbc_lrt.csv): Mixed-effects (REML) meta-regression, k = ...
          coefficient               estimate        SE              95% CI        z        p
          intercept ...
        """
        kind = "Fixed-effects" if self.method == "FE" else f"Mixed-effects ({self.method})"
        adj = ", Knapp-Hartung" if self.hksj else ""
        prefix = f"{self.source}: " if self.source else ""
        lines = [
            f"{prefix}{kind} meta-regression{adj}, k = {self.k}"
            + (f" ({self.dropped} dropped for a missing covariate)" if self.dropped else "")
        ]
        stat = "t" if self.hksj else "z"
        level = f"{100 * self.level:g}% CI"
        lines.append(f"  {'coefficient':<24}{'estimate':>10}{'SE':>10}{level:>22}{stat:>9}{'p':>9}")
        for name, c in self.coefficients.items():
            ci = f"{c.ci_lower:.4f} to {c.ci_upper:.4f}"
            lines.append(
                f"  {name:<24}{c.estimate:>10.4f}{c.se:>10.4f}{ci:>22}{c.statistic:>9.3f}{format_p(c.pvalue):>9}"
            )
        test = "F" if self.hksj else "QM"
        df = f"{self.qm_df[0]} and {self.qm_df[1]}" if self.hksj else f"{self.qm_df[0]}"
        lines.append(f"  Test of moderators: {test} = {self.qm:.3f} on {df} df, {format_p_equals(self.qm_pvalue)}")
        lines.append(
            f"  Residual heterogeneity: tau^2 = {self.tau2:.4g}, I^2 = {self.i2:.1f}%, "
            f"QE = {self.qe:.3f} on {self.k - len(self.coefficients)} df, {format_p_equals(self.qe_pvalue)}"
            + (f", R^2 = {self.r2:.1f}%" if self.r2 is not None else "")
        )
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        level = f"{100 * self.level:g}% CI"
        rows = [
            [name, f"{c.estimate:.4f}", f"{c.se:.4f}", f"{c.ci_lower:.4f} to {c.ci_upper:.4f}",
             f"{c.statistic:.3f}", format_p(c.pvalue)]
            for name, c in self.coefficients.items()
        ]
        table = html_table(["coefficient", "estimate", "SE", level, "t" if self.hksj else "z", "p"], rows)
        title = (f"{'Fixed' if self.method == 'FE' else 'Mixed'}-effects meta-regression ({self.method}"
                 f"{', Knapp-Hartung' if self.hksj else ''}); k = {self.k}"
                 + (f" ({self.source})" if self.source else ""))
        extra = [f"<p>Test of moderators: {format_p_equals(self.qm_pvalue)}; residual tau^2 = {self.tau2:.4g}, "
                 f"I^2 = {self.i2:.1f}%</p>"]
        return html_block(title, [table, *extra], [*self.notes, *self.warnings])

    def to_json(self) -> dict[str, Any]:
        """The ``synthesis metareg --json`` document (:meth:`to_dict`)."""
        return self.to_dict()

    def to_frame(self) -> pd.DataFrame:
        """One row per coefficient (``intercept`` and each covariate; log scale).

        Examples
        --------
        >>> import synthesis as syn
        >>> r = syn.metareg(syn.load_dataset("dnmbc_lrt"), covariates=["bone_only_fraction"])
        >>> r.to_frame().shape
        (2, 6)
        """
        import pandas as pd

        return pd.DataFrame.from_dict({n: c.to_dict() for n, c in self.coefficients.items()}, orient="index")

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "hksj": self.hksj,
            "k": self.k,
            "dropped": self.dropped,
            "tau2": finite_or_none(self.tau2),
            "qm": finite_or_none(self.qm),
            "qm_pvalue": finite_or_none(self.qm_pvalue),
            "coefficients": {name: c.to_dict() for name, c in self.coefficients.items()},
            "covariates": list(self.covariates),
            "qm_df": list(self.qm_df),
            "qe": finite_or_none(self.qe),
            "qe_df": self.k - len(self.coefficients),
            "qe_pvalue": finite_or_none(self.qe_pvalue),
            "i2": finite_or_none(self.i2),
            "h2": finite_or_none(self.h2),
            "r2": None if self.r2 is None else finite_or_none(self.r2),
            "level": self.level,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }


def metaregression(
    y: Any,
    v: Any,
    covariates: Any,
    names: Sequence[str],
    *,
    method: str = "REML",
    hksj: bool = False,
    level: float = DEFAULT_LEVEL,
) -> MetaRegResult:
    """Fit a mixed-effects meta-regression of ``y`` (variances ``v``) on ``covariates``.

    Parameters
    ----------
    y, v
        Effects (log HR) and sampling variances.
    covariates
        A (k, m) array (or a length-k vector for m = 1); NaN marks a missing value and drops
        the row.
    names
        The m covariate names (keys of ``coefficients``; the intercept is ``"intercept"``).
    method
        tau^2 estimator, one of :data:`synthesis.pooling.METHODS` (``FE`` gives a fixed-effects
        meta-regression).
    hksj
        Knapp-Hartung adjustment (t tests with k - p df, F test for QM).

    Examples
    --------
    Effects that rise by exactly 1 per unit of ``x``:

    >>> r = metaregression([0.0, 1.0, 2.0], [0.1, 0.1, 0.1], [0.0, 1.0, 2.0], ["x"], method="FE")
    >>> round(r.coefficients["x"].estimate, 6), round(r.coefficients["x"].se, 4), r.qe
    (1.0, 0.2236, 0.0)
    """
    names = tuple(names)
    y, v, Z, dropped = _complete_cases(y, v, covariates, names, method)
    k = y.size
    fit = fit_model(y, v, np.column_stack([np.ones(k), Z]), method=method, knha=hksj, level=level)
    qm, qm_df, qm_p = _omnibus_test(fit.beta[1:], fit.vb[1:, 1:], k, hksj)
    notes = list(fit.notes)
    r2 = _r_squared(y, v, fit, method, notes)
    coefs = {
        name: Coefficient(
            estimate=float(fit.beta[j]),
            se=float(fit.se[j]),
            ci_lower=float(fit.ci_lower[j]),
            ci_upper=float(fit.ci_upper[j]),
            statistic=float(fit.statistic[j]),
            pvalue=float(fit.pvalue[j]),
        )
        for j, name in enumerate((INTERCEPT, *names))
    }
    return MetaRegResult(
        method=method,
        hksj=hksj,
        k=k,
        dropped=dropped,
        covariates=names,
        tau2=fit.tau2,
        qm=qm,
        qm_df=qm_df,
        qm_pvalue=qm_p,
        qe=fit.q,
        qe_pvalue=fit.q_pvalue,
        i2=fit.i2,
        h2=fit.h2,
        r2=r2,
        coefficients=coefs,
        level=level,
        notes=tuple(notes),
        warnings=fit.warnings,
    )


def _complete_cases(
    y: Any, v: Any, covariates: Any, names: tuple[str, ...], method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Check the inputs and keep the studies with every covariate present: ``(y, v, Z,
    number dropped)``; too few left for the model's coefficients is an InputError."""
    if len(set(names)) != len(names) or INTERCEPT in names:
        raise InputError(f"covariate names must be distinct and not {INTERCEPT!r}: {names}")
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    y = np.asarray(y, dtype=float).reshape(-1)
    v = np.asarray(v, dtype=float).reshape(-1)
    Z = np.asarray(covariates, dtype=float)
    if Z.ndim == 1:
        Z = Z[:, None]
    if Z.shape != (y.size, len(names)):
        raise InputError(
            f"covariate matrix has shape {Z.shape}, expected ({y.size}, {len(names)})"
        )
    if not names:
        raise InputError("meta-regression needs at least one covariate")
    keep = ~np.isnan(Z).any(axis=1)
    dropped = int((~keep).sum())
    y, v, Z = y[keep], v[keep], Z[keep]
    k, p = y.size, len(names) + 1
    need = p if method == "FE" else p + 1
    if k < need:
        raise InputError(
            f"{k} studies with all of {', '.join(names)} present ({dropped} dropped for missing "
            f"values); a model with {p} coefficients{'' if method == 'FE' else ' and tau^2'} "
            f"needs at least {need}"
        )
    return y, v, Z, dropped


def _omnibus_test(b: np.ndarray, vb: np.ndarray, k: int, hksj: bool) -> tuple[float, tuple[int, int | None], float]:
    """QM, the test that every slope is 0: ``(statistic, (df1, df2), p)`` -- a Wald chi^2 with
    m df, or with ``hksj`` an F(m, k - p) statistic (QM / m)."""
    m = b.size
    try:
        qm = float(b @ np.linalg.solve(vb, b))
    except np.linalg.LinAlgError:
        qm = math.nan
    if not hksj:
        return qm, (m, None), float(stats.chi2.sf(qm, m))
    df2 = k - (m + 1)
    qm = qm / m
    return qm, (m, df2), float(stats.f.sf(qm, m, df2)) if df2 > 0 else math.nan


def _r_squared(y: np.ndarray, v: np.ndarray, fit: Any, method: str, notes: list[str]) -> float | None:
    """Share of heterogeneity the covariates account for, in % (metafor's definitions): for FE
    the adjusted R^2 of the weighted least-squares regression, otherwise
    (tau^2_RE - tau^2_ME) / tau^2_RE. ``None`` (with a note) when tau^2_RE cannot be estimated."""
    k, p = y.size, fit.beta.size
    if method == "FE":
        # metafor: adjusted R^2 of the weighted least-squares regression (lm with weights 1/v)
        tss = generalised_q(0.0, y, v, np.ones((k, 1)))
        if tss > 0 and k > p:
            return max(0.0, 100.0 * (1.0 - (fit.q / tss) * (k - 1) / (k - p)))
        return 0.0
    try:
        tau2_re = estimate_tau2(y, v, None, method).tau2
    except ModelError as exc:
        notes.append(f"R^2 not available: {exc}")
        return None
    if tau2_re == 0.0:
        return 0.0
    if math.isfinite(tau2_re):
        return max(0.0, 100.0 * (tau2_re - fit.tau2) / tau2_re)
    return None


def metaregression_table(
    table: StudyTable,
    covariates: Sequence[str],
    *,
    method: str = "REML",
    hksj: bool = False,
    level: float = DEFAULT_LEVEL,
) -> MetaRegResult:
    """:func:`metaregression` on a :class:`~synthesis.studies.StudyTable`'s covariate columns.

    Examples
    --------
    Publication year as a moderator of the dnMBC log hazard ratios (REML):

    >>> from synthesis.datasets import load_dataset
    >>> r = metaregression_table(load_dataset("dnmbc_lrt"), ["year"])
    >>> c = r.coefficients["year"]
    >>> r.k, round(c.estimate, 4), round(c.pvalue, 4)
    (17, 0.0171, 0.004)
    """
    names = tuple(dict.fromkeys(covariates))
    result = metaregression(
        table.y,
        table.v,
        table.covariate_matrix(names),
        names,
        method=method,
        hksj=hksj,
        level=level,
    )
    return replace(result, source=table.source)
