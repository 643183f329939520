"""Common-effect and random-effects pooling of log hazard ratios, matching R's metafor.

The model is the (mixed-effects) meta-analytic model of metafor's ``rma.uni``::

    y_i = x_i' beta + u_i + e_i,    u_i ~ N(0, tau^2),    e_i ~ N(0, v_i),

with known sampling variances ``v_i``. Pooling is the intercept-only case (``X`` a column of
ones); :mod:`synthesis.metaregression` adds covariates through the same engine.

Notation used in the docstrings: ``W = diag(w)`` with ``w_i = 1 / (v_i + tau^2)``,
``P = W - W X (X'WX)^-1 X'W`` (so that ``y'Py`` is the weighted residual sum of squares, the
generalised Q statistic), ``P0`` is ``P`` at ``tau^2 = 0`` and ``p`` is the number of columns of
``X``.

Estimators of tau^2 (``method``):

* ``FE`` common (fixed) effect: tau^2 = 0.
* ``DL`` DerSimonian & Laird (1986): ``tau^2 = (Q - (k - p)) / tr(P0)``, ``Q = y'P0 y``.
* ``HE`` Hedges (1983), the method of moments on the OLS fit:
  ``tau^2 = (RSS_OLS - tr(P_OLS V)) / (k - p)`` with ``P_OLS = I - X (X'X)^-1 X'``.
* ``SJ`` Sidik & Jonkman (2005): ``tau0^2 = mean((y - mean(y))^2)``, then one step
  ``tau^2 = tau0^2 y'P(tau0^2) y / (k - p)`` (metafor's ``"SJ"``, not the iterated ``"SJIT"``).
* ``PM`` Paule & Mandel (1982): the root of ``y'P(tau^2) y = k - p`` (0 when ``Q < k - p``).
* ``ML`` and ``REML`` (Viechtbauer 2005): the root of the likelihood score
  ``ML: y'PPy - tr(W) = 0``, ``REML: y'PPy - tr(P) = 0`` reached from the HE estimate like
  metafor's Fisher scoring (``tau^2 += score / tr(W^2)`` resp. ``/ tr(PP)``) but with
  safeguarded Newton steps (observed information ``2 y'PPPy - tr(W^2)`` resp. ``- tr(PP)``,
  kept inside the bracket the score signs establish), tau^2 = 0 when the score is negative at
  the boundary, and metafor's check that the likelihood at tau^2 = 0 is not higher; if the
  iteration does not converge a bracketed root search (Brent) of the score takes over.

All estimates are truncated at 0. Inference (metafor's ``test="z"`` or ``test="knha"``):

* z: ``Var(beta) = (X'WX)^-1``, normal quantiles.
* Hartung & Knapp (2001) / Sidik & Jonkman (HKSJ, ``knha``): ``Var(beta)`` multiplied by
  ``s^2 = y'Py / (k - p)`` (not truncated at 1) and t quantiles with ``k - p`` df.

Heterogeneity: ``Q = y'P0 y`` on ``k - p`` df; for random-effects models
``I^2 = 100 tau^2 / (tau^2 + s^2_typ)`` and ``H^2 = 1 + tau^2 / s^2_typ`` with the typical
within-study variance ``s^2_typ = (k - p) / tr(P0)`` (Higgins & Thompson 2002, metafor's
definition); for the FE model ``I^2 = max(0, 100 (Q - (k - p)) / Q)`` and ``H^2 = Q / (k - p)``.

Prediction interval as metafor's ``predict()``: ``mu +/- c sqrt(SE(mu)^2 + tau^2)`` where ``c`` is
the same quantile as for the CI: normal for z, t with ``k - p`` df for ``knha`` (and ``SE(mu)``
is then the Knapp-Hartung SE). For the FE model tau^2 = 0 and the interval equals the CI
(metafor prints none).

Confidence interval for tau^2: the Q-profile method (Viechtbauer 2007), metafor's ``confint()``
default for every estimator: the bounds solve ``y'P(tau^2) y = chi^2_{k-p; 1-a/2}`` (lower) and
``= chi^2_{k-p; a/2}`` (upper), truncated at 0, searched on ``[0, max(100, 10 tau^2)]`` like
metafor (a bound beyond that range is reported as the range end, as metafor does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import optimize, special

from synthesis.errors import InputError, ModelError
from synthesis.models.display import html_block, html_table

if TYPE_CHECKING:
    import pandas as pd

    from synthesis.studies import StudyTable

METHODS: tuple[str, ...] = ("FE", "DL", "REML", "ML", "PM", "HE", "SJ")
RANDOM_METHODS: tuple[str, ...] = METHODS[1:]
DEFAULT_LEVEL = 0.95
#: Fisher scoring stops when a step changes tau^2 by less than this times (tau^2 + min(v)).
SCORING_TOL = 1e-10
SCORING_MAX_ITER = 500
#: metafor's ``tol`` (``.Machine$double.eps^0.25``) used by its ``ll0check``.
_LL0_TOL = np.finfo(float).eps ** 0.25
#: metafor's ``evtol``: an eigenvalue of X'X at or below this means a rank-deficient model.
_EVTOL = 1e-7
_ROOT_XTOL = 1e-13
_TAU2_CAP = 1e12


# ------------------------------------------------------------------------------------------
# input checks and weighted least squares
# ------------------------------------------------------------------------------------------


def check_inputs(
    y: Any, v: Any, X: Any | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate effects ``y``, sampling variances ``v`` and a model matrix ``X``.

    Returns float arrays; ``X`` defaults to a column of ones. Raises
    :class:`~synthesis.errors.InputError` for empty, non-finite or non-positive input and
    :class:`~synthesis.errors.ModelError` for a rank-deficient ``X`` (metafor's ``evtol`` check).

    Examples
    --------
    >>> y, v, X = check_inputs([0.1, 0.2], [0.01, 0.02])
    >>> y, X.ravel()
    (array([0.1, 0.2]), array([1., 1.]))
    >>> check_inputs([0.1], [0.0])
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: sampling variances (se^2) must be finite and > 0
    """
    y = np.asarray(y, dtype=float).reshape(-1)
    v = np.asarray(v, dtype=float).reshape(-1)
    if y.size == 0:
        raise InputError("no studies to pool")
    if v.shape != y.shape:
        raise InputError(f"{y.size} effects but {v.size} sampling variances")
    if not np.all(np.isfinite(y)):
        raise InputError("effects must be finite numbers")
    if not (np.all(np.isfinite(v)) and np.all(v > 0)):
        raise InputError("sampling variances (se^2) must be finite and > 0")
    if X is None:
        X = np.ones((y.size, 1))
    else:
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        if X.shape[0] != y.size:
            raise InputError(f"model matrix has {X.shape[0]} rows for {y.size} studies")
        if not np.all(np.isfinite(X)):
            raise InputError("covariates must be finite numbers")
        if X.shape[1] > y.size:
            raise ModelError(
                f"{X.shape[1]} coefficients cannot be estimated from {y.size} studies"
            )
        if np.linalg.eigvalsh(X.T @ X).min() <= _EVTOL:
            raise ModelError(
                "model matrix is not of full rank (a covariate is constant or collinear with "
                "the others); cannot fit the model"
            )
    return y, v, X


class _WLS:
    """Weighted least squares pieces for one weight vector (``p = 1`` uses scalar formulas)."""

    __slots__ = ("ainv", "beta", "resid", "w", "xw", "_a", "_xw1")

    def __init__(self, y: np.ndarray, X: np.ndarray, w: np.ndarray) -> None:
        self.w = w
        if X.shape[1] == 1:
            x = X[:, 0]
            xw1 = w * x
            a = float(xw1 @ x)
            b = float(xw1 @ y) / a
            self._a, self._xw1 = a, xw1
            self.ainv = np.array([[1.0 / a]])
            self.beta = np.array([b])
            self.resid = y - b * x
            self.xw = xw1[:, None]
        else:
            self._a, self._xw1 = math.nan, None
            xw = X * w[:, None]
            self.xw = xw
            self.ainv = np.linalg.inv(X.T @ xw)
            self.beta = self.ainv @ (xw.T @ y)
            self.resid = y - X @ self.beta

    @property
    def rss(self) -> float:
        """``y'Py = sum w (y - X beta)^2``."""
        return float(self.w @ (self.resid * self.resid))

    @property
    def py(self) -> np.ndarray:
        """``P y = W (y - X beta)``."""
        return self.w * self.resid

    def apply_p(self, u: np.ndarray) -> np.ndarray:
        """``P u = W u - W X (X'WX)^-1 X'W u``."""
        if self._xw1 is not None:
            return self.w * u - self._xw1 * (float(self._xw1 @ u) / self._a)
        return self.w * u - self.xw @ (self.ainv @ (self.xw.T @ u))

    def tr_p(self) -> float:
        """``tr(P) = sum w - tr((X'WX)^-1 X'W^2 X)``."""
        if self._xw1 is not None:
            return float(self.w.sum() - (self._xw1 @ self._xw1) / self._a)
        return float(self.w.sum() - np.sum(self.ainv * (self.xw.T @ self.xw)))

    def tr_p_and_pp(self) -> tuple[float, float]:
        """``tr(P)`` and ``tr(PP) = sum w^2 - 2 tr(A X'W^3X) + tr((A X'W^2X)^2)``."""
        w = self.w
        if self._xw1 is not None:
            xw1, a = self._xw1, self._a
            b2 = float(xw1 @ xw1) / a
            b3 = float(xw1 @ (w * xw1)) / a
            return float(w.sum() - b2), float(w @ w - 2.0 * b3 + b2 * b2)
        b2 = self.xw.T @ self.xw
        b3 = self.xw.T @ (self.xw * w[:, None])
        ab2 = self.ainv @ b2
        tr_p = float(w.sum() - np.trace(ab2))
        tr_pp = float(w @ w - 2.0 * np.sum(self.ainv * b3) + np.sum(ab2 * ab2.T))
        return tr_p, tr_pp


def _wls(y: np.ndarray, X: np.ndarray, w: np.ndarray) -> _WLS:
    return _WLS(y, X, w)


def generalised_q(tau2: float, y: np.ndarray, v: np.ndarray, X: np.ndarray) -> float:
    """The generalised Q statistic ``y'P(tau^2) y = sum w_i (y_i - x_i' beta_w)^2``,
    ``w_i = 1 / (v_i + tau^2)`` (DerSimonian & Kacker 2007); ``Q`` itself at ``tau^2 = 0``.

    Examples
    --------
    Two studies with effects 0 and 2 and variances 0.5: ``Q = 2 (0 - 1)^2 + 2 (2 - 1)^2 = 4``;
    at ``tau^2 = 1.5`` the weights are 0.5 and the statistic falls to ``k - 1 = 1``.

    >>> import numpy as np
    >>> y, v, X = np.array([0.0, 2.0]), np.array([0.5, 0.5]), np.ones((2, 1))
    >>> generalised_q(0.0, y, v, X), generalised_q(1.5, y, v, X)
    (4.0, 1.0)
    """
    return _wls(y, X, 1.0 / (v + tau2)).rss


# ------------------------------------------------------------------------------------------
# tau^2 estimators
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tau2Estimate:
    """A tau^2 estimate with the number of iterations its algorithm used (0 = closed form)."""

    tau2: float
    iterations: int = 0
    note: str | None = None


def _tau2_dl(y: np.ndarray, v: np.ndarray, X: np.ndarray) -> float:
    k, p = X.shape
    fe = _wls(y, X, 1.0 / v)
    return (fe.rss - (k - p)) / fe.tr_p()


def _tau2_he(y: np.ndarray, v: np.ndarray, X: np.ndarray) -> float:
    k, p = X.shape
    ols = _wls(y, X, np.ones(k))
    # tr(P_OLS V) = sum v - tr((X'X)^-1 X'VX)
    tr_pv = float(v.sum() - np.sum(ols.ainv * (X.T @ (X * v[:, None]))))
    return (ols.rss - tr_pv) / (k - p)


def _tau2_sj(y: np.ndarray, v: np.ndarray, X: np.ndarray) -> float:
    k, p = X.shape
    tau2_0 = float(np.mean((y - y.mean()) ** 2))
    return tau2_0 * generalised_q(tau2_0, y, v, X) / (k - p)


def _upper_bracket(f, start: float) -> float:
    """Grow ``hi`` from ``start`` until ``f(hi) < 0`` (f decreasing in tau^2)."""
    hi = max(start, 1.0)
    while f(hi) >= 0:
        if hi >= _TAU2_CAP:
            raise ModelError(
                f"no solution for tau^2 below {_TAU2_CAP:g}; the effects are too heterogeneous "
                "for this estimator (try --method DL)"
            )
        hi *= 10.0
    return hi


def _tau2_pm(y: np.ndarray, v: np.ndarray, X: np.ndarray) -> Tau2Estimate:
    k, p = X.shape
    target = k - p

    def f(t: float) -> float:
        return generalised_q(t, y, v, X) - target

    if f(0.0) < 0:
        return Tau2Estimate(0.0)
    hi = _upper_bracket(f, max(100.0, 10.0 * float(np.var(y, ddof=1))))
    root, res = optimize.brentq(f, 0.0, hi, xtol=_ROOT_XTOL, rtol=4 * np.finfo(float).eps, full_output=True)
    if not res.converged:  # pragma: no cover - brentq on a bracket always converges
        raise ModelError(f"Paule-Mandel root search did not converge ({res.flag})")
    return Tau2Estimate(float(root), res.iterations)


def _loglik(tau2: float, y: np.ndarray, v: np.ndarray, X: np.ndarray, reml: bool) -> float:
    """(Restricted) log-likelihood up to constants that do not depend on tau^2."""
    fit = _wls(y, X, 1.0 / (v + tau2))
    ll = -0.5 * float(np.sum(np.log(v + tau2))) - 0.5 * fit.rss
    if reml:
        ll -= 0.5 * float(np.linalg.slogdet(X.T @ fit.xw)[1])
    return ll


def _score(
    tau2: float, y: np.ndarray, v: np.ndarray, X: np.ndarray, reml: bool
) -> tuple[float, float, float]:
    """Twice the (restricted) log-likelihood score ``s``, the expected information (Fisher) and
    the observed information ``-ds/dtau^2``:

    * ML:   ``s = y'PPy - tr(W)``, Fisher ``tr(W^2)``, observed ``2 y'PPPy - tr(W^2)``;
    * REML: ``s = y'PPy - tr(P)``, Fisher ``tr(PP)``, observed ``2 y'PPPy - tr(PP)``.
    """
    fit = _wls(y, X, 1.0 / (v + tau2))
    py = fit.py
    yppy = float(py @ py)
    ypppy = float(py @ fit.apply_p(py))
    if reml:
        tr_p, tr_pp = fit.tr_p_and_pp()
        return yppy - tr_p, tr_pp, 2.0 * ypppy - tr_pp
    w = fit.w
    sw2 = float(w @ w)
    return yppy - float(w.sum()), sw2, 2.0 * ypppy - sw2


def _tau2_likelihood(
    y: np.ndarray, v: np.ndarray, X: np.ndarray, reml: bool, max_iter: int, tol: float
) -> Tau2Estimate:
    """Maximise the (restricted) likelihood over tau^2 >= 0 from the HE estimate, as metafor's
    Fisher scoring does, but with safeguarded Newton steps: the observed information where the
    log-likelihood is concave (else the Fisher step), kept inside the bracket that the signs of
    the score have established (bisection otherwise). This converges to the same stationary
    point in a few iterations where plain Fisher scoring oscillates towards it linearly."""
    tau2 = max(0.0, _tau2_he(y, v, X))
    scale = float(v.min())  # convergence: |step| <= tol (tau^2 + min(v))
    lo, hi = 0.0, math.inf  # the score is > 0 at lo (once checked) and < 0 at hi
    lo_checked = False
    converged = False
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - used after the loop
        s, fisher, observed = _score(tau2, y, v, X, reml)
        if not (math.isfinite(s) and math.isfinite(fisher)):
            break
        if s == 0.0:
            converged = True
            break
        if s > 0:
            lo, lo_checked = max(lo, tau2), True
        else:
            hi = min(hi, tau2)
            if tau2 == 0.0:  # the score points below the boundary: the maximum is at 0
                converged = True
                break
        new = tau2 + (s / observed if observed > 0 else s / fisher)
        if not lo < new < hi:
            new = tau2 + s / fisher  # metafor's Fisher scoring step
        if not lo < new < hi:
            if lo == 0.0 and not lo_checked:
                if _score(0.0, y, v, X, reml)[0] <= 0.0:
                    tau2 = 0.0
                    converged = True
                    break
                lo_checked = True
            new = 0.5 * (lo + hi) if math.isfinite(hi) else 2.0 * max(tau2, scale)
        step = new - tau2
        tau2 = new
        if abs(step) <= tol * (tau2 + scale) or hi - lo <= tol * (lo + scale):
            converged = True
            break
    note = None
    if not converged:
        tau2 = _tau2_score_root(y, v, X, reml)
        note = f"Newton/Fisher scoring did not converge in {max_iter} iterations; used a bracketed root search"
    # metafor's ll0check: a boundary maximum that scoring walked past
    if tau2 > 0 and _loglik(0.0, y, v, X, reml) - _loglik(tau2, y, v, X, reml) > _LL0_TOL:
        tau2 = 0.0
        note = "the likelihood is higher at tau^2 = 0 than at the scoring solution; tau^2 set to 0"
    return Tau2Estimate(tau2, iterations, note)


def _tau2_score_root(y: np.ndarray, v: np.ndarray, X: np.ndarray, reml: bool) -> float:
    """Root of the (restricted) likelihood score on a bracket: the fallback for Fisher scoring."""

    def f(t: float) -> float:
        return _score(t, y, v, X, reml)[0]

    try:
        if f(0.0) <= 0.0:
            return 0.0
        hi = _upper_bracket(f, 100.0)
        return float(optimize.brentq(f, 0.0, hi, xtol=_ROOT_XTOL, rtol=4 * np.finfo(float).eps))
    except (ValueError, RuntimeError, FloatingPointError) as exc:
        raise ModelError(
            f"{'REML' if reml else 'ML'} estimation of tau^2 did not converge ({exc}); "
            "try --method PM or DL"
        ) from None


def estimate_tau2(
    y: Any,
    v: Any,
    X: Any | None = None,
    method: str = "REML",
    *,
    max_iter: int = SCORING_MAX_ITER,
    tol: float = SCORING_TOL,
) -> Tau2Estimate:
    """Estimate the between-study variance tau^2 (see the module docstring for the formulas).

    Parameters
    ----------
    y, v
        Effects and their sampling variances.
    X
        Model matrix (default: intercept only).
    method
        One of :data:`METHODS`.
    max_iter, tol
        Fisher scoring limits for ML and REML.

    References
    ----------
    DerSimonian R, Laird N (1986). Meta-analysis in clinical trials. Control Clin Trials 7:177-188.
    Paule RC, Mandel J (1982). Consensus values and weighting factors. J Res Natl Bur Stand 87:377-385.
    Sidik K, Jonkman JN (2005). Simple heterogeneity variance estimation for meta-analysis.
    J R Stat Soc C 54:367-384.
    Viechtbauer W (2005). Bias and efficiency of meta-analytic variance estimators in the
    random-effects model. J Educ Behav Stat 30:261-293.

    Examples
    --------
    With ``Q = 4`` on 1 df and ``tr(P0) = 2`` (see :func:`generalised_q`), DerSimonian-Laird
    gives ``(4 - 1) / 2 = 1.5``, which is also where Paule-Mandel's ``Q(tau^2) = 1`` holds:

    >>> estimate_tau2([0.0, 2.0], [0.5, 0.5], method="DL").tau2
    1.5
    >>> round(estimate_tau2([0.0, 2.0], [0.5, 0.5], method="PM").tau2, 10)
    1.5
    >>> from synthesis.datasets import load_dataset
    >>> t = load_dataset("dnmbc_lrt")
    >>> round(estimate_tau2(t.y, t.v, method="DL").tau2, 5), round(estimate_tau2(t.y, t.v).tau2, 5)
    (0.01066, 0.02449)
    """
    y, v, X = check_inputs(y, v, X)
    return _estimate_tau2(y, v, X, method, max_iter=max_iter, tol=tol)


def _estimate_tau2(
    y: np.ndarray, v: np.ndarray, X: np.ndarray, method: str, *, max_iter: int, tol: float
) -> Tau2Estimate:
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    k, p = X.shape
    if method == "FE" or k == 1:
        return Tau2Estimate(0.0)  # metafor's "k1": a single study has no tau^2
    if k <= p:
        raise ModelError(
            f"{p} coefficients and tau^2 cannot be estimated from {k} studies (need k > {p})"
        )
    if method == "DL":
        return Tau2Estimate(max(0.0, _tau2_dl(y, v, X)))
    if method == "HE":
        return Tau2Estimate(max(0.0, _tau2_he(y, v, X)))
    if method == "SJ":
        return Tau2Estimate(max(0.0, _tau2_sj(y, v, X)))
    if method == "PM":
        return _tau2_pm(y, v, X)
    return _tau2_likelihood(y, v, X, reml=(method == "REML"), max_iter=max_iter, tol=tol)


def q_profile_ci(
    y: Any, v: Any, X: Any | None = None, tau2: float = 0.0, level: float = DEFAULT_LEVEL
) -> tuple[float, float]:
    """Q-profile confidence interval for tau^2 (Viechtbauer 2007; metafor ``confint()``).

    The lower bound solves ``y'P(t) y = chi^2_{k-p}(1 - a/2)`` and the upper bound
    ``y'P(t) y = chi^2_{k-p}(a/2)``, with ``a = 1 - level``; a bound is 0 when Q at 0 is already
    below its target. As in metafor the search range is ``[0, max(100, 10 tau^2)]`` and a bound
    outside it is reported as the end of the range.

    Viechtbauer W (2007). Confidence intervals for the amount of heterogeneity in
    meta-analysis. Stat Med 26:37-52.

    Examples
    --------
    >>> from synthesis.datasets import load_dataset
    >>> t = load_dataset("dnmbc_lrt")
    >>> tau2 = estimate_tau2(t.y, t.v, method="REML").tau2
    >>> lo, hi = q_profile_ci(t.y, t.v, tau2=tau2)
    >>> round(lo, 5), round(hi, 4)
    (0.00795, 0.1385)
    """
    y, v, X = check_inputs(y, v, X)
    return _q_profile(y, v, X, tau2, level)


def _q_profile(
    y: np.ndarray, v: np.ndarray, X: np.ndarray, tau2: float, level: float
) -> tuple[float, float]:
    k, p = X.shape
    if k <= p:
        return (math.nan, math.nan)
    alpha = 1.0 - level
    crit_u = float(special.chdtri(k - p, alpha / 2))  # for the lower bound
    crit_l = float(special.chdtri(k - p, 1.0 - alpha / 2))  # for the upper bound
    t_max = max(100.0, 10.0 * tau2)
    q_min = generalised_q(0.0, y, v, X)
    q_max = generalised_q(t_max, y, v, X)

    def root(target: float) -> float:
        return float(
            optimize.brentq(
                lambda t: generalised_q(t, y, v, X) - target,
                0.0,
                t_max,
                xtol=_ROOT_XTOL,
                rtol=4 * np.finfo(float).eps,
            )
        )

    if q_min < crit_l:
        lower = upper = 0.0
    else:
        upper = t_max if q_max > crit_l else root(crit_l)
        lower = 0.0 if q_min < crit_u else root(crit_u)
    if q_max > crit_u:
        lower = upper = t_max
    return lower, upper


# ------------------------------------------------------------------------------------------
# the fitted model
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ModelFit:
    """A fitted meta-analytic model (metafor ``rma.uni`` equivalent). Arrays follow ``X``'s columns."""

    method: str
    knha: bool
    level: float
    y: np.ndarray
    v: np.ndarray
    X: np.ndarray
    tau2: float
    beta: np.ndarray
    vb: np.ndarray
    se: np.ndarray
    statistic: np.ndarray
    pvalue: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray
    df: int | None
    crit: float
    q: float
    q_pvalue: float
    i2: float
    h2: float
    typical_v: float
    iterations: int = 0
    notes: tuple[str, ...] = field(default=())
    #: Results the user should not take at face value (printed on stderr by the CLI).
    warnings: tuple[str, ...] = field(default=())

    @property
    def k(self) -> int:
        return int(self.y.size)

    @property
    def p(self) -> int:
        return int(self.X.shape[1])

    def prediction_interval(self, x: np.ndarray | None = None) -> tuple[float, float]:
        """``x'beta +/- c sqrt(x' Var(beta) x + tau^2)`` (metafor ``predict()``); ``x`` defaults
        to the intercept."""
        if x is None:
            x = np.zeros(self.p)
            x[0] = 1.0
        pred = float(x @ self.beta)
        half = self.crit * math.sqrt(float(x @ self.vb @ x) + self.tau2)
        return pred - half, pred + half


#: Warning when the Knapp-Hartung factor is 0 (no residual variation: e.g. identical studies).
KNHA_ZERO_WARNING = (
    "the Knapp-Hartung (HKSJ) variance factor is 0 because the effects have no residual variation "
    "(e.g. identical studies, Q = 0): the CI has zero width and the test is degenerate; this is "
    "metafor's result, but do not report it as a precise estimate (use the CI without --hksj)"
)


def fit_model(
    y: Any,
    v: Any,
    X: Any | None = None,
    *,
    method: str = "REML",
    knha: bool = False,
    level: float = DEFAULT_LEVEL,
    max_iter: int = SCORING_MAX_ITER,
) -> ModelFit:
    """Fit ``y = X beta + u + e`` with tau^2 from ``method`` (metafor ``rma.uni``).

    ``beta = (X'WX)^-1 X'Wy`` with ``w_i = 1 / (v_i + tau^2)`` and ``Var(beta) = (X'WX)^-1``;
    with ``knha`` (Hartung & Knapp 2001; Sidik & Jonkman 2002) ``Var(beta)`` is multiplied by
    ``y'Py / (k - p)`` and tests use t with ``k - p`` df.

    Hartung J, Knapp G (2001). On tests of the overall treatment effect in meta-analysis with
    normally distributed responses. Stat Med 20:1771-1782.

    Examples
    --------
    A meta-regression on a covariate that explains the effects exactly (slope 1):

    >>> import numpy as np
    >>> X = np.column_stack([np.ones(3), [0.0, 1.0, 2.0]])
    >>> fit = fit_model([0.0, 1.0, 2.0], [0.1, 0.1, 0.1], X, method="FE")
    >>> fit.beta.round(6) + 0.0, fit.q  # + 0.0 shows a rounded -0.0 as 0.0
    (array([0., 1.]), 0.0)

    The intercept-only DerSimonian-Laird fit of the bundled dnMBC data:

    >>> from synthesis.datasets import load_dataset
    >>> t = load_dataset("dnmbc_lrt")
    >>> fit = fit_model(t.y, t.v, method="DL")
    >>> fit.k, fit.p, round(float(np.exp(fit.beta[0])), 3)
    (17, 1, 0.682)
    """
    if not 0.0 < level < 1.0:
        raise InputError(f"confidence level must be in (0, 1), got {level}")
    y, v, X = check_inputs(y, v, X)
    est = _estimate_tau2(y, v, X, method, max_iter=max_iter, tol=SCORING_TOL)
    tau2 = est.tau2
    k, p = X.shape
    notes = [est.note] if est.note else []
    warnings: list[str] = []
    fit = _wls(y, X, 1.0 / (v + tau2))
    vb = fit.ainv
    alpha = 1.0 - level
    df: int | None = None
    if knha:
        if method == "FE":
            notes.append("the Knapp-Hartung adjustment is not meant for common-effect models")
        rss = fit.rss
        s2w = 0.0 if rss <= np.finfo(float).eps else (rss / (k - p) if k > p else math.nan)
        vb = vb * s2w
        df = k - p
        if s2w == 0.0:
            warnings.append(KNHA_ZERO_WARNING)
    se = np.sqrt(np.diag(vb))
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = fit.beta / se
    if knha:
        if df and df > 0:
            pval = 2.0 * special.stdtr(df, -np.abs(stat))
            crit = float(-special.stdtrit(df, alpha / 2))
        else:
            pval = np.full(p, math.nan)
            crit = math.nan
    else:
        pval = 2.0 * special.ndtr(-np.abs(stat))
        crit = float(-special.ndtri(alpha / 2))

    if k > p:
        fe = fit if tau2 == 0.0 else _wls(y, X, 1.0 / v)
        q = max(0.0, fe.rss)
        q_p = float(special.chdtrc(k - p, q))
        typical_v = (k - p) / fe.tr_p()
        if method == "FE":
            i2 = max(0.0, 100.0 * (q - (k - p)) / q) if q > 0 else 0.0
            h2 = q / (k - p)
        else:
            i2 = 100.0 * tau2 / (typical_v + tau2)
            h2 = tau2 / typical_v + 1.0
    else:
        q, q_p, i2, h2, typical_v = 0.0, 1.0, 0.0, 1.0, 0.0
    return ModelFit(
        method=method,
        knha=knha,
        level=level,
        y=y,
        v=v,
        X=X,
        tau2=tau2,
        beta=fit.beta,
        vb=vb,
        se=se,
        statistic=stat,
        pvalue=pval,
        ci_lower=fit.beta - crit * se,
        ci_upper=fit.beta + crit * se,
        df=df,
        crit=crit,
        q=q,
        q_pvalue=q_p,
        i2=i2,
        h2=h2,
        typical_v=typical_v,
        iterations=est.iterations,
        notes=tuple(notes),
        warnings=tuple(warnings),
    )


# ------------------------------------------------------------------------------------------
# pooling (intercept-only) results
# ------------------------------------------------------------------------------------------


def finite_or_none(x: float | None) -> float | None:
    """A JSON-ready number: ``None`` for missing or non-finite values.

    Examples
    --------
    >>> import numpy as np
    >>> finite_or_none(np.float64(0.5)), finite_or_none(float("inf")), finite_or_none(None)
    (0.5, None, None)
    """
    return None if x is None or not math.isfinite(x) else float(x)


def exp_or_none(x: float | None) -> float | None:
    """``exp(x)`` (log HR to HR), ``None`` for missing or non-finite values.

    Examples
    --------
    >>> exp_or_none(0.0), exp_or_none(float("nan")), exp_or_none(None)
    (1.0, None, None)
    """
    return None if x is None or not math.isfinite(x) else math.exp(x)


def estimate_record(estimate: float, se: float, ci_lower: float, ci_upper: float) -> dict[str, float | None]:
    """The JSON fields of a pooled log HR: ``estimate``, ``se``, ``ci_lower``, ``ci_upper`` on the
    log scale and ``hr``, ``hr_ci_lower``, ``hr_ci_upper`` on the ratio scale.

    Examples
    --------
    >>> rec = estimate_record(0.0, 0.1, -0.2, 0.2)
    >>> rec["hr"], round(rec["hr_ci_lower"], 4), round(rec["hr_ci_upper"], 4)
    (1.0, 0.8187, 1.2214)
    >>> estimate_record(float("nan"), 0.1, -0.2, 0.2)["hr"] is None
    True
    """
    return {
        "estimate": finite_or_none(estimate),
        "se": finite_or_none(se),
        "ci_lower": finite_or_none(ci_lower),
        "ci_upper": finite_or_none(ci_upper),
        "hr": exp_or_none(estimate),
        "hr_ci_lower": exp_or_none(ci_lower),
        "hr_ci_upper": exp_or_none(ci_upper),
    }


def format_p(p: float | None) -> str:
    """A p-value for a table column: four decimals, ``<0.0001`` below that, ``NA`` if missing.

    Examples
    --------
    >>> format_p(0.01234), format_p(1e-9), format_p(None)
    ('0.0123', '<0.0001', 'NA')
    """
    if p is None or not math.isfinite(p):
        return "NA"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def format_p_equals(p: float | None) -> str:
    """``p = 0.0123`` or ``p < 0.0001`` for running text.

    Examples
    --------
    >>> format_p_equals(0.5), format_p_equals(0.0)
    ('p = 0.5000', 'p < 0.0001')
    """
    text = format_p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def format_hr_ci(est: float, lo: float, hi: float) -> str:
    """A log-scale estimate and CI as ``HR (lower to upper)``.

    Examples
    --------
    >>> format_hr_ci(0.0, -0.1, 0.1)
    '1.000 (0.905 to 1.105)'
    """

    def f(x: float) -> str:
        return f"{math.exp(x):.3f}" if math.isfinite(x) else "NA"

    return f"{f(est)} ({f(lo)} to {f(hi)})"


@dataclass(frozen=True)
class PoolResult:
    """A pooled log hazard ratio (intercept-only model) with heterogeneity statistics."""

    method: str
    hksj: bool
    k: int
    estimate: float
    se: float
    ci_lower: float
    ci_upper: float
    statistic: float
    pvalue: float
    df: int | None
    tau2: float
    i2: float
    h2: float
    q: float
    q_df: int
    q_pvalue: float
    pi_lower: float
    pi_upper: float
    tau2_ci_lower: float | None
    tau2_ci_upper: float | None
    level: float = DEFAULT_LEVEL
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    #: The table the studies came from (set by :func:`pool_table`; printed as the first line).
    source: str = ""
    #: Rows of that table left out by its ``include`` column.
    excluded: int = 0

    @property
    def tau(self) -> float:
        return math.sqrt(self.tau2)

    def __str__(self) -> str:
        """The result as ``synthesis pool`` prints it.

        Examples
        --------
        >>> import synthesis as syn
        >>> print(syn.pool(syn.load_dataset("dnmbc_lrt"), method="REML", hksj=True))
        ... # doctest: +ELLIPSIS
        dnmbc_lrt (bundled dnmbc_lrt.csv): k = 17 (42 rows excluded by 'include')
        Random-effects model, tau^2 by REML, Hartung-Knapp-Sidik-Jonkman CI (t, 16 df)
          pooled HR 0.693 (0.615 to 0.780) [95% CI]; log HR -0.3670 (SE 0.0561), t = -6.545, p < 0.0001
        ...
        """
        head = []
        if self.source:
            head.append(f"{self.source}: k = {self.k}" + (f" ({self.excluded} rows excluded by 'include')" if self.excluded else ""))
        if self.method == "FE":
            kind = "Common-effect (inverse-variance) model"
        else:
            kind = f"Random-effects model, tau^2 by {self.method}"
        if self.hksj:
            kind += f", Hartung-Knapp-Sidik-Jonkman CI (t, {self.df} df)"
        stat = "t" if self.hksj else "z"
        level = f"{100 * self.level:g}%"
        lines = [
            *head,
            kind,
            f"  pooled HR {format_hr_ci(self.estimate, self.ci_lower, self.ci_upper)} [{level} CI]; log HR "
            f"{self.estimate:.4f} (SE {self.se:.4f}), {stat} = {self.statistic:.3f}, {format_p_equals(self.pvalue)}",
            f"  {level} prediction interval: HR {math.exp(self.pi_lower):.3f} to {math.exp(self.pi_upper):.3f}",
        ]
        tau_ci = ""
        if self.tau2_ci_lower is not None and self.tau2_ci_upper is not None:
            tau_ci = f" ({level} CI {self.tau2_ci_lower:.4g} to {self.tau2_ci_upper:.4g})"
        lines.append(
            f"  heterogeneity: tau^2 = {self.tau2:.4g}{tau_ci}, tau = {self.tau:.4g}, I^2 = {self.i2:.1f}%, "
            f"H^2 = {self.h2:.3f}, Q = {self.q:.3f} on {self.q_df} df ({format_p_equals(self.q_pvalue)})"
        )
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        level = f"{100 * self.level:g}%"
        rows = [
            ["pooled HR", format_hr_ci(self.estimate, self.ci_lower, self.ci_upper), f"{level} CI"],
            ["prediction interval", f"{math.exp(self.pi_lower):.3f} to {math.exp(self.pi_upper):.3f}", f"{level} PI"],
            ["p-value", format_p(self.pvalue), "t" if self.hksj else "z"],
            ["tau^2", f"{self.tau2:.4g}", "" if self.tau2_ci_lower is None else
             f"{level} CI {self.tau2_ci_lower:.4g} to {self.tau2_ci_upper:.4g}"],
            ["I^2", f"{self.i2:.1f}%", f"Q = {self.q:.3f} on {self.q_df} df, {format_p_equals(self.q_pvalue)}"],
        ]
        title = f"{'Common-effect' if self.method == 'FE' else 'Random-effects (' + self.method + ')'} pooling"
        title += (", HKSJ" if self.hksj else "") + f"; k = {self.k}" + (f" ({self.source})" if self.source else "")
        return html_block(title, [html_table(["quantity", "value", "detail"], rows)], [*self.notes, *self.warnings])

    def to_json(self) -> dict[str, Any]:
        """The ``synthesis pool --json`` document (:meth:`to_dict`)."""
        return self.to_dict()

    def to_frame(self) -> pd.DataFrame:
        """The JSON record as a one-row table (lists joined with ``"; "``).

        Examples
        --------
        >>> import synthesis as syn
        >>> syn.pool(syn.load_dataset("dnmbc_lrt")).to_frame().shape
        (1, 29)
        """
        import pandas as pd

        record = {k: "; ".join(v) if isinstance(v, list) else v for k, v in self.to_dict().items()}
        return pd.DataFrame.from_records([record])

    def to_dict(self) -> dict[str, Any]:
        """The public JSON record (estimates on the log scale, ``hr*`` on the ratio scale)."""
        return {
            "method": self.method,
            "hksj": self.hksj,
            "k": self.k,
            **estimate_record(self.estimate, self.se, self.ci_lower, self.ci_upper),
            "tau2": finite_or_none(self.tau2),
            "tau": finite_or_none(self.tau),
            "i2": finite_or_none(self.i2),
            "h2": finite_or_none(self.h2),
            "q": finite_or_none(self.q),
            "q_pvalue": finite_or_none(self.q_pvalue),
            "pi_lower": finite_or_none(self.pi_lower),
            "pi_upper": finite_or_none(self.pi_upper),
            "tau2_ci_lower": finite_or_none(self.tau2_ci_lower),
            "tau2_ci_upper": finite_or_none(self.tau2_ci_upper),
            "pi_hr_lower": exp_or_none(self.pi_lower),
            "pi_hr_upper": exp_or_none(self.pi_upper),
            "statistic": finite_or_none(self.statistic),
            "pvalue": finite_or_none(self.pvalue),
            "df": self.df,
            "q_df": self.q_df,
            "level": self.level,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }


def pool(
    y: Any,
    v: Any,
    *,
    method: str = "REML",
    hksj: bool = False,
    level: float = DEFAULT_LEVEL,
) -> PoolResult:
    """Pool effects ``y`` (log HR) with sampling variances ``v`` (metafor ``rma(yi, vi, method,
    test = if (hksj) "knha" else "z")`` plus ``predict()`` and ``confint()``).

    ``mu = sum w_i y_i / sum w_i``, ``SE = sqrt(1 / sum w_i)``, ``w_i = 1 / (v_i + tau^2)``; CI
    ``mu +/- z SE`` or, with ``hksj``, ``mu +/- t_{k-1} SE sqrt(sum w_i (y_i - mu)^2 / (k - 1))``.
    The tau^2 CI (Q-profile) is given for every random-effects method and is ``None`` for FE.
    See the module docstring for the estimators, I^2, H^2 and the prediction interval.

    Examples
    --------
    Two studies, log HR 0 and 2 with variance 0.5: DL gives ``tau^2 = 1.5``, weights 0.5 each, so
    ``mu = 1`` with ``SE = 1``:

    >>> r = pool([0.0, 2.0], [0.5, 0.5], method="DL")
    >>> r.estimate, r.se, r.tau2
    (1.0, 1.0, 1.5)

    The bundled dnMBC data (locoregional treatment, overall survival), DerSimonian-Laird:

    >>> from synthesis.datasets import load_dataset
    >>> t = load_dataset("dnmbc_lrt")
    >>> r = pool(t.y, t.v, method="DL")
    >>> r.k, format_hr_ci(r.estimate, r.ci_lower, r.ci_upper)
    (17, '0.682 (0.631 to 0.736)')
    """
    fit = fit_model(y, v, method=method, knha=hksj, level=level)
    pi_lower, pi_upper = fit.prediction_interval()
    if method == "FE" or fit.k < 2:
        tci: tuple[float | None, float | None] = (None, None)
    else:
        tci = _q_profile(fit.y, fit.v, fit.X, fit.tau2, level)
    return PoolResult(
        method=method,
        hksj=hksj,
        k=fit.k,
        estimate=float(fit.beta[0]),
        se=float(fit.se[0]),
        ci_lower=float(fit.ci_lower[0]),
        ci_upper=float(fit.ci_upper[0]),
        statistic=float(fit.statistic[0]),
        pvalue=float(fit.pvalue[0]),
        df=fit.df,
        tau2=fit.tau2,
        i2=fit.i2,
        h2=fit.h2,
        q=fit.q,
        q_df=fit.k - 1,
        q_pvalue=fit.q_pvalue,
        pi_lower=pi_lower,
        pi_upper=pi_upper,
        tau2_ci_lower=tci[0],
        tau2_ci_upper=tci[1],
        level=level,
        notes=fit.notes,
        warnings=fit.warnings,
    )


def pool_table(
    table: StudyTable, *, method: str = "REML", hksj: bool = False, level: float = DEFAULT_LEVEL
) -> PoolResult:
    """:func:`pool` on a :class:`~synthesis.studies.StudyTable` (the result names the table).

    Examples
    --------
    >>> from synthesis.datasets import load_dataset
    >>> r = pool_table(load_dataset("dnmbc_lrt"), method="DL")
    >>> r.k, r.source
    (17, 'dnmbc_lrt (bundled dnmbc_lrt.csv)')
    """
    result = pool(table.y, table.v, method=method, hksj=hksj, level=level)
    return replace(result, source=table.source, excluded=table.excluded)
