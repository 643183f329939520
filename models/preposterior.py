r"""Preposterior analysis of the next randomised trial: predictive power, the probability that
the decision rule is met (or changes) once the trial is added, the expected posterior SD and the
expected value of sample information, computed exactly from the exact engine's posterior.

The new trial is one more randomised study. With ``d`` events and allocation ratio ``r``
(treatment : control) its log-HR estimate has the variance of the log-rank statistic
(Schoenfeld 1981, Biometrika 68(1):316-319, doi:10.1093/biomet/68.1.316)

.. math::

    s_{new}^2 = \frac{(1 + r)^2}{d\, r} \quad (= 4 / d \text{ for a 1:1 trial}),

i.e. information ``d r / (1 + r)^2``. Its estimate is ``y_new ~ N(theta_new, s_new^2)`` with
``theta_new = c'b + u_new``, ``u_new ~ N(0, tau^2)`` (``c'b`` = mu, the randomised effect at
the covariate centres). Given the exact engine's grid node ``g`` (tau_g, and kappa_g in the 2-D
models) the current posterior of ``c'b`` is ``N(m_g, c_g)`` with node weight ``w_g``, so the
predictive of ``y_new`` is the normal mixture

.. math::

    y_{new} \mid y \sim \sum_g w_g\, N(m_g,\; v_g), \qquad v_g = c_g + \tau_g^2 + s_{new}^2 .

Adding the trial is a conjugate update on the same grid: node ``g``'s weight is multiplied by
its predictive density ``N(y_new; m_g, v_g)`` (the factor the new row adds to
``p(y | tau_g)``) and

.. math::

    m_g' = m_g + \frac{c_g}{v_g}(y_{new} - m_g), \qquad c_g' = c_g\, \frac{\tau_g^2 + s_{new}^2}{v_g},

which is what a refit of the data with the new row appended gives on this grid (the grid was
placed for the current posterior; one more study moves tau's posterior little, and the tests
compare with full refits on their own grids). The decision rule is ``P(HR < T) > level``; the
posterior ``P(HR < T | y, y_new) = sum_g w_g'(y_new) Phi((log T - m_g') / sqrt(c_g'))``.

Expectations over ``y_new``:

* indicator quantities (the trial significant; the rule met after; the decision changed) are
  predictive probabilities of sets of ``y_new``: the set where ``P(HR < T | y, y_new) > level``
  is found by scanning ``y_new`` and refining each crossing with Brent's method (tolerance
  1e-12), and its probability is the mixture CDF at the crossings, exact to that tolerance;
  the new trial is significant when ``|y_new| / s_new > z_{0.975}`` (two-sided 5%), in the
  direction of benefit (HR < 1) when ``y_new / s_new < -z_{0.975}``, and one-sided at level
  ``a`` (benefit) when ``y_new / s_new < -z_{1-a}``;
* smooth quantities (the posterior SD and variance of ``c'b`` after the trial) are integrals of
  analytic functions of ``y_new`` against the predictive density: by the trapezoidal rule on the
  same scan (spectrally accurate, see :func:`_scan`), or by Gauss-Hermite quadrature within each
  tau-mixture component, ``E f = sum_g w_g sum_h a_h f(m_g + sqrt(2 v_g) x_h) / sqrt(pi)``
  (:data:`GH_NODES` nodes; ``quadrature="gauss-hermite"``; G^2 x nodes work). The two agree to
  3e-9 (5e-11 with 96 nodes; tests/test_plan.py); the trapezoidal rule is the default: it is
  more accurate for the same work and about ten times faster (the scan is needed for the rule
  anyway).

The expected value of sample information on the variance scale is
``Var(c'b | y) - E[Var(c'b | y, y_new)]`` (Raiffa H, Schlaifer R. 1961. Applied Statistical
Decision Theory; Ades AE, Lu G, Claxton K. 2004. Expected value of sample information
calculations in medical decision modeling. Med Decis Making 24(2):207-227,
doi:10.1177/0272989X04263162): the variance the trial is expected to remove, which by the law
of total variance is also the predictive variance of the posterior mean.

API: :func:`trial_se`, :func:`plan_trial` (a :class:`PlanResult`), :func:`posterior_after`
(the updated posterior at given ``y_new``: what the tests compare with full refits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, special
from threadpoolctl import threadpool_limits

from synthesis.base import REFERENCE_DESIGN
from synthesis.errors import InputError
from synthesis.models.exact import ExactPosterior, exact_posterior, mixture_quantiles
from synthesis.models.spec import ModelData, ModelSpec, check_thresholds

#: The decision rule "recommend if P(HR < T) > level" unless the user gives another: the
#: issue's example rule, recommend LRT if P(HR < 0.8) > 0.9.
RULE_THRESHOLD = 0.8
RULE_LEVEL = 0.9
#: Two-sided significance level of the new trial on its own.
TRIAL_ALPHA = 0.05
#: Trial sizes (events) of a plan when none are given: 100 to 2000 in steps of 100.
DEFAULT_EVENTS: tuple[int, ...] = tuple(range(100, 2001, 100))
#: Gauss-Hermite nodes per mixture component for the smooth expectations (posterior SD and
#: variance after the trial) with ``quadrature="gauss-hermite"``. On the bundled data (100 to
#: 2000 events) GH differs from the trapezoidal scan by at most 2e-7 with 16 nodes, 3e-9 with
#: 48 and 5e-11 with 96 (GH converges slowly here: after a large trial the node weights are
#: sharp functions of y_new); the scan agrees with itself at 10 times the points to 1e-16.
GH_NODES = 48
#: Points of the scan of y_new (at least; see STEPS_PER_SD) that brackets every crossing of
#: P(HR < T | y, y_new) = level and integrates the smooth expectations.
SCAN_POINTS = 401
#: ... and at least this many scan steps per SD of the narrowest predictive component (the
#: trapezoidal rule's error is then below exp(-2 pi^2 4^2) ~ 1e-137), at most MAX_SCAN_POINTS.
STEPS_PER_SD = 4.0
MAX_SCAN_POINTS = 20001
#: The scan spans the predictive distribution of y_new from its TAIL to its 1 - TAIL quantile.
TAIL = 1e-13
#: Nodes lighter than this fraction of the heaviest are left out (as the exact engine's sums).
PRUNE = 1e-14
_SQRT_PI = math.sqrt(math.pi)


#: Allocation ratios (treatment : control) a new trial may have: beyond them one arm is empty in
#: any real trial (and (1 + r)^2 overflows long before r = 1e200).
ALLOCATION_RANGE = (1e-3, 1e3)
#: The smallest trial: one event.
MIN_EVENTS = 1.0


def trial_se(events: float, allocation: float = 1.0) -> float:
    r"""Standard error of the log HR of a two-arm trial with ``events`` events and allocation
    ratio ``allocation`` (treatment : control): ``sqrt((1 + r)^2 / (d r))`` (Schoenfeld 1981).

    Examples
    --------
    >>> trial_se(400)  # 1:1: sqrt(4 / 400)
    0.1
    >>> round(trial_se(450, allocation=2.0), 6)  # information 450 * 2 / 9 = 100
    0.1
    """
    d, r = float(events), float(allocation)
    if not (math.isfinite(d) and d > 0):
        raise InputError(f"the number of events must be > 0, got {events!r}", parameter="events")
    if not (math.isfinite(r) and ALLOCATION_RANGE[0] <= r <= ALLOCATION_RANGE[1]):
        raise InputError(
            f"the allocation ratio must be between {ALLOCATION_RANGE[0]:g} and {ALLOCATION_RANGE[1]:g}, got {allocation!r}",
            parameter="allocation",
        )
    if not d >= MIN_EVENTS:
        raise InputError(f"a trial needs at least {MIN_EVENTS:g} event, got {events!r}", parameter="events")
    return math.sqrt((1.0 + r) ** 2 / (d * r))


@dataclass(frozen=True)
class _Current:
    """The current posterior of c'b reduced to what the update needs, per grid node."""

    w: np.ndarray  # (G,) node weights (sum 1)
    m: np.ndarray  # (G,) E[c'b | node, y]
    c: np.ndarray  # (G,) Var[c'b | node, y]
    t2: np.ndarray  # (G,) tau^2 at the node

    @classmethod
    def of(cls, post: ExactPosterior) -> _Current:
        contrast = post.contrast("mu")
        if not contrast.any():
            raise InputError("the model fixes mu at 0 (no effect): there is no effect for a new trial to inform")
        means, sds = post._moments(contrast[None, :])
        # the new trial's random part given the node: its predictive variance minus that of c'b
        # (tau^2; tau^2 + tau_within^2 in a multilevel model, the trial being a new cluster)
        pred = post.predictive_for(design=REFERENCE_DESIGN)
        w = np.asarray(post.weights, dtype=float)
        keep = w > PRUNE * w.max()
        c = sds[keep, 0] ** 2
        return cls(w=w[keep] / w[keep].sum(), m=means[keep, 0], c=c,
                   t2=np.maximum(pred.sds[keep] ** 2 - c, 0.0))

    def p_below(self, log_t: float) -> float:
        return float(self.w @ special.ndtr((log_t - self.m) / np.sqrt(self.c)))

    def variance(self) -> float:
        mean = float(self.w @ self.m)
        return float(self.w @ (self.c + self.m**2) - mean**2)


def _update(cur: _Current, s2: float, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights (n, G), means (n, G) and SDs (G,) of c'b after a new trial estimate ``y`` (n,)."""
    v = cur.c + cur.t2 + s2
    z = (y[:, None] - cur.m[None, :]) / np.sqrt(v)[None, :]
    logw = np.log(cur.w)[None, :] - 0.5 * z * z - 0.5 * np.log(v)[None, :]
    logw -= logw.max(axis=1, keepdims=True)
    W = np.exp(logw)
    W /= W.sum(axis=1, keepdims=True)
    means = cur.m[None, :] + (cur.c / v)[None, :] * (y[:, None] - cur.m[None, :])
    sds = np.sqrt(cur.c * (cur.t2 + s2) / v)
    return W, means, sds


def _p_below_after(cur: _Current, s2: float, y: np.ndarray, log_t: float) -> np.ndarray:
    W, means, sds = _update(cur, s2, y)
    return np.einsum("ng,ng->n", W, special.ndtr((log_t - means) / sds[None, :]))


def _predictive_cdf(cur: _Current, s2: float, x: np.ndarray | float) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    sd = np.sqrt(cur.c + cur.t2 + s2)
    return special.ndtr((x[..., None] - cur.m) / sd) @ cur.w


@dataclass(frozen=True)
class AfterTrial:
    """The posterior of the randomised log HR after a new trial estimate ``y_new``: normal
    mixtures over the grid nodes (weights (n, G), means (n, G), SDs (G,))."""

    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray

    def p_below(self, threshold: float) -> np.ndarray:
        """P(HR < threshold | y, y_new) for each y_new."""
        z = (math.log(threshold) - self.means) / self.sds[None, :]
        return np.einsum("ng,ng->n", self.weights, special.ndtr(z))

    def mean(self) -> np.ndarray:
        return np.einsum("ng,ng->n", self.weights, self.means)

    def sd(self) -> np.ndarray:
        second = np.einsum("ng,ng->n", self.weights, self.means**2 + self.sds[None, :] ** 2)
        return np.sqrt(np.maximum(second - self.mean() ** 2, 0.0))


def posterior_after(post: ExactPosterior, y_new: Sequence[float] | np.ndarray, se_new: float) -> AfterTrial:
    """The exact posterior of the randomised log HR after adding a randomised trial with log-HR
    estimate ``y_new`` (each value separately) and standard error ``se_new``, on the current
    posterior's grid (the conjugate update of the module docstring).

    Examples
    --------
    The bundled studies' design-bias posterior, then a 1:1 trial of 400 events observing HR 0.8:

    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> post = exact_posterior(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec)
    >>> after = posterior_after(post, [math.log(0.8)], trial_se(400))
    >>> round(float(after.p_below(0.8)[0]), 3), round(float(after.sd()[0]), 3)
    (0.086, 0.065)
    """
    with threadpool_limits(1):
        cur = _Current.of(post)
        W, means, sds = _update(cur, float(se_new) ** 2, np.atleast_1d(np.asarray(y_new, dtype=float)))
    return AfterTrial(weights=W, means=means, sds=sds)


@dataclass(frozen=True)
class _Scan:
    """The preposterior quantities of one trial size, from one scan of ``y_new``."""

    p_rule_met: float
    crossings: int
    expected_sd: float
    expected_var: float
    expected_mean: float
    best_p_below: float  # the largest P(HR < T | y, y_new) over the scan


def _predictive_range(cur: _Current, s2: float) -> tuple[float, float, float]:
    """The predictive quantiles TAIL and 1 - TAIL of y_new and the narrowest component SD."""
    sd = np.sqrt(cur.c + cur.t2 + s2)
    lo, hi = mixture_quantiles(cur.w, cur.m[:, None], sd[:, None], np.array([TAIL, 1.0 - TAIL]))[0]
    return float(lo), float(hi), float(sd.min())


def _scan(cur: _Current, s2: float, log_t: float, level: float) -> _Scan:
    r"""The rule probability and the smooth expectations for one trial size (``s2`` = its
    variance) from one scan of ``y_new`` over its predictive range.

    The set where ``P(HR < T | y, y_new) > level`` is bracketed on the scan and every crossing
    refined by Brent's method; its predictive probability is the mixture CDF at the crossings.
    The smooth expectations (posterior mean, variance, SD after the trial) are integrals of
    analytic functions against the predictive density, by the trapezoidal rule on the scan
    (spectrally accurate: the error is of order ``exp(-2 pi^2 sigma^2 / h^2)`` for the narrowest
    component SD sigma and step h, and the scan has at least :data:`STEPS_PER_SD` steps per
    sigma); :func:`_smooth_moments` is the same by Gauss-Hermite quadrature per component.
    """
    lo, hi, narrowest = _predictive_range(cur, s2)
    n = int(min(max(SCAN_POINTS, math.ceil(STEPS_PER_SD * (hi - lo) / narrowest) + 1), MAX_SCAN_POINTS))
    ys = np.linspace(lo, hi, n)
    W = _node_weights(cur, s2, ys)
    v = cur.c + cur.t2 + s2
    k = cur.c / v
    alpha = cur.m * (1.0 - k)
    sd_after = np.sqrt(cur.c * (cur.t2 + s2) / v)
    means = alpha[None, :] + ys[:, None] * k[None, :]
    f = np.einsum("ng,ng->n", W, special.ndtr((log_t - means) / sd_after[None, :])) - level
    F = W @ np.column_stack([alpha, k, alpha**2, alpha * k, k * k, sd_after**2])
    mean = F[:, 0] + ys * F[:, 1]
    var = np.maximum(F[:, 2] + 2.0 * ys * F[:, 3] + ys * ys * F[:, 4] + F[:, 5] - mean**2, 0.0)
    dens = np.exp(-0.5 * ((ys[:, None] - cur.m) / np.sqrt(v)) ** 2) / np.sqrt(2.0 * math.pi * v) @ cur.w
    q = dens * (ys[1] - ys[0])
    q[[0, -1]] *= 0.5
    q /= q.sum()

    def g(x: float) -> float:
        return float(_p_below_after(cur, s2, np.array([x]), log_t)[0] - level)

    above = f > 0
    roots = [optimize.brentq(g, ys[i], ys[i + 1], xtol=1e-12, rtol=1e-14)
             for i in np.flatnonzero(above[1:] != above[:-1])]
    cdf = _predictive_cdf(cur, s2, np.array([lo, *roots, hi]))
    cdf[0], cdf[-1] = 0.0, 1.0  # the predictive mass beyond the scan (2 TAIL) goes with its ends
    met, total = bool(above[0]), 0.0
    for a, b in zip(cdf[:-1], cdf[1:], strict=True):
        total += float(b - a) if met else 0.0
        met = not met
    return _Scan(
        p_rule_met=min(max(total, 0.0), 1.0),
        crossings=len(roots),
        expected_sd=float(q @ np.sqrt(var)),
        expected_var=float(q @ var),
        expected_mean=float(q @ mean),
        best_p_below=float(f.max() + level),
    )


def _node_weights(cur: _Current, s2: float, y: np.ndarray) -> np.ndarray:
    """Normalised node weights (n, G) after a new trial estimate ``y`` (n,): ``w_g N(y; m_g, v_g)``
    with the quadratic in ``y`` expanded, so that the (n, G) logits are one matrix product."""
    v = cur.c + cur.t2 + s2
    coef = np.stack([-0.5 / v, cur.m / v, np.log(cur.w) - 0.5 * cur.m**2 / v - 0.5 * np.log(v)])
    logw = np.column_stack([y * y, y, np.ones_like(y)]) @ coef
    logw -= logw.max(axis=1, keepdims=True)
    W = np.exp(logw, out=logw)
    W /= W.sum(axis=1, keepdims=True)
    return W


def _smooth_moments(cur: _Current, s2: float, nodes: int) -> tuple[float, float, float]:
    """E[SD(c'b | y, y_new)], E[Var(c'b | y, y_new)] and E[E(c'b | y, y_new)] over the predictive
    of y_new, by Gauss-Hermite quadrature within each mixture component.

    After the update node g's mean is ``alpha_g + k_g y_new`` (``k_g = c_g / v_g``), so the
    posterior mean and second moment are ``W @ (alpha, k, alpha^2, alpha k, k^2, c')`` combined
    with powers of ``y_new``: one pass of exponentials and one matrix product."""
    x, a = np.polynomial.hermite.hermgauss(nodes)
    v = cur.c + cur.t2 + s2
    y = (cur.m[:, None] + np.sqrt(2.0 * v)[:, None] * x[None, :]).ravel()
    outer = (cur.w[:, None] * a[None, :] / _SQRT_PI).ravel()
    keep = outer > PRUNE * outer.max()
    y, outer = y[keep], outer[keep] / outer[keep].sum()
    k = cur.c / v
    alpha = cur.m * (1.0 - k)
    F = _node_weights(cur, s2, y) @ np.column_stack([alpha, k, alpha**2, alpha * k, k * k, cur.c * (cur.t2 + s2) / v])
    mean = F[:, 0] + y * F[:, 1]
    second = F[:, 2] + 2.0 * y * F[:, 3] + y * y * F[:, 4] + F[:, 5]
    var = np.maximum(second - mean**2, 0.0)
    return float(outer @ np.sqrt(var)), float(outer @ var), float(outer @ mean)


@dataclass(frozen=True)
class PlanRow:
    """One trial size of a plan."""

    events: float
    se: float
    p_trial_significant: float
    p_trial_significant_benefit: float
    p_rule_met_after: float
    p_decision_changes: float
    expected_posterior_sd: float
    evsi: float
    patients: float | None = None
    p_trial_significant_one_sided: float | None = None
    #: The largest P(HR < T | y, y_new) any result of the trial can give (over its predictive
    #: range): below the level, no result of this trial meets the rule.
    best_p_below_after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "events": self.events,
            "p_trial_significant": self.p_trial_significant,
            "p_rule_met_after": self.p_rule_met_after,
            "p_decision_changes": self.p_decision_changes,
            "expected_posterior_sd": self.expected_posterior_sd,
            "p_trial_significant_benefit": self.p_trial_significant_benefit,
            "evsi": self.evsi,
            "se": self.se,
            "best_p_below_after": self.best_p_below_after,
        }
        if self.patients is not None:
            out["patients"] = self.patients
        if self.p_trial_significant_one_sided is not None:
            out["p_trial_significant_one_sided"] = self.p_trial_significant_one_sided
        return out


@dataclass
class PlanResult:
    """A preposterior plan: today's posterior and decision, and one :class:`PlanRow` per size."""

    model: str
    spec: ModelSpec
    threshold: float
    level: float
    allocation: float
    one_sided: float | None
    p_below_now: float
    decision_now: bool
    posterior_sd_now: float
    rows: list[PlanRow]
    k: int
    notes: list[str] = field(default_factory=list)
    event_prob: float | None = None

    def to_json(self) -> dict[str, Any]:
        """``synthesis plan --json``.

        Examples
        --------
        >>> import synthesis as syn
        >>> spec = ModelSpec("bias")
        >>> res = plan_trial(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec, events=[400])
        >>> doc = res.to_json()
        >>> doc["model"], doc["rule"], list(doc["rows"][0])[:5]  # doctest: +NORMALIZE_WHITESPACE
        ('bias', {'threshold': 0.8, 'level': 0.9},
         ['events', 'p_trial_significant', 'p_rule_met_after', 'p_decision_changes', 'expected_posterior_sd'])
        """
        return {
            "model": self.spec.model,
            "label": self.model,
            "rule": {"threshold": self.threshold, "level": self.level},
            "rows": [r.to_dict() for r in self.rows],
            "current": {
                "p_hr_below": self.p_below_now,
                "rule_met": self.decision_now,
                "posterior_sd": self.posterior_sd_now,
            },
            "spec": self.spec.describe(),
            "k": self.k,
            "allocation": self.allocation,
            "event_prob": self.event_prob,
            "one_sided_alpha": self.one_sided,
            "trial_alpha": TRIAL_ALPHA,
            "notes": list(self.notes),
        }

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame.from_records([r.to_dict() for r in self.rows])

    def __str__(self) -> str:
        t, lv = self.threshold, self.level
        now = "met" if self.decision_now else "not met"
        lines = [
            f"Next randomised trial: {self.model} model, k = {self.k}; rule: recommend if P(HR < {t:g}) > {lv:g}",
            f"Today: P(HR < {t:g}) = {self.p_below_now:.3f} (rule {now}); posterior SD of log HR {self.posterior_sd_now:.3f}",
            f"New trial: allocation {self.allocation:g}:1, log-HR SE = sqrt((1 + r)^2 / (d r)); "
            "significant = two-sided 5% (benefit: HR < 1)",
        ]
        head = ["events"] + (["patients"] if self.event_prob is not None else []) + [
            "P(signif.)", "P(sig. benefit)"] + (
            [f"P(1-sided {self.one_sided:g})"] if self.one_sided is not None else []) + [
            "P(rule met)", "P(change)", "E[post. SD]", "EVSI (var)"]
        table = [head]
        for r in self.rows:
            cells = [f"{r.events:g}"] + ([f"{r.patients:g}"] if self.event_prob is not None else [])
            cells += [f"{r.p_trial_significant:.3f}", f"{r.p_trial_significant_benefit:.3f}"]
            if self.one_sided is not None:
                cells.append(f"{r.p_trial_significant_one_sided:.3f}")
            cells += [f"{r.p_rule_met_after:.3f}", f"{r.p_decision_changes:.3f}",
                      f"{r.expected_posterior_sd:.4f}", f"{r.evsi:.5f}"]
            table.append(cells)
        widths = [max(len(row[j]) for row in table) for j in range(len(head))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in table]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from synthesis.models.display import html_block, html_table

        frame = self.to_frame()
        cols = ["events", "p_trial_significant", "p_trial_significant_benefit", "p_rule_met_after",
                "p_decision_changes", "expected_posterior_sd", "evsi"]
        rows = [[f"{v:.4g}" for v in row] for row in frame[cols].itertuples(index=False)]
        title = (f"Next randomised trial ({self.model}, k = {self.k}): rule P(HR < {self.threshold:g}) > {self.level:g}, "
                 f"today P = {self.p_below_now:.3f}")
        return html_block(title, [html_table(cols, rows)], self.notes)

    def plot(self, **kwargs: Any) -> Any:
        """Predictive power and decision-change curves (:func:`synthesis.plots.plan.plot_plan`)."""
        from synthesis.models.results import _plotting

        return _plotting().plot_plan(self, **kwargs)


def _check_level(level: float, name: str) -> float:
    value = float(level)
    if not 0.0 < value < 1.0:
        raise InputError(f"{name} must be a probability strictly between 0 and 1, got {level!r}", parameter=name)
    return value


def plan_trial(
    data: ModelData,
    spec: ModelSpec,
    *,
    events: Sequence[float] = DEFAULT_EVENTS,
    allocation: float = 1.0,
    threshold: float = RULE_THRESHOLD,
    level: float = RULE_LEVEL,
    one_sided: float | None = None,
    event_prob: float | None = None,
    posterior: ExactPosterior | None = None,
    label: str | None = None,
    quadrature: str = "trapezoid",
    gh_nodes: int = GH_NODES,
) -> PlanResult:
    """Preposterior analysis of a new two-arm randomised trial for each size in ``events``.

    Parameters
    ----------
    data, spec
        The current evidence and model (any model the exact engine fits; the new trial is one
        more randomised row at the covariate centres).
    events
        Trial sizes in events (each > 0).
    allocation
        Allocation ratio r (treatment : control), > 0.
    threshold, level
        The decision rule ``P(HR < threshold) > level``.
    one_sided
        Also report the probability that the trial is significant one-sided at this level in the
        direction of benefit (HR < 1).
    event_prob
        When the sizes came from patients: the event probability (reported as ``patients =
        events / event_prob``).
    posterior
        The current exact posterior, if already computed (else fitted here).
    quadrature
        How the smooth expectations (posterior SD and variance after the trial) are integrated
        over y_new: ``"trapezoid"`` (default; on the scan that also finds the rule's crossings)
        or ``"gauss-hermite"`` (``gh_nodes`` per tau-mixture component; ``G^2 x gh_nodes``
        work, several times slower; the two agree to 3e-9 with 48 nodes, tests/test_plan.py).

    Returns
    -------
    PlanResult

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> res = plan_trial(data, spec, events=[200, 1000])
    >>> [round(r.p_trial_significant, 3) for r in res.rows]
    [0.167, 0.445]
    >>> res.decision_now, [round(r.p_rule_met_after, 6) for r in res.rows]
    (False, [0.0, 0.0])
    """
    threshold = check_thresholds([threshold], "threshold")[0]
    level = _check_level(level, "level")
    if one_sided is not None:
        one_sided = _check_level(one_sided, "one_sided")
    if quadrature not in ("trapezoid", "gauss-hermite"):
        raise InputError(f"quadrature must be 'trapezoid' or 'gauss-hermite', got {quadrature!r}", parameter="quadrature")
    sizes = [float(e) for e in events]
    if not sizes:
        raise InputError("no trial sizes given", parameter="events")
    ses = [trial_se(e, allocation) for e in sizes]
    with threadpool_limits(1):  # small products: BLAS threads only contend (20x slower on 2 busy cores)
        return _plan(data, spec, sizes, ses, allocation, threshold, level, one_sided, event_prob,
                     posterior, label, quadrature, gh_nodes)


def _plan(data: ModelData, spec: ModelSpec, sizes: list[float], ses: list[float], allocation: float,
          threshold: float, level: float, one_sided: float | None, event_prob: float | None,
          posterior: ExactPosterior | None, label: str | None, quadrature: str, gh_nodes: int) -> PlanResult:
    post = posterior if posterior is not None else exact_posterior(data, spec)
    cur = _Current.of(post)
    log_t = math.log(threshold)
    p_now = cur.p_below(log_t)
    decided = p_now > level
    var_now = cur.variance()
    z2 = float(special.ndtri(1.0 - TRIAL_ALPHA / 2.0))
    z1 = float(special.ndtri(1.0 - one_sided)) if one_sided is not None else None
    rows = []
    notes: list[str] = []
    for d, se in zip(sizes, ses, strict=True):
        s2 = se * se
        low, high = _predictive_cdf(cur, s2, np.array([-z2 * se, z2 * se]))
        scan = _scan(cur, s2, log_t, level)
        p_met, n_cross = scan.p_rule_met, scan.crossings
        if quadrature == "gauss-hermite":
            e_sd, e_var, _ = _smooth_moments(cur, s2, gh_nodes)
        else:
            e_sd, e_var = scan.expected_sd, scan.expected_var
        if n_cross > 1:
            notes.append(
                f"{d:g} events: the rule is met on {n_cross + 1} separate ranges of the new trial's "
                "estimate (P(HR < T | y, y_new) is not monotone in y_new); all are counted"
            )
        rows.append(PlanRow(
            events=d,
            se=se,
            p_trial_significant=float(low + 1.0 - high),
            p_trial_significant_benefit=float(low),
            p_trial_significant_one_sided=(float(_predictive_cdf(cur, s2, -z1 * se)) if z1 is not None else None),
            p_rule_met_after=p_met,
            p_decision_changes=(1.0 - p_met) if decided else p_met,
            expected_posterior_sd=e_sd,
            evsi=max(var_now - e_var, 0.0),
            patients=(d / event_prob) if event_prob is not None else None,
            best_p_below_after=scan.best_p_below,
        ))
    unreachable = [r for r in rows if r.best_p_below_after is not None and r.best_p_below_after <= level]
    if unreachable:
        best = max(r.best_p_below_after for r in unreachable)
        sizes_text = (f"any size given ({min(r.events for r in rows):g} to {max(r.events for r in rows):g} events)" if len(unreachable) == len(rows)
                      and len(rows) > 2 else ", ".join(f"{r.events:g}" for r in unreachable) + " events")
        why = (
            "a single trial's own sampling error and, with between-trial heterogeneity, the spread of "
            "trial effects bound what it can show about the randomised effect; more events help only "
            "up to the heterogeneity's limit" if spec.heterogeneity
            else "a single trial's own sampling error bounds what it can show: more events are needed"
        )
        notes.append(
            f"no result of a single new trial of {sizes_text} "
            f"meets the rule: the largest P(HR < {threshold:g}) any result gives is {best:.3f} <= {level:g} ({why})"
        )
    if post.grid.truncated:
        notes.append("the current posterior of tau has mass at the end of its grid; the plan inherits that truncation")
    return PlanResult(
        model=label or spec.model,
        spec=spec,
        threshold=threshold,
        level=level,
        allocation=float(allocation),
        one_sided=one_sided,
        p_below_now=p_now,
        decision_now=bool(decided),
        posterior_sd_now=math.sqrt(max(var_now, 0.0)),
        rows=rows,
        k=data.k,
        notes=notes,
        event_prob=event_prob,
    )
