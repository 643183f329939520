r"""Frequentist multilevel meta-analysis: several inputs per cluster (metafor's ``rma.mv``).

Row ``j`` of cluster ``i`` (a cohort, a trial) has

.. math::

    y_{ij} = x_{ij}^\top b + u_i + e_{ij} + \varepsilon_{ij}, \qquad
    u_i \sim N(0, \sigma^2_{between}), \quad e_{ij} \sim N(0, \sigma^2_{within}), \quad
    \varepsilon_i \sim N(0, V_i),

``V_i`` the known sampling covariance: ``v_ij`` on the diagonal, ``rho sqrt(v_ij v_ik)`` off it
(``rho = 0`` by default; metafor's ``vcalc(vi, cluster, obs, rho)``). This is
``rma.mv(yi, V, mods, random = ~ 1 | cluster/row)`` (Konstantopoulos 2011, Res Synth Methods
2(1):61-76, doi:10.1002/jrsm.35; Viechtbauer 2010, J Stat Softw 36(3), doi:10.18637/jss.v036.i03).

Estimation. With ``M`` the marginal covariance, ``A = X'M^{-1}X`` and
``RSS = y'M^{-1}y - y'M^{-1}X A^{-1} X'M^{-1}y``,

.. math::

    -2\ell_{ML} = k \log 2\pi + \log|M| + RSS, \qquad
    -2\ell_{REML} = (k - p) \log 2\pi - \log|X^\top X| + \log|M| + \log|A| + RSS,

(metafor's REML log-likelihood, including ``log|X'X|``). Both are minimised over
``(log sigma2_between, log sigma2_within)`` with L-BFGS-B; a component whose optimum lies on the
boundary 0 is then fixed at 0 and the other re-optimised, and the better of the two reported
(metafor reports such a component as a number below 1e-8). ``M`` is never formed: the
Woodbury identity cluster by cluster (:mod:`synthesis.models.multilevel`) costs O(k) per
evaluation. Then ``b = A^{-1} X'M^{-1} y``, ``Var(b) = A^{-1}``; z or t (``test="t"``: df =
k - p, as ``rma.mv(test = "t")``) tests and CIs; the Wald test ``QM`` of the moderators (of the
intercept when there are none; F = QM / m with ``test="t"``); the residual heterogeneity test
``Q_E = (y - X b_V)' V^{-1} (y - X b_V)`` on k - p df, ``b_V`` the fit with both variances 0;
the prediction interval of a new row in a new cluster ``b0 +/- crit sqrt(se^2 + sigma2_between +
sigma2_within)`` (intercept-only models).

Accuracy (tests/test_multilevel.py): against metafor 3.8-1 on dat.konstantopoulos2011,
dat.bornmann2007 and the bundled "all inputs" set (REML and ML, rho 0 and 0.5, with and
without a moderator, z and t), tests/reference/metafor_multilevel.json.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats

from synthesis.base import INTERVAL_PROB
from synthesis.datasets import DATASETS
from synthesis.errors import InputError
from synthesis.metaregression import Coefficient
from synthesis.models.multilevel import Clusters, Prepared, check_rho, cluster_labels, marginal_sums
from synthesis.pooling import estimate_record, exp_or_none, finite_or_none

#: The variance-component estimators of a multilevel fit.
MULTILEVEL_METHODS: tuple[str, ...] = ("REML", "ML")
#: Tests of the fixed effects: normal (``z``) or t with k - p df (``t``, rma.mv's test = "t").
TESTS: tuple[str, ...] = ("z", "t")
#: A variance component below this fraction of the mean sampling variance may be on the boundary:
#: the fit is repeated with it fixed at 0 and the better log-likelihood kept.
_BOUNDARY = 1e-3
#: ... and a re-optimised component below this fraction is reported as 0.
_ZERO = 1e-9
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class MultilevelResult:
    """A fitted two-level model: variance components, fixed effects and tests.

    ``coefficients`` are keyed ``intercept`` and by moderator name (log scale).
    """

    method: str
    test: str
    k: int
    p: int
    n_clusters: int
    cluster: str
    rho: float
    sigma2_between: float
    sigma2_within: float
    coefficients: dict[str, Coefficient]
    df: int | None
    qe: float
    qe_pvalue: float
    qm: float
    qm_pvalue: float
    qm_df: tuple[int, ...]
    loglik: float
    pi_lower: float
    pi_upper: float
    covariates: tuple[str, ...] = ()
    dropped: int = 0
    warnings: tuple[str, ...] = ()
    vcov: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)

    @property
    def intercept(self) -> Coefficient:
        return self.coefficients["intercept"]

    @property
    def tau2(self) -> float:
        """Total heterogeneity variance of one row: ``sigma2_between + sigma2_within``."""
        return self.sigma2_between + self.sigma2_within

    def to_json(self) -> dict[str, Any]:
        """The ``synthesis pool --cluster`` / ``metareg --cluster`` JSON record.

        Examples
        --------
        >>> rec = pool_multilevel(load_all_inputs(), "cohort").to_json()
        >>> rec["k"], rec["clusters"], round(rec["sigma2_between"], 4), round(rec["sigma2_within"], 4)
        (30, 19, 0.0175, 0.0189)
        """
        c = self.intercept
        out: dict[str, Any] = {
            "model": "multilevel",
            "method": self.method,
            "test": self.test,
            "hksj": self.test == "t",
            "k": self.k,
            "clusters": self.n_clusters,
            "cluster": self.cluster,
            "rho": self.rho,
        }
        if not self.covariates:
            out.update(estimate_record(c.estimate, c.se, c.ci_lower, c.ci_upper))
            out["statistic"] = finite_or_none(c.statistic)
            out["pvalue"] = finite_or_none(c.pvalue)
        out.update(
            {
                "sigma2_between": finite_or_none(self.sigma2_between),
                "sigma2_within": finite_or_none(self.sigma2_within),
                "tau2": finite_or_none(self.tau2),
                "tau": finite_or_none(math.sqrt(self.tau2)),
                "q": finite_or_none(self.qe),
                "q_pvalue": finite_or_none(self.qe_pvalue),
                "q_df": self.k - self.p,
                "qe": finite_or_none(self.qe),
                "qe_pvalue": finite_or_none(self.qe_pvalue),
                "qm": finite_or_none(self.qm),
                "qm_pvalue": finite_or_none(self.qm_pvalue),
                "qm_df": list(self.qm_df),
                "df": self.df,
                "loglik": finite_or_none(self.loglik),
            }
        )
        if not self.covariates:
            out.update(
                {
                    "pi_lower": finite_or_none(self.pi_lower),
                    "pi_upper": finite_or_none(self.pi_upper),
                    "pi_hr_lower": exp_or_none(self.pi_lower),
                    "pi_hr_upper": exp_or_none(self.pi_upper),
                }
            )
        else:
            out["covariates"] = list(self.covariates)
            out["dropped"] = self.dropped
        out["coefficients"] = {n: s.to_dict() for n, s in self.coefficients.items()}
        out["warnings"] = list(self.warnings)
        return out

    def to_frame(self):  # noqa: ANN201 (pandas is imported lazily)
        """One row per coefficient (log scale)."""
        import pandas as pd

        return pd.DataFrame.from_dict({n: c.to_dict() for n, c in self.coefficients.items()}, orient="index")

    def __str__(self) -> str:
        crit = "t" if self.test == "t" else "z"
        lines = [
            f"Multilevel model ({self.method}; rows in {self.n_clusters} clusters of {self.cluster!r}"
            + (f", within-cluster sampling correlation rho = {self.rho:g}" if self.rho else "")
            + f"), k = {self.k}",
            f"  sigma2_between = {self.sigma2_between:.4g} (tau {math.sqrt(self.sigma2_between):.3g}), "
            f"sigma2_within = {self.sigma2_within:.4g} (tau_within {math.sqrt(self.sigma2_within):.3g})",
            f"  Q_E = {self.qe:.2f} on {self.k - self.p} df, p = {self.qe_pvalue:.3g}",
        ]
        pct = round(100 * INTERVAL_PROB)
        for name, c in self.coefficients.items():
            lines.append(
                f"  {name:<20} {c.estimate: .4f} (SE {c.se:.4f}; {pct}% CI {c.ci_lower: .4f} to {c.ci_upper: .4f}); "
                f"{crit} = {c.statistic:.3f}, p = {c.pvalue:.3g}"
            )
        if not self.covariates:
            c = self.intercept
            lines.append(
                f"  HR {math.exp(c.estimate):.3f} ({pct}% CI {math.exp(c.ci_lower):.3f}-{math.exp(c.ci_upper):.3f}); "
                f"prediction interval {math.exp(self.pi_lower):.3f}-{math.exp(self.pi_upper):.3f}"
            )
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


class _Objective:
    """-2 log-likelihood (ML or REML) of the two variance components, O(k) per evaluation."""

    def __init__(self, y: np.ndarray, se: np.ndarray, X: np.ndarray, clusters: Clusters, method: str) -> None:
        self.k, self.p = X.shape
        self.prep = Prepared(clusters, se, np.column_stack([X, y]))
        self.reml = method == "REML"
        self.const = (self.k - self.p) * _LOG_2PI - np.linalg.slogdet(X.T @ X)[1] if self.reml else self.k * _LOG_2PI

    def parts(self, s2b: float, s2w: float, *, full: bool = False) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """(-2 loglik, b, A^{-1}) at the variance components (b and A^{-1} with ``full``)."""
        zmz, logdet = self.prep.marginal(np.array([s2b]), np.array([s2w]))
        p = self.p
        A, c, yy = zmz[0, :p, :p], zmz[0, :p, p], zmz[0, p, p]
        chol = np.linalg.cholesky(A)
        b = np.linalg.solve(A, c)
        rss = yy - c @ b
        value = self.const + logdet[0] + rss
        if self.reml:
            value += 2.0 * np.log(np.diag(chol)).sum()
        return float(value), b, (np.linalg.inv(A) if full else None)

    def values(self, s2b: np.ndarray, s2w: np.ndarray) -> np.ndarray:
        """-2 log-likelihood at many pairs at once (the optimiser's starting grid)."""
        zmz, logdet = marginal_sums(self.prep.clusters, self.prep.within(s2w), s2b)
        p = self.p
        A, c, yy = zmz[:, :p, :p], zmz[:, :p, p], zmz[:, p, p]
        b = np.linalg.solve(A, c[:, :, None])[:, :, 0]
        value = self.const + logdet + yy - np.einsum("gi,gi->g", c, b)
        if self.reml:
            value = value + np.linalg.slogdet(A)[1]
        return value

    def __call__(self, theta: np.ndarray) -> float:
        return self.parts(math.exp(theta[0]), math.exp(theta[1]))[0]


def _optimise(obj: _Objective, scale: float) -> tuple[float, float]:
    """The (RE)ML variance components (see the module docstring): the best node of a coarse
    log-spaced grid (one vectorised evaluation), then Newton's method in the log variances; a
    component near the boundary is fixed at 0 and the other re-optimised, and the better
    log-likelihood kept."""
    lo, hi = math.log(1e-12 * scale), math.log(1e4 * max(scale, 1.0))
    axis = scale * np.logspace(-4, 2, 9)
    B, W = np.repeat(axis, axis.size), np.tile(axis, axis.size)
    i = int(np.argmin(obj.values(B, W)))
    x = _newton(obj, np.log([B[i], W[i]]), lo, hi, math.log(_BOUNDARY * scale))
    s2b, s2w = (float(v) for v in np.exp(x))
    candidates = [(obj.parts(s2b, s2w)[0], s2b, s2w)]
    for fixed in (0, 1):
        if (s2b, s2w)[fixed] < _BOUNDARY * scale:
            t = _newton_1d(obj, fixed, float(x[1 - fixed]), lo, hi)
            pair = [0.0, 0.0]
            pair[1 - fixed] = 0.0 if t < math.log(_ZERO * scale) else math.exp(t)
            candidates.append((obj.parts(*pair)[0], pair[0], pair[1]))
    _, s2b, s2w = min(candidates)
    return s2b, s2w


def _newton_1d(obj: _Objective, fixed: int, t: float, lo: float, hi: float, max_iter: int = 100) -> float:
    """Newton's method in the log of one variance component with the other (``fixed``) at 0;
    derivatives from a 3-point stencil (one vectorised evaluation), steps at most 2 log-units,
    halved until the objective decreases."""
    h = 1e-4
    off = np.array([-h, 0.0, h])
    zero = np.zeros(3)
    for _ in range(max_iter):
        pts = np.exp(t + off)
        f = obj.values(zero, pts) if fixed == 0 else obj.values(pts, zero)
        g = (f[2] - f[0]) / (2 * h)
        curv = (f[2] - 2 * f[1] + f[0]) / h**2
        step = -g / curv if curv > 0 else -math.copysign(2.0, g)
        step = max(-2.0, min(2.0, step))
        for _ in range(40):
            new = min(max(t + step, lo), hi)
            pair = (0.0, math.exp(new)) if fixed == 0 else (math.exp(new), 0.0)
            if obj.parts(*pair)[0] <= f[1]:
                break
            step *= 0.5
        else:
            return t
        if abs(new - t) < 1e-9 or new <= lo:
            return new
        t = new
    return t


def _newton(
    obj: _Objective, x: np.ndarray, lo: float, hi: float, boundary: float, max_iter: int = 100
) -> np.ndarray:
    """Damped Newton's method in the log variances: gradient and Hessian by central differences
    on a 3 x 3 stencil (one vectorised evaluation per iteration), the Hessian shifted to be
    positive definite, steps at most 2 log-units, halved until the objective decreases. Stops
    early when a component is below ``boundary`` and still decreasing (its optimum is 0: the
    caller re-optimises the other with it fixed there)."""
    h = 1e-4
    off = np.array([-h, 0.0, h])
    for _ in range(max_iter):
        B, W = np.repeat(x[0] + off, 3), np.tile(x[1] + off, 3)
        f = obj.values(np.exp(B), np.exp(W)).reshape(3, 3)
        g = np.array([f[2, 1] - f[0, 1], f[1, 2] - f[1, 0]]) / (2 * h)
        if np.any((x < boundary) & (g > 0)):
            break
        cross = (f[2, 2] - f[2, 0] - f[0, 2] + f[0, 0]) / (4 * h * h)
        H = np.array([[(f[2, 1] - 2 * f[1, 1] + f[0, 1]) / h**2, cross],
                      [cross, (f[1, 2] - 2 * f[1, 1] + f[1, 0]) / h**2]])
        low = float(np.linalg.eigvalsh(H).min())
        if low <= 1e-8:
            H = H + (1e-8 - low + 1e-3 * max(abs(H[0, 0]), abs(H[1, 1]), 1.0)) * np.eye(2)
        step = -np.linalg.solve(H, g)
        norm = float(np.abs(step).max())
        if norm > 2.0:
            step *= 2.0 / norm
        f0 = float(f[1, 1])
        for _ in range(40):
            new = np.clip(x + step, lo, hi)
            value = float(obj(new))
            if value <= f0:
                break
            step *= 0.5
        else:
            return x
        moved = float(np.abs(new - x).max())
        x = new
        if moved < 1e-9:
            break
    return x


def fit_multilevel(
    y: Sequence[float] | np.ndarray,
    v: Sequence[float] | np.ndarray,
    clusters: Clusters,
    X: np.ndarray | None = None,
    *,
    names: Sequence[str] = ("intercept",),
    method: str = "REML",
    test: str = "z",
    cluster_name: str = "cluster",
) -> MultilevelResult:
    """Fit ``rma.mv(y, V, mods = X, random = ~ 1 | cluster/row)`` (see the module docstring).

    Parameters
    ----------
    y, v
        Effects and sampling variances (k each).
    clusters
        The cluster of each row and the within-cluster sampling correlation ``rho``
        (:class:`synthesis.models.multilevel.Clusters`).
    X
        (k, p) design matrix whose first column is the intercept (default: the intercept only).
    names
        One name per column of ``X``.
    method, test
        ``REML`` or ``ML``; ``z`` or ``t`` (df = k - p).

    Examples
    --------
    Two clusters of two rows each (the REML variance components of this toy problem, checked
    against metafor's rma.mv in tests/test_multilevel.py on real datasets):

    >>> c = Clusters.from_labels(["a", "a", "b", "b", "c", "c"])
    >>> r = fit_multilevel([0.1, 0.3, -0.2, 0.0, 0.5, 0.2], [0.01] * 6, c)
    >>> r.k, r.n_clusters, r.sigma2_between > 0, r.sigma2_within > 0
    (6, 3, True, True)
    """
    if method not in MULTILEVEL_METHODS:
        raise InputError(
            f"a multilevel model estimates its variances by {' or '.join(MULTILEVEL_METHODS)}, got {method!r}",
            parameter="method",
        )
    if test not in TESTS:
        raise InputError(f"test must be one of {', '.join(TESTS)}, got {test!r}", parameter="test")
    y = np.asarray(y, dtype=float)
    v = np.asarray(v, dtype=float)
    k = y.size
    X = np.ones((k, 1)) if X is None else np.asarray(X, dtype=float).reshape(k, -1)
    p = X.shape[1]
    if len(names) != p:
        raise InputError(f"{p} columns need {p} names, got {len(names)}")
    if clusters.k != k:
        raise InputError(f"{k} rows need {k} cluster labels, got {clusters.k}")
    sizes = clusters.sizes
    if k - p < 2:
        raise InputError(f"a multilevel model with {p} coefficient(s) needs at least {p + 2} rows, got {k}")
    if sizes.max() < 2:
        raise InputError(
            f"every {cluster_name} has one row: the within-cluster variance is not identifiable "
            f"(it is the between-study variance of an ordinary random-effects model); drop the cluster"
        )
    if clusters.n < 2:
        raise InputError(f"all rows are in one {cluster_name}: the between-cluster variance is not identifiable")
    if np.linalg.matrix_rank(X) < p:
        raise InputError("the moderators are collinear (the design matrix is not of full rank)")
    se = np.sqrt(v)
    obj = _Objective(y, se, X, clusters, method)
    scale = float(np.mean(v))
    s2b, s2w = _optimise(obj, scale)
    value, b, cov = obj.parts(s2b, s2w, full=True)
    se_b = np.sqrt(np.diag(cov))
    df = k - p if test == "t" else None
    crit = float(stats.t.ppf(0.5 + INTERVAL_PROB / 2, df) if df else stats.norm.ppf(0.5 + INTERVAL_PROB / 2))
    stat = b / se_b
    pval = 2.0 * (stats.t.sf(np.abs(stat), df) if df else stats.norm.sf(np.abs(stat)))
    coefficients = {
        name: Coefficient(float(b[j]), float(se_b[j]), float(b[j] - crit * se_b[j]), float(b[j] + crit * se_b[j]),
                          float(stat[j]), float(pval[j]))
        for j, name in enumerate(names)
    }
    # Q_E: residual heterogeneity against V alone
    zmz, _ = obj.prep.marginal(np.zeros(1), np.zeros(1))
    A, c, yy = zmz[0, :p, :p], zmz[0, :p, p], zmz[0, p, p]
    qe = float(yy - c @ np.linalg.solve(A, c))
    # QM: the moderators (or the intercept alone)
    idx = np.arange(1, p) if p > 1 else np.array([0])
    m = idx.size
    qm = float(b[idx] @ np.linalg.solve(cov[np.ix_(idx, idx)], b[idx]))
    if df:
        qm = qm / m
        qm_p = float(stats.f.sf(qm, m, df))
        qm_df: tuple[int, ...] = (m, df)
    else:
        qm_p = float(stats.chi2.sf(qm, m))
        qm_df = (m,)
    pi_half = crit * math.sqrt(se_b[0] ** 2 + s2b + s2w)
    warnings = []
    singles = int((sizes == 1).sum())
    if singles:
        warnings.append(
            f"{singles} of {clusters.n} clusters have one row (they inform sigma2_between + sigma2_within only)"
        )
    return MultilevelResult(
        method=method, test=test, k=k, p=p, n_clusters=clusters.n, cluster=cluster_name, rho=clusters.rho,
        sigma2_between=s2b, sigma2_within=s2w, coefficients=coefficients, df=df,
        qe=qe, qe_pvalue=float(stats.chi2.sf(qe, k - p)), qm=qm, qm_pvalue=qm_p, qm_df=qm_df,
        loglik=-0.5 * value, pi_lower=float(b[0] - pi_half), pi_upper=float(b[0] + pi_half),
        warnings=tuple(warnings), vcov=cov,
    )


#: The bundled "all inputs" analysis set (data/build_all_inputs.py): every row of the evidence
#: with a usable effect, clustered by ``cohort``.
ALL_INPUTS_DATASET = "dnmbc_lrt_all_inputs"
ALL_INPUTS_FILE = DATASETS[ALL_INPUTS_DATASET][0]
#: Its cluster column.
ALL_INPUTS_CLUSTER = "cohort"


def load_all_inputs(**kwargs: Any) -> Any:
    """The bundled "all inputs" set as a validated study table (keyword arguments as
    :func:`synthesis.studies.load_studies`); its row-sharing cohort warnings are expected.

    Examples
    --------
    >>> t = load_all_inputs()
    >>> t.k, int((t.frame["default_set"] == "true").sum())
    (30, 17)
    """
    from synthesis.datasets import load_dataset

    kwargs.setdefault("display_name", f"dnmbc_lrt all inputs (bundled {ALL_INPUTS_FILE})")
    return load_dataset(ALL_INPUTS_DATASET, **kwargs)


def pool_multilevel(
    table: Any,
    cluster: str,
    *,
    method: str = "REML",
    rho: float = 0.0,
    test: str = "z",
    covariates: Sequence[str] = (),
) -> MultilevelResult:
    """Pool a study table whose rows are grouped in clusters (``--cluster COLUMN``).

    With ``covariates`` a multilevel meta-regression (intercept + raw covariate values; rows
    missing a covariate are dropped and counted, as ``metareg`` does).

    Examples
    --------
    The bundled "all inputs" set (30 rows, 19 cohorts):

    >>> r = pool_multilevel(load_all_inputs(), "cohort")
    >>> round(math.exp(r.intercept.estimate), 3), r.n_clusters
    (0.703, 19)
    """
    check_rho(rho)
    labels = cluster_labels(table, cluster)
    y, v = table.y, table.v
    covariates = tuple(dict.fromkeys(covariates))
    cols = [np.ones(table.k)]
    keep = np.ones(table.k, dtype=bool)
    for name in covariates:
        x = table.covariate(name)
        keep &= ~np.isnan(x)
        cols.append(x)
    X = np.column_stack(cols)[keep]
    kept_labels = [lab for lab, k_ in zip(labels, keep, strict=True) if k_]
    clusters = Clusters.from_labels(kept_labels, rho=rho, name=cluster)
    result = fit_multilevel(y[keep], v[keep], clusters, X, names=("intercept", *covariates), method=method,
                            test=test, cluster_name=cluster)
    dropped = int((~keep).sum())
    warnings = list(result.warnings)
    if dropped:
        warnings.append(f"{dropped} row(s) missing a covariate were dropped")
    return replace(result, covariates=covariates, dropped=dropped, warnings=tuple(warnings))


# --------------------------------------------------------------------------------------------
# One row per cohort, or all inputs? (the report's comparison)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputsRow:
    """One way of using the evidence: its exact posterior HR of a randomised comparison."""

    key: str
    label: str
    k: int
    clusters: int | None
    rho: float | None
    hr_median: float
    hr_q025: float
    hr_q975: float
    p_below: dict[str, float]
    tau: float
    tau_within: float | None

    def to_record(self) -> dict[str, Any]:
        return {
            "key": self.key, "label": self.label, "k": self.k, "clusters": self.clusters, "rho": self.rho,
            "hr_median": self.hr_median, "hr_q025": self.hr_q025, "hr_q975": self.hr_q975,
            "p_hr_below": dict(self.p_below), "tau_median": self.tau, "tau_within_median": self.tau_within,
        }


@dataclass(frozen=True)
class InputsComparison:
    """"One row per cohort, or all inputs?": the same Bayesian model (exact engine, default
    priors) fitted to the one-row-per-cohort set, to all inputs as if independent (what Gera et
    al. 2020 did with 61 inputs from 42 studies) and to all inputs in the multilevel model
    (rows clustered by cohort; also with a within-cohort sampling correlation)."""

    model: str
    cluster: str
    thresholds: tuple[float, ...]
    rows: tuple[InputsRow, ...]
    source: str
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "cluster": self.cluster, "thresholds": list(self.thresholds),
            "source": self.source, "rows": [r.to_record() for r in self.rows], "notes": list(self.notes),
        }

    def to_frame(self):  # noqa: ANN201 (pandas is imported lazily)
        import pandas as pd

        records = []
        for r in self.rows:
            rec = r.to_record()
            below = rec.pop("p_hr_below")
            rec.update({f"p_hr_below_{t}": v for t, v in below.items()})
            records.append(rec)
        return pd.DataFrame.from_records(records)


#: The within-cohort sampling correlation of the comparison's sensitivity row (several arms
#: against one control, overlapping registry periods: metafor's vcalc default is 0.5 too).
COMPARISON_RHO = 0.5


def compare_inputs(
    default_table: Any,
    all_table: Any,
    *,
    cluster: str = ALL_INPUTS_CLUSTER,
    thresholds: Sequence[float] | None = None,
) -> InputsComparison:
    """Fit one model (the design-bias model when both tables hold randomised and
    non-randomised rows, else random effects; exact engine, default priors) four ways: one row
    per cohort (``default_table``), all inputs as independent, all inputs multilevel, and all
    inputs multilevel with a within-cluster sampling correlation of :data:`COMPARISON_RHO`.

    Examples
    --------
    >>> from synthesis.datasets import load_dataset
    >>> cmp = compare_inputs(load_dataset(), load_all_inputs(), thresholds=(0.8,))
    >>> [(r.key, r.k) for r in cmp.rows]
    [('per_cohort', 17), ('independent', 30), ('multilevel', 30), ('multilevel_rho', 30)]
    """
    from synthesis.base import DEFAULT_THRESHOLDS
    from synthesis.models.exact import fit_exact
    from synthesis.models.spec import ModelData, ModelSpec

    thresholds = tuple(thresholds or DEFAULT_THRESHOLDS)

    def both_designs(t: Any) -> bool:
        nr = np.asarray(t.nonrandomised, dtype=bool)
        return bool(t.has_design and nr.any() and not nr.all())

    model = "bias" if both_designs(default_table) and both_designs(all_table) else "re"
    base = ModelSpec(model)
    cases = [
        ("per_cohort", "One row per cohort (the default set)", default_table, base),
        ("independent", "All inputs, pooled as independent", all_table, base),
        ("multilevel", f"All inputs, multilevel (rows clustered by {cluster})", all_table, replace(base, cluster=cluster)),
        (
            "multilevel_rho",
            f"All inputs, multilevel, sampling correlation {COMPARISON_RHO:g} within a {cluster}",
            all_table,
            replace(base, cluster=cluster, rho=COMPARISON_RHO),
        ),
    ]
    rows = []
    for key, label, table, spec in cases:
        data = ModelData.from_table(table, spec)
        fit = fit_exact(data, spec, thresholds=thresholds, study_effects=False)
        tw = fit.parameters.get("tau_within")
        rows.append(
            InputsRow(
                key=key, label=label, k=data.k,
                clusters=len(set(data.clusters)) if spec.multilevel else None,
                rho=spec.rho if spec.multilevel else None,
                hr_median=fit.hr.median, hr_q025=fit.hr.q025, hr_q975=fit.hr.q975,
                p_below=dict(fit.p_hr_below), tau=fit.parameters["tau"].median,
                tau_within=tw.median if tw is not None else None,
            )
        )
    notes = (
        f"model: {'design-bias (additive)' if model == 'bias' else 'random effects'}, exact engine, default priors; "
        "in the multilevel rows tau is the SD between cohorts and tau_within the SD of rows within a cohort",
    )
    return InputsComparison(
        model=model, cluster=cluster, thresholds=thresholds, rows=tuple(rows),
        source=str(getattr(all_table, "source", "")), notes=notes,
    )


def compare_bundled_inputs(table: Any, *, thresholds: Sequence[float] | None = None) -> InputsComparison | None:
    """:func:`compare_inputs` of the bundled dataset with its "all inputs" set when ``table`` is
    the bundled dataset as curated, else ``None`` (a user's table has no "all inputs" set).

    Examples
    --------
    >>> from synthesis.datasets import load_dataset
    >>> compare_bundled_inputs(load_dataset(subset="rct")) is None
    True
    """
    from synthesis.reconcile import is_bundled_table

    if not is_bundled_table(table):
        return None
    return compare_inputs(table, load_all_inputs(), thresholds=thresholds)
