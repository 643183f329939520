"""The marginal form of the PyMC models (k >= MARGINAL_MIN_STUDIES) agrees with the exact engine.

At k = 300 simulated studies the PyMC engine builds the models with the study effects integrated
out (:func:`synthesis.models.pymc_models.build_marginal_model`). As tests/test_engines_agree.py
does for the latent form at small k (and with its helpers and tolerances): the median and
2.5%/97.5% quantiles of mu, tau and delta within ``MCSE_FACTOR`` MCSEs + ``ABS_SLACK`` of the
exact values, P(HR < 0.8) within ``P_TOL``; and the study effects (Rao-Blackwellised mixtures of
their conditional normals) within ``STUDY_TOL`` on the log scale of the exact engine's for a
spread of studies.

The imputed case (missing covariate values integrated out in the marginal form) has no exact
reference: at k = 120 the marginal model is compared with the latent model that samples the
missing values (and the study effects) as parameters, quantile by quantile within
``MCSE_FACTOR`` combined MCSEs + ``ABS_SLACK``.

Slow: each case compiles one nutpie model (two for the imputed case) and samples 4 x 5000 draws.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_engines_agree import compare, report, simulated

from synthesis.models.pymc_models import MARGINAL_MIN_STUDIES
from synthesis.models.spec import ModelData, ModelSpec

pytestmark = pytest.mark.slow

K = 300
#: Study effects (log HR quantiles) agree within this: the mixture over 400 thinned draws has a
#: Monte Carlo error of about sd(conditional mean) / 20 (< 0.002 here).
STUDY_TOL = 0.01
STUDIES = (0, 1, 2, 3, 4, 50, 123, 299)

CASES = {
    "re": ModelSpec(model="re"),
    "bias": ModelSpec(model="bias"),
}


def data_without_covariates() -> ModelData:
    data = simulated(k=K, seed=11)
    return ModelData(**{**data.__dict__, "covariates": (), "x": np.zeros((data.k, 0)), "centres": np.zeros(0)})


@pytest.mark.parametrize("case", sorted(CASES))
def test_marginal_model_agrees_with_exact(case):
    spec = CASES[case]
    data = data_without_covariates()
    assert data.k >= MARGINAL_MIN_STUDIES
    rows, (mcmc, exact) = compare(data, spec, return_fits=True)
    assert "theta" not in mcmc.posterior.posterior and "z" not in mcmc.posterior.posterior
    for i in STUDIES:
        m, e = mcmc.study_effects[i].hr, exact.study_effects[i].hr
        for q in ("median", "q025", "q975"):
            diff = math.log(getattr(m, q)) - math.log(getattr(e, q))
            rows.append({"what": f"theta[{i}] {q}", "pymc": math.log(getattr(m, q)), "exact": math.log(getattr(e, q)),
                         "diff": diff, "mcse": math.nan, "tolerance": STUDY_TOL, "ok": abs(diff) <= STUDY_TOL})
    print(f"\nmarginal {case} (k = {data.k})\n{report(rows)}")
    assert all(r["ok"] for r in rows), report(rows)


#: Missing covariate values in the imputed case: every fourth study's x (25%).
IMPUTED_K = 120
MISSING_EVERY = 4
#: Quantiles of the covariate model's hyperparameters compared as well (marginal form: x_mean
#: and x_sd are still sampled; only the missing values themselves are integrated out).
IMPUTED_PARAMETERS = ("mu", "tau", "delta", "beta", "x_mean", "x_sd")


def data_with_missing_covariate() -> ModelData:
    data = simulated(k=IMPUTED_K, seed=12)
    x = data.x.copy()
    x[::MISSING_EVERY, 0] = np.nan
    centres = np.nanmean(x, axis=0)
    return ModelData(**{**data.__dict__, "x": x, "centres": centres})


def _flat(fit, name):
    return np.asarray(fit.posterior.posterior[name].values, dtype=float).reshape(-1)


def test_marginal_imputed_model_agrees_with_the_latent_model():
    """The missing covariate values integrated out (marginal form) vs imputed as parameters
    (latent form, e_missing and the study effects sampled): the same model, so the posteriors
    of the global parameters agree; both are MCMC, so each quantile must agree within
    MCSE_FACTOR x the combined MCSE of the two runs + ABS_SLACK."""
    import arviz_stats as azs
    from test_engines_agree import ABS_SLACK, DRAWS, MCSE_FACTOR, SEED, TUNE

    from synthesis.models.pymc_fit import fit_pymc
    from synthesis.models.pymc_models import build_marginal_model, build_model, structural_data
    from synthesis.models.sampling import CompiledModel

    data = data_with_missing_covariate()
    assert data.k < MARGINAL_MIN_STUDIES and data.n_missing == IMPUTED_K // MISSING_EVERY
    spec = ModelSpec(model="bias-metareg", covariates=("x",))
    latent_model = build_model(data, spec)
    assert "e_missing" in {v.name for v in latent_model.free_RVs}
    marginal_model = build_marginal_model(data, spec)
    assert "e_missing" not in {v.name for v in marginal_model.free_RVs}
    fits = {}
    for form, model in (("latent", latent_model), ("marginal", marginal_model)):
        if form == "marginal":  # as compile_for compiles a marginal model (PyTensor's cached numba)
            compiled = CompiledModel.compile(model, mode="pyfunc")
        else:
            compiled = CompiledModel.compile(model, freeze=structural_data(model))
        fits[form] = fit_pymc(data, spec, compiled=compiled, draws=DRAWS, tune=TUNE, seed=SEED)
        assert fits[form].diagnostics.converged, fits[form].diagnostics.messages
    rows = []
    probs = {"q025": 0.025, "median": 0.5, "q975": 0.975}
    for name in IMPUTED_PARAMETERS:
        a, b = fits["latent"].posterior.posterior[name], fits["marginal"].posterior.posterior[name]
        for q, p in probs.items():
            qa, qb = np.quantile(_flat(fits["latent"], name), p), np.quantile(_flat(fits["marginal"], name), p)
            method = {"method": "median"} if q == "median" else {"method": "quantile", "prob": p}
            mcse = math.hypot(float(np.asarray(azs.mcse(a, **method)).max()), float(np.asarray(azs.mcse(b, **method)).max()))
            tol = MCSE_FACTOR * mcse + ABS_SLACK
            rows.append({"what": f"{name} {q}", "pymc": qb, "exact": qa, "diff": qb - qa, "mcse": mcse,
                         "tolerance": tol, "ok": abs(qb - qa) <= tol})
    print(f"\nmarginal (pymc column) vs latent (exact column) bias-metareg, {data.n_missing} of {data.k} x missing\n{report(rows)}")
    assert all(r["ok"] for r in rows), report(rows)
