"""Small-study and publication-bias diagnostics, matching R's metafor.

* Egger's regression test (Egger et al. 1997) in metafor's ``regtest(model = "rma",
  predictor = "sei")`` form: the meta-regression ``y_i = b0 + b1 se_i + u_i + e_i`` fitted with
  the model's tau^2 estimator (DL by default); the test statistic is ``b1 / SE(b1)`` (z) and
  ``b0`` is the "limit estimate" at se = 0.
* Begg & Mazumdar's (1994) rank correlation test (metafor ``ranktest``): Kendall's tau between the
  standardised effects ``(y_i - mu_FE) / sqrt(v_i - 1 / sum(1/v))`` and the variances ``v_i``.
  As metafor (``exact = TRUE`` passed to R's ``cor.test``) the p-value is exact (the permutation
  distribution of Kendall's statistic) when there are no ties, otherwise the normal
  approximation with the tie-corrected variance and tau-b; tau by scipy's O(k log k)
  algorithm, and above ``KENDALL_EXACT_MAX_N`` studies the normal approximation (with a note).
* Trim and fill (Duval & Tweedie 2000a, 2000b; metafor ``trimfill``) with the L0 estimator: the
  side to fill is the left unless Egger's slope (same estimator) is negative; iterate
  ``L0 = (4 S_r - k (k + 1)) / (2k - 1)`` (``S_r`` the sum of the positive signed ranks of
  ``|y_i - mu|``, mu re-estimated on the trimmed data) until ``k0 = max(0, round(L0))`` is stable,
  then mirror the ``k0`` most extreme studies around the trimmed estimate (``2 mu - y_i``, same
  variance) and refit with all studies.
* Rosenthal's (1979) fail-safe N (metafor ``fsn(type = "Rosenthal")``, Stouffer's method):
  ``N = max(0, k (z_bar / z_{1-alpha})^2 - k)``, ``z_bar = |sum y_i / sqrt(v_i)| / sqrt(k)``,
  one-sided alpha = 0.05, rounded up to an integer.
* Leave-one-out (metafor ``leave1out``): the model refitted without each study in turn; for the
  closed-form estimators (FE, DL, HE, SJ) all k fits at once in O(k) by downdating sums, for the
  iterative ones (REML, ML, PM) by k refits, which :func:`bias_diagnostics` skips (with a note)
  above ``LOO_REFIT_MAX_K`` studies.

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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special, stats

from synthesis.errors import InputError, ModelError
from synthesis.models.display import html_block, html_table
from synthesis.pooling import (
    DEFAULT_LEVEL,
    METHODS,
    check_inputs,
    estimate_record,
    finite_or_none,
    fit_model,
    format_hr_ci,
    format_p_equals,
)
from synthesis.studies import StudyTable

if TYPE_CHECKING:
    import pandas as pd

FSN_ALPHA = 0.05
TRIMFILL_MAX_ITER = 100
#: Above this many untied studies Begg's p-value uses the normal approximation instead of the
#: exact permutation distribution (O(n^3) work; R computes it for any n).
KENDALL_EXACT_MAX_N = 500
#: Estimators whose leave-one-out fits are computed at once in O(k) (closed-form tau^2).
CLOSED_FORM_LOO: tuple[str, ...] = ("FE", "DL", "HE", "SJ")
#: Above this many studies leave-one-out is not computed for the iterative estimators (REML,
#: ML, PM): k refits of O(k) each.
LOO_REFIT_MAX_K = 2000
#: Chebyshev nodes per piece in :func:`_inverse_sums` (error < 5.8^-(n-1), below rounding).
_CHEB_NODES = 26
#: Largest (targets x studies) block summed directly in :func:`_inverse_sums`.
_DIRECT_SUM_CELLS = 4_000_000


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

    Examples
    --------
    >>> from synthesis.datasets import load_dataset
    >>> t = load_dataset("dnmbc_lrt")
    >>> e = egger_test(t.y, t.v)
    >>> round(e.z, 3), round(e.p, 4)
    (1.903, 0.0571)
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


def _tie_sizes(a: np.ndarray) -> np.ndarray:
    """Sizes (> 1) of the groups of equal values in ``a`` (O(n log n))."""
    counts = np.unique(a, return_counts=True)[1]
    return counts[counts > 1].astype(float)


def kendall_test(x: Any, y: Any) -> BeggResult:
    """Kendall's rank correlation with R's ``cor.test(method = "kendall", exact = TRUE)`` p-value.

    Parameters
    ----------
    x, y
        Paired samples of equal length n >= 2.

    Returns
    -------
    BeggResult
        tau-b (tau-a without ties) and the two-sided p-value: exact (the permutation
        distribution of the number of concordant pairs) when there are no ties and
        ``n <= KENDALL_EXACT_MAX_N``, otherwise the normal approximation ``z = S / sqrt(Var(S))``
        with the tie-corrected variance (no continuity correction), ``S`` = concordant minus
        discordant pairs.

    Notes
    -----
    tau comes from :func:`scipy.stats.kendalltau` (Knight's O(n log n) merge-sort algorithm),
    ``S = tau_b sqrt((n0 - t1)(n0 - t2))``; no n x n array is built. Above
    ``KENDALL_EXACT_MAX_N`` untied studies the exact distribution (O(n^3) work) is replaced by
    the normal approximation, which differs from it by less than 0.1% of the p-value there.

    Examples
    --------
    One discordant pair out of six: ``tau = (5 - 1) / 6``, exact p = 8/24 (R's ``cor.test``):

    >>> r = kendall_test([1, 2, 3, 4], [1, 3, 2, 4])
    >>> round(r.tau, 4), round(r.p, 4), r.exact
    (0.6667, 0.3333, True)
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = x.size
    if n < 2:
        raise InputError("Kendall's tau needs at least 2 studies")
    n0 = n * (n - 1) / 2
    tx, ty = _tie_sizes(x), _tie_sizes(y)
    ties = tx.size > 0 or ty.size > 0
    t1 = float(np.sum(tx * (tx - 1)) / 2)
    t2 = float(np.sum(ty * (ty - 1)) / 2)
    denom = math.sqrt((n0 - t1) * (n0 - t2))
    if denom == 0:
        return BeggResult(tau=math.nan, p=math.nan, exact=False)
    if n == 2:  # scipy's p-value divides by zero here
        tau = float(np.sign(x[1] - x[0]) * np.sign(y[1] - y[0])) / denom
    else:
        tau = float(stats.kendalltau(x, y, variant="b", method="asymptotic").statistic)
    s = tau * denom  # concordant - discordant
    if not ties and n <= KENDALL_EXACT_MAX_N:
        n_pairs = n * (n - 1) // 2
        q = round((s + n_pairs) / 2)  # concordant pairs; R: round((tau + 1) n (n - 1) / 4)
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
    ``(y_i - mu_FE) / sqrt(v_i - 1/sum(1/v))`` and ``v_i``.

    Examples
    --------
    >>> from synthesis.datasets import load_dataset
    >>> t = load_dataset("dnmbc_lrt")
    >>> r = begg_test(t.y, t.v)
    >>> round(r.tau, 4), round(r.p, 4)
    (0.1471, 0.4397)
    """
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
    trim_method: str | None = None,
) -> TrimFillResult:
    """Duval & Tweedie's trim and fill with the L0 estimator, as metafor ``trimfill(fit)``.

    ``side=None`` chooses as metafor: "right" when the slope of the Egger-type regression of
    ``y`` on ``sqrt(v)`` (same estimator) is negative, else "left" (the side where studies are
    presumed missing).

    Parameters
    ----------
    y, v
        Effects and sampling variances.
    method
        Estimator of the final fit of the observed and filled studies (the reported estimate).
    side
        ``"left"``, ``"right"`` or ``None`` (chosen as above).
    level
        CI level of the final fit.
    max_iter
        Most trimming iterations before :class:`~synthesis.errors.ModelError`.
    trim_method
        Estimator used to look for the missing studies: the side regression, the centre
        re-estimated on the trimmed data in each L0 iteration and the centre the filled studies
        mirror. ``None`` (default) uses ``method`` for everything, as metafor. ``"FE"`` with
        ``method="DL"`` is the common-effect search and random-effects fill of R's
        ``meta::trimfill`` (``ma.common = TRUE``, its default) and of Comprehensive
        Meta-Analysis (Duval & Tweedie 2000 trimmed with the fixed-effect centre).

    Examples
    --------
    >>> import math
    >>> from synthesis.datasets import load_dataset
    >>> t = load_dataset("dnmbc_lrt")
    >>> r = trim_and_fill(t.y, t.v)
    >>> r.k0, r.side, round(math.exp(r.estimate), 3)
    (1, 'left', 0.676)

    Gera 2020's prospective pool (Badwe, Soran, POSYTIVE as printed; SE from the lower half of
    each CI): DL finds nothing to fill, the fixed-effect search fills two studies on the right:

    >>> import numpy as np
    >>> y = np.log([1.04, 0.66, 0.691])
    >>> se = (y - np.log([0.81, 0.49, 0.358])) / 1.959963984540054
    >>> trim_and_fill(y, se**2).k0, trim_and_fill(y, se**2, trim_method="FE").k0
    (0, 2)
    """
    y, v, _ = check_inputs(y, v)
    k = y.size
    if k < 2:
        raise InputError("trim and fill needs at least 2 studies")
    if trim_method is None:
        trim_method = method
    elif trim_method not in METHODS:
        raise InputError(f"unknown trim_method {trim_method!r}; choose one of {', '.join(METHODS)}")
    if side is None:
        X = np.column_stack([np.ones(k), np.sqrt(v)])
        slope = fit_model(y, v, X, method=trim_method, level=level).beta[1]
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
        beta = float(fit_model(ys[: k - k0], vs[: k - k0], method=trim_method, level=level).beta[0])
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
    rounded up (to the nearest integer when within sqrt(machine eps) of one, as metafor).

    Examples
    --------
    >>> from synthesis.datasets import load_dataset
    >>> t = load_dataset("dnmbc_lrt")
    >>> failsafe_n(t.y, t.v).rosenthal
    1966
    """
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
    """metafor ``leave1out(fit)``: the pooled estimate without each study in turn.

    Parameters
    ----------
    y, v
        Effects and sampling variances of k >= 2 studies.
    studies
        Study labels (default ``Study 1`` ...).
    method, knha, level
        Estimator, Knapp-Hartung adjustment and CI level of the refits.

    Returns
    -------
    list of LeaveOneOut
        One record per left-out study, in input order (a single remaining study is its own
        estimate with tau^2 = 0).

    Notes
    -----
    For the closed-form estimators (:data:`CLOSED_FORM_LOO`: FE, DL, HE, SJ) and k >= 3 the k
    refits are done at once in O(k) (see :func:`_leave_one_out_closed_form`); the iterative
    estimators (REML, ML, PM) refit k times, which :func:`bias_diagnostics` limits to
    ``LOO_REFIT_MAX_K`` studies.

    Examples
    --------
    Three studies with equal variances under a common effect: leaving out the first (log HR 0)
    leaves the mean of 2 and 1.

    >>> loo = leave_one_out([0.0, 2.0, 1.0], [0.5, 0.5, 0.5], method="FE")
    >>> [(r.study, r.estimate, r.se) for r in loo]
    [('Study 1', 1.5, 0.5), ('Study 2', 0.5, 0.5), ('Study 3', 1.0, 0.5)]
    """
    y, v, _ = check_inputs(y, v)
    k = y.size
    if k < 2:
        raise InputError("leave-one-out needs at least 2 studies")
    names = list(studies) if studies is not None else [f"Study {i + 1}" for i in range(k)]
    if len(names) != k:
        raise InputError(f"{len(names)} study names for {k} studies")
    if method in CLOSED_FORM_LOO and k >= 3:
        cols = _leave_one_out_closed_form(y, v, method=method, knha=knha, level=level)
        return [
            LeaveOneOut(str(names[i]), *(float(c[i]) for c in cols)) for i in range(k)
        ]
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


def _inverse_sums(t: np.ndarray, v: np.ndarray, numerators: np.ndarray) -> np.ndarray:
    """``S[i, c] = sum_j numerators[c, j] / (v_j + t_i)`` for every ``t_i >= 0`` in O(k m).

    Few distinct ``t`` (or small k): directly, in row blocks. Otherwise ``S(t)`` is interpolated
    in t: the range of t is cut into pieces ``[a, b]`` with ``b - a <= a + min(v)`` and on each
    piece every term ``1 / (v_j + t)`` (a pole at ``-v_j``, at least ``a + min(v)`` away) is
    analytic, so the degree-``_CHEB_NODES - 1`` Chebyshev interpolant of the sum, evaluated in
    barycentric form, is exact to rounding (error below ``5.8^-(_CHEB_NODES - 1)`` relative).
    """
    uniq, inverse = np.unique(t, return_inverse=True)
    if uniq.size * v.size <= _DIRECT_SUM_CELLS or uniq.size <= _CHEB_NODES:
        return _direct_sums(uniq, v, numerators)[inverse]
    v_min = float(v.min())
    out = np.empty((uniq.size, numerators.shape[0]))
    lo = float(uniq[0])
    j = np.arange(_CHEB_NODES)
    bary = np.where(j % 2 == 0, 1.0, -1.0)
    bary[[0, -1]] *= 0.5
    while lo <= uniq[-1]:
        hi = min(float(uniq[-1]), 2.0 * lo + v_min)
        sel = (uniq >= lo) & (uniq <= hi)
        if hi > lo:
            nodes = 0.5 * (lo + hi) + 0.5 * (hi - lo) * np.cos(np.pi * j / (_CHEB_NODES - 1))
            at_nodes = _direct_sums(nodes, v, numerators)
            diff = uniq[sel][:, None] - nodes[None, :]
            exact = diff == 0.0
            with np.errstate(divide="ignore", invalid="ignore"):
                c = bary / diff
                vals = (c @ at_nodes) / c.sum(axis=1)[:, None]
            hit = exact.any(axis=1)
            vals[hit] = at_nodes[np.argmax(exact[hit], axis=1)]
            out[sel] = vals
        else:
            out[sel] = _direct_sums(np.array([lo]), v, numerators)
        if hi >= uniq[-1]:
            break
        lo = float(uniq[uniq > hi][0]) if hi < uniq[-1] else hi
    return out[inverse]


def _direct_sums(t: np.ndarray, v: np.ndarray, numerators: np.ndarray) -> np.ndarray:
    """``sum_j numerators[c, j] / (v_j + t_i)`` by blocks of rows (bounded memory)."""
    out = np.empty((t.size, numerators.shape[0]))
    step = max(1, _DIRECT_SUM_CELLS // max(v.size, 1) // 8)
    for start in range(0, t.size, step):
        w = 1.0 / (v[None, :] + t[start : start + step, None])
        out[start : start + step] = w @ numerators.T
    return out


def _leave_one_out_closed_form(
    y: np.ndarray, v: np.ndarray, *, method: str, knha: bool, level: float
) -> tuple[np.ndarray, ...]:
    """Leave-one-out for FE, DL, HE and SJ (k >= 3) without refitting: every sum over the other
    k - 1 studies is the full sum minus the left-out term (effects centred first, so no
    cancellation), and the random-effects sums ``sum 1/(v_j + tau_i^2)`` etc. at each study's
    own tau_i^2 come from :func:`_inverse_sums`. Returns the columns estimate, se, ci_lower,
    ci_upper, tau2, q, i2 of :class:`LeaveOneOut`, the same formulas as
    :func:`synthesis.pooling.fit_model` on k - 1 studies."""
    k = y.size
    m = k - 1  # studies in each fit
    df = m - 1
    w0 = 1.0 / v
    centre = float(np.dot(w0, y) / w0.sum())
    yc = y - centre
    # common-effect (tau^2 = 0) sums without study i: Q, tr(P0)
    a0 = w0.sum() - w0
    b0 = np.dot(w0, yc) - w0 * yc
    c0 = np.dot(w0, yc * yc) - w0 * yc * yc
    a02 = np.dot(w0, w0) - w0 * w0
    q = np.maximum(0.0, c0 - b0 * b0 / a0)
    tr_p0 = a0 - a02 / a0
    if method == "FE":
        tau2 = np.zeros(k)
    elif method == "DL":
        tau2 = np.maximum(0.0, (q - df) / tr_p0)
    else:  # HE and SJ start from the OLS residual sum of squares of the other studies
        s1 = yc.sum() - yc
        rss = np.maximum(0.0, (np.dot(yc, yc) - yc * yc) - s1 * s1 / m)
        if method == "HE":
            tau2 = np.maximum(0.0, (rss - (v.sum() - v) * df / m) / df)
        else:  # SJ: tau0^2 = mean squared deviation, one step with Q at tau0^2
            tau0 = rss / m
            s = _inverse_sums(tau0, v, np.vstack([np.ones(k), yc, yc * yc]))
            wi = 1.0 / (v + tau0)
            a, b, c = s[:, 0] - wi, s[:, 1] - wi * yc, s[:, 2] - wi * yc * yc
            tau2 = np.maximum(0.0, tau0 * np.maximum(0.0, c - b * b / a) / df)
    if method == "FE":
        a, b, c = a0, b0, c0
    else:
        s = _inverse_sums(tau2, v, np.vstack([np.ones(k), yc, yc * yc]))
        wi = 1.0 / (v + tau2)
        a, b, c = s[:, 0] - wi, s[:, 1] - wi * yc, s[:, 2] - wi * yc * yc
    est_c = b / a
    var = 1.0 / a
    alpha = 1.0 - level
    if knha:
        rss_w = np.maximum(0.0, c - b * b / a)
        var = var * np.where(rss_w <= np.finfo(float).eps, 0.0, rss_w / df)
        crit = float(-special.stdtrit(df, alpha / 2))
    else:
        crit = float(-special.ndtri(alpha / 2))
    se = np.sqrt(var)
    est = est_c + centre
    if method == "FE":
        with np.errstate(divide="ignore", invalid="ignore"):
            i2 = np.where(q > 0, np.maximum(0.0, 100.0 * (q - df) / q), 0.0)
    else:
        typical_v = df / tr_p0
        i2 = 100.0 * tau2 / (typical_v + tau2)
    return est, se, est - crit * se, est + crit * se, tau2, q, i2


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
    #: The table the studies came from (set by :func:`bias_table`; drawn by :meth:`plot_funnel`).
    source: str = ""
    table: StudyTable | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        """The diagnostics as ``synthesis bias`` prints them.

        Examples
        --------
        >>> import synthesis as syn
        >>> print(syn.bias_diagnostics(syn.load_dataset("dnmbc_lrt")))  # doctest: +ELLIPSIS
        dnmbc_lrt (bundled dnmbc_lrt.csv): small-study / publication-bias diagnostics on the DL fit, k = 17
          Egger's regression test: z = ...
        """
        prefix = f"{self.source}: " if self.source else ""
        lines = [f"{prefix}small-study / publication-bias diagnostics on the {self.method} fit, k = {self.k}"]
        if self.egger is not None:
            e = self.egger
            lines.append(
                f"  Egger's regression test: z = {e.z:.3f}, {format_p_equals(e.p)} "
                f"(limit estimate HR {format_hr_ci(e.limit_estimate, e.limit_ci_lower, e.limit_ci_upper)})"
            )
        if self.begg is not None:
            b = self.begg
            lines.append(
                f"  Begg & Mazumdar rank correlation: Kendall's tau = {b.tau:.3f}, {format_p_equals(b.p)} "
                f"({'exact' if b.exact else 'normal approximation'})"
            )
        if self.trimfill is not None:
            t = self.trimfill
            lines.append(
                f"  Trim and fill (L0): {t.k0} {'study' if t.k0 == 1 else 'studies'} filled on the {t.side}; "
                f"HR {format_hr_ci(t.estimate, t.ci_lower, t.ci_upper)}"
            )
        lines.append(
            f"  Rosenthal's fail-safe N: {self.failsafe_n.rosenthal} "
            f"(alpha = {self.failsafe_n.alpha:g}, combined {format_p_equals(self.failsafe_n.p)})"
        )
        if self.leave_one_out:
            lines.append("  Leave-one-out (HR, 95% CI, tau^2):")
        width = max((len(r.study) for r in self.leave_one_out), default=0)
        for r in self.leave_one_out:
            lines.append(f"    without {r.study:<{width}}  {format_hr_ci(r.estimate, r.ci_lower, r.ci_upper)}  {r.tau2:.4g}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = []
        if self.egger is not None:
            e = self.egger
            rows.append(["Egger's regression test", f"z = {e.z:.3f}", format_p_equals(e.p)])
        if self.begg is not None:
            rows.append(["Begg & Mazumdar rank correlation", f"Kendall's tau = {self.begg.tau:.3f}",
                         format_p_equals(self.begg.p)])
        if self.trimfill is not None:
            t = self.trimfill
            rows.append([f"Trim and fill ({t.k0} filled on the {t.side})",
                         f"HR {format_hr_ci(t.estimate, t.ci_lower, t.ci_upper)}", ""])
        rows.append(["Rosenthal's fail-safe N", str(self.failsafe_n.rosenthal), format_p_equals(self.failsafe_n.p)])
        parts = [html_table(["diagnostic", "value", "p"], rows)]
        if self.leave_one_out:
            parts.append(html_table(
                ["without", "HR (95% CI)", "tau^2"],
                [[r.study, format_hr_ci(r.estimate, r.ci_lower, r.ci_upper), f"{r.tau2:.4g}"] for r in self.leave_one_out],
                caption="Leave-one-out",
            ))
        title = f"Small-study / publication-bias diagnostics ({self.method}); k = {self.k}" + (
            f" ({self.source})" if self.source else "")
        return html_block(title, parts, self.notes)

    def to_json(self) -> dict[str, Any]:
        """The ``synthesis bias --json`` document (:meth:`to_dict`)."""
        return self.to_dict()

    def to_frame(self) -> pd.DataFrame:
        """The leave-one-out table: one row per omitted study.

        Examples
        --------
        >>> import synthesis as syn
        >>> syn.bias_diagnostics(syn.load_dataset("dnmbc_lrt")).to_frame().shape[0]
        17
        """
        import pandas as pd

        return pd.DataFrame.from_records([r.to_dict() for r in self.leave_one_out])

    def plot_funnel(self, *, ax: Any = None, **kwargs: Any) -> Any:
        """Funnel plot of the studies, centred on the pooled estimate of this fit's method, with
        the studies trim and fill added (:func:`synthesis.plots.plot_funnel`).

        Examples
        --------
        >>> import synthesis as syn
        >>> fig = syn.bias_diagnostics(syn.load_dataset("dnmbc_lrt")).plot_funnel()
        >>> type(fig).__name__
        'Figure'
        """
        from synthesis.plots import plot_funnel
        from synthesis.pooling import pool

        if self.table is None:
            raise ValueError("this result holds no study table; compute it with synthesis.bias_diagnostics(table)")
        if ax is not None:
            kwargs["ax"] = ax
        pooled = pool(self.table.y, self.table.v, method=self.method)
        return plot_funnel(self.table, pooled=pooled, trimfill=self.trimfill, **kwargs)

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
    random-effects fit (DL by default, as the usual metafor workflow ``rma(method = "DL")``).

    Examples
    --------
    >>> from synthesis.datasets import load_dataset
    >>> t = load_dataset("dnmbc_lrt")
    >>> r = bias_diagnostics(t.y, t.v, t.studies)
    >>> r.k, round(r.egger.p, 4), r.trimfill.k0, r.failsafe_n.rosenthal, len(r.leave_one_out)
    (17, 0.0571, 1, 1966, 17)
    """
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
        if k > KENDALL_EXACT_MAX_N:
            notes.append(
                f"Begg's test: normal approximation used (k = {k} > {KENDALL_EXACT_MAX_N}; "
                "R's cor.test would compute the exact distribution)"
            )
        else:
            notes.append("Begg's test: tied values, normal approximation used (as R's cor.test)")

    trimfill = None
    if k >= min_reg:
        try:
            trimfill = trim_and_fill(y, v, method=method, level=level)
        except ModelError as exc:
            notes.append(f"trim and fill not available: {exc}")
    else:
        notes.append(f"trim and fill needs at least {min_reg} studies (k = {k})")

    loo: list[LeaveOneOut] = []
    if method in CLOSED_FORM_LOO or k <= LOO_REFIT_MAX_K:
        loo = leave_one_out(y, v, studies, method=method, level=level)
    else:
        notes.append(
            f"leave-one-out not computed: {method} would refit k = {k} times (more than "
            f"{LOO_REFIT_MAX_K} studies); --method {' or '.join(CLOSED_FORM_LOO[:2])} gives it in O(k)"
        )

    return BiasResult(
        method=method,
        k=k,
        egger=egger,
        begg=begg,
        trimfill=trimfill,
        failsafe_n=failsafe_n(y, v),
        leave_one_out=loo,
        notes=tuple(notes),
    )


def bias_table(table: StudyTable, *, method: str = "DL", level: float = DEFAULT_LEVEL) -> BiasResult:
    """:func:`bias_diagnostics` on a :class:`~synthesis.studies.StudyTable`.

    Examples
    --------
    >>> from synthesis.datasets import load_dataset
    >>> r = bias_table(load_dataset("dnmbc_lrt"))
    >>> r.source, r.k, r.leave_one_out[0].study
    ('dnmbc_lrt (bundled dnmbc_lrt.csv)', 17, 'Badwe 2015 (TATA)')
    """
    result = bias_diagnostics(table.y, table.v, table.studies, method=method, level=level)
    return replace(result, source=table.source, table=table)
