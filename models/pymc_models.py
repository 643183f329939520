r"""PyMC graphs of the hierarchical models of log hazard ratios (build only: no sampling, no I/O).

Every builder takes a :class:`~synthesis.models.spec.ModelData` and a :class:`~synthesis.models.spec.ModelSpec` and
returns a :class:`pymc.Model` with named dimensions (``study``, ``covariate``, ``design``,
``nonrandomised``, ``missing``) and variables under their reported names:

``mu``
    log HR of a *randomised* comparison (at the covariate centres for the meta-regressions);
``tau``
    between-study SD of the true log HRs;
``delta``
    design bias: mean log-HR shift of a non-randomised study relative to a randomised one;
``kappa``
    SD of study-specific biases (``random``) or of the design-level means (``three-level``);
``beta``
    meta-regression slopes, one per covariate (dim ``covariate``);
``theta``
    true (shrunken) log HR of each study (dim ``study``);
``theta_new``
    log HR of a new *randomised* study at the covariate centres (predictive).

The observed log HRs are the observed variable ``y`` with y_i ~ N(theta_i, se_i^2); the data
(``log_hr``, ``se``) and every prior hyperparameter are :func:`pymc.Data` containers, so that a
model compiled once can be re-sampled with new data or with new priors of the same family (see
:mod:`synthesis.models.sampling`). Study effects are non-centred, theta_i = m_i + tau z_i with
z_i ~ N(0, 1), which samples well when the studies are imprecise relative to tau (the usual case
with few, small studies).

With many studies (k >= :data:`MARGINAL_MIN_STUDIES`) every model is built in its *marginal*
form instead (:func:`build_marginal_model`): the study effects, and any missing covariate values,
are integrated out analytically, y_i ~ N(m_i, s_i^2 + V_i), which leaves the posterior of the
global parameters unchanged and the sampler a handful of parameters instead of k latent ones.
That model has no ``theta``; the study effects are summarised from their conditional normal
given the global parameters (:func:`marginal_study_moments`,
:func:`synthesis.models.pymc_fit.marginal_study_effects`).

Models (nr_i = 1 for a non-randomised study, x_ij the covariates, c_j their centres):

* ``re``: theta_i = mu + tau z_i.
* ``bias`` (``--bias-variant``):

  - ``additive`` (default): theta_i = mu + delta nr_i + tau z_i, delta ~ the bias prior. One
    common bias shared by every non-randomised study (Welton et al. 2009, doi:10.1111/
    j.1467-985X.2008.00548.x; Efthimiou et al. 2017, doi:10.1002/sim.7259).
  - ``random``: theta_i = mu + delta_i nr_i + tau z_i with study-specific biases
    delta_i = delta + kappa w_i, w_i ~ N(0, 1) (non-centred), kappa ~ the kappa prior (Turner et
    al. 2009, doi:10.1111/j.1467-985X.2008.00547.x; Welton et al. 2009).
  - ``downweight``: no bias term; a non-randomised study's sampling variance is inflated to
    se_i^2 / alpha, alpha in (0, 1] fixed by the user (a power prior on the non-randomised
    evidence: Efthimiou et al. 2017, "design-adjusted" synthesis; Ibrahim & Chen 2000).
  - ``three-level``: studies nested in designs d in {rct, prospective, retrospective}
    (those present). m ~ the mu prior, design means mu_d = m + kappa e_d, e_d ~ N(0, 1)
    (non-centred), kappa ~ the kappa prior, theta_i = mu_{d(i)} + tau z_i (Rhodes et al. 2020,
    doi:10.1177/0962280219883378; Verde 2021, doi:10.1002/bimj.201900376). The reported
    ``mu`` is mu_rct, the effect in a randomised comparison (so its prior is the mu prior
    convolved with N(0, kappa^2), not the mu prior itself); ``delta`` is reported as the mean
    over the non-randomised designs present of mu_d - mu_rct (a derived quantity: the bias
    prior is not used).

* ``metareg``: theta_i = mu + sum_j beta_j (x_ij - c_j) + tau z_i, beta_j ~ the beta prior.
  Missing covariate values are imputed inside the model, never dropped: on the standardised
  scale u_ij = (x_ij - c_j) / s_j (c_j, s_j the mean and SD of the observed values),
  u_ij ~ N(m_j, sigma_j^2) for observed and missing values alike, with
  m_j ~ N(0, IMPUTATION_HYPERPRIORS["mean_sd"]^2) (mean "mean_mean" = 0) and
  sigma_j ~ half-normal(IMPUTATION_HYPERPRIORS["sd_scale"]); the missing u_ij are parameters
  (non-centred), so y_i informs them through beta as well. This normal covariate model is
  unbounded: for a fraction in [0, 1] an imputed value can fall slightly outside [0, 1] (a
  linear extrapolation of the regression, stated rather than truncated). ``x_imputed`` (dim
  ``missing``) holds the imputed values on the covariate's own scale.
* ``bias-metareg``: both terms (any bias variant).

References
----------
Turner RM, Spiegelhalter DJ, Smith GCS, Thompson SG (2009). Bias modelling in evidence
synthesis. J R Stat Soc A 172(1):21-47.
Welton NJ, Ades AE, Carlin JB, Altman DG, Sterne JAC (2009). Models for potentially biased
evidence in meta-analysis using empirically based priors. J R Stat Soc A 172(1):119-136.
Efthimiou O, Mavridis D, Debray TPA, et al. (2017). Combining randomized and non-randomized
evidence in network meta-analysis. Stat Med 36(8):1210-1226.
Rhodes KM, Savović J, Elbers R, et al. (2020). Adjusting trial results for biases in
meta-analysis: combining data-based evidence on bias with detailed trial assessment.
J R Stat Soc A 183(1):193-209.
Verde PE (2021). A bias-corrected meta-analysis model for combining studies of different types
and quality. Biom J 63(2):406-422.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.tensor.variable import TensorVariable

from synthesis.base import DESIGNS, REFERENCE_DESIGN
from synthesis.errors import ModelError
from synthesis.models.priors import FAMILIES, PriorSpec
from synthesis.models.spec import ModelData, ModelSpec

#: Hyperpriors of the covariate-imputation model, on the standardised covariate scale
#: (observed values have mean 0 and SD 1 there): m_j ~ N(mean_mean, mean_sd^2),
#: sigma_j ~ HN(sd_scale).
IMPUTATION_HYPERPRIORS: dict[str, float] = {"mean_mean": 0.0, "mean_sd": 1.0, "sd_scale": 1.0}
#: The N(0, 1) of the non-centred parameterisations (standardised study, bias and design effects).
STANDARD_NORMAL: tuple[float, float] = (0.0, 1.0)


def prior_data_name(parameter: str, hyperparameter: str) -> str:
    """Name of the :func:`pymc.Data` container holding one prior hyperparameter,
    e.g. ``("tau", "scale") -> "tau_prior_scale"``.

    Examples
    --------
    >>> prior_data_name("tau", "scale")
    'tau_prior_scale'
    """
    return f"{parameter}_prior_{hyperparameter}"


def prior_data(parameter: str, prior: PriorSpec) -> dict[str, float]:
    """The data-container values that give ``parameter`` the prior ``prior``.

    Used to re-sample a compiled model with another prior of the same family
    (``CompiledModel.with_data(**prior_data("tau", new))``).

    Examples
    --------
    >>> from synthesis.models.priors import parse_prior
    >>> prior_data("tau", parse_prior("halfnormal(0.5)", "tau"))
    {'tau_prior_scale': 0.5}
    >>> prior_data("mu", parse_prior("normal(0, 2)", "mu"))
    {'mu_prior_mean': 0.0, 'mu_prior_sd': 2.0}
    """
    return {
        prior_data_name(parameter, n): float(v)
        for n, v in zip(prior.param_names, prior.params, strict=True)
    }


def prior_rv(
    name: str,
    prior: PriorSpec,
    *,
    parameter: str | None = None,
    dims: str | tuple[str, ...] | None = None,
) -> TensorVariable:
    r"""Create the random variable ``name`` with the prior ``prior`` in the current model.

    The hyperparameters are :func:`pymc.Data` containers named by :func:`prior_data_name`
    (with ``parameter``, default ``name``), so priors of one family share one compiled model.

    The distribution of each family is the ``pymc`` constructor of its row in
    :data:`synthesis.models.priors.FAMILIES` (``pymc_form`` says which, in words; e.g.
    ``lognormal_tau2(m, s)`` is ``tau ~ LogNormal(m / 2, s / 2)``).

    Examples
    --------
    >>> from synthesis.models.priors import parse_prior
    >>> with pm.Model() as model:
    ...     tau = prior_rv("tau", parse_prior("halfnormal(0.5)", "tau"))
    >>> [v.name for v in model.free_RVs], [v.name for v in model.data_vars]
    (['tau'], ['tau_prior_scale'])
    """
    key = parameter or name
    h = [pm.Data(prior_data_name(key, n), float(v)) for n, v in zip(prior.param_names, prior.params, strict=True)]
    family = FAMILIES.get(prior.family)
    if family is None:  # pragma: no cover - parse_prior admits only known families
        raise ModelError(f"no PyMC distribution for prior family {prior.family!r}")
    return family.pymc(pm, name, h, dims)


def model_coords(data: ModelData) -> dict[str, list[str]]:
    """Coordinates of the dims every model uses (``study``; ``covariate`` when there are any).

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> coords = model_coords(ModelData.from_table(table, ModelSpec("re")))
    >>> list(coords), len(coords["study"]), coords["study"][0]
    (['study'], 17, 'Badwe 2015 (TATA)')
    """
    coords: dict[str, list[str]] = {"study": list(data.studies)}
    if data.covariates:
        coords["covariate"] = list(data.covariates)
    return coords


def designs_present(data: ModelData) -> list[str]:
    """The designs of :data:`synthesis.base.DESIGNS` present in the data, rct first.

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> designs_present(ModelData.from_table(table, ModelSpec("re")))
    ['rct', 'retrospective']
    """
    return [d for d in DESIGNS if d in set(data.designs)]


def _check(data: ModelData, spec: ModelSpec) -> None:
    _check_data(data, spec)


def _check_data(data: ModelData, spec: ModelSpec) -> None:
    if data.k < 2:
        raise ModelError(f"{data.source}: {data.k} study; a hierarchical model needs at least 2")
    if tuple(data.covariates) != tuple(spec.covariates):
        raise ModelError("the model data were extracted for other covariates than the model spec names")
    if spec.has_bias:
        nr = np.asarray(data.nonrandomised, dtype=bool)
        if nr.all() or not nr.any():
            raise ModelError(
                f"{data.source}: model {spec.model!r} needs both randomised and non-randomised studies"
            )
        if spec.bias_variant == "three-level" and len(designs_present(data)) < 2:
            raise ModelError(f"{data.source}: the three-level model needs at least two designs")
    for j, name in enumerate(data.covariates):
        column = data.x[:, j]
        observed = column[~np.isnan(column)]
        if observed.size == column.size:
            if np.ptp(observed) == 0:
                raise ModelError(f"{data.source}: covariate {name!r} takes one value only; its slope is not identified")
            continue
        if observed.size < 2 or np.std(observed) == 0:
            raise ModelError(
                f"{data.source}: covariate {name!r} has {observed.size} observed value(s) without spread; "
                "the imputation model needs at least two different observed values"
            )


def _study_bias(data: ModelData, spec: ModelSpec) -> TensorVariable | float:
    """The bias term added to each study's mean (0 without one; ``downweight`` and
    ``three-level`` handle design differently); defines ``delta`` and ``kappa``."""
    priors = spec.priors
    nr = np.asarray(data.nonrandomised, dtype=float)
    if not spec.has_bias or spec.bias_variant in ("downweight", "three-level"):
        return 0.0
    if spec.bias_variant == "additive":
        delta = prior_rv("delta", priors.delta)
        return delta * pm.Data("nonrandomised", nr, dims="study")
    if spec.bias_variant == "random":
        delta = prior_rv("delta", priors.delta)
        kappa = prior_rv("kappa", priors.kappa)
        idx = np.flatnonzero(nr)
        w = pm.Normal("w_bias", *STANDARD_NORMAL, dims="nonrandomised")
        delta_study = pm.Deterministic("delta_study", delta + kappa * w, dims="nonrandomised")
        bias = pt.zeros(data.k)
        return pt.set_subtensor(bias[idx], delta_study)
    raise ModelError(f"unknown bias variant {spec.bias_variant!r}")  # pragma: no cover


def _three_level(data: ModelData, spec: ModelSpec) -> TensorVariable:
    """Design-level means; returns mu_{d(i)} per study and defines mu, delta, kappa, mu_design."""
    priors = spec.priors
    present = designs_present(data)
    m = prior_rv("mu_overall", priors.mu, parameter="mu")
    kappa = prior_rv("kappa", priors.kappa)
    e = pm.Normal("e_design", *STANDARD_NORMAL, dims="design")
    mu_design = pm.Deterministic("mu_design", m + kappa * e, dims="design")
    ref = present.index(REFERENCE_DESIGN)
    mu = pm.Deterministic("mu", mu_design[ref])
    others = [i for i, d in enumerate(present) if d != REFERENCE_DESIGN]
    pm.Deterministic("delta", pt.mean(mu_design[others]) - mu)
    index = np.array([present.index(d) for d in data.designs], dtype=int)
    return mu_design[pm.Data("design_index", index, dims="study")]


def imputation_scales(x: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The covariates with missing values (column indices) and the scales s_j of all columns:
    the SD of the observed values of an imputed covariate, 1 for a complete one.

    Examples
    --------
    The first column has a missing value (its scale is the SD of 1 and 3), the second is complete:

    >>> imputed, scales = imputation_scales(np.array([[1.0, 0.0], [np.nan, 1.0], [3.0, 2.0]]))
    >>> imputed, np.round(scales, 4).tolist()
    ([0], [1.4142, 1.0])
    """
    missing = np.isnan(x)
    imputed = [j for j in range(x.shape[1]) if missing[:, j].any()]
    scales = np.ones(x.shape[1])
    for j in imputed:
        scales[j] = np.std(x[~missing[:, j], j], ddof=1)
    return imputed, scales


def _covariate_model(
    data: ModelData, x: np.ndarray, centres: np.ndarray, missing: np.ndarray, *, summarised: bool = False
) -> tuple[list[int], np.ndarray, TensorVariable, TensorVariable]:
    r"""The normal model of the imputed covariates on the standardised scale: defines ``x_mean``
    (m_j), ``x_sd`` (sigma_j) and the observed values' likelihood ``x_observed``; returns the
    imputed columns, the scales s_j and m, sigma (dim ``imputed_covariate``).

    ``summarised`` (the marginal form): ``x_observed`` is a potential holding the same
    log-likelihood through the sufficient statistics of each column's n_j observed values,
    -n_j log(sqrt(2 pi) sigma_j) - (S2_j - 2 m_j S1_j + n_j m_j^2) / (2 sigma_j^2) with
    S1_j = sum u_ij, S2_j = sum u_ij^2, so a gradient costs O(1) instead of O(k).
    """
    imputed, scales = imputation_scales(x)
    model = pm.modelcontext(None)
    model.add_coord("imputed_covariate", [data.covariates[j] for j in imputed])
    hyper = {k: pm.Data(f"x_prior_{k}", v) for k, v in IMPUTATION_HYPERPRIORS.items()}
    m = pm.Normal("x_mean", hyper["mean_mean"], hyper["mean_sd"], dims="imputed_covariate")
    s = pm.HalfNormal("x_sd", hyper["sd_scale"], dims="imputed_covariate")
    obs_rows, obs_cols = np.nonzero(~missing[:, imputed])
    obs_j = np.asarray(imputed)[obs_cols]
    u_obs = (x[obs_rows, obs_j] - centres[obs_j]) / scales[obs_j]
    if summarised:
        # data containers, not constants: the compiled graph does not depend on the data
        dims = "imputed_covariate"
        n = pm.Data("x_observed_count", np.bincount(obs_cols, minlength=len(imputed)).astype(float), dims=dims)
        s1 = pm.Data("x_observed_sum", np.bincount(obs_cols, weights=u_obs, minlength=len(imputed)), dims=dims)
        s2 = pm.Data("x_observed_sumsq", np.bincount(obs_cols, weights=u_obs**2, minlength=len(imputed)), dims=dims)
        quad = (s2 - 2.0 * m * s1 + n * m**2) / (2.0 * s**2)
        pm.Potential("x_observed", pt.sum(-n * (0.5 * np.log(2.0 * np.pi) + pt.log(s)) - quad))
    else:
        pm.Normal("x_observed", mu=m[obs_cols], sigma=s[obs_cols], observed=u_obs)
    return imputed, scales, m, s


def _regression(data: ModelData, spec: ModelSpec) -> TensorVariable:
    """sum_j beta_j (x_ij - c_j), missing x_ij imputed; defines ``beta`` (and ``x_imputed``)."""
    beta = prior_rv("beta", spec.priors.beta, dims="covariate")
    x = np.asarray(data.x, dtype=float)
    centres = np.asarray(data.centres, dtype=float)
    missing = np.isnan(x)
    xc_known = np.where(missing, 0.0, x - centres)
    xc = pm.Data("x_centred", xc_known, dims=("study", "covariate"))
    if not missing.any():
        return pt.dot(xc, beta)
    # Standardise by the observed values, then model u_ij ~ N(m_j, sigma_j^2) for every value.
    imputed, scales, m, s = _covariate_model(data, x, centres, missing)
    model = pm.modelcontext(None)
    rows, cols = np.nonzero(missing)
    model.add_coord(
        "missing", [f"{data.studies[r]}:{data.covariates[c]}" for r, c in zip(rows, cols, strict=True)]
    )
    position = {j: p for p, j in enumerate(imputed)}
    pos = np.array([position[c] for c in cols], dtype=int)
    e = pm.Normal("e_missing", *STANDARD_NORMAL, dims="missing")
    xc_missing = scales[cols] * (m[pos] + s[pos] * e)
    pm.Deterministic("x_imputed", centres[cols] + xc_missing, dims="missing")
    xc = pt.set_subtensor(xc[rows, cols], xc_missing)
    return pt.dot(xc, beta)


def build_model(data: ModelData, spec: ModelSpec) -> pm.Model:
    """Build the PyMC model ``spec.model`` (with ``spec.bias_variant``) for ``data``.

    See the module docstring for the model equations. Raises :class:`ModelError` when the data
    cannot identify the model (e.g. a bias model without randomised studies).

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> spec = ModelSpec("bias")
    >>> model = build_model(ModelData.from_table(table, spec), spec)
    >>> [v.name for v in model.free_RVs]
    ['mu', 'tau', 'delta', 'z', 'z_new']
    >>> [v.name for v in model.observed_RVs]
    ['y']
    """
    _check(data, spec)
    if spec.multilevel:
        return build_multilevel_model(data, spec)
    if uses_marginal_form(data):
        return build_marginal_model(data, spec)
    priors = spec.priors
    coords = model_coords(data)
    nr = np.asarray(data.nonrandomised, dtype=bool)
    three_level = spec.has_bias and spec.bias_variant == "three-level"
    if spec.has_bias and spec.bias_variant == "random":
        coords["nonrandomised"] = [s for s, flag in zip(data.studies, nr, strict=True) if flag]
    if three_level:
        coords["design"] = designs_present(data)
    with pm.Model(coords=coords) as model:
        y = pm.Data("log_hr", np.asarray(data.y, dtype=float), dims="study")
        se = pm.Data("se", np.asarray(data.se, dtype=float), dims="study")
        if three_level:
            location = _three_level(data, spec)
            mu = model["mu"]
        else:
            mu = prior_rv("mu", priors.mu)
            location = mu
        tau = prior_rv("tau", priors.tau)
        mean = location + _study_bias(data, spec)
        if spec.has_covariates:
            mean = mean + _regression(data, spec)
        z = pm.Normal("z", *STANDARD_NORMAL, dims="study")
        theta = pm.Deterministic("theta", mean + tau * z, dims="study")
        sigma = se
        if spec.has_bias and spec.bias_variant == "downweight":
            alpha = pm.Data("alpha", float(spec.alpha))
            inflate = pm.Data("nonrandomised", nr.astype(float), dims="study")
            sigma = se / pt.sqrt(1.0 + inflate * (alpha - 1.0))
        pm.Normal("y", mu=theta, sigma=sigma, observed=y, dims="study")
        z_new = pm.Normal("z_new", *STANDARD_NORMAL)
        pm.Deterministic("theta_new", mu + tau * z_new)
    return model


def build_multilevel_model(data: ModelData, spec: ModelSpec) -> pm.Model:
    r"""The multilevel model (``spec.cluster``; issue #13), non-centred: row ``j`` of cluster
    ``i`` has

    .. math::

        \theta_{ij} = \text{mean}_{ij} + \tau z_i + \tau_w z_{ij}, \qquad
        y_{ij} = \theta_{ij} + \sqrt{\rho}\, s_{ij}\, \omega_i + \sqrt{1 - \rho}\, s_{ij}\, \eta_{ij},

    with ``mean`` as in :func:`build_model` (mu, the design bias of the additive variant or the
    down-weighted ``s`` of the downweight variant, covariate terms with missing values imputed)
    and ``z_i, z_ij, omega_i, eta_ij ~ N(0, 1)``: the shared ``omega_i`` gives the rows of a
    cluster the compound-symmetric sampling covariance ``rho s_ij s_ik`` (metafor's vcalc), so
    the exact engine's likelihood. The latent form is used at every k. ``theta_new = mu + tau
    z_new + tau_w z_new_w`` (a new row in a new cluster).

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("re", cluster="cohort", rho=0.5)
    >>> model = build_multilevel_model(ModelData.from_table(syn.load_dataset("dnmbc_lrt_all_inputs"), spec), spec)
    >>> [v.name for v in model.free_RVs]
    ['mu', 'tau', 'tau_within', 'z_cluster', 'z', 'omega', 'z_new', 'z_new_within']
    """
    from synthesis.models.multilevel import Clusters

    if not spec.multilevel or len(data.clusters) != data.k:
        raise ModelError(f"{data.source}: a multilevel model needs a cluster per row (spec.cluster and ModelData.clusters)")
    _check_data(data, spec)
    clusters = Clusters.from_labels(data.clusters, rho=spec.rho, name=str(spec.cluster))
    priors = spec.priors
    coords = model_coords(data)
    coords["cluster"] = list(clusters.labels)
    nr = np.asarray(data.nonrandomised, dtype=bool)
    with pm.Model(coords=coords) as model:
        y = pm.Data("log_hr", np.asarray(data.y, dtype=float), dims="study")
        se = pm.Data("se", np.asarray(data.se, dtype=float), dims="study")
        index = pm.Data("cluster_index", clusters.index, dims="study")
        mu = prior_rv("mu", priors.mu)
        tau = prior_rv("tau", priors.tau)
        tau_w = prior_rv("tau_within", spec.tau_within, parameter="tau_within")
        mean = mu + _study_bias(data, spec)
        if spec.has_covariates:
            mean = mean + _regression(data, spec)
        z_c = pm.Normal("z_cluster", *STANDARD_NORMAL, dims="cluster")
        z = pm.Normal("z", *STANDARD_NORMAL, dims="study")
        theta = pm.Deterministic("theta", mean + tau * z_c[index] + tau_w * z, dims="study")
        sigma = se
        if spec.has_bias and spec.bias_variant == "downweight":
            alpha = pm.Data("alpha", float(spec.alpha))
            inflate = pm.Data("nonrandomised", nr.astype(float), dims="study")
            sigma = se / pt.sqrt(1.0 + inflate * (alpha - 1.0))
        centre = theta
        if spec.rho > 0:
            omega = pm.Normal("omega", *STANDARD_NORMAL, dims="cluster")
            centre = theta + np.sqrt(spec.rho) * sigma * omega[index]
        pm.Normal("y", mu=centre, sigma=np.sqrt(1.0 - spec.rho) * sigma, observed=y, dims="study")
        z_new = pm.Normal("z_new", *STANDARD_NORMAL)
        z_new_w = pm.Normal("z_new_within", *STANDARD_NORMAL)
        pm.Deterministic("theta_new", mu + tau * z_new + tau_w * z_new_w)
    return model


#: From this many studies on, :func:`build_model` builds the *marginal* form of every model
#: (:func:`build_marginal_model`: study effects, and any missing covariate values, integrated
#: out). Below it the models keep one non-centred latent effect per study, the form validated
#: against the exact engine and by simulation-based calibration at small k (tests/
#: test_engines_agree.py, tests/test_sbc.py); both forms have the same posterior of the global
#: parameters.
MARGINAL_MIN_STUDIES = 200


def uses_marginal_form(data: ModelData) -> bool:
    """True when ``data`` has at least :data:`MARGINAL_MIN_STUDIES` studies (see there).

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> uses_marginal_form(ModelData.from_table(table, ModelSpec("re")))  # 17 < 200 studies
    False
    """
    return data.k >= MARGINAL_MIN_STUDIES


def _within_variance(se: TensorVariable, data: ModelData, spec: ModelSpec) -> TensorVariable:
    """s_i^2: se_i^2, or se_i^2 / alpha for a non-randomised study under ``downweight``."""
    if spec.has_bias and spec.bias_variant == "downweight":
        alpha = pm.Data("alpha", float(spec.alpha))
        inflate = pm.Data("nonrandomised", np.asarray(data.nonrandomised, dtype=float), dims="study")
        return se**2 / (1.0 + inflate * (alpha - 1.0))
    return se**2


def _marginal_bias(data: ModelData, spec: ModelSpec) -> tuple[TensorVariable | float, TensorVariable | float]:
    """The bias term's mean shift and extra variance of each study (``delta nr_i`` and, for the
    ``random`` variant, ``kappa^2 nr_i``); defines ``delta`` and ``kappa``."""
    if spec.has_bias and spec.bias_variant == "random":
        delta = prior_rv("delta", spec.priors.delta)
        kappa = prior_rv("kappa", spec.priors.kappa)
        nr = pm.Data("nonrandomised", np.asarray(data.nonrandomised, dtype=float), dims="study")
        return delta * nr, kappa**2 * nr
    return _study_bias(data, spec), 0.0


def _marginal_regression(data: ModelData, spec: ModelSpec) -> tuple[TensorVariable, TensorVariable | float]:
    """Mean shift and extra variance of each study from the covariates, missing values
    integrated out: sum_j beta_j (x_ij - c_j) over the observed x_ij, plus, for each missing
    x_ij, beta_j s_j m_j in the mean and (beta_j s_j sigma_j)^2 in the variance (the covariate
    model u_ij ~ N(m_j, sigma_j^2) of :func:`_covariate_model`); defines ``beta``."""
    beta = prior_rv("beta", spec.priors.beta, dims="covariate")
    x = np.asarray(data.x, dtype=float)
    centres = np.asarray(data.centres, dtype=float)
    missing = np.isnan(x)
    xc = np.where(missing, 0.0, x - centres)
    # One contiguous data vector per covariate (and per imputed covariate's missing mask), every
    # per-study term elementwise: PyTensor then fuses the likelihood and its gradient into a
    # single loop over the studies (a matrix product, or columns sliced out of a k x p matrix,
    # each cost a pass of their own: measured 0.81 ms and 1.3 ms per gradient at k = 100,000,
    # against 0.6 ms for the bias model without covariates). Data containers, not constants, so
    # that the compiled graph serves any data set of this shape.
    shift = 0.0
    for j in range(x.shape[1]):
        shift = shift + pm.Data(f"x_centred_{j}", np.ascontiguousarray(xc[:, j]), dims="study") * beta[j]
    if not missing.any():
        return shift, 0.0
    imputed, scales, m, s = _covariate_model(data, x, centres, missing, summarised=True)
    b = beta[imputed] * pm.Data("x_scale", scales[imputed], dims="imputed_covariate")
    mean_shift, variance = b * m, (b * s) ** 2
    extra = 0.0
    for p, j in enumerate(imputed):
        unknown = pm.Data(f"x_missing_{j}", missing[:, j].astype(float), dims="study")  # 1: x_ij missing
        shift = shift + unknown * mean_shift[p]
        extra = extra + unknown * variance[p]
    return shift, extra


def build_marginal_model(data: ModelData, spec: ModelSpec) -> pm.Model:
    r"""The model ``spec`` for ``data`` with the study effects integrated out (large k).

    Every model of this module is, given its global parameters g (mu, tau, delta, kappa, the
    design means, beta and the covariate model's m_j, sigma_j), Gaussian in the study effects
    and in the missing covariate values, so these integrate out exactly:

    .. math::

        y_i \mid g \sim N\!\left(m_i,\; s_i^2 + V_i\right), \qquad
        V_i = \tau^2 + \kappa^2\, nr_i\,[\text{random}]
              + \sum_{j\,:\,x_{ij}\ \text{missing}} (\beta_j s_j \sigma_j)^2,

    with m_i the study's mean (mu, or mu_{d(i)} for ``three-level``; + delta nr_i for the
    ``additive`` and ``random`` variants; + sum_j beta_j (x_ij - c_j) over the observed
    covariates and beta_j s_j m_j over the missing ones) and s_i^2 = se_i^2 (se_i^2 / alpha for
    a non-randomised study under ``downweight``). The posterior of g is the same as in the
    latent form of :func:`build_model` (marginalising a normal random effect: Gelman et al.
    2013, Bayesian Data Analysis, 3rd ed., section 5.4); the sampler explores a few global
    parameters instead of k + (number of missing values) latent ones. The study effects are
    then normal given g and y_i (:func:`marginal_study_moments`); the model holds no ``theta``,
    ``z``, ``w_bias``, ``delta_study``, ``e_missing`` or ``x_imputed``. ``theta_new`` is as in
    the latent form.

    Examples
    --------
    The bundled 17 studies in the marginal form: no per-study latent variables remain.

    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> model = build_marginal_model(ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec), spec)
    >>> [v.name for v in model.free_RVs]
    ['mu', 'tau', 'delta', 'z_new']
    """
    _check(data, spec)
    coords = model_coords(data)
    three_level = spec.has_bias and spec.bias_variant == "three-level"
    if three_level:
        coords["design"] = designs_present(data)
    with pm.Model(coords=coords) as model:
        y = pm.Data("log_hr", np.asarray(data.y, dtype=float), dims="study")
        se = pm.Data("se", np.asarray(data.se, dtype=float), dims="study")
        if three_level:
            location = _three_level(data, spec)
            mu = model["mu"]
        else:
            mu = prior_rv("mu", spec.priors.mu)
            location = mu
        tau = prior_rv("tau", spec.priors.tau)
        shift, spread = _marginal_bias(data, spec)
        mean = location + shift
        spread = tau**2 + spread
        if spec.has_covariates:
            shift, extra = _marginal_regression(data, spec)
            mean, spread = mean + shift, spread + extra
        variance = _within_variance(se, data, spec) + spread
        pm.Normal("y", mu=mean, sigma=pt.sqrt(variance), observed=y, dims="study")
        z_new = pm.Normal("z_new", *STANDARD_NORMAL)
        pm.Deterministic("theta_new", mu + tau * z_new)
    return model


def marginal_study_moments(
    draws: Mapping[str, np.ndarray], data: ModelData, spec: ModelSpec, studies: slice = slice(None)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Per draw of the global parameters, the prior mean m_i and variance V_i of each study
    effect theta_i, and the within-study variances s_i^2, for the studies ``studies``.

    ``draws`` maps the global variables of :func:`build_marginal_model` to arrays of D draws
    (``mu``, ``tau``, ``delta``, ``kappa``: (D,); ``mu_design``: (D, designs); ``beta``:
    (D, covariates); ``x_mean``, ``x_sd``: (D, imputed covariates)). Returns m and V as (D, n)
    and s^2 as (n,); the equations are those of :func:`build_marginal_model`. The study effect
    given g and y_i is then normal (conjugate update):

    .. math::

        \theta_i \mid g, y_i \sim N\!\left(m_i + B_i (y_i - m_i),\; B_i s_i^2\right),
        \qquad B_i = V_i / (V_i + s_i^2).

    Examples
    --------
    One draw (mu = -0.1, tau = 0.2) of the random-effects model: every study's prior mean is mu and
    its prior variance tau^2 = 0.04.

    >>> import synthesis as syn
    >>> spec = ModelSpec("re")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)
    >>> m, v, s2 = marginal_study_moments({"mu": np.array([-0.1]), "tau": np.array([0.2])}, data, spec)
    >>> m.shape, v.shape, s2.shape
    ((1, 17), (1, 17), (17,))
    >>> float(m[0, 0]), round(float(v[0, 0]), 6), bool(np.allclose(s2, data.se**2))
    (-0.1, 0.04, True)
    """
    nr = np.asarray(data.nonrandomised, dtype=float)[studies]
    s2 = np.asarray(data.se, dtype=float)[studies] ** 2
    tau = np.asarray(draws["tau"], dtype=float)[:, None]
    if spec.has_bias and spec.bias_variant == "three-level":
        present = designs_present(data)
        index = np.array([present.index(d) for d in data.designs[studies]], dtype=int)
        mean = np.asarray(draws["mu_design"], dtype=float)[:, index]
    else:
        mean = np.asarray(draws["mu"], dtype=float)[:, None] + np.zeros(nr.size)
    variance = tau**2 + np.zeros(nr.size)
    if spec.has_bias and spec.bias_variant in ("additive", "random"):
        mean = mean + np.asarray(draws["delta"], dtype=float)[:, None] * nr
    if spec.has_bias and spec.bias_variant == "random":
        variance = variance + np.asarray(draws["kappa"], dtype=float)[:, None] ** 2 * nr
    if spec.has_bias and spec.bias_variant == "downweight":
        s2 = s2 / (1.0 + nr * (float(spec.alpha) - 1.0))
    if spec.has_covariates:
        x_all = np.asarray(data.x, dtype=float)
        x = x_all[studies]
        missing = np.isnan(x)
        beta = np.asarray(draws["beta"], dtype=float).reshape(tau.shape[0], -1)
        mean = mean + beta @ np.where(missing, 0.0, x - np.asarray(data.centres, dtype=float)).T
        imputed, scales = imputation_scales(x_all)
        if imputed:
            unknown = missing[:, imputed].astype(float)
            b = beta[:, imputed] * scales[imputed]
            x_mean = np.asarray(draws["x_mean"], dtype=float).reshape(b.shape)
            x_sd = np.asarray(draws["x_sd"], dtype=float).reshape(b.shape)
            mean = mean + (b * x_mean) @ unknown.T
            variance = variance + (b * x_sd) ** 2 @ unknown.T
    return mean, variance, s2


def build_random_effects(data: ModelData, spec: ModelSpec) -> pm.Model:
    """The random-effects model (``re``): y_i ~ N(mu + tau z_i, se_i^2), z_i ~ N(0, 1).

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> spec = ModelSpec("re")
    >>> [v.name for v in build_random_effects(ModelData.from_table(table, spec), spec).free_RVs]
    ['mu', 'tau', 'z', 'z_new']
    """
    _require(spec, "re")
    return build_model(data, spec)


def build_bias(data: ModelData, spec: ModelSpec) -> pm.Model:
    """The design-bias model (``bias``) in the variant ``spec.bias_variant``.

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> spec = ModelSpec("bias", bias_variant="random")
    >>> [v.name for v in build_bias(ModelData.from_table(table, spec), spec).free_RVs]
    ['mu', 'tau', 'delta', 'kappa', 'w_bias', 'z', 'z_new']
    """
    _require(spec, "bias")
    return build_model(data, spec)


def build_metareg(data: ModelData, spec: ModelSpec) -> pm.Model:
    """The meta-regression (``metareg``) with missing covariates imputed.

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> spec = ModelSpec("metareg", covariates=("year",))
    >>> table = syn.load_dataset("dnmbc_lrt", covariates=["year"])
    >>> [v.name for v in build_metareg(ModelData.from_table(table, spec), spec).free_RVs]
    ['mu', 'tau', 'beta', 'z', 'z_new']
    """
    _require(spec, "metareg")
    return build_model(data, spec)


def build_bias_metareg(data: ModelData, spec: ModelSpec) -> pm.Model:
    """Bias adjustment and meta-regression together (``bias-metareg``).

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> spec = ModelSpec("bias-metareg", covariates=("year",))
    >>> table = syn.load_dataset("dnmbc_lrt", covariates=["year"])
    >>> [v.name for v in build_bias_metareg(ModelData.from_table(table, spec), spec).free_RVs]
    ['mu', 'tau', 'delta', 'beta', 'z', 'z_new']
    """
    _require(spec, "bias-metareg")
    return build_model(data, spec)


def _require(spec: ModelSpec, model: str) -> None:
    if spec.model != model:
        raise ModelError(f"this builder makes the {model!r} model, the spec asks for {spec.model!r}")


#: Data containers a compiled model may swap (with every prior hyperparameter, ``*_prior_*``):
#: the observations and the down-weighting factor. The others (design indicators, centred
#: covariates, indices) are structural: :func:`structural_data` lists them for freezing.
SWAPPABLE_DATA: tuple[str, ...] = ("log_hr", "se", "alpha")


def structural_data(model: pm.Model) -> list[str]:
    """Names of the model's data containers that no refit changes (safe to compile in as
    constants: measured ~20% less nutpie compile time, see ``benchmarks/bench_bayes.py``).

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> spec = ModelSpec("bias")
    >>> structural_data(build_model(ModelData.from_table(table, spec), spec))
    ['nonrandomised']
    """
    return [
        v.name for v in model.data_vars if "_prior_" not in v.name and v.name not in SWAPPABLE_DATA
    ]


#: Variables every fit reports, in the order they are summarised.
HEADLINE: tuple[str, ...] = ("mu", "tau", "delta", "beta")


def reported_parameters(spec: ModelSpec) -> tuple[str, ...]:
    """Scalar parameters reported for ``spec`` (``delta`` is derived in the three-level model).

    Examples
    --------
    >>> reported_parameters(ModelSpec("re"))
    ('mu', 'tau')
    >>> reported_parameters(ModelSpec("bias", bias_variant="random"))
    ('mu', 'tau', 'delta', 'kappa')
    """
    names = ["mu", "tau"]
    if spec.has_bias and spec.bias_variant != "downweight":
        names.append("delta")
    if spec.has_bias and spec.bias_variant in ("random", "three-level"):
        names.append("kappa")
    if spec.multilevel:
        names.append("tau_within")
    return tuple(names)
