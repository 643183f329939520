"""Fast tests of the marginal form of the PyMC models (k >= MARGINAL_MIN_STUDIES; no NUTS here).

The marginal form integrates the study effects (and missing covariate values) out:
y_i ~ N(m_i, s_i^2 + V_i). Checked here: which form is built at which k (and that the dnMBC
models, k = 17, are the latent form as before); that the model's likelihood is the one whose
moments :func:`marginal_study_moments` computes for the study effects, for every model and bias
variant; and that the study-effect summaries are the conditional normal's quantiles.
The agreement of the sampled marginal model with the exact engine is in
tests/test_marginal_agree.py (slow).
"""

from __future__ import annotations

import math

import numpy as np
import pytensor
import pytest
import xarray as xr
from scipy.stats import norm
from test_pymc_models import FAST, det_names, free_names, make_data, mock_posterior, spec_of

from synthesis.models.pymc_fit import (
    STUDY_EFFECT_CELLS,
    STUDY_EFFECT_DRAWS,
    STUDY_EFFECT_MIN_DRAWS,
    TARGET_ACCEPT_HARD,
    TARGET_ACCEPT_MARGINAL,
    SummaryOptions,
    default_target_accept,
    marginal_study_effects,
    study_effect_draws,
    summarise,
)
from synthesis.models.pymc_models import (
    MARGINAL_MIN_STUDIES,
    build_model,
    marginal_study_moments,
    uses_marginal_form,
)
from synthesis.models.sampling import DEFAULT_TARGET_ACCEPT, Sampled, SamplerSettings
from synthesis.models.spec import ModelData, ModelSpec

K = MARGINAL_MIN_STUDIES
MISSING = ((1, 0), (5, 0), (7, 1), (150, 0))

#: (model, variant, covariates, missing cells) -> the free variables of the marginal form.
CASES = {
    "re": (("re", "additive", (), ()), {"mu", "tau", "z_new"}),
    "additive": (("bias", "additive", (), ()), {"mu", "tau", "delta", "z_new"}),
    "random": (("bias", "random", (), ()), {"mu", "tau", "delta", "kappa", "z_new"}),
    "downweight": (("bias", "downweight", (), ()), {"mu", "tau", "z_new"}),
    "three-level": (("bias", "three-level", (), ()), {"mu_overall", "kappa", "e_design", "tau", "z_new"}),
    "metareg": (("metareg", "additive", ("a", "b"), ()), {"mu", "tau", "beta", "z_new"}),
    "metareg-imputed": (("metareg", "additive", ("a", "b"), MISSING), {"mu", "tau", "beta", "x_mean", "x_sd", "z_new"}),
    "bias-metareg-random-imputed": (
        ("bias-metareg", "random", ("a", "b"), MISSING),
        {"mu", "tau", "delta", "kappa", "beta", "x_mean", "x_sd", "z_new"},
    ),
}


def case(name: str, k: int = K) -> tuple[ModelData, ModelSpec]:
    (model, variant, covariates, missing), _ = CASES[name]
    data = make_data(k, covariates=covariates, missing=missing)
    spec = spec_of(model, variant, covariates)
    if variant == "downweight":
        spec = ModelSpec(model="bias", bias_variant="downweight", alpha=0.4)
    return data, spec


@pytest.mark.parametrize("name", sorted(CASES))
def test_marginal_form_from_the_threshold_on(name):
    data, spec = case(name)
    assert uses_marginal_form(data)
    model = build_model(data, spec)
    assert free_names(model) == CASES[name][1]
    assert "theta" not in det_names(model) and "x_imputed" not in det_names(model)
    assert "theta_new" in det_names(model)
    assert [rv.name for rv in model.observed_RVs][-1] == "y"
    below, _ = case(name, K - 1)
    assert not uses_marginal_form(below)
    latent = build_model(below, spec)
    assert {"z", "z_new"} <= free_names(latent) and "theta" in det_names(latent)


@pytest.mark.parametrize(
    ("spec", "free"),
    [
        (ModelSpec(model="re"), {"mu", "tau", "z", "z_new"}),
        (ModelSpec(model="bias"), {"mu", "tau", "delta", "z", "z_new"}),
        (ModelSpec(model="bias-metareg", covariates=("bone_only_fraction",)),
         {"mu", "tau", "delta", "beta", "x_mean", "x_sd", "e_missing", "z", "z_new"}),
    ],
)
def test_dnmbc_models_keep_the_latent_form(spec, free):
    from synthesis.datasets import load_dataset

    table = load_dataset("dnmbc_lrt", covariates=spec.covariates)
    data = ModelData.from_table(table, spec)
    assert data.k == 17 and not uses_marginal_form(data)
    model = build_model(data, spec)
    assert free_names(model) == free
    assert model.named_vars_to_dims["z"] == ("study",)
    assert model.named_vars_to_dims["theta"] == ("study",)


def _point_values(model, names, seed: int = 3):
    """A random point of the model's value variables and the values of ``names`` there."""
    rng = np.random.default_rng(seed)
    point = {k: v + 0.3 * rng.standard_normal(np.shape(v)) for k, v in model.initial_point().items()}
    outputs = model.replace_rvs_by_values([model[n] for n in names])
    f = pytensor.function(model.value_vars, outputs, on_unused_input="ignore", mode=FAST)
    values = f(**{v.name: point[v.name] for v in model.value_vars})
    return point, dict(zip(names, (np.asarray(v, dtype=float) for v in values), strict=True))


@pytest.mark.parametrize("name", sorted(CASES))
def test_marginal_likelihood_has_the_study_moments(name):
    """log p(y | g) of the built model = sum_i log N(y_i; m_i, s_i^2 + V_i) with m, V, s^2 from
    marginal_study_moments (the moments the study effects are summarised with)."""
    data, spec = case(name)
    model = build_model(data, spec)
    names = [n for n in ("mu", "tau", "delta", "kappa", "mu_design", "beta", "x_mean", "x_sd") if n in model.named_vars]
    point, values = _point_values(model, names)
    logp = pytensor.function(model.value_vars, model.logp(vars=[model["y"]]), on_unused_input="ignore", mode=FAST)
    got = float(logp(**{v.name: point[v.name] for v in model.value_vars}))
    draws = {n: v[None, ...] for n, v in values.items()}  # one draw
    m, v, s2 = marginal_study_moments(draws, data, spec)
    expected = norm.logpdf(data.y, m[0], np.sqrt(s2 + v[0])).sum()
    assert got == pytest.approx(expected, rel=1e-10)
    # the moments of a block of studies are those of the whole, sliced
    mb, vb, s2b = marginal_study_moments(draws, data, spec, slice(3, 9))
    np.testing.assert_allclose(mb, m[:, 3:9])
    np.testing.assert_allclose(vb, v[:, 3:9])
    np.testing.assert_allclose(s2b, s2[3:9])


def test_study_effects_are_the_conditional_normal_quantiles():
    """With every draw at the same g, a study effect's posterior is one normal:
    N(m + B (y - m), B s^2), B = tau^2 / (tau^2 + se^2)."""
    data, spec = case("re")
    mu, tau = -0.1, 0.25
    post = xr.Dataset({"mu": (("chain", "draw"), np.full((2, 50), mu)), "tau": (("chain", "draw"), np.full((2, 50), tau))})
    q = marginal_study_effects(xr.DataTree.from_dict({"posterior": post}), data, spec)
    b = tau**2 / (tau**2 + data.se**2)
    mean, sd = mu + b * (data.y - mu), np.sqrt(b * data.se**2)
    np.testing.assert_allclose(q[:, 0], mean, atol=1e-10)
    np.testing.assert_allclose(q[:, 1], mean + norm.ppf(0.025) * sd, atol=1e-9)
    np.testing.assert_allclose(q[:, 2], mean + norm.ppf(0.975) * sd, atol=1e-9)


@pytest.mark.filterwarnings("ignore:The effect of Potentials:UserWarning")  # mock posterior only
def test_summary_of_a_marginal_fit():
    data, spec = case("bias-metareg-random-imputed")
    model = build_model(data, spec)
    dt = mock_posterior(model, chains=2, draws=300)
    fit = summarise(Sampled(dt, "mock", 1.0, 0.5), data, spec, options=SummaryOptions(), settings=SamplerSettings(seed=1), start=0.0)
    assert len(fit.study_effects) == data.k
    assert "theta" not in fit.posterior.posterior
    assert any(f">= {MARGINAL_MIN_STUDIES}" in n and str(STUDY_EFFECT_DRAWS) in n for n in fit.notes)
    assert any("integrated out analytically" in n for n in fit.notes)
    for e in fit.study_effects:
        assert 0 < e.hr.q025 < e.hr.median < e.hr.q975 and math.isfinite(e.hr.q975)
    out = fit.to_json()
    assert len(out["study_hr"]) == data.k and out["imputed"] == data.n_missing


def test_study_effect_draws_budget():
    """400 draws up to k = 25,000, then cells / k (100 at k = 100,000), never below the minimum
    nor above what was sampled."""
    assert study_effect_draws(300, 8000) == STUDY_EFFECT_DRAWS
    assert study_effect_draws(100_000, 8000) == STUDY_EFFECT_CELLS // 100_000 == 100
    assert study_effect_draws(10_000_000, 8000) == STUDY_EFFECT_MIN_DRAWS
    assert study_effect_draws(300, 40) == 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_default_target_accept_of_the_marginal_form(name):
    """0.8 from the threshold on (no funnel left), except three-level; unchanged below."""
    data, spec = case(name)
    below, _ = case(name, K - 1)
    expected = TARGET_ACCEPT_HARD if name == "three-level" else TARGET_ACCEPT_MARGINAL
    assert default_target_accept(spec, data) == expected
    hard = name in ("random", "three-level") or name.endswith("imputed")
    assert default_target_accept(spec, below) == (TARGET_ACCEPT_HARD if hard else DEFAULT_TARGET_ACCEPT)


def test_observed_covariates_summarised_likelihood():
    """In the marginal form the observed covariate values enter through their sufficient
    statistics: the potential equals sum log N(u_ij; m_j, sigma_j^2) of the latent form."""
    data, spec = case("metareg-imputed")
    model = build_model(data, spec)
    point, values = _point_values(model, ["x_mean", "x_sd"])
    potential = model.replace_rvs_by_values([model["x_observed"]])
    f = pytensor.function(model.value_vars, potential[0], on_unused_input="ignore", mode=FAST)
    got = float(f(**{v.name: point[v.name] for v in model.value_vars}))
    x = data.x
    expected = 0.0
    for p, j in enumerate(np.flatnonzero(np.isnan(x).any(axis=0))):
        obs = x[~np.isnan(x[:, j]), j]
        u = (obs - data.centres[j]) / np.std(obs, ddof=1)
        expected += norm.logpdf(u, values["x_mean"][p], values["x_sd"][p]).sum()
    assert got == pytest.approx(expected, rel=1e-10)


def test_marginal_models_compile_through_the_cached_numba_function(monkeypatch):
    """compile_for hands a marginal model to compile_pyfunc (mode 'pyfunc', nothing frozen, so
    the graph does not depend on the data) and a latent one to nutpie's own compile with the
    structural data frozen (the compile itself is replaced by a recorder: no numba here)."""
    import synthesis.models.pymc_fit as pf

    calls = []

    def record(model, **kwargs):
        calls.append(kwargs)
        return pf.CompiledModel(model, None, 0.0)

    monkeypatch.setattr(pf.CompiledModel, "compile", staticmethod(record))
    monkeypatch.setattr(pf, "_COMPILED", type(pf._COMPILED)())
    for k in (K, K - 1):
        data, spec = case("bias-metareg-random-imputed", k)
        pf.compile_for(data, spec, cache=False)
    assert calls[0] == {"backend": "numba", "mode": "pyfunc"}
    assert calls[1]["freeze"] and calls[1].get("mode", "cfunc") == "cfunc"


def test_marginal_graph_holds_no_data_constants():
    """Every k-long or data-derived array of a marginal model is a data container (the missing
    mask, the scales and the observed covariates' sufficient statistics included), so the
    compiled log density is the same function for every data set of that structure."""
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import graph_inputs

    data, spec = case("bias-metareg-random-imputed")
    model = build_model(data, spec)
    names = {v.name for v in model.data_vars}
    assert {"x_centred_0", "x_centred_1", "x_missing_0", "x_missing_1", "x_scale", "x_observed_count", "x_observed_sum",
            "x_observed_sumsq"} <= names
    sizes = [np.asarray(c.data).size for c in graph_inputs([model.logp()]) if isinstance(c, Constant)]
    assert sizes and max(sizes) == 1


@pytest.mark.slow
def test_pyfunc_log_density_and_prior_swap():
    """compile_pyfunc's log density and gradient at a point equal PyMC's own (compile_logp,
    compile_dlogp) to 1e-9, and a swapped tau prior changes the log density by exactly the
    difference of the two half-normal log densities (scipy)."""
    from scipy.stats import halfnorm

    from synthesis.models.sampling import CompiledModel

    data, spec = case("bias-metareg-random-imputed")
    model = build_model(data, spec)
    compiled = CompiledModel.compile(model, mode="pyfunc")
    assert type(compiled.compiled).__name__ == "PyFuncModel"
    rng = np.random.default_rng(3)
    point = {k: v + 0.2 * rng.standard_normal(np.shape(v)) for k, v in model.initial_point().items()}
    x = np.concatenate([np.ravel(point[model.rvs_to_values[rv].name]) for rv in model.free_RVs])

    def density(c):
        return c.compiled._make_logp_func()(x, **c.compiled._shared_data)

    value, grad = density(compiled)
    assert value == pytest.approx(float(model.compile_logp()(point)), rel=1e-9)
    np.testing.assert_allclose(grad, model.compile_dlogp()(point), rtol=1e-9, atol=1e-9)
    swapped, _ = density(compiled.with_data(tau_prior_scale=0.25))
    tau = float(np.exp(point["tau_log__"]))
    assert swapped - value == pytest.approx(halfnorm.logpdf(tau, scale=0.25) - halfnorm.logpdf(tau, scale=0.5), rel=1e-9)
