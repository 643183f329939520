"""Small-study and publication-bias diagnostics, matching R's metafor.

* Egger's regression test (Egger et al. 1997) in metafor's ``regtest(model = "rma",
  predictor = "sei")`` form: the meta-regression ``y_i = b0 + b1 se_i + u_i + e_i`` fitted with
  the model's tau^2 estimator (DL by default); the test statistic is ``b1 / SE(b1)`` (z) and
  ``b0`` is the "limit estimate" at se = 0.
* Begg & Mazumdar's (1994) rank correlation test (metafor ``ranktest``): Kendall's tau between the
  standardised effects ``(y_i - mu_FE) / sqrt(v_i - 1 / sum(1/v))`` and the variances ``v_i``.
  As metafor (``exact = TRUE`` passed to R's ``cor.test``) the p-value is exact (the permutation
  distribution of Kendall's statistic) when there are no ties, otherwise the normal
  approximation with the tie-corrected variance and tau-b.
* Trim and fill (Duval & Tweedie 2000a, 2000b; metafor ``trimfill``) with the L0 estimator: the
  side to fill is the left unless Egger's slope (same estimator) is negative; iterate
  ``L0 = (4 S_r - k (k + 1)) / (2k - 1)`` (``S_r`` the sum of the positive signed ranks of
  ``|y_i - mu|``, mu re-estimated on the trimmed data) until ``k0 = max(0, round(L0))`` is stable,
  then mirror the ``k0`` most extreme studies around the trimmed estimate (``2 mu - y_i``, same
  variance) and refit with all studies.
* Rosenthal's (1979) fail-safe N (metafor ``fsn(type = "Rosenthal")``, Stouffer's method):
  ``N = max(0, k (z_bar / z_{1-alpha})^2 - k)``, ``z_bar = |sum y_i / sqrt(v_i)| / sqrt(k)``,
  one-sided alpha = 0.05, rounded up to an integer.
* Leave-one-out (metafor ``leave1out``): the model refitted without each study in turn.

References
----------
Begg CB, Mazumdar M (1994). Operating characteristics of a rank correlation test for
publication bias. Biometrics 50:1088-1101.
Duval S, Tweedie R (2000). Trim and fill: a simple funnel-plot-based method of testing and
adjusting for publication bias in meta-analysis. Biometrics 56:455-463.
Egger M, Davey Smith G, Schneider M, Minder C (1997). Bias in meta-analysis detected by a simple,
graphical test. BMJ 315:629-634.
Rosenthal R (1979). The file drawer problem and tolerance for null results. Psychol Bull
86:638-641.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from synthesis.errors import InputError, ModelError
from synthesis.pooling import (
    DEFAULT_LEVEL,
    METHODS,
    check_inputs,
    estimate_record,
    finite_or_none,
    fit_model,
)
from synthesis.studies import StudyTable

FSN_ALPHA = 0.05
TRIMFILL_MAX_ITER = 100


# ------------------------------------------------------------------------------------------
# Egger
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EggerResult:
    """Egger's test: ``z`` and ``p`` for the slope on the standard error, and the limit estimate."""

    z: float
    p: float
    limit_estimate: float
    limit_ci_lower: float
    limit_ci_upper: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "z": finite_or_none(self.z),
            "p": finite_or_none(self.p),
            "limit_estimate": finite_or_none(self.limit_estimate),
            "limit_ci_lower": finite_or_none(self.limit_ci_lower),
            "limit_ci_upper": finite_or_none(self.limit_ci_upper),
        }


def egger_test(
    y: Any, v: Any, *, method: str = "DL", knha: bool = False, level: float = DEFAULT_LEVEL
) -> EggerResult:
    """Egger's regression test as metafor ``regtest(fit, model="rma", predictor="sei")``.

    Fits ``y_i = b0 + b1 sqrt(v_i) + u_i + e_i`` with ``method``'s tau^2 and returns
    ``z = b1 / SE(b1)`` with its two-sided p-value (t with k - 2 df under ``knha``).
    """
    y, v, _ = check_inputs(y, v)
    X = np.column_stack([np.ones(y.size), np.sqrt(v)])
    fit = fit_model(y, v, X, method=method, knha=knha, level=level)
    return EggerResult(
        z=float(fit.statistic[1]),
        p=float(fit.pvalue[1]),
        limit_estimate=float(fit.beta[0]),
        limit_ci_lower=float(fit.ci_lower[0]),
        limit_ci_upper=float(fit.ci_upper[0]),
    )


# ------------------------------------------------------------------------------------------
# Begg and Mazumdar
# ------------------------------------------------------------------------------------------


def _kendall_lower_tail(n: int, c: int) -> float:
    """P(T <= c) for T the number of concordant pairs among n untied pairs under independence
    (the Mahonian distribution of inversions; symmetric on 0..n(n-1)/2). Computed as
    probabilities with the recursion f_m(j) = (1/m) sum_{i=j-m+1}^{j} f_{m-1}(i), truncated at c
    (R's ``ckendall``/``pkendall``)."""
    if c < 0:
        return 0.0
    pmf = np.zeros(c + 1)
    pmf[0] = 1.0
    for m in range(2, n + 1):
        cs = np.cumsum(pmf)
        new = cs.copy()
        if m <= c:
            new[m:] -= cs[: c + 1 - m]
        pmf = new / m
    return float(min(1.0, pmf.sum()))


@dataclass(frozen=True)
class BeggResult:
    """Begg & Mazumdar's rank correlation test: Kendall's tau (tau-b with ties) and its p-value."""

    tau: float
    p: float
    exact: bool

    def to_dict(self) -> dict[str, Any]:
        return {"tau": finite_or_none(self.tau), "p": finite_or_none(self.p), "exact": self.exact}


def kendall_test(x: Any, y: Any) -> BeggResult:
    """Kendall's rank correlation with R's ``cor.test(method = "kendall", exact = TRUE)`` p-value:
    exact when there are no ties, otherwise the normal approximation
    ``z = S / sqrt(Var(S))`` with the tie-corrected variance (no continuity correction)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = x.size
    if n < 2:
        raise InputError("Kendall's tau needs at least 2 studies")
    iu = np.triu_indices(n, 1)
    sx = np.sign(x[:, None] - x[None, :])[iu]
    sy = np.sign(y[:, None] - y[None, :])[iu]
    prod = sx * sy
    s = float(prod.sum())  # concordant - discordant
    n0 = n * (n - 1) / 2
    ties = min(np.unique(x).size, np.unique(y).size) < n

    def tie_sizes(a: np.ndarray) -> np.ndarray:
        counts = np.unique(a, return_counts=True)[1]
        return counts[counts > 1].astype(float)

    tx, ty = tie_sizes(x), tie_sizes(y)
    t1 = float(np.sum(tx * (tx - 1)) / 2)
    t2 = float(np.sum(ty * (ty - 1)) / 2)
    denom = math.sqrt((n0 - t1) * (n0 - t2))
    if denom == 0:
        return BeggResult(tau=math.nan, p=math.nan, exact=False)
    tau = s / denom
    if not ties:
        q = int((prod > 0).sum())  # concordant pairs; R: round((tau + 1) n (n - 1) / 4)
        n_pairs = n * (n - 1) // 2
        p_one = _kendall_lower_tail(n, min(q, n_pairs - q))
        return BeggResult(tau=tau, p=min(1.0, 2.0 * p_one), exact=True)
    v0 = n * (n - 1) * (2 * n + 5)
    vt = float(np.sum(tx * (tx - 1) * (2 * tx + 5)))
    vu = float(np.sum(ty * (ty - 1) * (2 * ty + 5)))
    v1 = float(np.sum(tx * (tx - 1)) * np.sum(ty * (ty - 1)))
    v2 = float(np.sum(tx * (tx - 1) * (tx - 2)) * np.sum(ty * (ty - 1) * (ty - 2)))
    var_s = (v0 - vt - vu) / 18 + v1 / (2 * n * (n - 1))
    if n > 2:
        var_s += v2 / (9 * n * (n - 1) * (n - 2))
    z = s / math.sqrt(var_s)
    return BeggResult(tau=tau, p=float(2.0 * stats.norm.sf(abs(z))), exact=False)


def begg_test(y: Any, v: Any) -> BeggResult:
    """Begg & Mazumdar's test as metafor ``ranktest``: Kendall's tau between
    ``(y_i - mu_FE) / sqrt(v_i - 1/sum(1/v))`` and ``v_i``."""
    y, v, _ = check_inputs(y, v)
    w = 1.0 / v
    mu = float(np.dot(w, y) / w.sum())
    v_star = v - 1.0 / w.sum()
    return kendall_test((y - mu) / np.sqrt(v_star), v)


# ------------------------------------------------------------------------------------------
# trim and fill
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrimFillResult:
    """Trim and fill (L0): the number of filled studies, the side, and the refitted estimate."""

    k0: int
    side: str
    se_k0: float
    estimate: float
    se: float
    ci_lower: float
    ci_upper: float
    tau2: float
    filled_y: tuple[float, ...]
    filled_v: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "k0": self.k0,
            "side": self.side,
            "se_k0": finite_or_none(self.se_k0),
            **estimate_record(self.estimate, self.se, self.ci_lower, self.ci_upper),
            "tau2": finite_or_none(self.tau2),
            "filled": [
                {"log_hr": yi, "se": math.sqrt(vi)}
                for yi, vi in zip(self.filled_y, self.filled_v, strict=True)
            ],
        }


def trim_and_fill(
    y: Any,
    v: Any,
    *,
    method: str = "DL",
    side: str | None = None,
    level: float = DEFAULT_LEVEL,
    max_iter: int = TRIMFILL_MAX_ITER,
) -> TrimFillResult:
    """Duval & Tweedie's trim and fill with the L0 estimator, as metafor ``trimfill(fit)``.

    ``side=None`` chooses as metafor: "right" when the slope of the Egger-type regression of
    ``y`` on ``sqrt(v)`` (same estimator) is negative, else "left" (the side where studies are
    presumed missing).
    """
    y, v, _ = check_inputs(y, v)
    k = y.size
    if k < 2:
        raise InputError("trim and fill needs at least 2 studies")
    if side is None:
        X = np.column_stack([np.ones(k), np.sqrt(v)])
        slope = fit_model(y, v, X, method=method, level=level).beta[1]
        side = "right" if slope < 0 else "left"
    elif side not in ("left", "right"):
        raise InputError(f"side must be 'left' or 'right', got {side!r}")
    yf = -y if side == "right" else y.copy()
    order = np.argsort(yf, kind="stable")
    ys, vs = yf[order], v[order]
    k0, k0_prev, it = 0, -1, 0
    beta = math.nan
    centred = ys
    l0 = 0.0
    while k0 != k0_prev:
        k0_prev = k0
        it += 1
        if it > max_iter:
            raise ModelError(f"trim and fill did not converge in {max_iter} iterations")
        beta = float(fit_model(ys[: k - k0], vs[: k - k0], method=method, level=level).beta[0])
        centred = ys - beta
        ranks = np.empty(k)
        ranks[np.argsort(np.abs(centred), kind="stable")] = np.arange(1, k + 1)
        s_r = float(ranks[centred > 0].sum())
        l0 = (4.0 * s_r - k * (k + 1)) / (2.0 * k - 1.0)
        k0 = max(0, round(l0))
    var_sr = (
        k * (k + 1) * (2 * k + 1)
        + 10 * l0**3
        + 27 * l0**2
        + 17 * l0
        - 18 * k * l0**2
        - 18 * k * l0
        + 6 * k**2 * l0
    ) / 24.0
    se_k0 = max(0.0, 4.0 * math.sqrt(var_sr) / (2.0 * k - 1.0)) if var_sr >= 0 else math.nan
    if k0 > 0:
        mirrored = 2.0 * beta - ys[k - k0 :]  # on the (possibly flipped) sorted scale
        fill_y = -mirrored if side == "right" else mirrored
        fill_v = vs[k - k0 :]
        fit = fit_model(np.concatenate([y, fill_y]), np.concatenate([v, fill_v]), method=method, level=level)
    else:
        fill_y = fill_v = np.zeros(0)
        fit = fit_model(y, v, method=method, level=level)
    return TrimFillResult(
        k0=int(k0),
        side=side,
        se_k0=se_k0,
        estimate=float(fit.beta[0]),
        se=float(fit.se[0]),
        ci_lower=float(fit.ci_lower[0]),
        ci_upper=float(fit.ci_upper[0]),
        tau2=fit.tau2,
        filled_y=tuple(float(a) for a in fill_y),
        filled_v=tuple(float(a) for a in fill_v),
    )


# ------------------------------------------------------------------------------------------
# fail-safe N and leave-one-out
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailSafeN:
    """Rosenthal's fail-safe N with the p-value of Stouffer's combined z."""

    rosenthal: int
    p: float
    alpha: float = FSN_ALPHA

    def to_dict(self) -> dict[str, Any]:
        return {"rosenthal": self.rosenthal, "p": finite_or_none(self.p), "alpha": self.alpha}


def failsafe_n(y: Any, v: Any, *, alpha: float = FSN_ALPHA) -> FailSafeN:
    """Rosenthal's fail-safe N (metafor ``fsn(type = "Rosenthal")``):
    ``N = max(0, k (z_bar / z_{1-alpha})^2 - k)`` with ``z_bar = |sum(y_i / se_i)| / sqrt(k)``,
    rounded up (to the nearest integer when within sqrt(machine eps) of one, as metafor)."""
    y, v, _ = check_inputs(y, v)
    k = y.size
    z_avg = abs(float(np.sum(y / np.sqrt(v)))) / math.sqrt(k)
    p = float(stats.norm.sf(z_avg))
    n = max(0.0, k * (z_avg / float(stats.norm.isf(alpha))) ** 2 - k)
    n = round(n) if abs(n - round(n)) < math.sqrt(np.finfo(float).eps) else math.ceil(n)
    return FailSafeN(rosenthal=int(n), p=p, alpha=alpha)


@dataclass(frozen=True)
class LeaveOneOut:
    """The model refitted without one study."""

    study: str
    estimate: float
    se: float
    ci_lower: float
    ci_upper: float
    tau2: float
    q: float
    i2: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            **estimate_record(self.estimate, self.se, self.ci_lower, self.ci_upper),
            "tau2": finite_or_none(self.tau2),
            "q": finite_or_none(self.q),
            "i2": finite_or_none(self.i2),
        }


def leave_one_out(
    y: Any,
    v: Any,
    studies: Sequence[str] | None = None,
    *,
    method: str = "DL",
    knha: bool = False,
    level: float = DEFAULT_LEVEL,
) -> list[LeaveOneOut]:
    """metafor ``leave1out(fit)``: the pooled estimate without each study in turn (same
    estimator and test; a single remaining study is its own estimate with tau^2 = 0)."""
    y, v, _ = check_inputs(y, v)
    k = y.size
    if k < 2:
        raise InputError("leave-one-out needs at least 2 studies")
    names = list(studies) if studies is not None else [f"Study {i + 1}" for i in range(k)]
    if len(names) != k:
        raise InputError(f"{len(names)} study names for {k} studies")
    out = []
    for i in range(k):
        keep = np.arange(k) != i
        fit = fit_model(y[keep], v[keep], method=method, knha=knha, level=level)
        out.append(
            LeaveOneOut(
                study=str(names[i]),
                estimate=float(fit.beta[0]),
                se=float(fit.se[0]),
                ci_lower=float(fit.ci_lower[0]),
                ci_upper=float(fit.ci_upper[0]),
                tau2=fit.tau2,
                q=fit.q,
                i2=fit.i2,
            )
        )
    return out


# ------------------------------------------------------------------------------------------
# everything together
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BiasResult:
    """All diagnostics; a diagnostic that cannot be computed (too few studies, a degenerate
    regression) is ``None`` with the reason in ``notes``."""

    method: str
    k: int
    egger: EggerResult | None
    begg: BeggResult | None
    trimfill: TrimFillResult | None
    failsafe_n: FailSafeN
    leave_one_out: list[LeaveOneOut]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        nulls: dict[str, dict[str, Any]] = {
            "egger": dict.fromkeys(("z", "p", "limit_estimate", "limit_ci_lower", "limit_ci_upper")),
            "begg": dict.fromkeys(("tau", "p", "exact")),
            "trimfill": {
                **dict.fromkeys(
                    ("k0", "side", "se_k0", "estimate", "se", "ci_lower", "ci_upper", "hr",
                     "hr_ci_lower", "hr_ci_upper", "tau2")
                ),
                "filled": [],
            },
        }
        return {
            "method": self.method,
            "k": self.k,
            "egger": self.egger.to_dict() if self.egger else nulls["egger"],
            "begg": self.begg.to_dict() if self.begg else nulls["begg"],
            "trimfill": self.trimfill.to_dict() if self.trimfill else nulls["trimfill"],
            "failsafe_n": self.failsafe_n.to_dict(),
            "leave_one_out": [r.to_dict() for r in self.leave_one_out],
            "notes": list(self.notes),
        }


def bias_diagnostics(
    y: Any,
    v: Any,
    studies: Sequence[str] | None = None,
    *,
    method: str = "DL",
    level: float = DEFAULT_LEVEL,
) -> BiasResult:
    """Egger, Begg, trim and fill, Rosenthal's fail-safe N and leave-one-out on the ``method``
    random-effects fit (DL by default, as the usual metafor workflow ``rma(method = "DL")``)."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    y, v, _ = check_inputs(y, v)
    k = y.size
    notes: list[str] = []
    min_reg = 2 if method == "FE" else 3

    egger = None
    if k >= min_reg:
        try:
            egger = egger_test(y, v, method=method, level=level)
        except ModelError as exc:
            notes.append(f"Egger's test not available: {exc}")
    else:
        notes.append(f"Egger's test needs at least {min_reg} studies (k = {k})")

    begg = begg_test(y, v)
    if not math.isfinite(begg.tau):
        notes.append("Begg's test not available: no variation in the ranks")
        begg = None
    elif not begg.exact:
        notes.append("Begg's test: tied values, normal approximation used (as R's cor.test)")

    trimfill = None
    if k >= min_reg:
        try:
            trimfill = trim_and_fill(y, v, method=method, level=level)
        except ModelError as exc:
            notes.append(f"trim and fill not available: {exc}")
    else:
        notes.append(f"trim and fill needs at least {min_reg} studies (k = {k})")

    return BiasResult(
        method=method,
        k=k,
        egger=egger,
        begg=begg,
        trimfill=trimfill,
        failsafe_n=failsafe_n(y, v),
        leave_one_out=leave_one_out(y, v, studies, method=method, level=level),
        notes=tuple(notes),
    )


def bias_table(table: StudyTable, *, method: str = "DL", level: float = DEFAULT_LEVEL) -> BiasResult:
    """:func:`bias_diagnostics` on a :class:`~synthesis.studies.StudyTable`."""
    return bias_diagnostics(table.y, table.v, table.studies, method=method, level=level)
