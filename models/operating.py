r"""Operating characteristics of a Bayesian decision rule: how often "recommend if
P(HR < T) > level" recommends, over simulated evidence bases shaped like the input, for the
design-bias model, the naive all-studies pool and the randomised studies alone.

Simulation. Each replicate keeps the input's standard errors and designs and draws

.. math::

    y_i = \log \mathrm{HR} + \tau_0 z_{0i} + nr_i\,(\log b + \sigma_b z_{1i}) + s_i z_{2i},
    \qquad z_{\cdot i} \sim N(0, 1),

(true randomised HR, between-study SD ``tau_0``, non-randomised studies biased by a factor
``b`` on the HR scale with study-to-study SD ``sigma_b`` on the log scale). Replicate ``r`` of
scenario ``s`` draws from ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(s, r)))``
(the ``r``-th child of the ``s``-th child of the root seed), so its data do not depend on how the
replicates are split into jobs, workers or machines.

Analysis: the exact engine's model (:mod:`synthesis.models.exact`) batched over datasets. For
a fixed design (``X``, the SEs, the priors) and a fixed tau grid everything but two sums is
independent of ``y``: with ``W_g = V_{tau_g}^{-1}`` and ``P_g = X'W_gX + S_0^{-1}``,

.. math::

    \hat b_{ng} = P_g^{-1} r_{ng}, \quad r_{ng} = X'W_g y_n + S_0^{-1} m_0, \qquad
    -2 \log p(y_n \mid \tau_g) = \text{const}_g + y_n'W_gy_n + m_0'S_0^{-1}m_0 - r_{ng}'\hat b_{ng},

so ``N`` datasets cost ``p + 1`` matrix products ``(N, k) x (k, G)`` and per-node ``p x p``
algebra: the engine's conjugate update and marginal likelihood (its docstring) in the
``b``-minimised form of the quadratic. The tau grid (:func:`simulation_grid`) is fixed per
design and prior (uniform in ``asinh(tau / c)`` from 0 to ``tau_hi``, Simpson weights), wide
enough for every dataset; the weight of its last node is tracked and a note reports datasets
whose tau posterior reaches it. ``P(HR < T) = sum_g w_ng Phi((log T - b_mu,ng) / sd_mu,g)``.
tests/test_simulate.py compares it with :func:`~synthesis.models.exact.fit_exact` per dataset.

The naive pool is the random-effects model on all studies (every study estimates mu); the
RCT-only analysis is the random-effects model on the randomised studies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import special
from threadpoolctl import threadpool_limits

from synthesis.errors import InputError
from synthesis.models.exact import _design, _make_grid, _prior_points
from synthesis.models.preposterior import RULE_LEVEL, RULE_THRESHOLD
from synthesis.models.spec import ModelData, ModelSpec

#: The three analyses of every simulated evidence base.
ANALYSES: tuple[str, ...] = ("bias", "naive", "rct_only")
#: Nodes of the simulation tau grid (Simpson's rule, uniform in asinh(tau / c)).
SIM_GRID = 401
#: The tau grid ends where the tau prior's upper tail mass is this small (and at least at
#: SIM_TAU_SE_FACTOR x the largest SE).
SIM_PRIOR_TAIL = 1e-12
SIM_TAU_SE_FACTOR = 10.0
#: ... and never beyond this (heavy-tailed priors: the datasets then decide; a note counts
#: datasets whose posterior reaches the end).
SIM_TAU_CAP = 20.0
#: A dataset's tau posterior "reaches the end of the grid" when the last node's weight exceeds this.
GRID_END_WEIGHT = 1e-9
#: Replicates per job: fixed, so the arithmetic of every replicate is the same whatever the
#: number of workers (1, 2, a Dask cluster).
CHUNK = 500
#: Default grid of truths: true randomised HR, bias factor b (HR scale) and bias SD (log scale).
DEFAULT_TRUE_HRS: tuple[float, ...] = (1.0, 0.8)
DEFAULT_BIAS_MEANS: tuple[float, ...] = (1.0, 0.8, 0.65)
DEFAULT_BIAS_SDS: tuple[float, ...] = (0.05, 0.2)
DEFAULT_N_SIM = 1000


@dataclass(frozen=True)
class BatchedExact:
    """The exact engine's posterior of mu for many datasets that share one design and tau grid."""

    X: np.ndarray  # (k, p)
    W: np.ndarray  # (G, k) 1 / (s^2 + tau_g^2)
    cov: np.ndarray  # (G, p, p) P_g^{-1}
    const: np.ndarray  # (G,) log prior + log quadrature weight - 0.5 (log|V| + log|S0| + log|P|)
    prior_rhs: np.ndarray  # (p,) S0^{-1} m0
    prior_quad: float  # m0' S0^{-1} m0
    mu_index: int

    @classmethod
    def build(cls, data: ModelData, spec: ModelSpec, tau: np.ndarray, qweights: np.ndarray) -> BatchedExact:
        d = _design(data, spec)
        if d.layout is not None or d.mu_index is None:
            raise InputError("simulate analyses the additive and downweight bias variants and re, with an effect")
        X = d.X
        tau = np.asarray(tau, dtype=float)
        W = 1.0 / (d.s2[None, :] + (tau * tau)[:, None])
        p = X.shape[1]
        prec0 = 1.0 / d.s0**2
        P = np.einsum("gk,ki,kj->gij", W, X, X) + np.diag(prec0)[None, :, :]
        sign, logdet_p = np.linalg.slogdet(P)
        with np.errstate(divide="ignore"):
            log_prior = spec.priors.tau.logpdf(tau) if spec.heterogeneity else np.zeros(tau.size)
            log_q = np.log(qweights)
        const = log_prior + log_q - 0.5 * (-np.log(W).sum(axis=1) + np.log(d.s0**2).sum() + logdet_p)
        assert p == d.m0.size and (sign > 0).all()
        return cls(X=X, W=W, cov=np.linalg.inv(P), const=const, prior_rhs=prec0 * d.m0,
                   prior_quad=float(d.m0 @ (prec0 * d.m0)), mu_index=d.mu_index)

    def posterior(self, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Node weights (N, G) and conditional means of mu (N, G) for datasets ``Y`` (N, k)."""
        Y = np.atleast_2d(Y)
        p = self.X.shape[1]
        r = [Y @ (self.W * self.X[:, j]).T + self.prior_rhs[j] for j in range(p)]  # X'W y + S0^-1 m0
        quad = (Y * Y) @ self.W.T + self.prior_quad
        b_mu = np.zeros_like(quad)
        for i in range(p):  # p is 1 or 2: explicit sums beat einsum over (N, G, p, p)
            b_i = sum(self.cov[None, :, i, j] * r[j] for j in range(p))
            quad -= r[i] * b_i
            if i == self.mu_index:
                b_mu = b_i
        logw = self.const[None, :] - 0.5 * quad
        logw -= logw.max(axis=1, keepdims=True)
        w = np.exp(logw)
        w /= w.sum(axis=1, keepdims=True)
        return w, b_mu

    def p_below(self, Y: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """P(HR < threshold) per dataset, and the weight of the last grid node per dataset."""
        w, m = self.posterior(Y)
        sd = np.sqrt(self.cov[:, self.mu_index, self.mu_index])
        p = np.einsum("ng,ng->n", w, special.ndtr((math.log(threshold) - m) / sd[None, :]))
        return p, w[:, -1]


def simulation_grid(data: ModelData, spec: ModelSpec, n: int = SIM_GRID) -> tuple[np.ndarray, np.ndarray]:
    """The fixed tau grid of a simulation (nodes and quadrature weights in tau): ``(0, 1)`` ->
    one node at 0 when tau is fixed at 0.

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("re")
    >>> tau, q = simulation_grid(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec)
    >>> tau.size, float(tau[0]), round(float(tau[-1]), 2)
    (401, 0.0, 4.43)
    """
    if not spec.heterogeneity:
        return np.zeros(1), np.ones(1)
    se = np.asarray(data.se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = float(spec.priors.tau.ppf(np.array([1.0 - SIM_PRIOR_TAIL]))[0])
    hi = min(max(tail if math.isfinite(tail) else SIM_TAU_CAP, SIM_TAU_SE_FACTOR * float(se.max())), SIM_TAU_CAP)
    lo_support = _prior_points(spec.priors.tau)[0]
    c = 0.05 * float(np.median(se))
    grid = _make_grid(float(lo_support), hi, c, n)
    return grid.tau, grid.qweights


def _subset(data: ModelData, mask: np.ndarray) -> ModelData:
    return replace(
        data,
        studies=tuple(s for s, m in zip(data.studies, mask, strict=True) if m),
        y=data.y[mask], se=data.se[mask], nonrandomised=data.nonrandomised[mask],
        designs=tuple(d for d, m in zip(data.designs, mask, strict=True) if m),
        x=data.x[mask],
    )


@dataclass(frozen=True)
class Analyses:
    """The three batched analyses of a design: bias model, naive pool, RCT only."""

    engines: dict[str, BatchedExact]
    rct: np.ndarray  # (k,) bool

    @classmethod
    def build(cls, data: ModelData, spec: ModelSpec) -> Analyses:
        rct = ~np.asarray(data.nonrandomised, dtype=bool)
        if rct.all() or not rct.any():
            raise InputError(
                "simulate needs both randomised and non-randomised studies (it compares the "
                "design-bias model with the naive pool and the randomised studies alone)"
            )
        bias_spec = replace(spec, model="bias", covariates=())
        re_spec = replace(spec, model="re", covariates=())
        rct_data = _subset(data, rct)
        engines = {}
        for name, sp, dt in (("bias", bias_spec, data), ("naive", re_spec, data), ("rct_only", re_spec, rct_data)):
            tau, q = simulation_grid(dt, sp)
            engines[name] = BatchedExact.build(dt, sp, tau, q)
        return cls(engines=engines, rct=rct)

    def p_below(self, Y: np.ndarray, threshold: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {
            name: eng.p_below(Y[:, self.rct] if name == "rct_only" else Y, threshold)
            for name, eng in self.engines.items()
        }


@dataclass(frozen=True)
class Scenario:
    """One truth: true randomised HR, bias factor b (HR scale), bias SD (log scale)."""

    true_hr: float
    bias_mean: float
    bias_sd: float


def simulate_data(
    scenario: Scenario, index: int, replicates: range, se: np.ndarray, nonrandomised: np.ndarray,
    *, tau: float, seed: int,
) -> np.ndarray:
    """Simulated log HRs (len(replicates), k) of scenario number ``index``: replicate ``r`` from
    ``default_rng(SeedSequence(seed, spawn_key=(index, r)))`` (see the module docstring).

    Examples
    --------
    Replicate 3's data are the same whether drawn alone or with others:

    >>> sc = Scenario(1.0, 0.8, 0.1)
    >>> se, nr = np.array([0.1, 0.2, 0.3]), np.array([False, True, True])
    >>> a = simulate_data(sc, 0, range(0, 5), se, nr, tau=0.0, seed=1)
    >>> b = simulate_data(sc, 0, range(3, 4), se, nr, tau=0.0, seed=1)
    >>> bool(np.array_equal(a[3], b[0]))
    True
    """
    k = se.size
    nr = np.asarray(nonrandomised, dtype=float)
    Z = np.empty((len(replicates), 3, k))
    for i, r in enumerate(replicates):
        Z[i] = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, r))).standard_normal((3, k))
    mean_bias = math.log(scenario.bias_mean)
    return (math.log(scenario.true_hr) + tau * Z[:, 0] + nr * (mean_bias + scenario.bias_sd * Z[:, 1])
            + se * Z[:, 2])


@dataclass(frozen=True)
class ChunkResult:
    """Counts of one job: recommendations and grid-end datasets per analysis."""

    scenario: int
    n: int
    recommend: dict[str, int]
    grid_end: dict[str, int]


def run_chunk(job: tuple) -> ChunkResult:
    """One job (top level: it is pickled for process pools and Dask): simulate replicates
    ``start..stop`` of one scenario and count how often each analysis recommends."""
    data, spec, scenario, index, start, stop, tau, seed, threshold, level = job
    with threadpool_limits(1):
        analyses = _analyses(data, spec)
        Y = simulate_data(scenario, index, range(start, stop), np.asarray(data.se, dtype=float),
                          np.asarray(data.nonrandomised, dtype=bool), tau=tau, seed=seed)
        out = analyses.p_below(Y, threshold)
    return ChunkResult(
        scenario=index, n=stop - start,
        recommend={name: int((p > level).sum()) for name, (p, _) in out.items()},
        # a common-effect analysis has the one node tau = 0: no grid end to reach
        grid_end={name: int((end > GRID_END_WEIGHT).sum()) if spec.heterogeneity else 0 for name, (_, end) in out.items()},
    )


_CACHE: dict[tuple, Analyses] = {}


def _analyses(data: ModelData, spec: ModelSpec) -> Analyses:
    """The batched analyses of (data, spec), built once per process (its jobs share them)."""
    key = (data.se.tobytes(), np.asarray(data.nonrandomised).tobytes(), repr(spec))
    hit = _CACHE.get(key)
    if hit is None:
        _CACHE.clear()
        hit = _CACHE[key] = Analyses.build(data, spec)
    return hit


@dataclass
class SimulationResult:
    """Operating characteristics: P(recommend) per scenario and analysis."""

    threshold: float
    level: float
    scenarios: list[Scenario]
    n_sim: int
    recommend: list[dict[str, int]]
    tau: float
    seed: int
    spec: ModelSpec
    k: int
    seconds: float = 0.0
    workers: str = "1"
    notes: list[str] = field(default_factory=list)

    def p_recommend(self, i: int) -> dict[str, float]:
        return {a: self.recommend[i][a] / self.n_sim for a in ANALYSES}

    def mc_se(self, i: int) -> dict[str, float]:
        return {a: math.sqrt(p * (1.0 - p) / self.n_sim) for a, p in self.p_recommend(i).items()}

    def to_json(self) -> dict[str, Any]:
        """``synthesis simulate --json``."""
        return {
            "rule": {"threshold": self.threshold, "level": self.level},
            "scenarios": [
                {
                    "true_hr": sc.true_hr, "bias_mean": sc.bias_mean, "bias_sd": sc.bias_sd,
                    "n_sim": self.n_sim, "p_recommend": self.p_recommend(i), "mc_se": self.mc_se(i),
                }
                for i, sc in enumerate(self.scenarios)
            ],
            "tau": self.tau,
            "seed": self.seed,
            "k": self.k,
            "spec": self.spec.describe(),
            "seconds": self.seconds,
            "notes": list(self.notes),
        }

    def to_frame(self) -> Any:
        import pandas as pd

        rows = []
        for i, sc in enumerate(self.scenarios):
            row: dict[str, Any] = {"true_hr": sc.true_hr, "bias_mean": sc.bias_mean, "bias_sd": sc.bias_sd, "n_sim": self.n_sim}
            for a in ANALYSES:
                row[f"p_recommend_{a}"] = self.p_recommend(i)[a]
                row[f"mc_se_{a}"] = self.mc_se(i)[a]
            rows.append(row)
        return pd.DataFrame.from_records(rows)

    def _repr_html_(self) -> str:
        from synthesis.models.display import html_block, html_table

        frame = self.to_frame()
        rows = [[f"{v:.4g}" for v in row] for row in frame.itertuples(index=False)]
        title = f"Operating characteristics of P(HR < {self.threshold:g}) > {self.level:g} ({self.n_sim} per scenario)"
        return html_block(title, [html_table(list(frame.columns), rows)], self.notes)

    def __str__(self) -> str:
        lines = [
            f"Operating characteristics of 'recommend if P(HR < {self.threshold:g}) > {self.level:g}': "
            f"{self.n_sim} simulated evidence bases per scenario (k = {self.k}, the input's SEs and designs; "
            f"between-study SD {self.tau:g}), {self.seconds:.1f} s on {self.workers}",
            "true HR: the randomised effect; bias b: factor on the HR of non-randomised studies (1 = none), "
            "SD on the log scale. P(recommend) at true HR 1 is the error rate; at HR < 1 the power.",
            f"{'true HR':>8} {'bias b':>7} {'bias SD':>8}  {'design-bias':>13} {'naive pool':>13} {'RCTs only':>13}",
        ]
        for i, sc in enumerate(self.scenarios):
            p, se = self.p_recommend(i), self.mc_se(i)
            cells = "".join(f" {p[a]:>6.3f} ±{se[a]:.3f}" for a in ANALYSES)
            lines.append(f"{sc.true_hr:>8g} {sc.bias_mean:>7g} {sc.bias_sd:>8g} {cells}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def scenario_grid(true_hrs: Sequence[float], bias_means: Sequence[float], bias_sds: Sequence[float]) -> list[Scenario]:
    """Every combination (true HR major, then bias mean, then bias SD).

    Examples
    --------
    >>> [(s.true_hr, s.bias_mean) for s in scenario_grid([1.0, 0.8], [1.0, 0.7], [0.1])]
    [(1.0, 1.0), (1.0, 0.7), (0.8, 1.0), (0.8, 0.7)]
    """
    for name, values, positive in (("true HR", true_hrs, True), ("bias mean", bias_means, True), ("bias SD", bias_sds, False)):
        if not values:
            raise InputError(f"no {name} values given")
        for v in values:
            if not (math.isfinite(v) and (v > 0 if positive else v >= 0)):
                raise InputError(f"{name} values must be finite and {'> 0' if positive else '>= 0'}, got {v!r}")
    return [Scenario(float(h), float(b), float(s)) for h in true_hrs for b in bias_means for s in bias_sds]


def jobs_for(data: ModelData, spec: ModelSpec, scenarios: Sequence[Scenario], n_sim: int, *, tau: float,
             seed: int, threshold: float = RULE_THRESHOLD, level: float = RULE_LEVEL) -> list[tuple]:
    """The jobs of a simulation: each scenario's replicates in chunks of :data:`CHUNK`."""
    return [
        (data, spec, sc, i, start, min(start + CHUNK, n_sim), float(tau), int(seed), float(threshold), float(level))
        for i, sc in enumerate(scenarios)
        for start in range(0, n_sim, CHUNK)
    ]
