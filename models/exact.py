r"""The exact engine: linear-Gaussian models integrated analytically, tau by quadrature.

Every model this engine accepts is, given the between-study SD tau, a Bayesian linear model

.. math::

    y \mid b, \tau \sim N\!\left(X b,\; V_\tau\right), \qquad
    V_\tau = \operatorname{diag}(s_i^2 + \tau^2), \qquad
    b \sim N(m_0, S_0), \quad S_0 = \operatorname{diag}(s_{0j}^2),

with ``b`` and ``X`` per model:

* ``re``: ``b = (mu)``, ``X = 1``;
* ``bias`` (variant ``additive``): ``b = (mu, delta)``, ``X = [1, nr]`` with ``nr_i = 1`` for a
  non-randomised study;
* ``bias`` (variant ``downweight``): ``b = (mu)``, ``X = 1`` and the within-study variance of a
  non-randomised study is ``s_i^2 = se_i^2 / alpha``. As a function of ``theta_i`` this is the
  within-study likelihood raised to the power alpha, ``N(y_i; theta_i, se_i^2)^alpha`` (up to a
  constant), so the power prior and the variance inflation give the same posterior;
* ``metareg`` / ``bias-metareg``: extra columns ``x_ij - c_j`` (``c_j`` = ``data.centres``) with
  coefficients ``beta_j``.

``effect=False`` drops the mu column (mu = 0: HR = 1, reported as a point mass; in the
three-level model, where mu = mu_rct = m + v_rct is not a coefficient, the whole prior is
conditioned on mu_rct = 0, see :class:`_Constraint`); ``heterogeneity=False`` fixes tau = 0
(a single conjugate update, no quadrature).

For fixed tau the coefficients integrate out in closed form (a conjugate normal update). With
``W = V_tau^{-1}``, the conditional posterior of ``b`` is normal with precision and mean

.. math::

    P_\tau = X^\top W X + S_0^{-1}, \qquad
    \hat b_\tau = P_\tau^{-1}\,(X^\top W y + S_0^{-1} m_0),

and the marginal likelihood ``p(y | tau) = N(y; X m_0, V_tau + X S_0 X^T)`` is evaluated without
forming that k x k matrix (matrix determinant lemma and Woodbury identity):

.. math::

    -2 \log p(y\mid\tau) = k \log 2\pi + \log|V_\tau| + \log|S_0| + \log|P_\tau|
        + (y - X\hat b_\tau)^\top W (y - X\hat b_\tau) + (\hat b_\tau - m_0)^\top S_0^{-1}
          (\hat b_\tau - m_0).

The marginal posterior ``p(tau | y) ∝ p(tau) p(y | tau)`` is one-dimensional and is integrated by
Simpson's rule on a grid that is uniform in ``u = asinh(tau / c)`` (linear near tau = 0, logarithmic
for large tau) and spans the region where the posterior density is within ``exp(-40)`` of its
maximum; the region is located on a wide pilot grid first. Every posterior summary of a linear
combination ``c^T b`` (mu, delta, beta_j, the HR at covariate values, the predictive effect
``mu + u_new`` of a new randomised study at the covariate centres) is then a finite mixture of
normals over the grid nodes, whose mean, SD, CDF and quantiles (Newton's method on the mixture
CDF) are computed to machine precision for that mixture. ``P(HR < T) = P(c^T b < log T)`` is the
mixture CDF at ``log T``. The study-specific (shrunken) effects ``theta_i = x_i^T b + u_i`` are
normal given tau too (Röver 2020, section 2.4):

.. math::

    \theta_i \mid \tau, y \sim N\!\left((1 - B_i) y_i + B_i x_i^\top \hat b_\tau,\;
        (1 - B_i) s_i^2 + B_i^2\, x_i^\top P_\tau^{-1} x_i\right),
    \qquad B_i = \frac{s_i^2}{s_i^2 + \tau^2}.

This is the computation of the bayesmeta R package (Röver C. 2020. Bayesian random-effects
meta-analysis using the bayesmeta R package. J Stat Softw 93(6):1-51, doi:10.18637/jss.v093.i06)
and of its meta-regression function ``bmr`` (Röver C, Friede T. 2023. Using the bayesmeta R package
for Bayesian random-effects meta-regression. Comput Methods Programs Biomed 229:107303,
doi:10.1016/j.cmpb.2022.107303), here with a fixed high-order quadrature rule instead of the DIRECT
algorithm's adaptive mixture, vectorised over the grid.

Only normal priors on mu, delta and beta keep the model conjugate given tau; any scale family of
:mod:`synthesis.models.priors` is accepted for tau (through ``PriorSpec.logpdf``).

API: :func:`exact_unsupported_reason` (``None`` or why not), :func:`fit_exact` (a
:class:`~synthesis.models.results.FitResult`), :func:`sweep_tau_priors` (one result per tau prior, and per
delta prior, sharing the prior-free work), :func:`exact_posterior` (the grid posterior itself:
:class:`NormalMixture` objects for any linear combination, the predictive effect and the study
effects, tau's CDF and quantiles).

Marginal likelihood. ``p(y) = int p(tau) p(y | tau) dtau`` with the full normal density above
(``k log 2 pi`` included) and the prior's own normalised density, by the same rule (Jacobian of
``u = asinh(tau / c)`` included); the prior mass outside the grid is bounded and noted
(:func:`_posterior`). ``ExactPosterior.log_marginal_likelihood``,
``FitResult.log_marginal_likelihood``: comparable across models and priors fitted to the same
data (Bayes factors, model weights; tests/test_marginal_likelihood.py).

Two variance parameters. The ``random`` and ``three-level`` bias variants add kappa, which enters
either the diagonal of ``V`` (random: ``V_ii = s_i^2 + tau^2 + kappa^2 nr_i``, ``b = (mu,
delta)``) or the prior variances of coefficients (three-level: ``b = (m, v_d)`` with
``v_d ~ N(0, kappa^2)``, ``X = [1, onehot(design)]``; mu = m + v_rct and delta = mean over
the other designs of v_d - v_rct are linear combinations of ``b``). :class:`_Layout` records
where each variance enters, so a model with cluster coefficients ``u_c ~ N(0, tau^2)`` and a
within-cluster variance in ``V`` is the same computation. Given (tau, kappa) ``b`` integrates
out as before, through a scaled update that allows a prior variance of 0
(:func:`_conditional_2d`); (tau, kappa) by a Gauss-Lobatto product rule in (asinh(tau / c_1),
asinh(kappa / c_2)) over the cells within exp(-30) of the maximum (located on a wide, then a
zoomed pilot grid). Every summary is a normal mixture over the 2-D nodes; the marginals of
tau and kappa integrate the other axis out, and their CDFs and quantiles come from the
polynomial through the log marginal density (:class:`ExactPosterior2D`). The three-level
no-effect model conditions the prior on mu_rct = m + v_rct = 0: ``m``'s prior mean and variance
then depend on kappa (:meth:`_Layout.prior_moments`) and kappa's prior is reweighted by the
prior density of mu_rct at 0 (:class:`_Constraint`), which makes its Bayes factor against the
effect model the Savage-Dickey ratio. :meth:`ExactPosterior.predictive_for` is the posterior
predictive of a new study's effect with every variance term (exact leave-one-out uses it).

Accuracy (tests/test_exact.py): with the default 257 nodes, doubling the grid changes no reported
number by more than 3e-7 relative for any tau prior family tested (k = 3 to 60); the eight-schools
example reproduces bayesmeta's printed tau summaries to every printed digit, and mu and the
shrinkage estimates agree with a brute-force 2-D quadrature; a bias-metareg fit agrees with a
4-D brute-force quadrature of the model's definition and with a dense covariance-form
computation on a different quadrature rule. 2-D (tests/test_exact_2d.py): mu summaries and
P(HR < 0.8) within 5e-6 of 4-D brute-force quadratures of both variants' definitions, log p(y)
within 1e-6 of them and within 1e-11 of a dense-covariance computation (the three-level
no-effect model too, with the Savage-Dickey identity to 1e-8 or better; leave-one-out
densities likewise); doubling the 29-node axes changes nothing by 1e-5 relative; PyMC agrees
(slow).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
from scipy import integrate, special
from scipy.interpolate import BarycentricInterpolator, CubicSpline

from synthesis.base import DEFAULT_THRESHOLDS, DESIGNS, INTERVAL_PROB, REFERENCE_DESIGN
from synthesis.errors import InputError, ModelError
from synthesis.models.multilevel import Clusters, Prepared, marginal_sums
from synthesis.models.priors import PriorSpec
from synthesis.models.results import FitResult, ParamSummary, RatioSummary, StudyEffect
from synthesis.models.spec import ModelData, ModelSpec, threshold_key

#: Default number of tau grid nodes (odd: Simpson's rule). Doubling it changes no reported
#: number in the 4th significant digit (tests/test_exact.py).
DEFAULT_GRID = 257
#: The grid covers the region where log p(tau | y) >= max - LOG_CUTOFF (exp(-40) ~ 4e-18).
LOG_CUTOFF = 40.0
#: Nodes of the wide pilot grid that locates the posterior mass of tau.
PILOT_POINTS = 256
#: A prior's 99.9% quantile counts at most this much when the pilot grid's span is set (heavy
#: tails such as lognormal_tau2(0, 400) reach 1e290; the data never put mass there, and a
#: truncated posterior is reported).
PILOT_PRIOR_CAP = 1e8
#: Largest (tau nodes x studies) block of the study-effect summaries held at once (8 MB per
#: array): memory stays flat in k (100,000 studies, issue #9).
_BLOCK_CELLS = 1_000_000
#: Largest (nodes x rows) block of a multilevel fit's row-effect moments: its ~40 temporary
#: arrays of at most 160 kB stay in cache and in the allocator's heap (2.5x faster than 1 MB
#: blocks, whose fresh pages fault in on every use).
_ML_BLOCK_CELLS = 20_000
#: Largest (tau nodes x studies) block of the conditional model's weighted sums (2 MB per
#: array: a few nodes per matrix product at k = 100,000, which is faster than larger blocks).
_CONDITIONAL_BLOCK_CELLS = 250_000
#: A note reports the share of the marginal likelihood outside the tau grid above this.
NEGLECTED_MASS_NOTE = 1e-6
#: Mixture components lighter than this fraction of the heaviest are dropped from sums.
_PRUNE = 1e-14
#: ... and so are the lightest components whose weights total less than this.
_PRUNE_MASS = 1e-12
#: The study-effect summaries drop the lightest nodes whose weights total less than this (the
#: mixtures are then renormalised): every mixture CDF moves by at most twice this, so each
#: quantile by at most 2e-9 / f(q) (f: the mixture density there; 3.4e-8 SD at the 2.5%
#: quantile of a normal), far below the quadrature's own error (~1e-5 relative).
STUDY_PRUNE_MASS = 1e-9
#: Their quantiles stop when a step is below this many mixture SDs: the error left is O(step^4),
#: ~1e-8 SD (:func:`mixture_quantiles`, ``accept``; measured at most 3.4e-9 on the log-HR scale
#: against the full computation, tests/test_multilevel_exact.py): one evaluation of the mixture
#: CDFs instead of about three.
STUDY_ACCEPT = 1e-2
_LOG_2PI = math.log(2.0 * math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_Z = float(special.ndtri(0.5 + INTERVAL_PROB / 2.0))  # 1.959964
_PROBS = np.array([0.5, (1.0 - INTERVAL_PROB) / 2.0, (1.0 + INTERVAL_PROB) / 2.0])
#: Largest (nodes x targets) block of :func:`mixture_quantiles` (four 512 kB work arrays: 1.7x
#: faster than 2 MB ones at 457 nodes x 300 targets), unless that is fewer targets than
#: _QUANTILE_MIN_TARGETS (the Python work per block would then dominate).
_QUANTILE_CELLS = 65_536
_QUANTILE_MIN_TARGETS = 64
#: The summary of a parameter fixed at 0 (mu with ``effect=False``, tau with
#: ``heterogeneity=False``).
_POINT_ZERO = ParamSummary(mean=0.0, median=0.0, sd=0.0, q025=0.0, q975=0.0)


# --------------------------------------------------------------------------------------------
# What the engine accepts
# --------------------------------------------------------------------------------------------
#: How :func:`exact_unsupported_reason` ends a reason that sampling would overcome.
PYMC_ADVICE = " — use engine='pymc'"


def without_pymc_advice(reason: str) -> str:
    """``reason`` without the advice to sample with PyMC, for callers where PyMC is no way out
    (a multilevel model's leave-one-cluster-out or power-scaling, a model average).

    Examples
    --------
    >>> without_pymc_advice("the exact engine needs normal priors on mu; mu has t" + PYMC_ADVICE)
    'the exact engine needs normal priors on mu; mu has t'
    """
    return reason.split(PYMC_ADVICE)[0]


def exact_unsupported_reason(
    spec: ModelSpec, data: ModelData, *, designs: Sequence[str] | None = None
) -> str | None:
    """Why the exact engine cannot fit ``spec`` to ``data``, or ``None`` when it can.

    The exact engine needs a model that is linear-Gaussian given its variance parameters
    (every model and bias variant: tau alone, or tau and kappa for the ``random`` and
    ``three-level`` variants), normal priors on mu, delta and beta, and no missing covariate
    values. The three-level model needs an rct design and at least one other design (among
    ``designs`` when given: the design levels of :func:`exact_posterior`).

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> spec = ModelSpec("bias", bias_variant="three-level", effect=False)
    >>> print(exact_unsupported_reason(spec, ModelData.from_table(table, spec)))
    None
    >>> one = ModelData.from_table(table, spec)
    >>> exact_unsupported_reason(spec, one, designs=["rct"])
    'the three-level model needs an rct design and at least one other design'
    """
    if spec.has_bias and spec.bias_variant == "three-level":
        levels = designs_present(data) if designs is None else list(designs)
        if len(levels) < 2 or REFERENCE_DESIGN not in levels:
            return "the three-level model needs an rct design and at least one other design"
    location = [n for n in ("mu", "delta", "beta") if n in spec.parameters]
    bad = [n for n in location if not getattr(spec.priors, n).is_normal]
    if bad:
        which = "; ".join(f"{n} has {getattr(spec.priors, n).label}" for n in bad)
        listed = " and ".join([", ".join(location[:-1]), location[-1]] if len(location) > 1 else location)
        return f"the exact engine needs normal priors on {listed}; {which}{PYMC_ADVICE}"
    if spec.has_covariates:
        if tuple(data.covariates) != tuple(spec.covariates):
            return (
                f"the data were extracted for covariates {list(data.covariates)}, the model asks "
                f"for {list(spec.covariates)}"
            )
        n_missing = data.n_missing
        if n_missing:
            noun = "value is" if n_missing == 1 else "values are"
            return (
                f"{n_missing} covariate {noun} missing; the exact engine cannot impute them{PYMC_ADVICE}"
            )
    if spec.multilevel and len(data.clusters) != data.k:
        return f"the data were extracted without the clusters of column {spec.cluster!r}"
    if data.k < 1:
        return "there are no studies to fit"
    return None


# --------------------------------------------------------------------------------------------
# Normal mixtures
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NormalMixture:
    r"""A finite mixture of normals ``sum_g w_g N(m_g, s_g^2)``: the exact posterior of a linear
    combination of the coefficients, one component per tau grid node."""

    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray

    def mean(self) -> float:
        return float(self.weights @ self.means)

    def sd(self) -> float:
        m = self.mean()
        return float(math.sqrt(max(self.weights @ (self.sds**2 + (self.means - m) ** 2), 0.0)))

    def cdf(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        z = (x[..., None] - self.means) / self.sds
        return special.ndtr(z) @ self.weights

    def pdf(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        z = np.subtract.outer(x, self.means)  # one work array, in place
        z /= self.sds
        z *= z
        z *= -0.5
        np.exp(z, out=z)
        return z @ (self.weights / self.sds) * _INV_SQRT_2PI

    def ppf(self, q: np.ndarray | float) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        out = mixture_quantiles(self.weights, self.means[:, None], self.sds[:, None], q.ravel())
        return out[0].reshape(q.shape)


def mixture_quantiles(
    W: np.ndarray,
    M: np.ndarray,
    S: np.ndarray,
    probs: np.ndarray,
    *,
    wi: np.ndarray | None = None,
    mi: np.ndarray | None = None,
    tol: float = 1e-12,
    accept: float | None = None,
    block: int = 2048,
) -> np.ndarray:
    r"""Quantiles of normal mixtures over the grid nodes.

    Mixture ``t`` has weights ``W[:, wi[t]]`` and component means/SDs ``M[:, mi[t]]``,
    ``S[:, mi[t]]`` (``W`` is (G,) or (G, n_w); ``M``, ``S`` are (G, n)); by default every column
    of ``M`` with the single weight column. Each quantile solves ``F(x) = p`` for the mixture
    CDF ``F`` by steps of the inverse function's Taylor series to third order,

    .. math::

        x' = x + h - \frac{F''}{2F'} h^2 + \Big(\frac{F''^2}{2F'^2} - \frac{F'''}{6F'}\Big) h^3,
        \qquad h = -\frac{F(x) - p}{F'(x)}

    (error O(h^4); the derivatives cost products only, no further normal CDF), safeguarded by
    bisection inside a bracket that always contains the root, from the Cornish-Fisher quantile
    of the mixture's first four moments (Cornish & Fisher 1938, Rev Inst Int Stat 5:307-320:
    skewness ``g1``, excess kurtosis ``g2``, ``z + (z^2 - 1) g1 / 6 + (z^3 - 3z) g2 / 24 -
    (2z^3 - 5z) g1^2 / 36``, used when it moves the normal quantile ``z`` by less than one SD;
    typically 10 times closer to the root than the moment-matched normal). Only unconverged
    targets are iterated, in blocks of about ``block`` targets.

    A target has converged when a step moves it by at most ``tol (1 + |x|)`` (and then takes
    that step). With ``accept``, also when a step is at most ``accept`` times the mixture's SD:
    the error left after a step of size ``e`` is O(e^4), so ``accept = 1e-2`` leaves about
    1e-8 SD and saves the evaluation that would confirm it (the study-effect summaries of
    :func:`fit_exact`, :data:`STUDY_ACCEPT`). Returns a (number of mixtures, len(probs)) array.

    Examples
    --------
    Median and 97.5% quantile of the equal mixture of N(-1, 1) and N(1, 1) (the median is 0 by
    symmetry):

    >>> q = mixture_quantiles(np.array([0.5, 0.5]), np.array([[-1.0], [1.0]]),
    ...                       np.array([[1.0], [1.0]]), np.array([0.5, 0.975]))
    >>> q.shape, np.round(q, 3).tolist()
    ((1, 2), [[0.0, 2.646]])
    """
    W = W.reshape(W.shape[0], -1)
    probs = np.asarray(probs, dtype=float)
    mi = np.arange(M.shape[1]) if mi is None else np.asarray(mi)
    wi = np.zeros(mi.size, dtype=int) if wi is None else np.asarray(wi)
    n_p, n_mix, G = probs.size, mi.size, W.shape[0]
    q = np.empty((n_mix, n_p))
    z_p = special.ndtri(probs)
    one_w = W.shape[1] == 1
    # mixtures per block: about ``block`` targets, at most _QUANTILE_CELLS node-target cells but
    # at least _QUANTILE_MIN_TARGETS targets (thousands of nodes: a PyMC fit's draws)
    per = max(1, max(min(block, _QUANTILE_CELLS // max(G, 1)), _QUANTILE_MIN_TARGETS) // max(n_p, 1))
    n_t = min(per, n_mix) * n_p
    # work arrays reused by every iteration (in place: fresh megabyte temporaries cost page
    # faults that took as long as the arithmetic)
    work = [np.empty(G * n_t) for _ in range(4)]
    for m0 in range(0, n_mix, per):
        ms = slice(m0, min(m0 + per, n_mix))
        cm, cw = mi[ms], wi[ms]
        Mm, Sm = M[:, cm], S[:, cm]
        Wm = W[:, :1] if one_w else W[:, cw]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # point masses: the normal start
            # the start: Cornish-Fisher from each mixture's first four moments

            def wmix(X: np.ndarray, Wm: np.ndarray = Wm) -> np.ndarray:
                return Wm[:, 0] @ X if one_w else np.einsum("gt,gt->t", Wm, X)

            mean = wmix(Mm)
            c = Mm - mean
            c2, s2 = c * c, Sm * Sm
            var = np.maximum(wmix(c2 + s2), 1e-300)
            sd = np.sqrt(var)
            g1 = (wmix(c * (c2 + 3.0 * s2)) / (var * sd))[:, None]
            g2 = (wmix(c2 * (c2 + 6.0 * s2) + 3.0 * s2 * s2) / (var * var) - 3.0)[:, None]
            z = z_p[None, :]
            zcf = z + (z * z - 1.0) * g1 / 6.0 + (z**3 - 3.0 * z) * g2 / 24.0 - (2.0 * z**3 - 5.0 * z) * g1 * g1 / 36.0
            zcf = np.where(np.isfinite(zcf) & (np.abs(zcf - z) < 1.0), zcf, z)
            inv_s = 1.0 / Sm
        lo = np.repeat((Mm - 40.0 * Sm).min(axis=0), n_p)
        hi = np.repeat((Mm + 40.0 * Sm).max(axis=0), n_p)
        x = np.clip((mean[:, None] + sd[:, None] * zcf).ravel(), lo, hi)
        step_ok = np.repeat(accept * sd, n_p) if accept is not None else np.zeros(x.size)
        pp = np.tile(probs, cm.size)
        active = np.arange(x.size)
        for _ in range(100):
            na = active.size
            Z, Iv, B, C = (buf[: G * na].reshape(G, na) for buf in work)  # contiguous views
            if na == x.size:  # every target (the first iteration): broadcast, no gathers
                np.subtract(x.reshape(-1, n_p)[None], Mm[:, :, None], out=Z.reshape(G, -1, n_p))
                np.copyto(Iv.reshape(G, -1, n_p), inv_s[:, :, None])
                col = np.arange(na) // n_p
            else:
                col = active // n_p  # the mixture (column of Mm) of each active target
                np.take(Mm, col, axis=1, out=Z)
                np.subtract(x[active], Z, out=Z)
                np.take(inv_s, col, axis=1, out=Iv)
            Z *= Iv  # z = (x - m) / s
            Wa = Wm[:, 0] if one_w else Wm[:, col]

            def wsum(X: np.ndarray, Wa: np.ndarray = Wa) -> np.ndarray:
                return Wa @ X if one_w else np.einsum("gt,gt->t", Wa, X)

            special.ndtr(Z, out=B)
            err = wsum(B) - pp[active]
            xa = x[active]
            lo[active] = np.where(err <= 0.0, xa, lo[active])
            hi[active] = np.where(err >= 0.0, xa, hi[active])
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # (near-)point masses
                np.multiply(Z, Z, out=B)
                B *= -0.5
                np.exp(B, out=B)
                B *= Iv  # phi(z) / s
                f1 = wsum(B) * _INV_SQRT_2PI  # F' = sum w phi / s
                B *= Iv
                np.multiply(B, Z, out=C)
                f2 = -wsum(C) * _INV_SQRT_2PI  # F'' = -sum w phi z / s^2
                Z *= Z
                Z -= 1.0
                B *= Z
                B *= Iv
                f3 = wsum(B) * _INV_SQRT_2PI  # F''' = sum w phi (z^2 - 1) / s^3
                # the inverse function's Taylor series to third order (error O(step^4)), or to
                # second (Halley-like) or first (Newton) where a higher term is not finite
                h = -err / f1
                a2 = f2 / f1
                second = xa + h - 0.5 * a2 * h * h
                new = second + (0.5 * a2 * a2 - f3 / (6.0 * f1)) * h**3
                new = np.where(np.isfinite(new), new, np.where(np.isfinite(second), second, xa + h))
            bad = ~np.isfinite(new) | (new < lo[active]) | (new > hi[active])
            new = np.where(bad, 0.5 * (lo[active] + hi[active]), new)
            x[active] = new
            step = np.abs(new - xa)
            active = active[(step > tol * (1.0 + np.abs(xa))) & (bad | (step > step_ok[active]))]
            if active.size == 0:
                break
        q[ms] = x.reshape(cm.size, n_p)
    return q


def _spline_quantiles(u: np.ndarray, dens: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Quantiles (in u) of densities tabulated at nodes ``u``: ``dens`` is (G, P), one column per
    distribution. Each density is interpolated by a cubic spline and integrated exactly (the
    antiderivative is a piecewise quartic); every quantile is found by Newton's method inside the
    grid interval that brackets it. Returns (P, len(probs))."""
    probs = np.asarray(probs, dtype=float)
    anti = CubicSpline(u, dens, axis=0).antiderivative()
    cum = anti(u)  # (G, P), cum[0] = 0
    total = cum[-1]
    cum = cum / total
    P = dens.shape[1]
    j = np.clip((cum[:, :, None] < probs[None, None, :]).sum(axis=0), 1, u.size - 1)  # (P, n_p)
    col = np.broadcast_to(np.arange(P)[:, None], j.shape)
    origin = u[j - 1]
    lo, hi = origin.copy(), u[j]
    f_lo, f_hi = cum[j - 1, col], cum[j, col]
    # CDF on the bracketing interval: sum_i c_i (x - origin)^(4 - i), c = (5, P, n_p)
    c = anti.c[:, j - 1, col] / total[col]
    pw = np.arange(c.shape[0] - 1, -1, -1)[:, None, None]
    dc = c[:-1] * pw[:-1]  # derivative coefficients, powers pw - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(f_hi > f_lo, lo + (probs - f_lo) / (f_hi - f_lo) * (hi - lo), 0.5 * (lo + hi))
    x = np.clip(x, lo, hi)
    for _ in range(60):
        dx = x - origin
        err = (c * dx**pw).sum(axis=0) - probs
        slope = (dc * dx ** (pw[:-1] - 1)).sum(axis=0)
        lo = np.where(err <= 0.0, x, lo)
        hi = np.where(err >= 0.0, x, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = x - err / slope
        bad = ~np.isfinite(new) | (new < lo) | (new > hi)
        new = np.where(bad, 0.5 * (lo + hi), new)
        done = np.abs(new - x) <= 1e-14 * (1.0 + np.abs(x))
        x = new
        if done.all():
            break
    return x


# --------------------------------------------------------------------------------------------
# The linear model given tau
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Design:
    """Everything the conditional (given tau) computation needs; independent of the tau prior."""

    X: np.ndarray  # (k, p)
    y: np.ndarray  # (k,)
    s2: np.ndarray  # (k,) within-study variances used in the likelihood
    m0: np.ndarray  # (p,)
    s0: np.ndarray  # (p,)
    mu_index: int | None  # None: mu fixed at 0 (spec.effect False)
    delta_index: int | None
    beta_index: dict[str, int]
    b_ref: np.ndarray  # (p,) unweighted least-squares coefficients (the centring of the sums)
    features: np.ndarray  # (k, p(p+1)/2 + p + 1) columns whose weighted sums make the model
    #: Models with a second variance parameter kappa: where tau and kappa enter (else None).
    layout: _Layout | None = None
    #: Multilevel models (``spec.cluster``): the clusters and the prepared Woodbury sums (the
    #: second variance parameter is then tau_within; ``layout`` is a placeholder with no terms).
    multilevel: _Multilevel | None = None
    #: Reported quantities that are combinations of several coefficients (three-level: mu, delta).
    contrasts: dict[str, np.ndarray] = field(default_factory=dict)
    #: Three-level: the coefficient vector of each design mean mu_d (all zeros for rct in the
    #: no-effect model, where mu_rct = 0), and of the mean of a design without a coefficient
    #: (``m``: its offset v_d ~ N(0, kappa^2) is independent of the data).
    levels: dict[str, np.ndarray] = field(default_factory=dict)
    absent_level: np.ndarray | None = None

    @property
    def has_delta(self) -> bool:
        return self.delta_index is not None or "delta" in self.contrasts


@dataclass(frozen=True)
class _Multilevel:
    r"""A multilevel model's structure: ``y_ij = x_ij' b + u_i + e_ij + eps_ij`` with ``u_i ~
    N(0, tau^2)``, ``e_ij ~ N(0, tau_within^2)`` and ``eps_i ~ N(0, V_i)`` (``V_i``: the
    sampling variances, correlation rho within a cluster). Given (tau, tau_within) the marginal
    covariance is block-diagonal, diagonal plus rank 1 or 2 per cluster, and ``X'M^{-1}X``,
    ``X'M^{-1}r``, ``r'M^{-1}r`` and ``log|M|`` come from the per-cluster Woodbury sums of
    :mod:`synthesis.models.multilevel` (``prep``: over the columns ``[X, r]``)."""

    clusters: Clusters
    se: np.ndarray  # (k,) within-study SDs used in the likelihood
    prep: Prepared


@dataclass(frozen=True)
class _Constraint:
    r"""The three-level model conditioned on ``mu_rct = m + v_rct = 0`` (its no-effect model).

    The whole prior of the effect model is conditioned, so that the Bayes factor is the
    Savage-Dickey density ratio ``p(mu_rct = 0 | y) / p(mu_rct = 0)`` of the effect model
    (Dickey 1971, Ann Math Stat 42(1):204-223; Wagenmakers et al. 2010, Cogn Psychol 60(3):158-189,
    doi:10.1016/j.cogpsych.2009.12.001): given kappa, ``(m, v)`` is Gaussian and the constraint
    eliminates ``v_rct = -m`` (:meth:`_Layout.prior_moments`); and since the prior density of
    ``mu_rct`` at 0 given kappa is ``N(0; m0, s0^2 + kappa^2)``, kappa's prior becomes

    .. math::

        p_0(\kappa) = \frac{p(\kappa)\, N(0;\ m_0,\ s_0^2 + \kappa^2)}{c}, \qquad
        c = \int_0^\infty p(\kappa)\, N(0;\ m_0,\ s_0^2 + \kappa^2)\, d\kappa = p(\mu_{rct} = 0),

    (tau's prior is unchanged: mu_rct does not depend on tau). ``c`` by adaptive quadrature
    (:func:`_null_kappa_norm`).
    """

    index: int  # the coefficient m
    m0: float  # mu's prior mean and SD
    s0: float
    log_norm: float  # log c


def _null_kappa_norm(kappa_prior: PriorSpec, m0: float, s0: float) -> float:
    """``log c = log int p(kappa) N(0; m0, s0^2 + kappa^2) dkappa`` (:class:`_Constraint`) by
    adaptive Gauss-Kronrod quadrature in ``u = asinh(kappa / s0)`` over the prior's support
    (relative error below 1e-12)."""
    lo, med, _, hi = _prior_points(kappa_prior)
    u_lo, u_hi = math.asinh(lo / s0), (math.asinh(hi / s0) if np.isfinite(hi) else 60.0)

    def f(u: float) -> float:
        k = s0 * math.sinh(u)
        v = s0 * s0 + k * k
        with np.errstate(divide="ignore"):
            lp = float(kappa_prior.logpdf(np.array([k]))[0])
        return math.exp(lp - 0.5 * (_LOG_2PI + math.log(v) + m0 * m0 / v)) * s0 * math.cosh(u)

    breaks = [math.asinh(x / s0) for x in (med, 10.0 * med) if np.isfinite(x) and u_lo < math.asinh(x / s0) < u_hi]
    value, _ = integrate.quad(f, u_lo, u_hi, points=breaks or None, limit=200, epsabs=0.0, epsrel=1e-13)
    return math.log(value)


@dataclass(frozen=True)
class _Layout:
    r"""Where the two variance parameters enter a linear-Gaussian model.

    .. math::

        V_{ii} = s_i^2 + \tau^2 a_i + \kappa^2 h_i, \qquad
        \operatorname{Var}(b_j) = s_{0j}^2 \text{ (fixed)}, \ \tau^2 \ [j \in T] \text{ or }
        \kappa^2 \ [j \in K].

    ``random`` bias: ``a = 1``, ``h = nr`` (the study-specific bias kappa w_i of a non-randomised
    study adds to its variance). ``three-level``: ``a = 1``, ``h = 0``, ``K`` = the design
    offsets ``v_d ~ N(0, kappa^2)``. A multilevel model with cluster effects
    ``u_c ~ N(0, tau^2)`` as coefficients and a within-cluster variance in ``V`` is
    ``a = 0``/``h = 1``, ``T`` = the cluster coefficients.
    """

    a: np.ndarray  # (k,) weight of tau^2 in V
    h: np.ndarray  # (k,) weight of kappa^2 in V
    tau_coef: np.ndarray  # (p,) bool: prior variance tau^2
    kappa_coef: np.ndarray  # (p,) bool: prior variance kappa^2
    #: The three-level no-effect model: the coefficient ``m`` whose prior N(m0, s0^2) is
    #: conditioned on ``m + v_rct = 0`` with ``v_rct ~ N(0, kappa^2)`` (:meth:`prior_moments`),
    #: and kappa's prior conditioned on it too (:meth:`kappa_log_factor`). ``None`` otherwise.
    constrained: _Constraint | None = None

    def prior_moments(self, m0: np.ndarray, s0: np.ndarray, tau: np.ndarray, kappa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Prior means and variances (G, p) of the coefficients at nodes (tau_g, kappa_g).

        Fixed ``N(m0_j, s0_j^2)``, or variance tau^2 / kappa^2 (mean 0) for the coefficients in
        ``tau_coef`` / ``kappa_coef``; the constrained coefficient has

        .. math::

            m \mid m + v_{rct} = 0,\ \kappa \sim N\!\left(\frac{m_0 \kappa^2}{s_0^2 + \kappa^2},\;
                \frac{s_0^2 \kappa^2}{s_0^2 + \kappa^2}\right)

        (the product N(m; m0, s0^2) N(-m; 0, kappa^2), normalised), which is the point mass
        m = 0 at kappa = 0.
        """
        G = tau.size
        mean = np.tile(m0, (G, 1))
        var = np.tile(s0**2, (G, 1))
        var[:, self.tau_coef] = (tau * tau)[:, None]
        var[:, self.kappa_coef] = (kappa * kappa)[:, None]
        if self.constrained is not None:
            c = self.constrained
            k2 = kappa * kappa
            with np.errstate(invalid="ignore", divide="ignore"):
                shrink = k2 / (c.s0**2 + k2)
            mean[:, c.index] = c.m0 * shrink
            var[:, c.index] = c.s0**2 * shrink
        return mean, var

    def kappa_log_factor(self, kappa: np.ndarray) -> np.ndarray:
        """What the constraint adds to log p(kappa): ``log N(0; m0, s0^2 + kappa^2) - log c``
        (0 without a constraint); see :class:`_Constraint`."""
        if self.constrained is None:
            return np.zeros(np.shape(kappa))
        c = self.constrained
        v = c.s0**2 + np.asarray(kappa, dtype=float) ** 2
        return -0.5 * (_LOG_2PI + np.log(v) + c.m0**2 / v) - c.log_norm

    def random_variance(self, tau: np.ndarray, kappa: np.ndarray, studies: slice = slice(None)) -> np.ndarray:
        """``tau^2 a_i + kappa^2 h_i`` per node (rows) and study (columns)."""
        return (tau * tau)[:, None] * self.a[None, studies] + (kappa * kappa)[:, None] * self.h[None, studies]


def _sufficient_columns(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centring ``b_ref`` and the columns ``X_a X_b`` (a <= b, in ``np.triu_indices``
    order), ``X_a r`` and ``r^2`` with ``r = y - X b_ref``.

    Their sums weighted by ``w = 1 / (s^2 + tau^2)`` are ``X'WX``, ``X'Wr`` and ``r'Wr``: one
    matrix product per block of tau nodes gives the whole conditional model. Centring on the
    least-squares fit keeps the quadratic form ``(y - Xb)'W(y - Xb)`` free of cancellation.
    """
    b_ref = np.linalg.lstsq(X, y, rcond=None)[0]
    r = y - X @ b_ref
    ia, ib = np.triu_indices(X.shape[1])
    return b_ref, np.column_stack([X[:, ia] * X[:, ib], X * r[:, None], r * r])


def designs_present(data: ModelData) -> list[str]:
    """The designs of :data:`synthesis.base.DESIGNS` present in the data, rct first (the
    three-level model's design-level means; as in :mod:`synthesis.models.pymc_models`)."""
    return [d for d in DESIGNS if d in set(data.designs)]


def _design(data: ModelData, spec: ModelSpec, designs: Sequence[str] | None = None) -> _Design:
    """The linear model of ``spec`` on ``data``. ``designs``: the three-level model's design
    levels (default: those present in the data); a level without studies keeps its offset's
    prior (a column of zeros), as in a leave-one-out refit."""
    k = data.k
    variant = spec.bias_variant if spec.has_bias else None
    null_three_level = variant == "three-level" and not spec.effect
    cols = [np.ones(k)] if spec.effect else []
    priors: list[PriorSpec | None] = [spec.priors.mu] if spec.effect else []
    delta_index = None
    nr = np.asarray(data.nonrandomised, dtype=bool)
    contrasts: dict[str, np.ndarray] = {}
    if variant in ("additive", "random"):
        delta_index = len(cols)
        cols.append(nr.astype(float))
        priors.append(spec.priors.delta)
    present: list[str] = []
    if variant == "three-level":  # b = (m, v_d for each design present), v_d ~ N(0, kappa^2)
        present = designs_present(data) if designs is None else list(designs)
        if null_three_level:
            # mu_rct = m + v_rct = 0: the rct studies' mean is 0, v_rct = -m is eliminated
            present = [name for name in present if name != REFERENCE_DESIGN]
            cols.append(np.array([d != REFERENCE_DESIGN for d in data.designs], dtype=float))
            priors.append(spec.priors.mu)
        for name in present:
            cols.append(np.array([d == name for d in data.designs], dtype=float))
            priors.append(None)
    beta_index: dict[str, int] = {}
    if spec.has_covariates:
        for j, name in enumerate(spec.covariates):
            beta_index[name] = len(cols)
            cols.append(np.asarray(data.x[:, j], dtype=float) - float(data.centres[j]))
            priors.append(spec.priors.beta)
    se = np.asarray(data.se, dtype=float)
    s2 = se**2
    if spec.has_bias and spec.bias_variant == "downweight":
        s2 = np.where(nr, s2 / spec.alpha, s2)
    X = np.column_stack(cols) if cols else np.zeros((k, 0))
    y = np.asarray(data.y, dtype=float)
    p = X.shape[1]
    layout = None
    if variant in ("random", "three-level"):
        kappa_coef = np.array([q is None for q in priors], dtype=bool)
        constrained = None
        if null_three_level:
            m0, s0 = (float(v) for v in spec.priors.mu.params[:2])
            constrained = _Constraint(0, m0, s0, _null_kappa_norm(spec.priors.kappa, m0, s0))
        layout = _Layout(
            a=np.ones(k),
            h=nr.astype(float) if variant == "random" else np.zeros(k),
            tau_coef=np.zeros(p, dtype=bool),
            kappa_coef=kappa_coef,
            constrained=constrained,
        )
    levels: dict[str, np.ndarray] = {}
    absent_level = None
    if variant == "three-level":
        # design means mu_d = m + v_d (coefficient 0 is m, 1 + i is v of present[i]);
        # reported mu = mu_rct; delta = mean over the other designs of mu_d - mu_rct
        absent_level = np.zeros(p)
        absent_level[0] = 1.0
        for i, name in enumerate(present):
            levels[name] = absent_level.copy()
            levels[name][1 + i] = 1.0
        if null_three_level:
            levels[REFERENCE_DESIGN] = np.zeros(p)
        others = [name for name in levels if name != REFERENCE_DESIGN]
        delta_c = sum(levels[name] for name in others) / len(others) - levels[REFERENCE_DESIGN]
        contrasts = {"mu": levels[REFERENCE_DESIGN].copy(), "delta": delta_c}
    b_ref, features = _sufficient_columns(X, y)
    multilevel = None
    if spec.multilevel:
        clusters = Clusters.from_labels(data.clusters, rho=spec.rho, name=str(spec.cluster))
        se_l = np.sqrt(s2)
        multilevel = _Multilevel(clusters, se_l, Prepared(clusters, se_l, np.column_stack([X, y - X @ b_ref])))
        layout = _Layout(a=np.zeros(k), h=np.zeros(k), tau_coef=np.zeros(p, dtype=bool), kappa_coef=np.zeros(p, dtype=bool))
    return _Design(
        multilevel=multilevel,
        X=X,
        y=y,
        s2=s2,
        m0=np.array([q.params[0] if q is not None else 0.0 for q in priors]),
        s0=np.array([q.params[1] if q is not None else 0.0 for q in priors]),
        mu_index=0 if spec.effect else None,
        delta_index=delta_index,
        beta_index=beta_index,
        b_ref=b_ref,
        features=features,
        layout=layout,
        contrasts=contrasts,
        levels=levels,
        absent_level=absent_level,
    )


@dataclass(frozen=True)
class _Conditional:
    """The model given tau at each node: log p(y | tau), E[b | tau, y] and Cov[b | tau, y]."""

    tau: np.ndarray  # (G,)
    loglik: np.ndarray  # (G,)
    b_mean: np.ndarray  # (G, p)
    b_cov: np.ndarray  # (G, p, p)
    kappa: np.ndarray | None = None  # (G,) models with a second variance parameter


def _weighted_sums(d: _Design, tau: np.ndarray, kappa: np.ndarray | None = None) -> np.ndarray:
    """Per node (rows): the sums of ``d.features`` weighted by ``w = 1 / (s^2 + tau^2)`` (one
    matrix product per block of nodes of at most ``_CONDITIONAL_BLOCK_CELLS`` node-study cells),
    then ``log|V_tau|`` in the last column. The only O(k) work of the conditional model.
    With ``kappa`` (one value per node), ``V = s^2 + tau^2 a + kappa^2 h`` (``d.layout``)."""
    out = np.empty((tau.size, d.features.shape[1] + 1))
    step = max(1, _CONDITIONAL_BLOCK_CELLS // max(d.y.size, 1))
    for i in range(0, tau.size, step):
        t = tau[i : i + step]
        if kappa is None:
            v = d.s2[None, :] + (t * t)[:, None]  # (nodes, k)
        else:
            v = d.s2[None, :] + d.layout.random_variance(t, kappa[i : i + step])
        out[i : i + step, -1] = _log_sum(v)
        out[i : i + step, :-1] = np.reciprocal(v, out=v) @ d.features
    return out


#: Mantissas multiplied before one logarithm in :func:`_log_sum`: each is in [0.5, 1), so a
#: product of 256 stays above 0.5^256 ~ 9e-78 (no underflow).
_MANTISSA_RUN = 256


def _log_sum(v: np.ndarray) -> np.ndarray:
    """``log(v).sum(axis=1)`` for positive finite ``v`` (rows), with one logarithm per
    :data:`_MANTISSA_RUN` entries: ``v = m 2^e`` (``frexp``), ``sum log v = sum log(prod m) +
    log 2 sum e`` (about 4x faster; equal to rounding).

    Examples
    --------
    >>> v = np.random.default_rng(0).uniform(1e-6, 1e6, size=(3, 1000))
    >>> bool(np.allclose(_log_sum(v), np.log(v).sum(axis=1), rtol=1e-13))
    True
    """
    m, e = np.frexp(v)
    n = m.shape[1]
    full = n - n % _MANTISSA_RUN
    out = e.sum(axis=1, dtype=float) * math.log(2.0)
    if full:
        out += np.log(m[:, :full].reshape(m.shape[0], -1, _MANTISSA_RUN).prod(axis=2)).sum(axis=1)
    if full < n:
        out += np.log(m[:, full:].prod(axis=1))
    return out


def _conditional(d: _Design, tau: np.ndarray, sums_cache: dict[bytes, np.ndarray] | None = None) -> _Conditional:
    """Conjugate update of ``b`` and the marginal likelihood at every tau node (vectorised).

    ``sums_cache`` keeps the weighted sums (:func:`_weighted_sums`) by node set, for designs that
    differ in their priors only (``m0``, ``s0``): a sweep over delta priors computes them once
    for its pilot grid.
    """
    tau = np.asarray(tau, dtype=float)
    if sums_cache is None:
        sums = _weighted_sums(d, tau)
    else:
        sums = sums_cache.get(tau.tobytes())
        if sums is None:
            sums = sums_cache[tau.tobytes()] = _weighted_sums(d, tau)
    p = d.X.shape[1]
    ia, ib = np.triu_indices(p)
    xwx = np.empty((tau.size, p, p))
    xwx[:, ia, ib] = sums[:, : ia.size]
    xwx[:, ib, ia] = sums[:, : ia.size]
    xwr = sums[:, ia.size : ia.size + p]
    rwr = sums[:, ia.size + p]
    log_det_v = sums[:, -1]
    return _conjugate(d, tau, xwx, xwr, rwr, log_det_v)


def _conjugate(
    d: _Design, tau: np.ndarray, xwx: np.ndarray, xwr: np.ndarray, rwr: np.ndarray, log_det_v: np.ndarray,
    kappa: np.ndarray | None = None,
) -> _Conditional:
    """The conjugate update of ``b`` (fixed normal priors) from the weighted sums ``X'WX``,
    ``X'Wr``, ``r'Wr`` and ``log|V|`` at each node (``W = V^{-1}``, ``r = y - X b_ref``)."""
    p = d.X.shape[1]
    prec0 = 1.0 / d.s0**2
    prec = xwx.copy()
    idx = np.arange(p)
    prec[:, idx, idx] += prec0
    rhs = xwr + xwx @ d.b_ref + prec0 * d.m0  # X'Wy + S0^-1 m0
    chol = np.linalg.cholesky(prec)
    cov = np.linalg.inv(prec)
    b_mean = np.einsum("gij,gj->gi", cov, rhs)
    shift = b_mean - d.b_ref  # (y - X b) = r - X shift
    quad = (
        rwr
        - 2.0 * np.einsum("gi,gi->g", shift, xwr)
        + np.einsum("gi,gij,gj->g", shift, xwx, shift)
        + ((b_mean - d.m0) ** 2) @ prec0
    )
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    loglik = -0.5 * (d.y.size * _LOG_2PI + log_det_v + np.log(d.s0**2).sum() + logdet + quad)
    return _Conditional(tau=tau, loglik=loglik, b_mean=b_mean, b_cov=cov, kappa=kappa)


def _conditional_ml(d: _Design, tau: np.ndarray, tau_w: np.ndarray) -> _Conditional:
    """The conditional model of a multilevel design at nodes ``(tau_g, tau_within_g)``: the
    per-cluster Woodbury sums at each distinct tau_within (O(k) each), combined with every
    tau (O(clusters) per node), then the conjugate update of ``b`` (:func:`_conjugate`)."""
    tau = np.asarray(tau, dtype=float)
    tau_w = np.asarray(tau_w, dtype=float)
    ml = d.multilevel
    assert ml is not None
    values, index = np.unique(tau_w * tau_w, return_inverse=True)
    zmz, logdet = marginal_sums(ml.clusters, ml.prep.within(values), tau * tau, index.ravel())
    p = d.X.shape[1]
    return _conjugate(d, tau, zmz[:, :p, :p], zmz[:, :p, p], zmz[:, p, p], logdet, kappa=tau_w)


def _conditional_2d(d: _Design, tau: np.ndarray, kappa: np.ndarray) -> _Conditional:
    r"""The conditional model at nodes ``(tau_g, kappa_g)`` of a two-variance model
    (``d.layout``): ``V = diag(s^2 + tau^2 a + kappa^2 h)`` and prior means ``m0`` and variances
    ``S0`` that may depend on the node (and vanish at kappa = 0; :meth:`_Layout.prior_moments`).

    With ``D = S0^{1/2}`` (per node), ``A = I + D X'WX D``, ``z = A^{-1} D X'W(y - X m0)``:
    ``E[b | .] = m0 + D z``, ``Cov[b | .] = D A^{-1} D``, ``log|S0| + log|P| = log|A|`` and
    ``(b - m0)' S0^{-1} (b - m0) = z'z``, so that a coefficient whose prior variance is 0 is
    fixed at its prior mean instead of dividing by zero; otherwise as :func:`_conditional`.
    """
    tau = np.asarray(tau, dtype=float)
    kappa = np.asarray(kappa, dtype=float)
    sums = _weighted_sums(d, tau, kappa)
    p = d.X.shape[1]
    G = tau.size
    ia, ib = np.triu_indices(p)
    xwx = np.empty((G, p, p))
    xwx[:, ia, ib] = sums[:, : ia.size]
    xwx[:, ib, ia] = sums[:, : ia.size]
    xwr = sums[:, ia.size : ia.size + p]
    rwr = sums[:, ia.size + p]
    log_det_v = sums[:, -1]
    m0, var0 = d.layout.prior_moments(d.m0, d.s0, tau, kappa)
    D = np.sqrt(var0)
    g = xwr + np.einsum("gij,gj->gi", xwx, d.b_ref - m0)  # X'W(y - X m0)
    A = D[:, :, None] * xwx * D[:, None, :]
    idx = np.arange(p)
    A[:, idx, idx] += 1.0
    chol = np.linalg.cholesky(A)
    a_inv = np.linalg.inv(A)
    z = np.einsum("gij,gj->gi", a_inv, D * g)
    b_mean = m0 + D * z
    cov = D[:, :, None] * a_inv * D[:, None, :]
    shift = b_mean - d.b_ref
    quad = (
        rwr
        - 2.0 * np.einsum("gi,gi->g", shift, xwr)
        + np.einsum("gi,gij,gj->g", shift, xwx, shift)
        + np.einsum("gi,gi->g", z, z)
    )
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    loglik = -0.5 * (d.y.size * _LOG_2PI + log_det_v + logdet + quad)
    return _Conditional(tau=tau, loglik=loglik, b_mean=b_mean, b_cov=cov, kappa=kappa)


# --------------------------------------------------------------------------------------------
# The tau grid
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Grid:
    """Quadrature nodes in tau, uniform in u = asinh(tau / c), with Simpson weights (in tau)."""

    tau: np.ndarray
    u: np.ndarray
    c: float
    qweights: np.ndarray  # int g(tau) dtau ≈ sum qweights * g(tau_nodes)
    truncated: bool = False


def _simpson(n: int, h: float) -> np.ndarray:
    wts = np.full(n, 2.0)
    wts[1::2] = 4.0
    wts[0] = wts[-1] = 1.0
    return wts * h / 3.0


def _make_grid(t_lo: float, t_hi: float, c: float, n: int, truncated: bool = False) -> _Grid:
    n = max(int(n), 5)
    n += 1 - n % 2  # odd for Simpson's rule
    u_lo, u_hi = math.asinh(t_lo / c), math.asinh(t_hi / c)
    u = np.linspace(u_lo, u_hi, n)
    tau = np.clip(c * np.sinh(u), t_lo, t_hi)
    tau[0], tau[-1] = t_lo, t_hi
    q = _simpson(n, (u_hi - u_lo) / (n - 1)) * c * np.cosh(u)
    return _Grid(tau=tau, u=u, c=c, qweights=q, truncated=truncated)


@lru_cache(maxsize=64)
def _lobatto(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Lobatto-Legendre nodes and weights on [-1, 1] (both ends included; exact for
    polynomials of degree 2n - 3): the interior nodes are the roots of P'_{n-1}, the weights
    2 / (n (n - 1) P_{n-1}(x)^2). Cached (read-only arrays)."""
    leg = np.polynomial.legendre.Legendre.basis(n - 1)
    x = np.concatenate([[-1.0], np.sort(leg.deriv().roots().real), [1.0]])
    w = 2.0 / (n * (n - 1) * leg(x) ** 2)
    x.flags.writeable = False
    w.flags.writeable = False
    return x, w


@lru_cache(maxsize=64)
def _lobatto_to_fine(n: int) -> np.ndarray:
    """The (FINE_POINTS, n) matrix of the polynomial interpolation from the n Gauss-Lobatto nodes
    to FINE_POINTS uniform points on [-1, 1] (the barycentric interpolant is linear in the values
    and unchanged by an affine map of the axis). Cached (read-only)."""
    out = interpolation_matrix(_lobatto(n)[0], np.linspace(-1.0, 1.0, FINE_POINTS))
    out.flags.writeable = False
    return out


def barycentric_weights(x: np.ndarray) -> np.ndarray:
    r"""Barycentric weights of polynomial interpolation at the distinct nodes ``x``,

    .. math::

        w_i = 1 \Big/ \prod_{j \ne i} C (x_i - x_j), \qquad C = \frac{4}{\max x - \min x}

    (Berrut JP, Trefethen LN. 2004. Barycentric Lagrange interpolation. SIAM Rev 46:501-517,
    eq. 3.2; the capacity scaling ``C`` of p. 510 keeps the products in range), each product
    taken in node order. ``scipy.interpolate.BarycentricInterpolator`` computes the same
    weights but multiplies the factors in a random order (a permutation drawn from NumPy's
    global random state, seeded afresh in every process), so its results differ in the last
    bits from one process to the next; these do not.

    Examples
    --------
    The weights of nodes -1, 0, 1 are proportional to (1/2, -1, 1/2):

    >>> w = barycentric_weights(np.array([-1.0, 0.0, 1.0]))
    >>> (w / -w[1]).tolist()
    [0.5, -1.0, 0.5]
    """
    x = np.asarray(x, dtype=float)
    cap = 4.0 / (float(x.max()) - float(x.min()))
    scaled = (cap * x).tolist()
    w = np.empty(x.size)
    for i, xi in enumerate(scaled):
        prod = math.prod(xi - xj for j, xj in enumerate(scaled) if j != i)
        if prod == 0.0:
            raise ValueError("interpolation nodes must be distinct")
        w[i] = 1.0 / prod
    return w


def interpolation_matrix(x: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The ``(len(points), len(x))`` matrix ``M`` of polynomial interpolation from the nodes
    ``x`` to ``points``: ``M @ f(x)`` is the interpolating polynomial at ``points`` (the
    barycentric formula with :func:`barycentric_weights`: bit-identical in every process).

    Examples
    --------
    A quadratic through three nodes is reproduced exactly:

    >>> x = np.array([0.0, 0.5, 2.0])
    >>> m = interpolation_matrix(x, np.array([1.0, 3.0]))
    >>> np.round(m @ x**2, 12).tolist()
    [1.0, 9.0]
    """
    x = np.asarray(x, dtype=float)
    out = BarycentricInterpolator(x, np.eye(x.size), wi=barycentric_weights(x))(np.asarray(points, dtype=float))
    return np.asarray(out, dtype=float)


def _make_lobatto_grid(t_lo: float, t_hi: float, c: float, n: int, truncated: bool = False) -> _Grid:
    """As :func:`_make_grid` with Gauss-Lobatto nodes in u (the 2-D grids: spectral accuracy
    for the smooth integrand, which does not vanish at tau = 0, from few nodes per axis)."""
    x, w = _lobatto(max(int(n), 5))
    u_lo, u_hi = math.asinh(t_lo / c), math.asinh(t_hi / c)
    u = u_lo + 0.5 * (x + 1.0) * (u_hi - u_lo)
    tau = np.clip(c * np.sinh(u), t_lo, t_hi)
    tau[0], tau[-1] = t_lo, t_hi
    q = 0.5 * (u_hi - u_lo) * w * c * np.cosh(u)
    return _Grid(tau=tau, u=u, c=c, qweights=q, truncated=truncated)


@dataclass(frozen=True)
class _Bracket:
    """Where a prior's posterior mass of tau lies (from the pilot), and the prior's support."""

    lo: float
    hi: float
    median: float
    truncated: bool
    support: tuple[float, float]


def _prior_points(prior: PriorSpec) -> np.ndarray:
    """Support ends, median and 99.9% quantile of a tau prior (one vectorised ppf call, cached
    per prior: a 2-D fit asks six times, at about 0.7 ms per scipy ppf call)."""
    return np.array(_prior_points_cached(prior))


@lru_cache(maxsize=256)
def _prior_points_cached(prior: PriorSpec) -> tuple[float, ...]:
    with np.errstate(divide="ignore", invalid="ignore"):
        pts = np.asarray(prior.ppf(np.array([0.0, 0.5, 0.999, 1.0])), dtype=float)
    pts[0] = max(pts[0], 0.0) if np.isfinite(pts[0]) else 0.0
    if not np.isfinite(pts[3]) or pts[3] <= pts[0]:
        pts[3] = np.inf
    return tuple(float(v) for v in pts)


def _pilot(
    d: _Design, priors: Sequence[PriorSpec], sums_cache: dict[bytes, np.ndarray] | None = None
) -> list[_Bracket]:
    """Locate the posterior mass of tau for each prior on one wide pilot grid.

    The pilot grid is uniform in asinh(tau / c0) from tau = 0 to 10^4 times the largest scale in
    the problem, with c0 a thousandth of the smallest; the marginal likelihood on it is computed
    once, whatever the number of priors (and once for designs that share ``sums_cache``, see
    :func:`_conditional`).
    """
    sd = np.sqrt(d.s2)
    pts = np.array([_prior_points(p) for p in priors])  # (n, 4): lo, median, q999, hi
    medians, upper = pts[:, 1], pts[:, 2]
    small = min([float(sd.min())] + [float(m) for m in medians if np.isfinite(m) and m > 0])
    big = max([float(sd.max()), float(np.ptp(d.y))] + [min(float(v), PILOT_PRIOR_CAP) for v in upper if np.isfinite(v)])
    c0 = 1e-3 * small
    u = np.linspace(0.0, math.asinh(1e4 * big / c0), PILOT_POINTS)
    tau = c0 * np.sinh(u)
    base = _conditional(d, tau, sums_cache).loglik + np.log(c0 * np.cosh(u))
    out = []
    for prior, (s_lo, _, _, s_hi) in zip(priors, pts, strict=True):
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = base + prior.logpdf(tau)
        finite = np.isfinite(lp)
        if not finite.any():  # support narrower than the pilot spacing: the support is the bracket
            hi = s_hi if np.isfinite(s_hi) else float(tau[-1])
            out.append(_Bracket(s_lo, hi, 0.5 * (s_lo + hi), False, (s_lo, s_hi)))
            continue
        peak = lp[finite].max()
        keep = np.flatnonzero(lp >= peak - LOG_CUTOFF)
        i0, i1 = max(keep[0] - 1, 0), min(keep[-1] + 1, tau.size - 1)
        lo = 0.0 if i0 == 0 else float(tau[i0])
        hi = float(tau[i1])
        truncated = bool(keep[-1] == tau.size - 1)
        lo, hi = max(lo, s_lo), min(hi, s_hi)
        mass = np.cumsum(np.where(finite, np.exp(lp - peak), 0.0))
        med = float(tau[np.searchsorted(mass, 0.5 * mass[-1])])
        out.append(_Bracket(lo, hi, min(max(med, lo), hi), truncated, (s_lo, s_hi)))
    return out


#: The "grid" of a model with tau fixed at 0 (``spec.heterogeneity`` False): one node, weight 1.
_TAU_ZERO = _Grid(tau=np.zeros(1), u=np.zeros(1), c=1.0, qweights=np.ones(1))


def _grid_for(brackets: Sequence[_Bracket], n_grid: int, *, lobatto: bool = False) -> _Grid:
    """One grid covering every bracket, fine enough for the narrowest (in u) of them (Simpson's
    rule, or Gauss-Lobatto with ``lobatto``)."""
    lo = min(b.lo for b in brackets)
    hi = max(b.hi for b in brackets)
    # c: linear spacing below c, logarithmic above. Half the posterior median when the mass reaches
    # tau = 0; at most the lower end otherwise, so that a sharp lower cut-off (e.g. the
    # exp(-b / tau^2) of inverse-gamma priors) is resolved on the logarithmic scale.
    c = min(min(0.5 * b.median, b.lo) if b.lo > 0 else 0.5 * b.median for b in brackets)
    c = max(c, 1e-12 * hi, 1e-300)
    u_lo, u_hi = math.asinh(lo / c), math.asinh(hi / c)
    widths = [math.asinh(b.hi / c) - math.asinh(b.lo / c) for b in brackets]
    narrowest = max(min(widths), 1e-12)
    n = int(min(n_grid * math.ceil((u_hi - u_lo) / narrowest), 16 * n_grid))
    make = _make_lobatto_grid if lobatto else _make_grid
    return make(lo, hi, c, max(n, n_grid), any(b.truncated for b in brackets))


# --------------------------------------------------------------------------------------------
# The posterior
# --------------------------------------------------------------------------------------------
@dataclass
class ExactPosterior:
    r"""The exact joint posterior of (tau, b) on a tau grid: ``p(tau | y)`` at the nodes and the
    normal ``b | tau, y`` at each node.

    ``weights`` are the normalised quadrature weights ``q_g p(tau_g | y)`` (they sum to one), so
    any posterior expectation is ``sum_g weights_g E[. | tau_g, y]``.

    ``log_marginal_likelihood`` is ``log p(y) = log int p(tau) p(y | tau) dtau`` (see
    :func:`_posterior`); ``neglected_mass`` bounds the share of ``p(y)`` outside the grid.
    With tau fixed at 0 the grid is the single node tau = 0 and ``p(y) = p(y | tau = 0)``.
    """

    spec: ModelSpec
    design: _Design
    grid: _Grid
    cond: _Conditional
    weights: np.ndarray
    density: np.ndarray  # p(tau_g | y), normalised in tau
    centres: np.ndarray  # covariate centres c_j
    log_marginal_likelihood: float = math.nan
    neglected_mass: float = 0.0
    _tau_cdf: object = field(default=None, repr=False)

    @property
    def tau(self) -> np.ndarray:
        return self.grid.tau

    # ---- tau -------------------------------------------------------------------------------
    def tau_marginal(self) -> tuple[np.ndarray, np.ndarray]:
        """The tau grid and the marginal posterior density of tau on it."""
        return self.tau.copy(), self.density.copy()

    def density_u(self) -> np.ndarray:
        """Posterior density of u = asinh(tau / c) at the nodes (the grid's integration variable)."""
        return self.density * self.grid.c * np.cosh(self.grid.u)

    def tau_table_u(self) -> tuple[np.ndarray, np.ndarray]:
        """Nodes in u and the density of u there, from which tau's CDF and quantiles are splined."""
        return self.grid.u, self.density_u()

    def tau_cdf(self, t: np.ndarray | float) -> np.ndarray:
        """Posterior CDF of tau (the density's cubic spline in u, integrated exactly)."""
        if not self.spec.heterogeneity:  # a point mass at 0
            return np.where(np.asarray(t, dtype=float) >= 0.0, 1.0, 0.0)
        if self._tau_cdf is None:
            self._tau_cdf = CubicSpline(*self.tau_table_u()).antiderivative()
        anti = self._tau_cdf
        u = self.tau_table_u()[0]
        x = np.clip(np.arcsinh(np.asarray(t, dtype=float) / self.grid.c), u[0], u[-1])
        return np.clip(anti(x) / anti(u[-1]), 0.0, 1.0)

    def tau_ppf(self, q: Sequence[float] | np.ndarray) -> np.ndarray:
        """Posterior quantiles of tau (see :func:`_spline_quantiles`)."""
        p = np.atleast_1d(np.asarray(q, dtype=float))
        if not self.spec.heterogeneity:
            return np.zeros(p.shape)
        u, dens = self.tau_table_u()
        x = _spline_quantiles(u, dens[:, None], p)[0]
        return self.grid.c * np.sinh(x)

    def tau_mean(self) -> float:
        return float(self.weights @ self.tau)

    def tau_sd(self) -> float:
        m = self.tau_mean()
        return float(math.sqrt(max(self.weights @ (self.tau - m) ** 2, 0.0)))

    def tau_summary(self) -> ParamSummary:
        if not self.spec.heterogeneity:
            return _POINT_ZERO
        med, lo, hi = self.tau_ppf(_PROBS)
        return ParamSummary(
            mean=self.tau_mean(), median=float(med), sd=self.tau_sd(), q025=float(lo), q975=float(hi)
        )

    # ---- linear combinations ----------------------------------------------------------------
    def _moments(self, C: np.ndarray, predictive: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Means and SDs (G, n) of ``C @ b`` (+ u_new where ``predictive`` is True)."""
        C = np.atleast_2d(np.asarray(C, dtype=float))
        means = self.cond.b_mean @ C.T
        var = np.einsum("gij,ni,nj->gn", self.cond.b_cov, C, C)
        if predictive is not None:
            var = var + np.outer(self.tau**2, np.asarray(predictive, dtype=float))
        return means, np.sqrt(np.maximum(var, 1e-300))

    def linear(self, c: Sequence[float] | np.ndarray, *, predictive: bool = False) -> NormalMixture:
        """Posterior of ``c^T b`` (``predictive``: plus a new random effect ``u_new ~ N(0, tau^2)``)."""
        means, sds = self._moments(np.asarray(c, dtype=float)[None, :], np.array([predictive]))
        return NormalMixture(self.weights, means[:, 0], sds[:, 0])

    def contrast(self, name: str) -> np.ndarray:
        """The coefficient vector picking ``mu``, ``delta`` or a covariate's beta."""
        c = np.zeros(self.design.X.shape[1])
        if name in self.design.contrasts:
            return self.design.contrasts[name].copy()
        if name == "mu":  # all zeros when mu is fixed at 0: a point mass
            if self.design.mu_index is not None:
                c[self.design.mu_index] = 1.0
        elif name == "delta" and self.design.delta_index is not None:
            c[self.design.delta_index] = 1.0
        elif name in self.design.beta_index:
            c[self.design.beta_index[name]] = 1.0
        else:
            raise InputError(f"the model has no coefficient {name!r}")
        return c

    def at(self, values: Mapping[str, float]) -> np.ndarray:
        """Coefficient vector of the randomised log HR at covariate values (others at centres)."""
        unknown = [n for n in values if n not in self.design.beta_index]
        if unknown:
            known = ", ".join(self.design.beta_index) or "none"
            raise InputError(
                f"at names covariate(s) {', '.join(map(repr, unknown))} that the model does not "
                f"have (covariates: {known})",
                parameter="at",
            )
        c = self.contrast("mu")
        for name, value in values.items():
            c[self.design.beta_index[name]] = float(value) - self._centre(name)
        return c

    def _centre(self, name: str) -> float:
        return float(self.centres[self.spec.covariates.index(name)])

    def predictive(self) -> NormalMixture:
        """Effect ``mu + u_new`` of a new randomised study at the covariate centres."""
        return self.linear(self.contrast("mu"), predictive=True)

    def predictive_for(
        self,
        values: Mapping[str, float] | None = None,
        *,
        nonrandomised: bool | None = None,
        design: str | None = None,
    ) -> NormalMixture:
        r"""Posterior predictive of the true effect ``theta_new`` of a new study: a normal
        mixture over the grid nodes (add its within-study variance ``s^2`` to each component's
        variance for the predictive of its estimate ``y_new``, as leave-one-out does).

        .. math::

            \theta_{new} \mid g, y \sim N\!\left(x^\top \hat b_g,\;
                x^\top C_g x + \tau_g^2 + \kappa_g^2\, [\text{random bias, non-randomised}]
                + \kappa_g^2\, [\text{three-level, a design without a level}]\right)

        with ``x`` the study's row: ``mu`` (+ ``delta`` for a non-randomised study under the
        additive and random variants; the downweight variant changes only the within-study
        variance), ``beta_j (x_j - c_j)`` at ``values`` (covariates not named at their centres),
        and in the three-level model the design mean ``mu_d = m + v_d``: a design the model has
        no level for (no study of it was fitted) has its offset ``v_d ~ N(0, kappa^2)`` from the
        prior, independent of the data given kappa.

        Parameters
        ----------
        values
            Covariate values of the study.
        nonrandomised
            Whether the study is non-randomised (default: ``design`` is given and not rct).
        design
            The study's design (three-level model: default rct; it must match
            ``nonrandomised`` when both are given).

        Examples
        --------
        New studies under the three-level model of the bundled data (5 rct and 12
        retrospective studies): a prospective study's design mean has only its prior offset
        from the overall mean, so its predictive is much wider.

        >>> import synthesis as syn
        >>> spec = ModelSpec("bias", bias_variant="three-level")
        >>> post = exact_posterior(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec)
        >>> [round(post.predictive_for(design=d).sd(), 2) for d in ("rct", "retrospective", "prospective")]
        [0.11, 0.08, 0.36]
        """
        d = self.design
        if design is not None and design not in DESIGNS:
            raise InputError(f"design must be one of {', '.join(DESIGNS)}, got {design!r}", parameter="design")
        if nonrandomised is None:
            nonrandomised = design is not None and design != REFERENCE_DESIGN
        elif design is not None and bool(nonrandomised) != (design != REFERENCE_DESIGN):
            raise InputError(f"design {design!r} contradicts nonrandomised={bool(nonrandomised)}", parameter="design")
        c = self.at(values) if values else self.contrast("mu")
        extra = self.tau**2
        if d.levels:  # three-level: the study's design mean replaces mu_rct
            if design is None and nonrandomised:
                raise InputError("the three-level model needs the design of a non-randomised study", parameter="design")
            name = REFERENCE_DESIGN if design is None else design
            c = c - self.contrast("mu")
            if name in d.levels:
                c = c + d.levels[name]
            else:
                c = c + d.absent_level
                extra = extra + self._kappa_squared()
        elif nonrandomised and d.delta_index is not None:
            c = c + self.contrast("delta")
            if self.spec.bias_variant == "random":
                extra = extra + self._kappa_squared()
        means, sds = self._moments(c[None, :])
        return NormalMixture(self.weights, means[:, 0], np.sqrt(sds[:, 0] ** 2 + extra))

    def _kappa_squared(self) -> np.ndarray:
        """kappa^2 at every node (models without kappa have none)."""
        raise InputError("the model has no kappa")  # pragma: no cover (2-D models override it)

    def study_moments(
        self, studies: slice = slice(None), nodes: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Means and SDs (G, n) of the shrunken study effects theta_i given tau and y, for the
        studies ``studies`` (default all), at every node or at the nodes ``nodes`` (indices:
        then (len(nodes), n))."""
        d = self.design
        g = slice(None) if nodes is None else nodes
        s2, y, X = d.s2[studies], d.y[studies], d.X[studies]
        t2 = (self.tau[g] ** 2)[:, None]
        B = s2[None, :] / (s2[None, :] + t2)
        fitted = self.cond.b_mean[g] @ X.T
        means = (1.0 - B) * y[None, :] + B * fitted
        # x_i' Cov x_i = sum over a <= b of (2 - [a = b]) Cov_ab x_ia x_ib: one matrix product
        ia, ib = np.triu_indices(X.shape[1])
        cov_pairs = self.cond.b_cov[g][:, ia, ib] * np.where(ia == ib, 1.0, 2.0)
        xcx = cov_pairs @ d.features[studies, : ia.size].T
        var = (1.0 - B) * s2[None, :] + B * B * xcx
        return means, np.sqrt(np.maximum(var, 1e-300))

    def study_effect(self, i: int) -> NormalMixture:
        """Posterior of study i's true effect theta_i (its shrinkage estimate)."""
        means, sds = self.study_moments(slice(i, i + 1))
        return NormalMixture(self.weights, means[:, 0], sds[:, 0])

    # ---- iid draws ---------------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``n`` iid draws from the exact joint posterior.

        tau by inverse CDF of its grid posterior (:meth:`tau_ppf` of uniforms); the coefficients
        ``b`` from their conditional normal given that tau (the conjugate update at the drawn
        tau itself, not at a grid node); each study effect ``theta_i`` from its normal given
        ``b`` and tau, ``N((tau^2 y_i + s_i^2 x_i'b) / (s_i^2 + tau^2), s_i^2 tau^2 / (s_i^2 +
        tau^2))``; ``theta_new = mu + tau z``, a new randomised study at the covariate centres.

        Returns ``mu``, ``tau``, ``theta`` (n, k), ``theta_new`` and, when the model has them,
        ``delta`` and ``beta`` (n, covariates).
        """
        n = int(n)
        if n < 1:
            raise InputError(f"the number of draws must be >= 1, got {n}")
        d = self.design
        tau = np.asarray(self.tau_ppf(rng.uniform(size=n)), dtype=float)
        cond = _conditional(d, tau)
        chol = np.linalg.cholesky(cond.b_cov)  # (n, p, p)
        b = cond.b_mean + np.einsum("nij,nj->ni", chol, rng.standard_normal(cond.b_mean.shape))
        mu = b[:, d.mu_index] if d.mu_index is not None else np.zeros(n)
        out: dict[str, np.ndarray] = {"mu": mu, "tau": tau}
        if d.delta_index is not None:
            out["delta"] = b[:, d.delta_index]
        if d.beta_index:
            out["beta"] = b[:, list(d.beta_index.values())]
        t2 = (tau * tau)[:, None]
        s2 = d.s2[None, :]
        mean = (t2 * d.y[None, :] + s2 * (b @ d.X.T)) / (s2 + t2)
        sd = np.sqrt(s2 * t2 / (s2 + t2))
        out["theta"] = mean + sd * rng.standard_normal(mean.shape)
        out["theta_new"] = mu + tau * rng.standard_normal(n)
        return out


def _posterior(
    spec: ModelSpec,
    data: ModelData,
    d: _Design,
    grid: _Grid,
    cond: _Conditional,
    tau_prior: PriorSpec,
) -> ExactPosterior:
    r"""The grid posterior and the log marginal likelihood.

    .. math::

        p(y) = \int_0^\infty p(\tau)\, p(y \mid \tau)\, d\tau
             \approx \sum_g q_g\, p(\tau_g)\, p(y \mid \tau_g),

    with ``p(tau)`` the prior's own normalised density (``PriorSpec.logpdf``), ``p(y | tau)`` the
    full normal density of the k log HRs (:func:`_conditional`) and ``q_g`` the Simpson weights
    in ``u = asinh(tau / c)`` times the Jacobian ``dtau/du = c cosh(u)``. The grid spans
    ``[lo, hi]``, where the integrand is within ``exp(-LOG_CUTOFF)`` of its maximum; the prior
    mass outside contributes at most ``F(lo) max(p(y | 0), p(y | lo)) + (1 - F(hi)) p(y | hi)``
    (``p(y | tau)`` being monotone in the tails), which is reported relative to ``p(y)`` as
    ``neglected_mass`` (a note when it exceeds ``NEGLECTED_MASS_NOTE``; about 1e-17 normally).
    With tau fixed at 0 there is no prior: ``p(y) = p(y | tau = 0)`` in closed form.
    """
    if not spec.heterogeneity:
        return ExactPosterior(
            spec=spec, design=d, grid=grid, cond=cond, weights=np.ones(1), density=np.ones(1),
            centres=np.asarray(data.centres, dtype=float),
            log_marginal_likelihood=float(cond.loglik[0]),
        )
    with np.errstate(divide="ignore"):
        logpost = cond.loglik + tau_prior.logpdf(grid.tau)
    top = np.max(logpost[np.isfinite(logpost)])
    unnorm = np.exp(logpost - top)
    z = float(grid.qweights @ unnorm)
    log_ml = float(top) + math.log(z)
    density = unnorm / z
    weights = grid.qweights * density
    weights = weights / weights.sum()
    lo, hi = float(grid.tau[0]), float(grid.tau[-1])
    tail = float(1.0 - tau_prior.cdf(np.array([hi]))[0]) * math.exp(min(cond.loglik[-1] - log_ml, 700.0))
    if lo > 0.0:
        below = float(tau_prior.cdf(np.array([lo]))[0])
        if below > 0.0:
            top_ll = max(float(cond.loglik[0]), float(_conditional(d, np.zeros(1)).loglik[0]))
            tail += below * math.exp(min(top_ll - log_ml, 700.0))
    return ExactPosterior(
        spec=spec,
        design=d,
        grid=grid,
        cond=cond,
        weights=weights,
        density=density,
        centres=np.asarray(data.centres, dtype=float),
        log_marginal_likelihood=log_ml,
        neglected_mass=tail,
    )


def _check(spec: ModelSpec, data: ModelData, designs: Sequence[str] | None = None) -> None:
    reason = exact_unsupported_reason(spec, data, designs=designs)
    if reason is not None:
        raise ModelError(reason)


def exact_posterior(
    data: ModelData, spec: ModelSpec, *, n_grid: int | None = None, designs: Sequence[str] | None = None
) -> ExactPosterior:
    """The exact posterior of a linear-Gaussian model (raises :class:`ModelError` if unsupported).

    ``n_grid``: nodes of the tau grid (default :data:`DEFAULT_GRID`), or per axis of the
    (tau, kappa) grid of the ``random`` and ``three-level`` bias variants (default
    :data:`DEFAULT_GRID_2D`; an :class:`ExactPosterior2D`). ``designs``: the three-level
    model's design levels (default: the designs in ``data``); a level without studies keeps
    its offset's prior, so that a leave-one-out refit has the full data's parameters.

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("re")
    >>> post = exact_posterior(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec)
    >>> post.tau.size >= DEFAULT_GRID, round(float(post.weights.sum()), 6)
    (True, 1.0)
    """
    _check(spec, data, designs)
    d = _design(data, spec, designs)
    if d.multilevel is not None and not spec.heterogeneity:  # tau = tau_within = 0: one node
        cond = _conditional_ml(d, np.zeros(1), np.zeros(1))
        return ExactPosteriorMultilevel(
            spec=spec, design=d, grid=_TAU_ZERO, cond=cond, weights=np.ones(1), density=np.ones(1),
            centres=np.asarray(data.centres, dtype=float), log_marginal_likelihood=float(cond.loglik[0]),
            kappa_grid=_TAU_ZERO,
        )
    if d.layout is not None:
        return _posterior_2d(spec, data, d, n_grid or DEFAULT_GRID_2D)
    n_grid = n_grid or DEFAULT_GRID
    grid = _grid_for(_pilot(d, [spec.priors.tau]), n_grid) if spec.heterogeneity else _TAU_ZERO
    cond = _conditional(d, grid.tau)
    return _posterior(spec, data, d, grid, cond, spec.priors.tau)


# --------------------------------------------------------------------------------------------
# Two variance parameters (tau, kappa): 2-D quadrature
# --------------------------------------------------------------------------------------------
#: Nodes per axis of the final (tau, kappa) product grid (odd: Simpson's rule in each axis).
#: Doubling it changes no reported number by more than 1e-5 relative, or 1e-6 absolute below
#: 0.1 (tests/test_exact_2d.py; against 129 nodes over exp(-40): at most 8e-6 relative on the
#: dnMBC and simulated k = 60 tables).
DEFAULT_GRID_2D = 29
#: The 2-D grid covers the cells where the log density is within this of its maximum (exp(-30)
#: ~ 1e-13; the Gauss-Lobatto rule then needs fewer nodes than over the 1-D grid's exp(-40)).
LOG_CUTOFF_2D = 30.0
#: A 2-D axis whose posterior mass reaches below this fraction of its median starts at the
#: prior's support (:func:`_axis_bracket`).
NEAR_ZERO = 1e-2
#: Nodes per axis of the two locating grids (wide, then zoomed on the mass) of a 2-D fit.
PILOT_POINTS_2D = 32


def _axis_pilot(d: _Design, prior: PriorSpec) -> np.ndarray:
    """A wide pilot axis for a variance parameter: uniform in asinh(x / c0) from 0 to 10^4
    times the largest scale of the problem, c0 a thousandth of the smallest (as :func:`_pilot`)."""
    sd = np.sqrt(d.s2)
    _, med, q999, _ = _prior_points(prior)
    small = min([float(sd.min())] + ([float(med)] if np.isfinite(med) and med > 0 else []))
    big = max([float(sd.max()), float(np.ptp(d.y))] + ([min(float(q999), PILOT_PRIOR_CAP)] if np.isfinite(q999) else []))
    c0 = 1e-3 * small
    u = np.linspace(0.0, math.asinh(1e4 * big / c0), PILOT_POINTS_2D)
    return c0 * np.sinh(u)


def _axis_bracket(x: np.ndarray, keep: np.ndarray, mass: np.ndarray, prior: PriorSpec, wide: bool) -> _Bracket:
    """The bracket of one axis: the nodes holding kept cells, one node beyond each side."""
    s_lo, _, _, s_hi = _prior_points(prior)
    idx = np.flatnonzero(keep)
    i0, i1 = max(idx[0] - 1, 0), min(idx[-1] + 1, x.size - 1)
    lo = 0.0 if i0 == 0 and x[0] == 0.0 else float(x[i0])
    hi = float(x[i1])
    truncated = bool(wide and idx[-1] == x.size - 1)
    lo, hi = max(lo, s_lo), min(hi, s_hi)
    cum = np.cumsum(mass)
    med = float(x[np.searchsorted(cum, 0.5 * cum[-1])])
    if 0.0 < lo < NEAR_ZERO * med:
        # the mass reaches down to (almost) zero: start the axis at the support's end, so that
        # the grid's scale c is half the median, not this lower end (a weakly identified
        # tau_within: c = 1e-4 spread 29 nodes over 4 decades and left 6e-5 in its quantiles)
        lo = s_lo
    return _Bracket(lo, hi, min(max(med, lo), hi), truncated, (s_lo, s_hi))


def _log_joint(d: _Design, tau: np.ndarray, kappa: np.ndarray, tau_prior: PriorSpec | None,
               kappa_prior: PriorSpec) -> tuple[_Conditional, np.ndarray]:
    """The conditional model and ``log p(y | tau, kappa) + log p(tau) + log p(kappa)`` at nodes
    (no tau prior when tau is fixed at 0; kappa's prior conditioned on mu_rct = 0 in the
    three-level no-effect model, :class:`_Constraint`)."""
    cond = _conditional_ml(d, tau, kappa) if d.multilevel is not None else _conditional_2d(d, tau, kappa)
    with np.errstate(divide="ignore"):
        lp = cond.loglik + kappa_prior.logpdf(kappa) + d.layout.kappa_log_factor(kappa)
        if tau_prior is not None:
            lp = lp + tau_prior.logpdf(tau)
    return cond, lp


def _locate_2d(d: _Design, tau_prior: PriorSpec | None, kappa_prior: PriorSpec) -> tuple[_Bracket | None, _Bracket]:
    """Where the posterior mass of (tau, kappa) lies: brackets of both axes from a wide product
    pilot grid, then again from a grid zoomed on the first brackets (cells whose log density
    in (asinh tau, asinh kappa) is within ``LOG_CUTOFF`` of the maximum). ``None`` for tau
    when it is fixed at 0."""
    t_axis = _axis_pilot(d, tau_prior) if tau_prior is not None else np.zeros(1)
    k_axis = _axis_pilot(d, kappa_prior)
    t_br: _Bracket | None = None
    k_br: _Bracket | None = None
    for wide in (True, False):
        T, K = np.repeat(t_axis, k_axis.size), np.tile(k_axis, t_axis.size)
        _, lp = _log_joint(d, T, K, tau_prior, kappa_prior)
        lp = lp.reshape(t_axis.size, k_axis.size)
        # densities in u = asinh(x / c) for any c are proportional to sqrt(c^2 + x^2): the
        # Jacobian makes cell masses comparable along each axis
        lp = lp + 0.5 * np.log(t_axis**2 + (t_axis[1] if t_axis.size > 1 else 1.0) ** 2)[:, None]
        lp = lp + 0.5 * np.log(k_axis**2 + k_axis[1] ** 2)[None, :]
        finite = np.isfinite(lp)
        if not finite.any():
            raise ModelError("the exact engine found no (tau, kappa) with finite posterior density")
        top = lp[finite].max()
        keep = lp >= top - LOG_CUTOFF_2D
        mass = np.where(finite, np.exp(lp - top), 0.0)
        truncated_k = k_br.truncated if k_br is not None else False
        truncated_t = t_br.truncated if t_br is not None else False
        k_br = _axis_bracket(k_axis, keep.any(axis=0), mass.sum(axis=0), kappa_prior, wide)
        k_br = replace(k_br, truncated=k_br.truncated or truncated_k)
        if tau_prior is not None:
            t_br = _axis_bracket(t_axis, keep.any(axis=1), mass.sum(axis=1), tau_prior, wide)
            t_br = replace(t_br, truncated=t_br.truncated or truncated_t)
            t_axis = _grid_for([t_br], PILOT_POINTS_2D).tau
        k_axis = _grid_for([k_br], PILOT_POINTS_2D).tau
    assert k_br is not None
    return t_br, k_br


#: Points of the uniform u grid on which a 2-D fit's marginal densities of tau and kappa are
#: splined for their CDFs and quantiles (interpolated from the Lobatto nodes by the
#: barycentric Lagrange polynomial, which is spectrally accurate there).
FINE_POINTS = 257


def _fine_table(u: np.ndarray, dens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A density tabulated at Gauss-Lobatto nodes ``u``, interpolated onto ``FINE_POINTS``
    uniform points: the polynomial through the log density at the nodes (smoother than the
    density, whose tails fall by exp(-40) across the grid)."""
    fine, mat = _fine_matrix(u)
    positive = dens > 0
    if not positive.all():  # (a prior's density vanishing at an end): the density itself
        return fine, np.maximum(mat @ dens, 0.0)
    log_d = np.log(dens)
    top = log_d.max()
    return fine, np.exp(mat @ (log_d - top) + top)


def _fine_matrix(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``FINE_POINTS`` uniform points from ``u[0]`` to ``u[-1]`` and the (FINE_POINTS, len(u))
    matrix of the polynomial interpolation from the nodes ``u`` to them (cached for
    Gauss-Lobatto nodes: :func:`_lobatto_to_fine`)."""
    fine = np.linspace(u[0], u[-1], FINE_POINTS)
    x = _lobatto(u.size)[0] if u.size >= 2 else None
    if x is not None and np.allclose(u, u[0] + 0.5 * (x + 1.0) * (u[-1] - u[0]), rtol=0.0, atol=1e-12 * (1.0 + abs(u[-1]))):
        return fine, _lobatto_to_fine(u.size)
    return fine, interpolation_matrix(u, fine)


@dataclass
class ExactPosterior2D(ExactPosterior):
    r"""The exact posterior of a model with two variance parameters on a product grid in
    ``(asinh(tau / c_tau), asinh(kappa / c_kappa))``: ``weights`` and ``density`` are per node
    (tau-major: node ``g = i n_kappa + j``), the normal ``b | tau, kappa, y`` at each node;
    ``grid`` is the tau axis and ``kappa_grid`` the kappa axis. The marginals of tau and kappa
    are the 2-D density integrated over the other axis by its Simpson weights."""

    kappa_grid: _Grid = field(default=_TAU_ZERO)
    _kappa_cdf: object = field(default=None, repr=False)

    @property
    def tau(self) -> np.ndarray:
        """tau at every node (G,)."""
        return self.cond.tau

    @property
    def kappa(self) -> np.ndarray:
        """kappa at every node (G,)."""
        assert self.cond.kappa is not None
        return self.cond.kappa

    def _kappa_squared(self) -> np.ndarray:
        return self.kappa**2

    def _table(self) -> np.ndarray:
        return self.density.reshape(self.grid.tau.size, self.kappa_grid.tau.size)

    def tau_marginal(self) -> tuple[np.ndarray, np.ndarray]:
        return self.grid.tau.copy(), self._table() @ self.kappa_grid.qweights

    def kappa_marginal(self) -> tuple[np.ndarray, np.ndarray]:
        """The kappa axis and the marginal posterior density of kappa on it."""
        return self.kappa_grid.tau.copy(), self.grid.qweights @ self._table()

    def density_u(self) -> np.ndarray:
        return self.tau_marginal()[1] * self.grid.c * np.cosh(self.grid.u)

    def kappa_density_u(self) -> np.ndarray:
        return self.kappa_marginal()[1] * self.kappa_grid.c * np.cosh(self.kappa_grid.u)

    def tau_table_u(self) -> tuple[np.ndarray, np.ndarray]:
        return _fine_table(self.grid.u, self.density_u())

    def kappa_ppf(self, q: Sequence[float] | np.ndarray) -> np.ndarray:
        """Posterior quantiles of kappa (its marginal's cubic spline in u, as for tau)."""
        p = np.atleast_1d(np.asarray(q, dtype=float))
        x = _spline_quantiles(*self._kappa_table(), p)[0]
        return self.kappa_grid.c * np.sinh(x)

    def kappa_table_u(self) -> tuple[np.ndarray, np.ndarray]:
        """Points in ``u = asinh(kappa / c)`` and kappa's marginal density of ``u`` there, from
        which its CDF and quantiles are splined (as :meth:`tau_table_u` for tau)."""
        return _fine_table(self.kappa_grid.u, self.kappa_density_u())

    def _kappa_table(self) -> tuple[np.ndarray, np.ndarray]:
        u, dens = self.kappa_table_u()
        return u, dens[:, None]

    def kappa_summary(self) -> ParamSummary:
        med, lo, hi = self.kappa_ppf(_PROBS)
        mean = float(self.weights @ self.kappa)
        sd = float(math.sqrt(max(self.weights @ (self.kappa - mean) ** 2, 0.0)))
        return ParamSummary(mean=mean, median=float(med), sd=sd, q025=float(lo), q975=float(hi))

    def study_moments(
        self, studies: slice = slice(None), nodes: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`ExactPosterior.study_moments` with the random part of theta_i having
        variance ``tau^2 a_i + kappa^2 h_i`` (random bias: the study's bias is part of its
        true effect)."""
        d = self.design
        g = slice(None) if nodes is None else nodes
        s2, y, X = d.s2[studies], d.y[studies], d.X[studies]
        r = d.layout.random_variance(self.tau[g], self.kappa[g], studies)
        B = s2[None, :] / (s2[None, :] + r)
        means = (1.0 - B) * y[None, :] + B * (self.cond.b_mean[g] @ X.T)
        ia, ib = np.triu_indices(X.shape[1])
        cov_pairs = self.cond.b_cov[g][:, ia, ib] * np.where(ia == ib, 1.0, 2.0)
        xcx = cov_pairs @ d.features[studies, : ia.size].T
        var = (1.0 - B) * s2[None, :] + B * B * xcx
        return means, np.sqrt(np.maximum(var, 1e-300))

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``n`` iid draws: kappa by inverse CDF of its marginal, tau given kappa by inverse CDF
        of the conditional density (linear in u_kappa between the two neighbouring kappa nodes,
        trapezoidal CDF in u_tau), then ``b`` from its conditional normal at the drawn
        (tau, kappa) and each ``theta_i`` from its normal given ``b``, tau and kappa."""
        n = int(n)
        if n < 1:
            raise InputError(f"the number of draws must be >= 1, got {n}")
        d = self.design
        tau, kappa = self._draw_variances(n, rng)
        cond = _conditional_2d(d, tau, kappa)
        chol = np.linalg.cholesky(cond.b_cov + 1e-300 * np.eye(d.X.shape[1]))
        b = cond.b_mean + np.einsum("nij,nj->ni", chol, rng.standard_normal(cond.b_mean.shape))
        out = self._parameter_draws(b, tau, "kappa", kappa)
        mu = out["mu"]
        r = d.layout.random_variance(tau, kappa)
        s2 = d.s2[None, :]
        mean = (r * d.y[None, :] + s2 * (b @ d.X.T)) / (s2 + r)
        out["theta"] = mean + np.sqrt(s2 * r / (s2 + r)) * rng.standard_normal(mean.shape)
        out["theta_new"] = mu + tau * rng.standard_normal(n)
        return out

    def _parameter_draws(self, b: np.ndarray, tau: np.ndarray, second: str, values: np.ndarray) -> dict[str, np.ndarray]:
        """The parameter draws from coefficient draws ``b`` (n, p) and variance draws: mu, tau,
        delta (when the model has it), the second variance (``kappa`` or ``tau_within``), beta."""
        d = self.design
        out: dict[str, np.ndarray] = {"mu": b @ self.contrast("mu"), "tau": tau}
        if d.has_delta:
            out["delta"] = b @ self.contrast("delta")
        out[second] = values
        if d.beta_index:
            out["beta"] = b[:, list(d.beta_index.values())]
        return out

    def _draw_variances(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` iid draws of (tau, kappa): kappa by inverse CDF of its marginal
        (:meth:`kappa_ppf`), tau given kappa by inverse CDF of the conditional density in
        ``u_tau``: the joint density in (u_tau, u_kappa) interpolated from the Gauss-Lobatto nodes
        onto a FINE_POINTS x FINE_POINTS grid (the polynomial through the log density along each
        axis, as the marginals), linear in u_kappa between its two neighbouring fine columns and
        integrated by the trapezoidal rule in u_tau; tau = 0 when it is fixed there."""
        kappa = np.asarray(self.kappa_ppf(rng.uniform(size=n)), dtype=float)
        if not self.spec.heterogeneity:
            return np.zeros(n), kappa
        gt, gk = self.grid, self.kappa_grid
        dens_u = self._table() * (gt.c * np.cosh(gt.u))[:, None] * (gk.c * np.cosh(gk.u))[None, :]
        ut, mt = _fine_matrix(gt.u)
        uk_fine, mk = _fine_matrix(gk.u)
        if np.all(dens_u > 0):
            log_d = np.log(dens_u)
            log_d -= log_d.max()
            table = np.exp(mt @ log_d @ mk.T)  # (fine tau, fine kappa)
        else:  # a prior's density vanishing at an end: the density itself
            table = np.maximum(mt @ dens_u @ mk.T, 0.0)
        uk = np.arcsinh(kappa / gk.c)
        j = np.clip(np.searchsorted(uk_fine, uk) - 1, 0, uk_fine.size - 2)
        w = np.clip((uk - uk_fine[j]) / (uk_fine[j + 1] - uk_fine[j]), 0.0, 1.0)
        target = rng.uniform(size=n)
        u_draw = np.empty(n)
        step = max(1, _BLOCK_CELLS // ut.size)
        for s0 in range(0, n, step):  # in blocks of draws: memory flat in n
            sl = slice(s0, min(s0 + step, n))
            rows = (1.0 - w[sl])[:, None] * table[:, j[sl]].T + w[sl][:, None] * table[:, j[sl] + 1].T
            cdf = np.concatenate(
                [np.zeros((rows.shape[0], 1)), np.cumsum(0.5 * (rows[:, 1:] + rows[:, :-1]) * np.diff(ut), axis=1)], axis=1
            )
            t = target[sl] * cdf[:, -1]
            i = np.clip((cdf < t[:, None]).sum(axis=1) - 1, 0, ut.size - 2)
            r = np.arange(i.size)
            span = cdf[r, i + 1] - cdf[r, i]
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.where(span > 0, (t - cdf[r, i]) / span, 0.5)
            u_draw[sl] = ut[i] + frac * (ut[i + 1] - ut[i])
        return gt.c * np.sinh(u_draw), kappa


@dataclass
class ExactPosteriorMultilevel(ExactPosterior2D):
    r"""The exact posterior of a multilevel model (``spec.cluster``) on the (tau, tau_within)
    product grid: the second axis (``kappa_grid``, ``kappa``) is tau_within. Summaries as
    :class:`ExactPosterior2D`; a new study (a new row in a new cluster) has the random part
    ``u_new + e_new ~ N(0, tau^2 + tau_within^2)``; the study effects
    ``theta_ij = x_ij' b + u_i + e_ij`` given (tau, tau_within) and y are normal with

    .. math::

        E = y - V M^{-1}(y - X \hat b), \qquad
        \operatorname{Var} = \operatorname{diag}(V - V M^{-1} V) + \operatorname{diag}(W C_b W^\top),
        \quad W = V M^{-1} X

    (``V`` the sampling covariance, ``M`` the marginal one, ``C_b`` the posterior covariance of
    ``b``), computed cluster by cluster through the Woodbury identity (O(k) per node)."""

    def kappa_summary(self) -> ParamSummary:
        """tau_within's summary (0 when both variances are fixed at 0)."""
        if not self.spec.heterogeneity:
            return _POINT_ZERO
        return super().kappa_summary()

    def _moments(self, C: np.ndarray, predictive: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        C = np.atleast_2d(np.asarray(C, dtype=float))
        means = self.cond.b_mean @ C.T
        var = np.einsum("gij,ni,nj->gn", self.cond.b_cov, C, C)
        if predictive is not None:
            var = var + np.outer(self.tau**2 + self.kappa**2, np.asarray(predictive, dtype=float))
        return means, np.sqrt(np.maximum(var, 1e-300))

    def predictive_for(
        self,
        values: Mapping[str, float] | None = None,
        *,
        nonrandomised: bool | None = None,
        design: str | None = None,
    ) -> NormalMixture:
        """Posterior predictive of the true effect of a new study in a new cluster (see
        :meth:`ExactPosterior.predictive_for`): variance ``x'C x + tau^2 + tau_within^2``."""
        if design is not None and design not in DESIGNS:
            raise InputError(f"design must be one of {', '.join(DESIGNS)}, got {design!r}", parameter="design")
        if nonrandomised is None:
            nonrandomised = design is not None and design != REFERENCE_DESIGN
        c = self.at(values) if values else self.contrast("mu")
        if nonrandomised and self.design.delta_index is not None:
            c = c + self.contrast("delta")
        means, sds = ExactPosterior._moments(self, c[None, :])
        return NormalMixture(self.weights, means[:, 0], np.sqrt(sds[:, 0] ** 2 + self.tau**2 + self.kappa**2))

    def study_moments(
        self, studies: slice = slice(None), nodes: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`ExactPosterior.study_moments`. Without ``nodes``, only at the nodes a
        summary uses (:func:`_keep`); the others get the placeholder 0 +/- 1."""
        d = self.design
        rows = np.arange(d.y.size)[studies]
        full = nodes is None
        if full:
            nodes = np.flatnonzero(_keep(self.weights[:, None]))
        means = np.zeros((nodes.size, rows.size))
        sds = np.ones((nodes.size, rows.size))
        step = max(1, _ML_BLOCK_CELLS // max(d.y.size, 1))
        every = rows.size == d.y.size
        for g0 in range(0, nodes.size, step):
            block = slice(g0, min(g0 + step, nodes.size))
            mean, var = self._study_block(nodes[block])
            means[block] = mean if every else mean[:, rows]
            sds[block] = np.sqrt(np.maximum(var if every else var[:, rows], 1e-300))
        if not full:
            return means, sds
        out_m, out_s = np.zeros((self.tau.size, rows.size)), np.ones((self.tau.size, rows.size))
        out_m[nodes], out_s[nodes] = means, sds
        return out_m, out_s

    def _study_block(self, gs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Means and variances (b, k) of every row effect at the nodes ``gs``, with the explicit
        inverse of each cluster's ``H_i`` (1 x 1, or 2 x 2 with rho > 0; see
        :mod:`synthesis.models.multilevel`): with ``w = D^{-1}`` (``E = (1 - rho) s^2``),
        ``M^{-1} R = w R - w U c H^{-1} c U' w R`` and ``V q = E q + rho s (s' q)_i``."""
        d = self.design
        ml = d.multilevel
        assert ml is not None
        se, rho, idx = ml.se, ml.clusters.rho, ml.clusters.index
        s2 = se * se
        E = (1.0 - rho) * s2
        order, starts = ml.prep.order, ml.prep.starts

        def csum(f: np.ndarray) -> np.ndarray:  # (b, k) -> per-cluster sums (b, n)
            return np.add.reduceat(f[:, order], starts, axis=1)

        tau2 = (self.tau[gs] ** 2)[:, None]
        t = np.sqrt(tau2)
        w = 1.0 / (E[None, :] + (self.kappa[gs] ** 2)[:, None])  # (b, k)
        h00 = 1.0 + tau2 * csum(w)  # (b, n)
        sr = math.sqrt(rho)
        if rho > 0:
            sws, swss = csum(w * se), csum(w * s2)
            h01 = t * sr * sws
            h11 = 1.0 + rho * swss
            inv_det = 1.0 / (h00 * h11 - h01 * h01)
            i00, i01, i11 = (h11 * inv_det)[:, idx], (-h01 * inv_det)[:, idx], (h00 * inv_det)[:, idx]
            sws_k, swss_k = sws[:, idx], swss[:, idx]
        else:
            i00 = (1.0 / h00)[:, idx]

        def v_m_inv(R: np.ndarray) -> np.ndarray:  # V M^{-1} R for R (b, k)
            A = w * R
            T0 = t * csum(A)[:, idx]
            if rho > 0:
                T1 = sr * csum(A * se)[:, idx]
                back = t * (i00 * T0 + i01 * T1) + sr * se * (i01 * T0 + i11 * T1)
            else:
                back = t * i00 * T0
            out = A - w * back  # M^{-1} R
            return E * out + rho * se * csum(se * out)[:, idx] if rho > 0 else E * out

        resid = d.y[None, :] - self.cond.b_mean[gs] @ d.X.T
        mean = d.y[None, :] - v_m_inv(resid)
        # diag(V - V D^-1 V + Q' H^-1 Q) with the rows Q_k = c U' D^-1 V e_k
        Ew = E * w
        if rho > 0:
            vdv = E * Ew + 2.0 * rho * s2 * Ew + rho * rho * s2 * swss_k
            Q0 = t * (Ew + rho * se * sws_k)
            Q1 = sr * (Ew * se + rho * se * swss_k)
            quad = i00 * Q0 * Q0 + 2.0 * i01 * Q0 * Q1 + i11 * Q1 * Q1
        else:
            vdv = E * Ew
            quad = i00 * tau2 * Ew * Ew
        var = s2 - vdv + quad
        p = d.X.shape[1]
        if p:
            Wx = [v_m_inv(np.broadcast_to(d.X[:, m], w.shape)) for m in range(p)]
            cov = self.cond.b_cov[gs]
            for m in range(p):
                var = var + cov[:, m, m, None] * Wx[m] * Wx[m]
                for m2 in range(m):
                    var = var + 2.0 * cov[:, m, m2, None] * Wx[m] * Wx[m2]
        return mean, var

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        r"""``n`` iid draws from the exact joint posterior of the multilevel model.

        (tau, tau_within) as :class:`ExactPosterior2D` draws (tau, kappa) (both 0 without
        heterogeneity); ``b`` from its conditional normal at the drawn pair (the Woodbury
        conjugate update there, not at a grid node); the row effects of each cluster jointly,
        given ``b``, the pair and the cluster's rows: with ``Omega = tau^2 J + tau_w^2 I`` their
        prior covariance around ``X_c b`` and ``V_c`` the sampling covariance,

        .. math::

            \theta_c \mid \cdot \sim N\big(X_c b + \Omega (\Omega + V_c)^{-1} (y_c - X_c b),\;
                \Omega - \Omega (\Omega + V_c)^{-1} \Omega\big)

        (by the symmetric square root of the covariance: exact at tau = tau_within = 0, where it
        vanishes). ``theta_new = mu + sqrt(tau^2 + tau_within^2) z``: a new randomised row in a new
        cluster at the covariate centres.

        Returns ``mu``, ``tau``, ``tau_within``, ``theta`` (n, k), ``theta_new`` and, when the model
        has them, ``delta`` and ``beta`` (n, covariates).
        """
        n = int(n)
        if n < 1:
            raise InputError(f"the number of draws must be >= 1, got {n}")
        d = self.design
        ml = d.multilevel
        assert ml is not None
        tau, tw = self._draw_variances(n, rng) if self.spec.heterogeneity else (np.zeros(n), np.zeros(n))
        cond = _conditional_ml(d, tau, tw)
        p = d.X.shape[1]
        b = cond.b_mean.copy()
        if p:
            chol = np.linalg.cholesky(cond.b_cov + 1e-300 * np.eye(p))
            b += np.einsum("nij,nj->ni", chol, rng.standard_normal(cond.b_mean.shape))
        out = self._parameter_draws(b, tau, "tau_within", tw)
        mu = out["mu"]
        fitted = b @ d.X.T  # (n, k)
        theta = np.empty((n, d.y.size))
        V = ml.clusters.sampling_covariance(ml.se)
        for c in range(ml.clusters.n):
            rows = np.flatnonzero(ml.clusters.index == c)
            m = rows.size
            omega = (tau**2)[:, None, None] * np.ones((m, m)) + (tw**2)[:, None, None] * np.eye(m)
            gain = np.linalg.solve(omega + V[np.ix_(rows, rows)], omega).transpose(0, 2, 1)  # Omega S^-1
            mean = fitted[:, rows] + np.einsum("nij,nj->ni", gain, d.y[rows] - fitted[:, rows])
            cov = omega - gain @ omega
            val, vec = np.linalg.eigh(0.5 * (cov + cov.transpose(0, 2, 1)))
            z = rng.standard_normal((n, m)) * np.sqrt(np.maximum(val, 0.0))
            theta[:, rows] = mean + np.einsum("nij,nj->ni", vec, z)
        out["theta"] = theta
        out["theta_new"] = mu + np.sqrt(tau**2 + tw**2) * rng.standard_normal(n)
        return out


def _posterior_2d(spec: ModelSpec, data: ModelData, d: _Design, n_grid: int) -> ExactPosterior2D:
    r"""The 2-D grid posterior and its log marginal likelihood

    .. math::

        p(y) = \iint p(\tau)\, p(\kappa)\, p(y \mid \tau, \kappa)\, d\tau\, d\kappa
             \approx \sum_{i,j} q^\tau_i q^\kappa_j\, p(\tau_i) p(\kappa_j)\, p(y \mid \tau_i, \kappa_j),

    Simpson weights in ``u = asinh(. / c)`` times each axis's Jacobian; the neglected mass is
    estimated as in :func:`_posterior`, edge by edge (the prior mass beyond an edge times the
    likelihood integrated along that edge).
    """
    tau_prior = spec.priors.tau if spec.heterogeneity else None
    kappa_prior = spec.tau_within if d.multilevel is not None else spec.priors.kappa
    t_br, k_br = _locate_2d(d, tau_prior, kappa_prior)
    tg = _grid_for([t_br], n_grid, lobatto=True) if t_br is not None else _TAU_ZERO
    kg = _grid_for([k_br], n_grid, lobatto=True)
    T, K = np.repeat(tg.tau, kg.tau.size), np.tile(kg.tau, tg.tau.size)
    Q = np.outer(tg.qweights, kg.qweights).ravel()
    cond, lp = _log_joint(d, T, K, tau_prior, kappa_prior)
    top = np.max(lp[np.isfinite(lp)])
    unnorm = np.exp(lp - top)
    z = float(Q @ unnorm)
    log_ml = float(top) + math.log(z)
    density = unnorm / z
    weights = Q * density
    weights = weights / weights.sum()
    # neglected mass: prior mass beyond each edge x the likelihood integrated along that edge
    table = np.exp(cond.loglik - log_ml).reshape(tg.tau.size, kg.tau.size)
    tail = 0.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        kp = np.exp(kappa_prior.logpdf(kg.tau) + d.layout.kappa_log_factor(kg.tau))
        beyond_k = (1.0 - float(kappa_prior.cdf(np.array([kg.tau[-1]]))[0]), float(kappa_prior.cdf(np.array([kg.tau[0]]))[0]))
        if d.layout.constrained is not None:  # the conditioned prior's tail: at most this factor more
            c = d.layout.constrained
            bound = math.exp(-0.5 * (_LOG_2PI + math.log(c.s0**2)) - c.log_norm)
            beyond_k = (beyond_k[0] * bound, beyond_k[1] * bound)
        if tau_prior is not None:
            tp = np.exp(tau_prior.logpdf(tg.tau))
            beyond_t = (1.0 - float(tau_prior.cdf(np.array([tg.tau[-1]]))[0]), float(tau_prior.cdf(np.array([tg.tau[0]]))[0]))
            tail += beyond_t[0] * float(table[-1] * kp @ kg.qweights) + beyond_t[1] * float(table[0] * kp @ kg.qweights)
            tail += beyond_k[0] * float(tp * table[:, -1] @ tg.qweights) + beyond_k[1] * float(tp * table[:, 0] @ tg.qweights)
        else:
            tail += beyond_k[0] * float(table[0, -1]) + beyond_k[1] * float(table[0, 0])
    tail = float(tail) if math.isfinite(tail) else math.inf
    truncated = t_br is not None and t_br.truncated
    cls = ExactPosteriorMultilevel if d.multilevel is not None else ExactPosterior2D
    return cls(
        spec=spec,
        design=d,
        grid=replace(tg, truncated=truncated),
        cond=cond,
        weights=weights,
        density=density,
        centres=np.asarray(data.centres, dtype=float),
        log_marginal_likelihood=log_ml,
        neglected_mass=tail,
        kappa_grid=replace(kg, truncated=k_br.truncated),
    )


# --------------------------------------------------------------------------------------------
# FitResult
# --------------------------------------------------------------------------------------------
def _keep(W: np.ndarray, mass: float = _PRUNE_MASS) -> np.ndarray:
    """Nodes that matter to the mixtures of any column of ``W`` (G, P): weight above ``_PRUNE``
    of the heaviest, and not among the lightest nodes whose total is below ``mass``
    (a 2-D grid's corners: each summary moves by at most that mass)."""
    keep = (W > _PRUNE * W.max(axis=0)).any(axis=1)
    if W.shape[0] > 1:
        order = np.argsort(W, axis=0)
        light = np.zeros(W.shape, dtype=bool)
        np.put_along_axis(light, order, np.cumsum(np.take_along_axis(W, order, axis=0), axis=0) < mass, axis=0)
        keep &= ~light.all(axis=1)
    return keep


def _ratio(q: np.ndarray, p_below: dict[str, float] | None = None) -> RatioSummary:
    med, lo, hi = np.exp(q)
    return RatioSummary(median=float(med), q025=float(lo), q975=float(hi), p_below=p_below)


@dataclass(frozen=True)
class _Batch:
    """Summaries of P posteriors that share a design, grid and conditional model, computed in one
    vectorised pass. Rows of the linear summaries: mu, delta (if any), each beta, the predictive
    effect (row ``jp``), then every ``at`` point."""

    jp: int
    quant: np.ndarray  # (P, rows, 3): median, q025, q975
    mix_mean: np.ndarray  # (P, rows)
    mix_sd: np.ndarray  # (P, rows)
    p_low: np.ndarray  # (P, 2 + len(at), T): mu, predictive, each at point
    study_quant: np.ndarray | None  # (P, k, 3)
    tau_q: np.ndarray  # (P, 3)
    tau_mean: np.ndarray  # (P,)
    tau_sd: np.ndarray  # (P,)


def _summarise(
    posts: Sequence[ExactPosterior],
    data: ModelData,
    thresholds: Sequence[float],
    at: Mapping[str, Mapping[str, float]] | None,
    *,
    study_effects: bool = True,
    shared_s: float = 0.0,
) -> list[FitResult]:
    """FitResults of posteriors that share one design, grid and conditional model (they differ in
    the tau prior only), summarised together: one vectorised pass over every prior.

    ``shared_s`` is the time already spent on the shared work; each result's timing is its share
    of that plus its share of the summarising time.
    """
    t0 = time.perf_counter()
    at = dict(at or {})
    batch = _batch(posts, data, thresholds, at, study_effects=study_effects)
    elapsed = (shared_s + time.perf_counter() - t0) / len(posts)
    return [
        _fit_result(post, ip, batch, data, thresholds, at, study_effects=study_effects, elapsed=elapsed)
        for ip, post in enumerate(posts)
    ]


def _batch(
    posts: Sequence[ExactPosterior],
    data: ModelData,
    thresholds: Sequence[float],
    at: Mapping[str, Mapping[str, float]],
    *,
    study_effects: bool,
) -> _Batch:
    """Step 1: quantiles, moments and P(c'b < log T) of every linear summary, the study effects'
    quantiles and tau's summaries, for every posterior of the batch at once."""
    first = posts[0]
    d = first.design
    names = ["mu"] + (["delta"] if d.has_delta else []) + list(d.beta_index)
    rows = [first.contrast(n) for n in names]
    jp = len(rows)  # the predictive effect of a new randomised study
    rows.append(first.contrast("mu"))
    rows.extend(first.at(values) for values in at.values())
    pred = np.zeros(len(rows))
    pred[jp] = 1.0
    C = np.array(rows).reshape(len(rows), d.X.shape[1])
    # rows that are the constant 0 (mu fixed at 0; the predictive effect too when tau is): a
    # point mass, summarised exactly below (HR 1; P(HR < T) = 1 for T > 1, else 0)
    point = ~C.any(axis=1) & ~((pred > 0) & first.spec.heterogeneity)
    means, sds = first._moments(C, pred)
    sds[:, point] = 1.0
    Wall = np.column_stack([p.weights for p in posts])  # (G, P)
    keep = _keep(Wall)
    W = Wall[keep] / Wall[keep].sum(axis=0)
    m, s = means[keep], sds[keep]
    n_post = W.shape[1]

    def quantiles(m: np.ndarray, s: np.ndarray, W: np.ndarray = W, accept: float | None = None) -> np.ndarray:
        n_col = m.shape[1]
        return mixture_quantiles(
            W, m, s, _PROBS, wi=np.repeat(np.arange(n_post), n_col), mi=np.tile(np.arange(n_col), n_post),
            accept=accept,
        ).reshape(n_post, n_col, _PROBS.size)  # median, q025, q975

    study_quant = None
    if study_effects:  # in blocks of studies: memory flat in k
        study_quant = np.empty((n_post, data.k, _PROBS.size))
        nodes = np.flatnonzero(_keep(Wall, STUDY_PRUNE_MASS))
        Ws = Wall[nodes] / Wall[nodes].sum(axis=0)
        step = max(1, _BLOCK_CELLS // max(nodes.size, 1))
        for start in range(0, data.k, step):
            block = slice(start, min(start + step, data.k))
            s_means, s_sds = first.study_moments(block, nodes)
            study_quant[:, block] = quantiles(s_means, s_sds, Ws, STUDY_ACCEPT)
    quant = quantiles(m, s)
    quant[:, point] = 0.0
    mix_mean = W.T @ m
    mix_sd = np.sqrt(np.maximum(W.T @ (s * s + m * m) - mix_mean**2, 0.0))
    mix_sd[:, point] = 0.0
    # P(c'b < log T) for mu, the predictive effect and every ``at`` row: (P, rows, T)
    sel = [0, jp] + [jp + 1 + i for i in range(len(at))]
    log_t = np.log(np.asarray(thresholds, dtype=float))
    z = (log_t[None, None, :] - m[:, sel, None]) / s[:, sel, None]
    p_low = np.einsum("gp,grt->prt", W, special.ndtr(z))
    p_low[:, point[sel]] = (log_t > 0.0).astype(float)
    tau = first.tau
    if first.spec.heterogeneity:
        tables = [p.tau_table_u() for p in posts]
        dens_u = np.column_stack([t[1] for t in tables])
        tau_q = first.grid.c * np.sinh(_spline_quantiles(tables[0][0], dens_u, _PROBS))
    else:
        tau_q = np.zeros((len(posts), _PROBS.size))
    tau_mean = Wall.T @ tau
    tau_sd = np.sqrt(np.maximum(Wall.T @ tau**2 - tau_mean**2, 0.0))
    return _Batch(
        jp=jp, quant=quant, mix_mean=mix_mean, mix_sd=mix_sd, p_low=p_low,
        study_quant=study_quant, tau_q=tau_q, tau_mean=tau_mean, tau_sd=tau_sd,
    )


def _fit_result(
    post: ExactPosterior,
    ip: int,
    batch: _Batch,
    data: ModelData,
    thresholds: Sequence[float],
    at: Mapping[str, Mapping[str, float]],
    *,
    study_effects: bool,
    elapsed: float,
) -> FitResult:
    """Step 2: the FitResult of posterior ``ip`` of the batch."""
    spec, d, jp = post.spec, post.design, batch.jp

    def param(j: int) -> ParamSummary:
        med, lo, hi = batch.quant[ip, j]
        return ParamSummary(
            mean=float(batch.mix_mean[ip, j]), median=float(med), sd=float(batch.mix_sd[ip, j]),
            q025=float(lo), q975=float(hi),
        )

    def p_below(r: int) -> dict[str, float]:
        return {threshold_key(t): float(v) for t, v in zip(thresholds, batch.p_low[ip, r], strict=True)}

    parameters = {"mu": param(0)}
    parameters["tau"] = _POINT_ZERO if not spec.heterogeneity else ParamSummary(
        mean=float(batch.tau_mean[ip]),
        median=float(batch.tau_q[ip, 0]),
        sd=float(batch.tau_sd[ip]),
        q025=float(batch.tau_q[ip, 1]),
        q975=float(batch.tau_q[ip, 2]),
    )
    if d.has_delta:
        parameters["delta"] = param(1)
    kappa_grid = kappa_density = None
    if isinstance(post, ExactPosteriorMultilevel):  # the second variance is tau_within
        parameters["tau_within"] = post.kappa_summary()
    elif isinstance(post, ExactPosterior2D):
        parameters["kappa"] = post.kappa_summary()
        kappa_grid, kappa_density = post.kappa_marginal()
    first_beta = 1 + d.has_delta
    beta = {name: param(first_beta + i) for i, name in enumerate(d.beta_index)}
    hr_at = {
        label: replace(_ratio(batch.quant[ip, jp + 1 + i], p_below(2 + i)), point=dict(values))
        for i, (label, values) in enumerate(at.items())
    }
    effects = _study_effects(data, batch.study_quant[ip]) if study_effects and batch.study_quant is not None else []
    return FitResult(
        spec=spec,
        engine="exact",
        k=data.k,
        parameters=parameters,
        beta=beta,
        hr=_ratio(batch.quant[ip, 0], p_below(0)),
        p_hr_below=p_below(0),
        predictive_hr=_ratio(batch.quant[ip, jp], p_below(1)),
        p_predictive_hr_below=p_below(1),
        study_effects=effects,
        seed=None,
        timing={"compile_s": 0.0, "sample_s": elapsed, "total_s": elapsed},
        hr_at=hr_at,
        diagnostics=None,
        imputed=0,
        posterior=None,
        tau_grid=post.tau_marginal()[0] if spec.heterogeneity else None,
        tau_density=post.tau_marginal()[1] if spec.heterogeneity else None,
        kappa_grid=kappa_grid,
        kappa_density=kappa_density,
        source=data.source,
        notes=_notes(post),
        log_marginal_likelihood=post.log_marginal_likelihood,
    )


def _study_effects(data: ModelData, study_quant: np.ndarray) -> list[StudyEffect]:
    """Each study's observed HR with its interval beside its shrunken HR (quantiles (k, 3))."""
    y, se = np.asarray(data.y, dtype=float), np.asarray(data.se, dtype=float)
    hr = np.exp(study_quant).tolist()  # (k, 3): median, q025, q975
    return [
        StudyEffect(
            study=data.studies[i],
            design=data.designs[i] if i < len(data.designs) else None,
            observed_hr=float(math.exp(y[i])),
            observed_lower=float(math.exp(y[i] - _Z * se[i])),
            observed_upper=float(math.exp(y[i] + _Z * se[i])),
            hr=RatioSummary(median=med, q025=lo, q975=hi),
        )
        for i, (med, lo, hi) in enumerate(hr)
    ]


def variance_split_note(spec: ModelSpec, row_clusters: Sequence[object] | np.ndarray | None) -> str | None:
    """The note of a multilevel model whose clusters all have one row (``row_clusters``: each
    row's cluster label or index): the data then inform only tau^2 + tau_within^2, and the split
    between them comes from the priors. ``None`` otherwise (or without heterogeneity).

    Examples
    --------
    >>> variance_split_note(ModelSpec("re", cluster="cohort"), ["a", "b", "c"])[:40]
    'multilevel: every cohort has one row, so'
    >>> variance_split_note(ModelSpec("re", cluster="cohort"), ["a", "a", "b"]) is None
    True
    """
    if not spec.multilevel or not spec.heterogeneity or row_clusters is None or len(row_clusters) == 0:
        return None
    labels = list(row_clusters)
    if len(set(labels)) < len(labels):  # some cluster has two rows or more
        return None
    return (
        f"multilevel: every {spec.cluster} has one row, so the data inform only tau^2 + tau_within^2; "
        "how it splits between tau and tau_within comes from their priors"
    )


def _notes(post: ExactPosterior) -> list[str]:
    """Notes of an exact fit: fixed parameters, the down-weighting, a tau posterior truncated by
    the grid and any marginal-likelihood mass outside it."""
    spec, notes = post.spec, []
    if not spec.effect:
        notes.append(
            "effect=False: mu is fixed at 0 (HR = 1 in a randomised comparison), so the HR "
            "summary is 1 (1 to 1) and P(HR < T) is 1 for T > 1 and 0 otherwise"
        )
    if not spec.effect and spec.has_bias and spec.bias_variant == "three-level":
        notes.append(
            "three-level with effect=False: the three-level prior conditioned on mu_rct = 0 (the "
            "overall mean m gets N(m0 kappa^2 / (s0^2 + kappa^2), s0^2 kappa^2 / (s0^2 + kappa^2)), "
            "kappa's prior is reweighted by N(0; m0, s0^2 + kappa^2)), so that the Bayes factor "
            "against the effect model is the Savage-Dickey ratio p(mu_rct = 0 | y) / p(mu_rct = 0)"
        )
    if not spec.heterogeneity:
        notes.append(
            "heterogeneity=False: tau and tau_within are fixed at 0 (a common-effect model)" if spec.multilevel
            else "heterogeneity=False: tau is fixed at 0 (a common-effect model)"
        )
    ml = post.design.multilevel
    split = variance_split_note(spec, ml.clusters.index.tolist() if ml is not None else None)
    if split is not None:
        notes.append(split)
    if spec.has_bias and spec.bias_variant == "downweight":
        notes.append(
            "downweight: within-study variances of non-randomised studies divided by alpha = "
            f"{spec.alpha:g} (their likelihood raised to the power alpha)"
        )
    if post.grid.truncated:
        notes.append(
            "exact engine: the posterior of tau still had mass at the end of the grid "
            f"(tau = {post.grid.tau[-1]:.3g}); its upper tail may be truncated"
        )
    if isinstance(post, ExactPosterior2D) and post.kappa_grid.truncated:
        notes.append(
            f"exact engine: the posterior of {'tau_within' if ml is not None else 'kappa'} still had mass at the end of the grid "
            f"({'tau_within' if ml is not None else 'kappa'} = {post.kappa_grid.tau[-1]:.3g}); its upper tail may be truncated"
        )
    if post.neglected_mass > NEGLECTED_MASS_NOTE:
        notes.append(
            "exact engine: up to a fraction "
            f"{post.neglected_mass:.2g} of the marginal likelihood lies outside the tau grid "
            f"[{post.grid.tau[0]:.3g}, {post.grid.tau[-1]:.3g}] and is not included"
        )
    return notes


def fit_exact(
    data: ModelData,
    spec: ModelSpec,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    at: Mapping[str, Mapping[str, float]] | None = None,
    n_grid: int | None = None,
    study_effects: bool = True,
) -> FitResult:
    """Fit a linear-Gaussian model exactly (b integrated analytically, tau by quadrature).

    Parameters
    ----------
    data, spec
        The model data and specification; :func:`exact_unsupported_reason` must return ``None``
        (otherwise :class:`~synthesis.errors.ModelError` is raised with that reason).
    thresholds
        Report ``P(HR < T)`` for these T (mu, the predictive effect and every ``at`` entry).
    at
        ``{label: {covariate: value}}``: the randomised HR ``exp(mu + sum_j beta_j (x_j - c_j))``
        at these covariate values (covariates not named take their centre ``c_j``).
    n_grid
        Minimum number of tau quadrature nodes (default :data:`DEFAULT_GRID`), or per axis of
        the (tau, kappa) grid of the ``random`` and ``three-level`` bias variants (default
        :data:`DEFAULT_GRID_2D`).
    study_effects
        Summarise every study's shrunken effect (``False``: none, which saves most of the time
        at 100,000 studies when only the pooled quantities are wanted). Above
        :data:`STUDY_EFFECT_MAX_CELLS` study-node pairs they are not summarised either, and a
        note says so.

    Returns
    -------
    FitResult
        ``engine="exact"``, no sampler diagnostics, ``tau_grid``/``tau_density`` set.

    Examples
    --------
    The design-bias model on the bundled studies:

    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> result = fit_exact(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec)
    >>> round(result.hr.median, 2), round(result.hr.q025, 2), round(result.hr.q975, 2)
    (0.91, 0.78, 1.06)
    >>> result.diagnostics is None, result.tau_grid is not None
    (True, True)
    """
    t0 = time.perf_counter()
    post = exact_posterior(data, spec, n_grid=n_grid)
    cells = data.k * post.weights.size
    skipped = study_effects and cells > STUDY_EFFECT_MAX_CELLS
    fit = _summarise(
        [post], data, thresholds, at, study_effects=study_effects and not skipped, shared_s=time.perf_counter() - t0
    )[0]
    if skipped:
        fit.notes.append(
            f"study effects not summarised: {data.k:,} studies x {post.weights.size} quadrature nodes is more than "
            f"{STUDY_EFFECT_MAX_CELLS:,} (each study's shrunken effect is a mixture over every node); the pooled "
            "results are unaffected"
        )
    fit.densities = marginal_densities(post)
    fit.exact_posterior = post
    return fit


#: Above this many study-node pairs :func:`fit_exact` does not summarise the per-study
#: (shrunken) effects, with a note: each is a normal mixture over every quadrature node, and
#: their quantiles dominate the time of a large two-variance fit (measured for 20,000 rows in
#: 4,000 clusters, 841 nodes: 0.9 of 1.3 s at rho 0, 1.3 of 2.2 s at rho 0.5; 5.4 and 9.0 s
#: before the fast study-effect path, same run). 100,000 studies on a 1-D grid (257 nodes) stay
#: under it; the 2-D grids (random, three-level, multilevel: ~841 nodes) stop at ~35,000.
STUDY_EFFECT_MAX_CELLS = 30_000_000


#: Points of the density grids for plots (mu, delta: mean +/- 5 SD of the normal mixture).
DENSITY_POINTS = 241


def marginal_densities(post: ExactPosterior) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Exact marginal posterior densities for plotting: tau on its quadrature grid, mu and delta
    (when present) as normal mixtures evaluated on an even grid.

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> post = exact_posterior(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec)
    >>> dens = marginal_densities(post)
    >>> sorted(dens), dens["mu"][0].size
    (['delta', 'mu', 'tau'], 241)
    """
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if post.spec.heterogeneity:
        out["tau"] = post.tau_marginal()
    if isinstance(post, ExactPosterior2D) and (post.spec.heterogeneity or not isinstance(post, ExactPosteriorMultilevel)):
        out["tau_within" if isinstance(post, ExactPosteriorMultilevel) else "kappa"] = post.kappa_marginal()
    names = ["mu"] * post.spec.effect + ["delta"] * post.design.has_delta
    keep = _keep(post.weights[:, None])
    for name in names:
        full = post.linear(post.contrast(name))
        mix = NormalMixture(full.weights[keep] / full.weights[keep].sum(), full.means[keep], full.sds[keep])
        centre, sd = mix.mean(), mix.sd()
        grid = np.linspace(centre - 5 * sd, centre + 5 * sd, DENSITY_POINTS)
        out[name] = (grid, np.asarray(mix.pdf(grid), dtype=float))
    return out


# --------------------------------------------------------------------------------------------
# Prior sweeps
# --------------------------------------------------------------------------------------------
def _with_priors(spec: ModelSpec, **priors: PriorSpec) -> ModelSpec:
    return replace(spec, priors=replace(spec.priors, **priors))


def sweep_tau_priors(
    data: ModelData,
    spec: ModelSpec,
    tau_priors: Sequence[PriorSpec],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    *,
    delta_priors: Sequence[PriorSpec] | None = None,
    at: Mapping[str, Mapping[str, float]] | None = None,
    study_effects: bool = False,
    n_grid: int = DEFAULT_GRID,
) -> list[FitResult]:
    """Fit ``spec`` once per tau prior (and per delta prior), sharing all prior-free work.

    The marginal likelihood ``p(y | tau)`` and the conditional posteriors of ``b`` do not depend
    on the tau prior: they are computed once on a grid covering the posterior mass of every prior
    in the sweep, and each prior only reweights the nodes. A prior whose support ends inside that
    grid (``uniform(a, b)``) gets a grid of its own, so that no quadrature rule straddles its
    density's jump. Varying the (normal) delta prior changes the conditional model, which is then
    recomputed, once per delta prior.

    Parameters
    ----------
    tau_priors
        Scale-family priors for tau.
    delta_priors
        Normal priors for delta (bias models with the additive variant). ``None`` keeps the
        spec's. The results are ordered delta-major: for each delta prior, every tau prior.
    study_effects
        Also summarise the shrunken study effects (off by default: sweeps rarely need them).

    Returns
    -------
    list[FitResult]
        One per (delta prior, tau prior) with ``spec.priors`` set accordingly; ``timing`` holds
        the prior's own summarising time plus its share of the shared likelihood computation.

    Examples
    --------
    Two tau priors, one shared likelihood computation:

    >>> import synthesis as syn
    >>> from synthesis.models.priors import parse_prior
    >>> spec = ModelSpec("re")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> priors = [parse_prior(p, "tau") for p in ("halfnormal(0.5)", "halfcauchy(0.5)")]
    >>> [r.spec.priors.tau.label for r in sweep_tau_priors(data, spec, priors)]
    ['half-normal(scale=0.5)', 'half-Cauchy(scale=0.5)']
    """
    if not spec.heterogeneity:
        raise ModelError("a tau-prior sweep needs a model with heterogeneity (tau is fixed at 0)")
    if delta_priors is not None:
        if not (spec.has_bias and spec.bias_variant in ("additive", "random")):
            raise ModelError("a delta-prior sweep needs a bias model with the additive or random variant")
        specs = [_with_priors(spec, delta=p) for p in delta_priors]
    else:
        specs = [spec]
    out: list[FitResult] = []
    pilot_sums: dict[bytes, np.ndarray] = {}  # the specs differ in the delta prior only
    for base in specs:
        t0 = time.perf_counter()
        _check(base, data)
        tau_specs = [_with_priors(base, tau=p) for p in tau_priors]
        for sp in tau_specs:
            _check(sp, data)
        d = _design(data, base)
        if d.layout is not None:  # (tau, kappa) models: one 2-D fit per prior, nothing shared
            for sp in tau_specs:
                t1 = time.perf_counter()
                post = _posterior_2d(sp, data, d, DEFAULT_GRID_2D)
                out.extend(_summarise([post], data, thresholds, at, study_effects=study_effects,
                                      shared_s=time.perf_counter() - t1))
            continue
        brackets = _pilot(d, list(tau_priors), pilot_sums)
        lo, hi = min(b.lo for b in brackets), max(b.hi for b in brackets)
        # a prior whose support ends inside the shared range gets its own grid (no quadrature
        # interval may straddle its density's jump)
        own = [b.support[0] > lo or b.support[1] < hi for b in brackets]
        results: list[FitResult | None] = [None] * len(tau_priors)
        shared = [i for i, o in enumerate(own) if not o]
        if shared:
            grid = _grid_for([brackets[i] for i in shared], n_grid)
            cond = _conditional(d, grid.tau)
            posts = [
                _posterior(tau_specs[i], data, d, grid, cond, tau_priors[i]) for i in shared
            ]
            batch = _summarise(
                posts,
                data,
                thresholds,
                at,
                study_effects=study_effects,
                shared_s=time.perf_counter() - t0,
            )
            for i, r in zip(shared, batch, strict=True):
                results[i] = r
        for i in (i for i, o in enumerate(own) if o):
            t1 = time.perf_counter()
            grid = _grid_for([brackets[i]], n_grid)
            cond = _conditional(d, grid.tau)
            post = _posterior(tau_specs[i], data, d, grid, cond, tau_priors[i])
            results[i] = _summarise(
                [post], data, thresholds, at, study_effects=study_effects,
                shared_s=time.perf_counter() - t1,
            )[0]
        out.extend(r for r in results if r is not None)
    return out
