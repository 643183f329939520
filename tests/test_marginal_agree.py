"""The marginal form of the PyMC models (k >= MARGINAL_MIN_STUDIES) agrees with the exact engine.

At k = 300 simulated studies the PyMC engine builds the models with the study effects integrated
out (:func:`synthesis.models.pymc_models.build_marginal_model`). As tests/test_engines_agree.py
does for the latent form at small k (and with its helpers and tolerances): the median and
2.5%/97.5% quantiles of mu, tau and delta within ``MCSE_FACTOR`` MCSEs + ``ABS_SLACK`` of the
exact values, P(HR < 0.8) within ``P_TOL``; and the study effects (Rao-Blackwellised mixtures of
their conditional normals) within ``STUDY_TOL`` on the log scale of the exact engine's for a
spread of studies.

Slow: each case compiles one nutpie model and samples 4 x 5000 draws.
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
