"""Simulation-based calibration (Talts et al. 2018, arXiv:1804.06788) of the PyMC models.

For each replicate: draw the parameters from their priors (``PriorSpec.rvs``), simulate the log
HRs of ``K`` studies with fixed standard errors (and designs / covariate values), fit with
nutpie, and record the rank of the true value among ``L = 99`` thinned posterior draws. If the
sampler and the model code are right, every rank is uniform on 0..L. Uniformity is tested with
a chi-square test on 10 equal bins (10 ranks each) at ``ALPHA`` per parameter.

One compile per model: the replicates swap the simulated ``log_hr`` into the compiled model
(``CompiledModel.with_data``). Slow: ~1-2 minutes per model.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from synthesis.models.priors import resolve_priors
from synthesis.models.pymc_models import build_model
from synthesis.models.sampling import CompiledModel, SamplerSettings
from synthesis.models.spec import ModelData, ModelSpec

pytestmark = pytest.mark.slow

REPLICATES = 100
#: Posterior draws the true value is ranked among (after thinning 4 x 500 draws).
L = 99
BINS = 10
#: Per-parameter significance level of the chi-square uniformity test (6 tests in this file:
#: a family-wise false-alarm rate of about 3%).
ALPHA = 0.005
K = 8
SETTINGS = dict(chains=4, draws=500, tune=400, target_accept=0.95)


def design(spec: ModelSpec, seed: int = 3) -> ModelData:
    rng = np.random.default_rng(seed)
    nr = np.array([False, False, False, True, True, True, True, True])
    x = rng.uniform(0.0, 1.0, size=(K, len(spec.covariates)))
    return ModelData(
        studies=tuple(f"s{i}" for i in range(K)),
        y=np.zeros(K),
        se=rng.uniform(0.1, 0.4, K),
        nonrandomised=nr,
        designs=tuple("retrospective" if n else "rct" for n in nr),
        covariates=tuple(spec.covariates),
        x=x,
        centres=x.mean(axis=0) if spec.covariates else np.zeros(0),
        source="sbc",
    )


def simulate(data: ModelData, spec: ModelSpec, rng: np.random.Generator) -> tuple[dict[str, float], np.ndarray]:
    p = spec.priors
    truth = {"mu": float(p.mu.rvs(1, rng)[0]), "tau": float(p.tau.rvs(1, rng)[0])}
    mean = np.full(data.k, truth["mu"])
    if spec.has_bias:
        truth["delta"] = float(p.delta.rvs(1, rng)[0])
        mean = mean + truth["delta"] * data.nonrandomised
    if spec.has_covariates:
        beta = p.beta.rvs(len(data.covariates), rng)
        truth["beta"] = float(beta[0])
        mean = mean + (data.x - data.centres) @ beta
    theta = mean + truth["tau"] * rng.standard_normal(data.k)
    return truth, theta + data.se * rng.standard_normal(data.k)


def ranks_for(spec: ModelSpec, seed: int) -> tuple[dict[str, np.ndarray], int]:
    data = design(spec)
    compiled = CompiledModel.compile(build_model(data, spec))
    rng = np.random.default_rng(seed)
    ranks: dict[str, list[int]] = {}
    divergent = 0
    for r in range(REPLICATES):
        truth, y = simulate(data, spec, rng)
        sampled = compiled.with_data(log_hr=y).sample(SamplerSettings(seed=seed + r, **SETTINGS))
        post = sampled.posterior.posterior
        divergent += int(sampled.posterior.sample_stats["diverging"].values.sum())
        for name, value in truth.items():
            draws = np.asarray(post[name].values).reshape(post.sizes["chain"] * post.sizes["draw"], -1)[:, 0]
            thinned = draws[np.linspace(0, draws.size - 1, L).round().astype(int)]
            ranks.setdefault(name, []).append(int(np.sum(thinned < value)))
    return {n: np.asarray(v) for n, v in ranks.items()}, divergent


def uniformity_p(ranks: np.ndarray) -> float:
    counts = np.bincount(ranks * BINS // (L + 1), minlength=BINS)
    return float(stats.chisquare(counts).pvalue)


MODELS = {
    "bias": ModelSpec(model="bias", priors=resolve_priors()),
    "metareg": ModelSpec(model="metareg", covariates=("x",), priors=resolve_priors()),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sbc_ranks_are_uniform(name):
    ranks, divergent = ranks_for(MODELS[name], seed=1000)
    pvalues = {p: uniformity_p(r) for p, r in ranks.items()}
    print(f"\nSBC {name}: {REPLICATES} replicates, divergent transitions {divergent}; chi-square p: "
          + ", ".join(f"{p} {v:.3f}" for p, v in pvalues.items()))
    for p, v in pvalues.items():
        assert v > ALPHA, f"{name}: ranks of {p} are not uniform (chi-square p = {v:.4f})"
