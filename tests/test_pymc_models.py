"""Fast tests of the PyMC model builders, the prior mapping and the summaries (no NUTS here).

Log densities and forward draws are compiled in PyTensor's FAST_COMPILE mode (pure Python), so
nothing in this file pays nutpie's numba compile.
"""

from __future__ import annotations

import math

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
import xarray as xr
from scipy import integrate

from synthesis.errors import InputError, ModelError
from synthesis.models.fit import at_label, parse_at
from synthesis.models.priors import (
    FAMILIES,
    LOCATION_FAMILIES,
    SCALE_FAMILIES,
    parse_prior,
    resolve_priors,
)
from synthesis.models.pymc_fit import (
    SummaryOptions,
    data_hash,
    diagnose,
    prior_updates,
    structure_key,
    summarise,
    summarise_parameter,
)
from synthesis.models.pymc_models import (
    IMPUTATION_HYPERPRIORS,
    build_bias,
    build_metareg,
    build_model,
    build_random_effects,
    prior_data,
    prior_data_name,
    prior_rv,
)
from synthesis.models.sampling import Sampled, SamplerSettings
from synthesis.models.spec import ModelData, ModelSpec, threshold_key

FAST = "FAST_COMPILE"
#: PyMC's half-Cauchy log normalising constant differs from scipy's in the 9th digit (2e-9).
LOGP_RTOL = 1e-7

#: One example of every prior family, with points to evaluate the density at.
FAMILY_EXAMPLES = {
    "halfnormal": ("halfnormal(0.5)", [0.01, 0.3, 1.7]),
    "halfcauchy": ("halfcauchy(0.3)", [0.01, 0.3, 4.0]),
    "halft": ("halft(3, 0.4)", [0.02, 0.5, 2.5]),
    "exponential": ("exponential(4)", [0.01, 0.25, 1.5]),
    "uniform": ("uniform(0, 2)", [0.01, 0.7, 1.99]),
    "lognormal_tau2": ("lognormal_tau2(-4.17, 1.55)", [0.02, 0.12, 0.9]),
    "invgamma": ("invgamma(2.42, 0.30)", [0.05, 0.2, 1.1]),
    "invgamma_tau2": ("invgamma_tau2(2, 0.1)", [0.05, 0.3, 1.0]),
    "normal": ("normal(-0.2, 0.7)", [-2.0, 0.0, 0.9]),
    "studentt": ("studentt(2, 0, 0.13)", [-1.0, 0.05, 0.4]),
}


def make_data(
    k: int = 10,
    *,
    covariates: tuple[str, ...] = (),
    missing: tuple[tuple[int, int], ...] = (),
    designs: tuple[str, ...] | None = None,
    seed: int = 1,
) -> ModelData:
    rng = np.random.default_rng(seed)
    if designs is None:
        designs = tuple(["rct"] * 3 + ["prospective"] * 3 + ["retrospective"] * (k - 6))
    nr = np.array([d != "rct" for d in designs])
    x = rng.uniform(0.0, 1.0, size=(k, len(covariates)))
    for i, j in missing:
        x[i, j] = np.nan
    centres = np.array([np.nanmean(x[:, j]) for j in range(len(covariates))])
    return ModelData(
        studies=tuple(f"study {i}" for i in range(k)),
        y=rng.normal(-0.2, 0.2, k),
        se=rng.uniform(0.1, 0.3, k),
        nonrandomised=nr,
        designs=designs,
        covariates=covariates,
        x=x,
        centres=centres,
        source="test",
    )


def spec_of(model: str = "re", variant: str = "additive", covariates: tuple[str, ...] = (), **priors) -> ModelSpec:
    return ModelSpec(model=model, bias_variant=variant, covariates=covariates, priors=resolve_priors(priors))


def free_names(model: pm.Model) -> set[str]:
    return {rv.name for rv in model.free_RVs}


def det_names(model: pm.Model) -> set[str]:
    return {d.name for d in model.deterministics}


# ------------------------------------------------------------------------------------------
# Structure: names and dims
# ------------------------------------------------------------------------------------------
def test_random_effects_structure():
    data = make_data()
    model = build_random_effects(data, spec_of("re"))
    assert free_names(model) == {"mu", "tau", "z", "z_new"}
    assert det_names(model) == {"theta", "theta_new"}
    assert model.named_vars_to_dims["theta"] == ("study",)
    assert model.named_vars_to_dims["z"] == ("study",)
    assert list(model.coords["study"]) == list(data.studies)
    assert [rv.name for rv in model.observed_RVs] == ["y"]
    # every hyperparameter is data, none is a literal
    assert {prior_data_name("mu", "mean"), prior_data_name("mu", "sd"), prior_data_name("tau", "scale")} <= {
        v.name for v in model.data_vars
    }


@pytest.mark.parametrize(
    ("variant", "free", "dets"),
    [
        ("additive", {"mu", "tau", "delta", "z", "z_new"}, {"theta", "theta_new"}),
        ("random", {"mu", "tau", "delta", "kappa", "w_bias", "z", "z_new"}, {"theta", "theta_new", "delta_study"}),
        ("downweight", {"mu", "tau", "z", "z_new"}, {"theta", "theta_new"}),
        (
            "three-level",
            {"mu_overall", "kappa", "e_design", "tau", "z", "z_new"},
            {"mu", "delta", "mu_design", "theta", "theta_new"},
        ),
    ],
)
def test_bias_variants_structure(variant, free, dets):
    data = make_data()
    model = build_bias(data, spec_of("bias", variant))
    assert free_names(model) == free
    assert det_names(model) == dets
    if variant == "random":
        nr = [s for s, f in zip(data.studies, data.nonrandomised, strict=True) if f]
        assert list(model.coords["nonrandomised"]) == nr
        assert model.named_vars_to_dims["w_bias"] == ("nonrandomised",)
    if variant == "three-level":
        assert list(model.coords["design"]) == ["rct", "prospective", "retrospective"]
        assert model.named_vars_to_dims["mu_design"] == ("design",)
        # the kappa prior is used (and labelled); the bias prior is not
        assert "kappa" in spec_of("bias", variant).parameters
        assert "delta" not in spec_of("bias", variant).parameters
    if variant == "downweight":
        assert "alpha" in {v.name for v in model.data_vars}


def test_three_level_mu_is_rct_design_mean():
    data = make_data()
    model = build_bias(data, spec_of("bias", "three-level"))
    point = {"mu_overall": 0.1, "kappa_log__": np.log(0.2), "e_design": np.array([1.0, -0.5, 0.5])}
    outputs = model.replace_rvs_by_values([model["mu"], model["delta"], model["mu_design"]])
    f = pytensor.function(model.value_vars, outputs, on_unused_input="ignore", mode=FAST)
    full = model.initial_point() | point
    mu, delta, mu_design = f(**{v.name: full[v.name] for v in model.value_vars})
    assert mu == pytest.approx(0.1 + 0.2 * 1.0)
    assert mu_design[0] == pytest.approx(mu)
    assert delta == pytest.approx(np.mean(mu_design[1:]) - mu)


def test_downweight_inflates_nonrandomised_variance_only():
    data = make_data()
    spec = ModelSpec(model="bias", bias_variant="downweight", alpha=0.25)
    model = build_bias(data, spec)
    y = model["y"]
    sigma = y.owner.inputs[-1]
    value = pytensor.function([], sigma, mode=FAST)()
    expected = np.where(data.nonrandomised, data.se / math.sqrt(0.25), data.se)
    np.testing.assert_allclose(value, expected)


def test_metareg_structure_without_missing():
    data = make_data(covariates=("a", "b"))
    model = build_metareg(data, spec_of("metareg", covariates=("a", "b")))
    assert free_names(model) == {"mu", "tau", "beta", "z", "z_new"}
    assert model.named_vars_to_dims["beta"] == ("covariate",)
    assert list(model.coords["covariate"]) == ["a", "b"]
    assert "missing" not in model.coords


def test_metareg_imputes_missing_values_never_drops_rows():
    data = make_data(covariates=("a", "b"), missing=((1, 0), (5, 1), (7, 1)))
    assert data.n_missing == 3
    model = build_metareg(data, spec_of("metareg", covariates=("a", "b")))
    assert {"x_mean", "x_sd", "e_missing"} <= free_names(model)
    assert "x_imputed" in det_names(model)
    assert list(model.coords["missing"]) == ["study 1:a", "study 5:b", "study 7:b"]
    assert list(model.coords["imputed_covariate"]) == ["a", "b"]
    assert len(model.coords["study"]) == data.k  # no row dropped
    assert model["x_prior_mean_sd"].get_value() == IMPUTATION_HYPERPRIORS["mean_sd"]
    # the observed values of the covariate inform its model: 10 - 1 observed for a, 10 - 2 for b
    assert model["x_observed"].owner.inputs[-1].type.shape in ((17,), (None,))


def test_bias_metareg_has_both_terms():
    data = make_data(covariates=("a",), missing=((4, 0),))
    model = build_model(data, spec_of("bias-metareg", "random", covariates=("a",)))
    assert {"mu", "tau", "delta", "kappa", "beta", "e_missing"} <= free_names(model)


def test_builders_check_the_model_name():
    with pytest.raises(ModelError, match="builder makes the 're' model"):
        build_random_effects(make_data(), spec_of("bias"))


# ------------------------------------------------------------------------------------------
# Priors: one mapping, every family, densities equal to PriorSpec.logpdf
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_is_a_proper_distribution_on_its_support(family):
    """For each row of the families table: the density PriorSpec.logpdf gives integrates to 1
    over the family's support, its integral up to x is PriorSpec.cdf(x), and cdf inverts ppf.
    (A family without an example fails here with a KeyError.)"""
    text, points = FAMILY_EXAMPLES[family]
    spec = parse_prior(text, "mu" if FAMILIES[family].kind == "location" else "tau")
    lower, upper = float(spec.ppf(0.0)), float(spec.ppf(1.0))
    median = float(spec.ppf(0.5))

    def density(x: float) -> float:
        return float(np.exp(spec.logpdf(np.array([x]))[0]))

    def mass(a: float, b: float) -> float:
        cut = min(max(median, a), b)
        return integrate.quad(density, a, cut, limit=200)[0] + integrate.quad(density, cut, b, limit=200)[0]

    assert mass(lower, upper) == pytest.approx(1.0, abs=1e-6)
    for x in points:
        assert float(spec.cdf(x)) == pytest.approx(mass(lower, x), abs=1e-6), x
    q = np.array([0.001, 0.025, 0.5, 0.975, 0.999])
    np.testing.assert_allclose(spec.cdf(spec.ppf(q)), q, rtol=1e-9)
    if FAMILIES[family].kind == "scale":
        assert float(spec.cdf(-0.1)) == 0.0 and spec.logpdf(np.array([-0.1]))[0] == -np.inf
    assert spec.label.startswith(FAMILIES[family].title + "(")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_prior_logp_matches_priorspec(family):
    text, points = FAMILY_EXAMPLES[family]
    parameter = "mu" if family in LOCATION_FAMILIES else "tau"
    spec = parse_prior(text, parameter)
    with pm.Model() as model:
        rv = prior_rv(parameter, spec)
        value = pt.dvector("value")
        logp = pm.logp(rv, value)
    f = pytensor.function([value], logp, mode=FAST)
    np.testing.assert_allclose(f(np.array(points)), spec.logpdf(np.array(points)), rtol=LOGP_RTOL, atol=1e-12)
    # hyperparameters are data containers with the documented names and values
    for name, v in prior_data(parameter, spec).items():
        assert model[name].get_value() == pytest.approx(v)
    # scale parameters are sampled on an unconstrained scale
    if family in SCALE_FAMILIES:
        assert model.rvs_to_transforms[rv] is not None


def test_prior_draws_follow_the_prior():
    spec = parse_prior("invgamma_tau2(3, 0.2)", "tau")
    with pm.Model():
        rv = prior_rv("tau", spec)
    draws = pm.draw(rv, draws=4000, random_seed=3, mode=FAST)
    # median of tau = sqrt(median of IG)
    assert np.median(draws) == pytest.approx(float(spec.ppf(0.5)), rel=0.05)


def test_priors_of_one_family_share_a_structure_and_swap_as_data():
    a = spec_of("bias", tau="halfnormal(0.5)")
    b = spec_of("bias", tau="halfnormal(0.1)", delta="normal(-0.2, 0.3)")
    c = spec_of("bias", tau="halfcauchy(0.5)")
    assert structure_key(a) == structure_key(b) != structure_key(c)

    class Fake:
        data_names = tuple(v.name for v in build_model(make_data(), a).data_vars)

    updates = prior_updates(b, Fake())
    assert updates["tau_prior_scale"] == 0.1
    assert updates["delta_prior_mean"] == -0.2 and updates["delta_prior_sd"] == 0.3


# ------------------------------------------------------------------------------------------
# Refusals
# ------------------------------------------------------------------------------------------
def test_constant_covariate_is_refused():
    data = make_data(covariates=("a",))
    data = ModelData(**{**data.__dict__, "x": np.ones((data.k, 1)), "centres": np.ones(1)})
    with pytest.raises(ModelError, match="takes one value only"):
        build_model(data, spec_of("metareg", covariates=("a",)))


def test_imputation_needs_two_observed_values():
    data = make_data(k=4, covariates=("a",), missing=((0, 0), (1, 0), (2, 0)), designs=("rct",) * 4)
    with pytest.raises(ModelError, match="imputation model needs at least two"):
        build_model(data, spec_of("metareg", covariates=("a",)))


def test_bias_model_needs_both_designs():
    data = make_data(k=4, designs=("rct",) * 4)
    with pytest.raises(ModelError, match="both randomised and non-randomised"):
        build_model(data, spec_of("bias"))


def test_at_parsing_errors_name_the_option():
    assert parse_at(["a=0.5", "a=1,b=2"], ("a", "b")) == {"a=0.5": {"a": 0.5}, "a=1,b=2": {"a": 1.0, "b": 2.0}}
    assert at_label({"a": 0.25}) == "a=0.25"
    # points whose 6-digit labels agree stay apart (they used to overwrite each other)
    close = parse_at(["a=2001.5", "a=2001.5000001", "a=0.1234567"], ("a",))
    assert list(close) == ["a=2001.5", "a=2001.5000001", "a=0.1234567"]
    with pytest.raises(InputError, match="given twice"):
        parse_at(["a=0.5", "a=0.50"], ("a",))
    for bad, msg in [("a", "expected COVARIATE=VALUE"), ("c=1", "not a covariate"), ("a=x", "expected"), ("a=1,a=2", "twice")]:
        with pytest.raises(InputError, match=msg) as err:
            parse_at([bad], ("a", "b"))
        assert str(err.value).startswith("at ") and err.value.parameter == "at"
    with pytest.raises(InputError, match="only the meta-regressions"):
        parse_at(["a=1"], ())


# ------------------------------------------------------------------------------------------
# Summaries from mock draws (prior draws standing in for the posterior)
# ------------------------------------------------------------------------------------------
def mock_posterior(model: pm.Model, chains: int = 4, draws: int = 100, diverging: int = 0) -> xr.DataTree:
    prior = pm.sample_prior_predictive(
        draws=chains * draws, model=model, random_seed=11, compile_kwargs={"mode": FAST}
    )
    ds = prior["prior"].to_dataset().isel(chain=0)
    ds = ds.assign_coords(draw=np.arange(chains * draws))
    arrays = {}
    for name, da in ds.data_vars.items():
        values = da.values.reshape((chains, draws) + da.shape[1:])
        arrays[name] = (("chain", "draw") + da.dims[1:], values)
    coords = {k: v for k, v in ds.coords.items() if k != "draw"}
    post = xr.Dataset(arrays, coords=coords | {"chain": np.arange(chains), "draw": np.arange(draws)})
    div = np.zeros((chains, draws), dtype=bool)
    div.flat[:diverging] = True
    stats = xr.Dataset({"diverging": (("chain", "draw"), div)})
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats, "observed_data": prior["observed_data"].to_dataset()})


@pytest.fixture(scope="module")
def metareg_fit():
    data = make_data(covariates=("a",), missing=((2, 0), (6, 0)))
    spec = spec_of("bias-metareg", covariates=("a",))
    model = build_model(data, spec)
    dt = mock_posterior(model, diverging=3)
    sampled = Sampled(dt, "mock", compile_s=1.0, sample_s=0.5)
    options = SummaryOptions(thresholds=(0.8, 1.0), at={"a=1": {"a": 1.0}})
    fit = summarise(sampled, data, spec, options=options, settings=SamplerSettings(seed=5), start=0.0)
    return data, spec, dt, fit


def test_summary_contract(metareg_fit):
    data, spec, dt, fit = metareg_fit
    out = fit.to_json()
    for key in ("mu", "tau", "delta", "beta", "hr", "p_hr_below", "predictive_hr", "study_hr", "diagnostics", "imputed", "timing", "seed"):
        assert key in out, key
    assert out["imputed"] == 2
    assert set(out["p_hr_below"]) == {threshold_key(0.8), threshold_key(1.0)}
    mu = np.asarray(dt.posterior["mu"]).ravel()
    assert out["p_hr_below"]["0.8"] == pytest.approx(np.mean(mu < math.log(0.8)))
    assert out["hr"]["median"] == pytest.approx(math.exp(np.median(mu)))
    assert set(out["mu"]) >= {"mean", "median", "sd", "q025", "q975", "ess_bulk", "ess_tail", "r_hat", "mcse_mean"}
    assert set(fit.parameters["mu"].mcse_quantiles) == {"median", "q025", "q975"}
    assert len(out["study_hr"]) == data.k
    assert set(out["timing"]) == {"compile_s", "sample_s", "total_s"}
    assert "a=1" in fit.hr_at and set(fit.hr_at["a=1"].p_below) == {"0.8", "1.0"}
    beta = np.asarray(dt.posterior["beta"]).reshape(-1)
    expected = np.exp(np.median(mu + beta * (1.0 - data.centres[0])))
    assert fit.hr_at["a=1"].median == pytest.approx(expected)
    assert set(fit.densities) == {"mu", "tau", "delta"}


def test_divergences_make_a_fit_unconverged(metareg_fit):
    _, _, dt, fit = metareg_fit
    d = fit.diagnostics
    assert d.divergences == 3 and not d.converged
    assert any("diverged" in m for m in d.messages)


def test_converged_when_draws_are_independent():
    rng = np.random.default_rng(0)
    post = xr.Dataset({"mu": (("chain", "draw"), rng.normal(size=(4, 500))), "tau": (("chain", "draw"), np.abs(rng.normal(size=(4, 500))))})
    dt = xr.DataTree.from_dict({"posterior": post, "sample_stats": xr.Dataset({"diverging": (("chain", "draw"), np.zeros((4, 500), bool))})})
    params = {n: summarise_parameter(post[n]) for n in ("mu", "tau")}
    d = diagnose(dt, params, {})
    assert d.converged and d.divergences == 0 and d.max_r_hat < 1.01 and d.min_ess_bulk > 1000


@pytest.mark.parametrize("draws", [1, 3])
def test_too_few_draws_per_chain_is_not_converged(draws):
    """R-hat and ESS need >= 4 draws per chain; below that the fit's convergence is unknown, so
    it is not reported converged (it was, with no message)."""
    rng = np.random.default_rng(0)
    post = xr.Dataset({"mu": (("chain", "draw"), rng.normal(size=(4, draws)))})
    dt = xr.DataTree.from_dict({"posterior": post})
    d = diagnose(dt, {"mu": summarise_parameter(post["mu"])}, {})
    assert not d.converged
    assert any("R-hat and ESS cannot be computed" in m for m in d.messages)


def test_hr_at_entries_carry_their_point(metareg_fit):
    _, _, _, fit = metareg_fit
    assert fit.hr_at["a=1"].point == {"a": 1.0}
    assert fit.to_json()["hr_at"]["a=1"]["point"] == {"a": 1.0}
    assert fit.hr.point is None and fit.hr.p_below == fit.p_hr_below


def test_stuck_chain_is_reported_in_words():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 200))
    x[0] += 3.0
    post = xr.Dataset({"mu": (("chain", "draw"), x)})
    dt = xr.DataTree.from_dict({"posterior": post})
    d = diagnose(dt, {"mu": summarise_parameter(post["mu"])}, {})
    assert not d.converged
    assert any(m.startswith("R-hat of mu") and "chains disagree" in m for m in d.messages)


def test_posterior_attrs_record_provenance(metareg_fit):
    data, spec, dt, fit = metareg_fit
    attrs = fit.posterior.attrs
    assert attrs["data_hash"] == data_hash(data)
    assert attrs["seed"] == 5
    import json

    assert set(json.loads(attrs["priors"])) == set(spec.parameters)
    assert {"pymc", "pytensor", "nutpie", "numpy", "python"} <= set(json.loads(attrs["versions"]))
    assert json.loads(attrs["model_spec"])["model"] == "bias-metareg"


def test_data_hash_changes_with_the_data():
    a = make_data()
    b = ModelData(**{**a.__dict__, "y": a.y + 1e-9})
    assert data_hash(a) != data_hash(b)
    assert data_hash(a) == data_hash(make_data())


# ------------------------------------------------------------------------------------------
# Sampling layer
# ------------------------------------------------------------------------------------------
def test_with_data_checks_names_and_shapes():
    from synthesis.models.sampling import CompiledModel

    model = build_model(make_data(), spec_of("bias"))
    compiled = CompiledModel(model, None, 0.0)
    swapped = compiled.with_data(tau_prior_scale=0.1)
    assert swapped.overrides["tau_prior_scale"] == pytest.approx(0.1)
    assert model["tau_prior_scale"].get_value() == pytest.approx(0.5)  # the model is untouched
    with pytest.raises(KeyError, match="no data container"):
        compiled.with_data(tau_prior_sigma=0.1)
    with pytest.raises(ValueError, match="shape"):
        compiled.with_data(log_hr=np.zeros(3))


def test_sampler_settings_are_validated():
    """Library errors name the parameter, not the command-line flag (the CLI translates)."""
    for kwargs, name in [({"target_accept": 1.0}, "target_accept"), ({"draws": 0}, "draws"),
                         ({"adaptation": "dense"}, "adaptation"), ({"chains": 0}, "chains")]:
        with pytest.raises(InputError, match=f"^{name} ") as err:
            SamplerSettings(**kwargs)
        assert err.value.parameter == name and "--" not in str(err.value)


@pytest.mark.slow
def test_pymc_sampler_fallback_when_nutpie_fails(monkeypatch, capsys):
    import nutpie

    from synthesis.models.pymc_fit import fit_pymc

    def broken(*args, **kwargs):
        raise RuntimeError("simulated nutpie failure")

    monkeypatch.setattr(nutpie, "compile_pymc_model", broken)
    data = make_data()
    fit = fit_pymc(data, spec_of("re"), chains=2, draws=300, tune=300, seed=3)
    err = capsys.readouterr().err
    assert "falling back to PyMC's NUTS" in err and "simulated nutpie failure" in err
    assert fit.posterior.attrs["sampler"] == "pymc"
    assert "diverging" in fit.posterior.sample_stats
    assert any("sampled with PyMC's NUTS" in n for n in fit.notes)
    assert fit.parameters["mu"].r_hat is not None
