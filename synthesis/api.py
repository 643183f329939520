"""The front door for Python users: ``import synthesis as syn``.

Every function here takes the studies first -- a :class:`~synthesis.studies.StudyTable`, a
:class:`pandas.DataFrame` or the path of a CSV file, validated by the same loader either way --
and everything else by keyword. Priors are prior strings (``"halfnormal(0.5)"``, the presets
``"turner2015-acm-nonpharm"`` ...) or :class:`~synthesis.models.priors.PriorSpec` objects alike.
The results print themselves as the command line prints them, show as HTML tables in a notebook,
convert (``to_frame()``, ``to_json()``) and plot (``plot_forest()``, ``plot_funnel()``, ...).

Examples
--------
>>> import synthesis as syn
>>> table = syn.load_dataset("dnmbc_lrt")
>>> syn.pool(table, method="REML", hksj=True).k
17
>>> fit = syn.fit(table, model="bias", tau_prior="halfnormal(0.5)", engine="exact")
>>> round(fit.hr.median, 2)
0.91
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from synthesis.base import DECISION_THRESHOLDS, DEFAULT_SEED, DEFAULT_THRESHOLDS, INTERVAL_PROB
from synthesis.errors import InputError
from synthesis.models.priors import PriorSpec, parse_prior, resolve_priors
from synthesis.models.spec import ModelSpec
from synthesis.studies import StudyTable
from synthesis.studies import load_studies as _load_csv

if TYPE_CHECKING:
    from synthesis.analysis import AnalysisResult
    from synthesis.cumulative import TimelineResult
    from synthesis.metaregression import MetaRegResult
    from synthesis.models.averaging import AveragingResult
    from synthesis.models.loo import VariantComparison
    from synthesis.models.operating import SimulationResult
    from synthesis.models.powerscale import PowerScaleResult
    from synthesis.models.preposterior import PlanResult
    from synthesis.models.results import FitResult
    from synthesis.models.tipping import TippingResult
    from synthesis.multilevel import MultilevelResult
    from synthesis.pooling import PoolResult
    from synthesis.pubbias import BiasResult
    from synthesis.reconcile import ReconcileResult
    from synthesis.specifications import MultiverseResult
    from synthesis.sweeps import SweepResult

__all__ = [
    "analyse",
    "average",
    "bias_diagnostics",
    "compare",
    "fit",
    "load_dataset",
    "load_studies",
    "metareg",
    "multiverse",
    "plan",
    "pool",
    "pool_multilevel",
    "psense",
    "reconcile_published",
    "simulate",
    "sweep",
    "timeline",
    "tipping",
    "write_report",
]

#: What every function accepts as its studies.
Studies = StudyTable | pd.DataFrame | str | Path
#: What every prior argument accepts.
Prior = str | PriorSpec
#: How a DataFrame is named in messages (its row i is line i + 2 of the CSV the loader reads).
FRAME_NAME = "DataFrame"


# --------------------------------------------------------------------------------------------
# input coercion, in one place
# --------------------------------------------------------------------------------------------
def load_studies(
    data: Studies,
    *,
    covariates: Iterable[str] = (),
    subset: str = "all",
    include_all: bool = False,
    min_studies: int = 2,
    se_method: str = "symmetric",
) -> StudyTable:
    """Read and validate studies from a CSV file, a DataFrame or an existing table.

    A DataFrame is written out as CSV and read back by the one CSV loader
    (:func:`synthesis.studies.load_studies`), so a frame and a file are held to exactly the same
    rules; messages name it ``DataFrame``, and its row ``i`` is "line ``i + 2``" there (line 1 is
    the header). A :class:`~synthesis.studies.StudyTable` is checked for ``covariates`` and
    narrowed to ``subset``.

    Parameters
    ----------
    data
        A CSV path, a :class:`pandas.DataFrame` with the CSV's columns, or a ``StudyTable``.
    covariates
        Columns that must exist and be numeric (empty cells mean missing).
    subset
        ``"all"``, ``"rct"`` (randomised only) or ``"observational"``.
    include_all
        Keep rows whose ``include`` column is false (files and DataFrames only).
    min_studies
        Fewer studies than this after selection is an error.
    se_method
        How an hr/CI row's SE is taken from its CI when its ``se_method`` cell is blank or
        absent: ``"symmetric"`` ((log U - log L) / 2z, the default), ``"lower"``
        ((log HR - log L) / z) or ``"upper"`` ((log U - log HR) / z); files and DataFrames only.

    Returns
    -------
    StudyTable
        The validated table (its ``warnings`` list what the loader flagged).

    Raises
    ------
    InputError
        Naming the file (or ``DataFrame``), the line and the column of the first problem.

    Examples
    --------
    >>> import pandas as pd
    >>> import synthesis as syn
    >>> frame = pd.DataFrame({"study": ["A", "B", "C"], "hr": [0.8, 0.7, 1.1],
    ...                       "ci_lower": [0.6, 0.5, 0.8], "ci_upper": [1.07, 0.98, 1.51]})
    >>> table = syn.load_studies(frame)
    >>> table.k, table.source
    (3, 'DataFrame')
    >>> syn.load_studies(frame.assign(hr=[0.8, 0.7, -1.0]))
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: DataFrame, line 4, column 'hr': must be > 0, got -1.0
    """
    covariates = tuple(dict.fromkeys(covariates))
    if isinstance(data, StudyTable):
        if include_all:
            raise InputError("include_all applies when reading a file or DataFrame, not to a loaded StudyTable")
        if se_method != "symmetric":
            raise InputError("se_method applies when reading a file or DataFrame, not to a loaded StudyTable")
        for name in covariates:
            data.covariate(name)  # raises InputError naming the column and line
        table = data.subset(subset)
        if table.k < min_studies:
            raise InputError(f"{table.k} usable studies; pooling needs at least {min_studies}", file=table.source)
        return table
    options = {
        "covariates": covariates,
        "subset": subset,
        "include_all": include_all,
        "min_studies": min_studies,
        "se_method": se_method,
    }
    if isinstance(data, pd.DataFrame):
        with tempfile.TemporaryDirectory(prefix="synthesis-frame-") as tmp:
            path = Path(tmp) / "studies.csv"
            data.to_csv(path, index=False)
            return _load_csv(path, display_name=FRAME_NAME, **options)
    if isinstance(data, (str, Path)):
        return _load_csv(data, **options)
    raise InputError(f"studies must be a StudyTable, a pandas DataFrame or a CSV path, got {type(data).__name__}")


def load_dataset(name: str = "dnmbc_lrt", **kwargs: Any) -> StudyTable:
    """Load a bundled dataset by name as a validated study table.

    Parameters
    ----------
    name
        A bundled dataset (``"dnmbc_lrt"``: locoregional treatment in de novo stage IV breast
        cancer, overall survival).
    **kwargs
        ``covariates``, ``subset``, ``include_all``, ``min_studies`` as in :func:`load_studies`.

    Examples
    --------
    >>> import synthesis as syn
    >>> syn.load_dataset("dnmbc_lrt").k
    17
    >>> syn.load_dataset("dnmbc_lrt", subset="rct").k
    5
    """
    from synthesis.datasets import load_dataset as _load

    return _load(name, **kwargs)


def _prior(value: Prior | None, parameter: str) -> PriorSpec | None:
    """A prior string parsed for ``parameter``, a PriorSpec as it is, ``None`` kept."""
    if value is None or isinstance(value, PriorSpec):
        return value
    if isinstance(value, str):
        return parse_prior(value, parameter)
    raise InputError(f"{parameter} prior must be a prior string or a PriorSpec, got {type(value).__name__}")


def _priors(values: Sequence[Prior] | str | None, parameter: str) -> list[PriorSpec] | None:
    if values is None:
        return None
    if isinstance(values, (str, PriorSpec)):
        values = [values]
    out = [_prior(v, parameter) for v in values]
    if not out:
        raise InputError(f"empty list of {parameter} priors")
    return out


def _prior_text(prior: PriorSpec) -> str:
    """A prior as a string the parser reads back (presets by their name)."""
    if prior.source is not None and "[" in prior.label:
        return prior.label.rsplit("[", 1)[1].rstrip("]")
    return f"{prior.family}({', '.join(repr(float(p)) for p in prior.params)})"


def _spec(
    model: str,
    *,
    bias_variant: str,
    alpha: float,
    covariates: Iterable[str],
    priors: Mapping[str, Prior | None],
    effect: bool = True,
    heterogeneity: bool = True,
    cluster: str | None = None,
    rho: float = 0.0,
    tau_within_prior: Prior | None = None,
) -> ModelSpec:
    parsed = {name: _prior(value, name) for name, value in priors.items()}
    config = replace(resolve_priors(), **{k: v for k, v in parsed.items() if v is not None})
    return ModelSpec(
        model=model, bias_variant=bias_variant, alpha=alpha,
        covariates=tuple(dict.fromkeys(covariates)), priors=config,
        effect=effect, heterogeneity=heterogeneity, cluster=cluster, rho=rho,
        tau_within_prior=_prior(tau_within_prior, "tau"),
    )


# --------------------------------------------------------------------------------------------
# frequentist
# --------------------------------------------------------------------------------------------
def pool(
    data: Studies, *, method: str = "REML", hksj: bool = False, level: float = INTERVAL_PROB
) -> PoolResult:
    """Common-effect or random-effects pooling of the log hazard ratios (metafor's ``rma``).

    Parameters
    ----------
    data
        The studies (table, DataFrame or CSV path).
    method
        tau^2 estimator: ``"FE"`` (common effect), ``"DL"``, ``"REML"``, ``"ML"``, ``"PM"``,
        ``"HE"`` or ``"SJ"``.
    hksj
        Hartung-Knapp-Sidik-Jonkman confidence interval (t with k - 1 df).
    level
        Confidence level of the intervals.

    Returns
    -------
    PoolResult
        Prints as ``synthesis pool`` does; ``to_json()`` is ``synthesis pool --json``.

    Examples
    --------
    >>> import synthesis as syn
    >>> r = syn.pool(syn.load_dataset("dnmbc_lrt"), method="REML", hksj=True)
    >>> f"{r.to_json()['hr']:.3f}", r.df
    ('0.693', 16)
    """
    from synthesis.pooling import pool_table

    return pool_table(load_studies(data), method=method, hksj=hksj, level=level)


def metareg(
    data: Studies,
    *,
    covariates: Sequence[str],
    method: str = "REML",
    hksj: bool = False,
    level: float = INTERVAL_PROB,
) -> MetaRegResult:
    """Mixed-effects meta-regression on study covariates (rows missing one are dropped).

    Parameters
    ----------
    data
        The studies (table, DataFrame or CSV path).
    covariates
        Numeric columns of the table.
    method
        Residual tau^2 estimator (as in :func:`pool`; ``"FE"`` fits a fixed-effects model).
    hksj
        Knapp-Hartung adjustment (t and F tests).
    level
        Confidence level of the intervals.

    Returns
    -------
    MetaRegResult
        Prints as ``synthesis metareg`` does.

    Examples
    --------
    >>> import synthesis as syn
    >>> r = syn.metareg(syn.load_dataset("dnmbc_lrt"), covariates=["bone_only_fraction"])
    >>> list(r.coefficients)
    ['intercept', 'bone_only_fraction']
    """
    from synthesis.metaregression import metaregression_table

    if isinstance(covariates, str):
        covariates = [covariates]
    names = tuple(dict.fromkeys(covariates))
    return metaregression_table(load_studies(data, covariates=names), names, method=method, hksj=hksj, level=level)


def bias_diagnostics(data: Studies, *, method: str = "DL", level: float = INTERVAL_PROB) -> BiasResult:
    """Small-study and publication-bias diagnostics: Egger, Begg, trim and fill, fail-safe N,
    leave-one-out.

    Parameters
    ----------
    data
        The studies (table, DataFrame or CSV path).
    method
        tau^2 estimator of the random-effects fit the diagnostics use (default DL).
    level
        Confidence level of the intervals.

    Returns
    -------
    BiasResult
        Prints as ``synthesis bias`` does; ``plot_funnel()`` draws the funnel plot.

    Examples
    --------
    >>> import synthesis as syn
    >>> r = syn.bias_diagnostics(syn.load_dataset("dnmbc_lrt"))
    >>> r.method, len(r.leave_one_out)
    ('DL', 17)
    """
    from synthesis.pubbias import bias_table

    return bias_table(load_studies(data), method=method, level=level)


# --------------------------------------------------------------------------------------------
# Bayesian
# --------------------------------------------------------------------------------------------
def fit(
    data: Studies,
    *,
    model: str = "re",
    bias_variant: str = "additive",
    alpha: float = 0.5,
    covariates: Sequence[str] = (),
    mu_prior: Prior | None = None,
    tau_prior: Prior | None = None,
    bias_prior: Prior | None = None,
    kappa_prior: Prior | None = None,
    beta_prior: Prior | None = None,
    effect: bool = True,
    heterogeneity: bool = True,
    cluster: str | None = None,
    rho: float = 0.0,
    tau_within_prior: Prior | None = None,
    engine: str | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    at: Iterable[str] | Mapping[str, Mapping[str, float]] | None = None,
    chains: int = 4,
    draws: int = 2000,
    tune: int = 1000,
    seed: int | None = DEFAULT_SEED,
    target_accept: float | None = None,
    adaptation: str = "auto",
) -> FitResult:
    """Fit a Bayesian hierarchical model of the log hazard ratios.

    Parameters
    ----------
    data
        The studies (table, DataFrame or CSV path).
    model
        ``"re"`` (random effects), ``"bias"`` (non-randomised studies carry a design bias),
        ``"metareg"`` or ``"bias-metareg"``. ``mu`` is always the effect in a randomised
        comparison.
    bias_variant, alpha
        How non-randomised studies are biased (``"additive"``, ``"random"``, ``"downweight"``
        with factor ``alpha``, ``"three-level"``).
    covariates
        Covariate columns of the meta-regressions (missing values are imputed by PyMC).
    mu_prior, tau_prior, bias_prior, kappa_prior, beta_prior
        Prior strings or :class:`~synthesis.models.priors.PriorSpec`; ``None`` keeps the default
        (mu ~ normal(0, 1), tau ~ halfnormal(0.5), delta ~ normal(0, 0.5), beta ~ normal(0, 1)).
    effect
        ``False`` fixes mu = 0 (HR 1 in a randomised comparison: the null model of a Bayes
        factor for an effect, ``exp(log_marginal_likelihood)`` ratio); exact engine only.
    heterogeneity
        ``False`` fixes tau = 0 (the common-effect model); exact engine only.
    cluster, rho, tau_within_prior
        A multilevel model (issue #13): rows grouped by the column ``cluster`` (e.g.
        ``"cohort"``) with cluster effects ``u_i ~ N(0, tau^2)``, row effects
        ``e_ij ~ N(0, tau_within^2)`` and a within-cluster sampling correlation ``rho``
        (metafor's ``vcalc``); the exact engine by default, PyMC (``engine="pymc"``) for
        imputed covariates.
    engine
        ``"pymc"`` (NUTS via nutpie; the default) or ``"exact"`` (quadrature over tau;
        linear-Gaussian models only; the default with ``cluster``).
    thresholds
        Report P(HR < T) for each hazard ratio T > 0.
    at
        Meta-regressions: the HR at covariate values, ``["bone_only_fraction=0.5"]``.
    chains, draws, tune, seed, target_accept, adaptation
        Sampler settings (PyMC engine).

    Returns
    -------
    FitResult
        Prints as ``synthesis fit`` does; ``to_json()`` is ``synthesis fit --json``;
        ``to_datatree()`` gives the ArviZ posterior (exact fits draw iid samples into it).

    Examples
    --------
    >>> import synthesis as syn
    >>> from synthesis.models.priors import parse_prior
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> a = syn.fit(table, model="bias", tau_prior="halfnormal(0.5)", engine="exact")
    >>> b = syn.fit(table, model="bias", tau_prior=parse_prior("halfnormal(0.5)", "tau"), engine="exact")
    >>> a.hr == b.hr, sorted(a.parameters)
    (True, ['delta', 'mu', 'tau'])

    The log Bayes factor for an effect (the null model fixes mu = 0):

    >>> null = syn.fit(table, model="bias", effect=False, engine="exact")
    >>> null.hr.median, round(a.log_marginal_likelihood - null.log_marginal_likelihood, 2)
    (1.0, -1.73)

    All inputs, several per cohort, in the multilevel model:

    >>> from synthesis.multilevel import load_all_inputs
    >>> ml = syn.fit(load_all_inputs(), model="bias", cluster="cohort")
    >>> ml.engine, sorted(ml.parameters)
    ('exact', ['delta', 'mu', 'tau', 'tau_within'])
    """
    from synthesis.models.fit import fit as _fit

    spec = _spec(
        model, bias_variant=bias_variant, alpha=alpha, covariates=covariates,
        priors={"mu": mu_prior, "tau": tau_prior, "delta": bias_prior, "kappa": kappa_prior, "beta": beta_prior},
        effect=effect, heterogeneity=heterogeneity, cluster=cluster, rho=rho, tau_within_prior=tau_within_prior,
    )
    if engine is None:
        engine = "exact" if spec.multilevel else "pymc"
    table = load_studies(data, covariates=spec.covariates)
    return _fit(
        table, spec, engine=engine, thresholds=thresholds, at=at, chains=chains, draws=draws,
        tune=tune, seed=seed, target_accept=target_accept, adaptation=adaptation,
    )


def sweep(
    data: Studies,
    *,
    model: str = "re",
    bias_variant: str = "additive",
    alpha: float = 0.5,
    covariates: Sequence[str] = (),
    tau_priors: Sequence[Prior] | None = None,
    bias_priors: Sequence[Prior] | None = None,
    mu_prior: Prior | None = None,
    bias_prior: Prior | None = None,
    kappa_prior: Prior | None = None,
    beta_prior: Prior | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    engine: str = "auto",
    workers: int | None = None,
    scheduler: str | None = None,
    chains: int = 4,
    draws: int = 1000,
    tune: int = 1000,
    seed: int = DEFAULT_SEED,
    progress: bool = False,
) -> SweepResult:
    """Prior-sensitivity sweep: refit a model over tau priors (and bias priors for the bias
    models) and record how the HR and P(HR < T) move.

    Parameters
    ----------
    data
        The studies (table, DataFrame or CSV path).
    model, bias_variant, alpha, covariates
        The model, as in :func:`fit`.
    tau_priors, bias_priors
        Prior strings or PriorSpec objects to sweep; ``None`` sweeps the standard grids
        (:func:`synthesis.sweeps.standard_tau_priors`, :func:`synthesis.sweeps.standard_bias_priors`).
        Bias priors apply to models with a design bias ``delta``.
    mu_prior, bias_prior, kappa_prior, beta_prior
        The priors held fixed (``bias_prior`` where ``bias_priors`` are not swept).
    thresholds
        Report P(HR < T) for each T.
    engine
        ``"auto"`` (exact wherever the model allows it), ``"exact"`` or ``"pymc"``.
    workers, scheduler, chains, draws, tune, seed, progress
        Parallel fits, an optional Dask scheduler address, PyMC settings, a progress bar.

    Returns
    -------
    SweepResult
        Prints as ``synthesis sweep`` does; ``to_frame()`` gives one row per fit;
        ``plot_sensitivity()`` draws the sensitivity plot.

    Examples
    --------
    >>> import synthesis as syn
    >>> r = syn.sweep(syn.load_dataset("dnmbc_lrt"), model="bias",
    ...               tau_priors=["halfnormal(0.1)", "halfcauchy(1)"], bias_priors=["normal(0, 0.5)"])
    >>> len(r.rows), r.engines
    (2, {'exact': 2})
    >>> r.to_frame()[["hr_median", "hr_q025", "hr_q975"]].round(2).to_numpy().tolist()
    [[0.91, 0.78, 1.05], [0.91, 0.78, 1.06]]
    """
    from synthesis.models.spec import ModelData
    from synthesis.sweeps import run_sweep, split_specs, standard_bias_priors, standard_tau_priors

    spec = _spec(
        model, bias_variant=bias_variant, alpha=alpha, covariates=covariates,
        priors={"mu": mu_prior, "delta": bias_prior, "kappa": kappa_prior, "beta": beta_prior},
    )
    taus = _priors(tau_priors, "tau") or split_specs(None, standard_tau_priors(), "tau")
    biases: list[PriorSpec] = []
    if "delta" in spec.parameters:
        biases = _priors(bias_priors, "delta") or split_specs(None, standard_bias_priors(), "delta")
    table = load_studies(data, covariates=spec.covariates)
    return run_sweep(
        ModelData.from_table(table, spec), spec, tau_priors=taus, bias_priors=biases,
        thresholds=thresholds, engine=engine, workers=workers, scheduler=scheduler,
        chains=chains, draws=draws, tune=tune, seed=seed, progress=progress,
    )


# --------------------------------------------------------------------------------------------
# the main job
# --------------------------------------------------------------------------------------------
def analyse(
    data: Studies,
    *,
    name: str | None = None,
    covariate: str | None = None,
    thresholds: Sequence[float] = DECISION_THRESHOLDS,
    tau_priors: Sequence[Prior] | None = None,
    bias_priors: Sequence[Prior] | None = None,
    seed: int = DEFAULT_SEED,
    chains: int = 4,
    draws: int | None = None,
    tune: int | None = None,
    workers: int | None = None,
    progress: bool = False,
    operating_characteristics: bool = False,
) -> AnalysisResult:
    """The main job: the standard set of models, the decision table, the prior sweeps, the
    frequentist comparators and the bias diagnostics -- everything the report shows.

    Parameters
    ----------
    data
        The studies (table, DataFrame or CSV path).
    name
        The analysis's name (report title, default folder); default: the file's stem, or
        ``"studies"``.
    covariate
        Column of the meta-regression (default ``bone_only_fraction``; without that column no
        meta-regression is fitted and a warning says so).
    thresholds
        Decision thresholds T of P(HR < T).
    tau_priors, bias_priors
        The sweeps' grids (prior strings or PriorSpec; ``None``: the standard grids).
    seed, chains, draws, tune, workers, progress
        Sampler settings for the models that need PyMC, parallel fits, a progress bar
        (``draws``/``tune`` ``None``: 2000/1000 per chain, 1000/500 from 10,000 studies, with a
        warning; as ``synthesis report``).
    operating_characteristics
        Add the decision rule's operating characteristics (simulated evidence bases) to the
        "What would settle it?" part (``synthesis report --operating-characteristics``).

    Returns
    -------
    AnalysisResult
        Prints the decision table as ``synthesis report`` does; :func:`write_report` writes it.

    Examples
    --------
    >>> import pandas as pd
    >>> import synthesis as syn
    >>> frame = pd.DataFrame({
    ...     "study": ["T1", "T2", "T3", "O1", "O2", "O3"],
    ...     "design": ["rct", "rct", "rct", "retrospective", "retrospective", "prospective"],
    ...     "hr": [0.95, 0.85, 1.05, 0.65, 0.6, 0.7],
    ...     "ci_lower": [0.7, 0.6, 0.8, 0.55, 0.5, 0.5], "ci_upper": [1.29, 1.2, 1.38, 0.77, 0.72, 0.98]})
    >>> result = syn.analyse(frame, name="example")
    >>> list(result.to_frame()["key"])
    ['averaged', 'averaged_given_effect', 'stacked', 're_all', 're_rct', 'bias']
    """
    from synthesis.analysis import DEFAULT_COVARIATE, run_analysis

    if isinstance(data, (str, Path)):
        name = name or Path(data).stem
    table = load_studies(data)
    return run_analysis(
        table,
        name=name or "studies",
        covariate=covariate or DEFAULT_COVARIATE,
        thresholds=thresholds,
        seed=seed,
        chains=chains,
        draws=draws,
        tune=tune,
        workers=workers,
        progress=progress,
        operating_characteristics=operating_characteristics,
        tau_priors=[_prior_text(p) for p in _priors(tau_priors, "tau") or []] or None,
        bias_priors=[_prior_text(p) for p in _priors(bias_priors, "delta") or []] or None,
        source_path=str(Path(data).resolve()) if isinstance(data, (str, Path)) else None,
    )


def write_report(result: AnalysisResult, path: str | Path) -> Path:
    """Write the report of an analysis into the folder ``path``: report.html, report.md, CSV
    tables, figures, posteriors and run.json, atomically.

    The folder is created new, or replaced only when it is an earlier report; anything else
    there is refused with an :class:`~synthesis.errors.InputError` and left as it was.

    Parameters
    ----------
    result
        What :func:`analyse` returned.
    path
        The report folder.

    Returns
    -------
    Path
        The folder written.

    Examples
    --------
    Writing the figures takes several seconds, so this example is not run as a test
    (``tests/test_api.py`` writes a report):

    >>> import synthesis as syn
    >>> result = syn.analyse(syn.load_dataset("dnmbc_lrt"))  # doctest: +SKIP
    >>> syn.write_report(result, "reports/mine")  # doctest: +SKIP
    PosixPath('reports/mine')
    """
    from synthesis.outputs import check_output_target
    from synthesis.report import REPORT_COMMAND
    from synthesis.report import write_report as _write

    out = Path(path)
    check_output_target(out, REPORT_COMMAND)
    return _write(result, out)


# --------------------------------------------------------------------------------------------
# which model the data support, and where the answer flips (issue #11)
# --------------------------------------------------------------------------------------------
def average(
    data: Studies,
    *,
    bias_variant: str = "additive",
    bias_variants: str | Iterable[str] | None = None,
    alpha: float = 0.5,
    prior_prob: str | Mapping[str, float] | None = None,
    mu_prior: Prior | None = None,
    tau_prior: Prior | None = None,
    bias_prior: Prior | None = None,
    kappa_prior: Prior | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> AveragingResult:
    """Bayesian model averaging over effect x design bias x heterogeneity (``synthesis average``).

    Every model is fitted by the exact engine, and its exact log marginal likelihood gives the
    posterior model probabilities, the inclusion Bayes factors and the model-averaged HR
    (:func:`synthesis.models.averaging.average_models`).

    Parameters
    ----------
    data
        The studies (table, DataFrame or CSV path).
    bias_variant, alpha
        The bias variant of the bias models (and ``alpha`` of ``"downweight"``).
    bias_variants
        ``"all"`` (or a list) to average over bias variants as well.
    prior_prob
        Prior inclusion probabilities, ``"effect=0.5,bias=0.5,heterogeneity=0.5"`` or a mapping;
        default equal prior model probabilities.
    mu_prior, tau_prior, bias_prior, kappa_prior
        Priors as in :func:`fit` (normal priors on mu and delta: the exact engine needs them).
    thresholds
        Report P(HR < T) for each T.

    Returns
    -------
    AveragingResult
        Prints as ``synthesis average``; ``to_json()`` is ``synthesis average --json``.

    Examples
    --------
    >>> import synthesis as syn
    >>> result = syn.average(syn.load_dataset("dnmbc_lrt"))
    >>> len(result.models), round(sum(m.posterior_prob for m in result.models), 12)
    (8, 1.0)
    """
    from synthesis.models.averaging import average_models

    spec = _spec(
        "bias", bias_variant=bias_variant, alpha=alpha, covariates=(),
        priors={"mu": mu_prior, "tau": tau_prior, "delta": bias_prior, "kappa": kappa_prior},
    )
    return average_models(
        load_studies(data), spec, prior_prob=prior_prob, bias_variants=bias_variants, thresholds=thresholds
    )


def compare(
    data: Studies,
    *,
    bias_variants: str | Sequence[str] | None = None,
    engine: str = "pymc",
    alpha: float = 0.5,
    mu_prior: Prior | None = None,
    tau_prior: Prior | None = None,
    bias_prior: Prior | None = None,
    kappa_prior: Prior | None = None,
    cluster: str | None = None,
    rho: float = 0.0,
    tau_within_prior: Prior | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    chains: int = 4,
    draws: int = 2000,
    tune: int = 1000,
    seed: int | None = DEFAULT_SEED,
) -> VariantComparison:
    """Compare the bias variants by leave-one-out cross-validation (of a study, or of a cluster
    with ``cluster``) and stack them
    (``synthesis compare``; :func:`synthesis.models.loo.compare_variants`).

    ``engine="exact"`` fits and scores every variant exactly (exact LOO, any number of
    studies); ``engine="pymc"`` (the default, as on the command line) samples every variant and
    scores it by PSIS-LOO. With ``cluster`` (and ``rho``, ``tau_within_prior``, as :func:`fit`)
    the multilevel model is scored by exact leave-one-cluster-out (exact engine only): a
    cluster's rows are dependent, so the unit left out is the cluster.
    ``bias_variants``: ``None`` or ``"all"`` (every variant), a comma-separated string
    (``"additive,downweight"``) or a sequence of variant names, as :func:`average` takes them.

    Returns
    -------
    VariantComparison
        The LOO table, stacking weights and the stacked HR and P(HR < T).

    Examples
    --------
    >>> import synthesis as syn
    >>> result = syn.compare(syn.load_dataset("dnmbc_lrt"), engine="exact")
    >>> round(sum(v.comparison.weight for v in result.variants), 6)
    1.0
    """
    from synthesis.models.loo import compare_variants

    spec = _spec(
        "bias", bias_variant="additive", alpha=alpha, covariates=(),
        priors={"mu": mu_prior, "tau": tau_prior, "delta": bias_prior, "kappa": kappa_prior},
        cluster=cluster, rho=rho, tau_within_prior=tau_within_prior,
    )
    return compare_variants(
        load_studies(data), spec, variants=bias_variants, engine=engine,
        thresholds=thresholds, chains=chains, draws=draws, tune=tune, seed=seed,
    )


def tipping(
    data: Studies,
    *,
    threshold: float = 0.8,
    level: float = 0.5,
    mu_prior: Prior | None = None,
    tau_prior: Prior | None = None,
    grid: int | Sequence[int] = 40,
    alpha_points: int = 21,
) -> TippingResult:
    """Where the answer flips (``synthesis tipping``): P(HR < T) over a grid of design-bias
    priors, the contour where it crosses ``level``, the down-weighting curve and a sentence
    (:func:`synthesis.models.tipping.tipping_analysis`).

    Examples
    --------
    >>> import synthesis as syn
    >>> result = syn.tipping(syn.load_dataset("dnmbc_lrt"), grid=8, alpha_points=5)
    >>> result.to_json()["threshold"], len(result.to_json()["grid"])
    (0.8, 64)
    """
    from synthesis.models.spec import ModelData
    from synthesis.models.tipping import tipping_analysis

    spec = _spec("re", bias_variant="additive", alpha=0.5, covariates=(), priors={"mu": mu_prior, "tau": tau_prior})
    table = load_studies(data)
    if not table.has_design:
        raise InputError(f"{table.source}: a tipping-point analysis needs a 'design' column")
    return tipping_analysis(
        ModelData.from_table(table, spec), spec.priors, threshold=threshold, level=level,
        grid=grid, alpha_points=alpha_points,
    )


def psense(
    data: Studies,
    *,
    model: str = "bias",
    bias_variant: str = "additive",
    alpha: float = 0.5,
    mu_prior: Prior | None = None,
    tau_prior: Prior | None = None,
    bias_prior: Prior | None = None,
    kappa_prior: Prior | None = None,
    cluster: str | None = None,
    rho: float = 0.0,
    tau_within_prior: Prior | None = None,
    engine: str = "exact",
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    sensitivity_threshold: float = 0.05,
    fit_options: Mapping[str, Any] | None = None,
) -> PowerScaleResult:
    """Power-scaling sensitivity (``synthesis psense``; Kallioinen et al. 2024): how far the
    posterior moves when the prior, the likelihood, or the non-randomised studies' likelihood
    alone is raised to a power near 1 (:func:`synthesis.models.powerscale.power_scale`).
    With ``cluster`` (exact engine) each cluster's joint likelihood is scaled, and the prior's
    power includes tau_within's prior.

    Examples
    --------
    >>> import synthesis as syn
    >>> result = syn.psense(syn.load_dataset("dnmbc_lrt"))
    >>> result.conflict
    False
    """
    from synthesis.models.powerscale import power_scale

    spec = _spec(
        model, bias_variant=bias_variant, alpha=alpha, covariates=(),
        priors={"mu": mu_prior, "tau": tau_prior, "delta": bias_prior, "kappa": kappa_prior},
        cluster=cluster, rho=rho, tau_within_prior=tau_within_prior,
    )
    return power_scale(
        load_studies(data), spec, engine=engine, thresholds=thresholds,
        threshold=sensitivity_threshold, fit_options=fit_options,
    )


# --------------------------------------------------------------------------------------------
# several inputs per cohort (issue #13)
# --------------------------------------------------------------------------------------------
def pool_multilevel(
    data: Studies,
    cluster: str,
    *,
    method: str = "REML",
    rho: float = 0.0,
    test: str = "z",
    covariates: Sequence[str] = (),
) -> MultilevelResult:
    """Multilevel pooling of rows grouped in clusters (``synthesis pool --cluster``; metafor's
    ``rma.mv(yi, V, random = ~ 1 | cluster/row)``): REML or ML estimates of the between- and
    within-cluster variances, fixed effects with z or t (``test="t"``, k - p df) tests, Q_E
    (:func:`synthesis.multilevel.pool_multilevel`).

    Examples
    --------
    >>> import synthesis as syn
    >>> from synthesis.multilevel import load_all_inputs
    >>> r = syn.pool_multilevel(load_all_inputs(), "cohort")
    >>> sorted(k for k in r.to_json() if k.startswith("sigma2"))
    ['sigma2_between', 'sigma2_within']
    """
    from synthesis.multilevel import pool_multilevel as _pool

    table = load_studies(data, covariates=covariates)
    return _pool(table, cluster, method=method, rho=rho, test=test, covariates=covariates)


# --------------------------------------------------------------------------------------------
# the next trial and the living evidence (issue #14)
# --------------------------------------------------------------------------------------------
def plan(
    data: Studies,
    *,
    model: str = "bias",
    bias_variant: str = "additive",
    alpha: float = 0.5,
    covariates: Sequence[str] = (),
    mu_prior: Prior | None = None,
    tau_prior: Prior | None = None,
    bias_prior: Prior | None = None,
    kappa_prior: Prior | None = None,
    beta_prior: Prior | None = None,
    heterogeneity: bool = True,
    cluster: str | None = None,
    rho: float = 0.0,
    tau_within_prior: Prior | None = None,
    events: Sequence[float] | None = None,
    patients: Sequence[float] | None = None,
    event_prob: float | None = None,
    allocation: float = 1.0,
    threshold: float | None = None,
    level: float | None = None,
    one_sided: float | None = None,
) -> PlanResult:
    """Would one more randomised trial settle it (``synthesis plan``)? Exact preposterior
    analysis of a new two-arm trial of each size in ``events``: predictive power, the
    probability that the synthesis then meets ``P(HR < threshold) > level`` and that the
    decision changes, the expected posterior SD and EVSI
    (:func:`synthesis.models.preposterior.plan_trial`).

    The model options are those of :func:`fit` (exact engine; ``heterogeneity=False`` is the
    CLI's ``--common-effect``). Trial sizes are ``events`` (default 100 to 2000) or
    ``patients`` with ``event_prob`` (events = patients x event probability), not both.

    Examples
    --------
    >>> import synthesis as syn
    >>> r = syn.plan(syn.load_dataset("dnmbc_lrt"), events=[200, 1000])
    >>> r.to_json()["rule"], [row["events"] for row in r.to_json()["rows"]]
    ({'threshold': 0.8, 'level': 0.9}, [200.0, 1000.0])
    >>> syn.plan(syn.load_dataset("dnmbc_lrt"), patients=[1000], event_prob=0.5).to_json()["rows"][0]["events"]
    500.0
    >>> syn.plan(syn.load_dataset("dnmbc_lrt"), patients=[1000], event_prob=1.5)
    Traceback (most recent call last):
    synthesis.errors.InputError: event_prob must be strictly between 0 and 1, got 1.5
    """
    from synthesis.models.preposterior import DEFAULT_EVENTS, RULE_LEVEL, RULE_THRESHOLD, plan_trial
    from synthesis.models.spec import ModelData

    if patients is not None and events is not None:
        raise InputError("give trial sizes as events or as patients with event_prob, not both")
    if (patients is None) != (event_prob is None):
        raise InputError("patients and event_prob go together (events = patients x event probability)")
    if event_prob is not None and not 0.0 < float(event_prob) < 1.0:  # NaN fails too
        raise InputError(f"event_prob must be strictly between 0 and 1, got {event_prob!r}", parameter="event_prob")
    if patients is not None:
        events = [float(n) * float(event_prob) for n in patients]  # type: ignore[arg-type]
    spec = _spec(model, bias_variant=bias_variant, alpha=alpha, covariates=covariates,
                 priors={"mu": mu_prior, "tau": tau_prior, "delta": bias_prior, "kappa": kappa_prior,
                         "beta": beta_prior},
                 heterogeneity=heterogeneity, cluster=cluster, rho=rho, tau_within_prior=tau_within_prior)
    table = load_studies(data, covariates=spec.covariates)
    return plan_trial(
        ModelData.from_table(table, spec), spec, events=DEFAULT_EVENTS if events is None else events,
        allocation=allocation, threshold=RULE_THRESHOLD if threshold is None else threshold,
        level=RULE_LEVEL if level is None else level, one_sided=one_sided, event_prob=event_prob,
        label=f"{spec.model} ({spec.bias_variant})" if spec.has_bias else spec.model,
    )


def timeline(
    data: Studies,
    *,
    threshold: float | None = None,
    scenarios: Sequence[str] = (),
    bias_variant: str = "additive",
    alpha: float = 0.5,
    mu_prior: Prior | None = None,
    tau_prior: Prior | None = None,
    bias_prior: Prior | None = None,
    prior_prob: str | Mapping[str, float] | None = None,
) -> TimelineResult:
    """How the evidence moved (``synthesis timeline``): refits after each publication year
    (``year`` column) of the RCT-only, design-bias and model-averaged models, and
    ``"HR:EVENTS"`` scenario trials a year after the last (:func:`synthesis.cumulative.run_timeline`).
    ``prior_prob`` is the model average's prior inclusion probabilities (as :func:`average`).

    Examples
    --------
    >>> import synthesis as syn
    >>> r = syn.timeline(syn.load_dataset("dnmbc_lrt"), scenarios=["0.8:500"])
    >>> sorted(r.to_json()["rows"][0])[:3]
    ['ci_lower', 'ci_upper', 'hr']
    """
    from synthesis.cumulative import run_timeline
    from synthesis.models.preposterior import RULE_THRESHOLD

    spec = _spec("bias", bias_variant=bias_variant, alpha=alpha, covariates=(),
                 priors={"mu": mu_prior, "tau": tau_prior, "delta": bias_prior})
    return run_timeline(
        load_studies(data), spec, threshold=RULE_THRESHOLD if threshold is None else threshold,
        scenarios=scenarios, prior_prob=prior_prob,
    )


def simulate(
    data: Studies,
    *,
    true_hrs: Sequence[float] | None = None,
    bias_means: Sequence[float] | None = None,
    bias_sds: Sequence[float] | None = None,
    n_sim: int | None = None,
    tau: float | None = None,
    threshold: float | None = None,
    level: float | None = None,
    bias_variant: str = "additive",
    alpha: float = 0.5,
    mu_prior: Prior | None = None,
    tau_prior: Prior | None = None,
    bias_prior: Prior | None = None,
    heterogeneity: bool = True,
    seed: int = DEFAULT_SEED,
    workers: int | None = 1,
    scheduler: str | None = None,
) -> SimulationResult:
    """Operating characteristics of the rule ``P(HR < threshold) > level`` (``synthesis
    simulate``): how often the design-bias model, the naive pool and the RCTs alone recommend
    over a grid of truths, from evidence bases shaped like ``data``
    (:func:`synthesis.simulation.run_simulation`; the same numbers on any number of workers).
    ``tau`` is the true between-study SD of the simulated effects (default 0); the priors,
    ``bias_variant`` (additive or downweight), ``alpha`` and ``heterogeneity=False``
    (``--common-effect``) set the analyses.

    Examples
    --------
    >>> import synthesis as syn
    >>> r = syn.simulate(syn.load_dataset("dnmbc_lrt"), true_hrs=[1.0], bias_means=[0.7], bias_sds=[0.1], n_sim=200)
    >>> sorted(r.to_json()["scenarios"][0]["p_recommend"])
    ['bias', 'naive', 'rct_only']
    """
    from synthesis.models.spec import ModelData
    from synthesis.simulation import run_simulation

    table = load_studies(data)
    spec = _spec("bias", bias_variant=bias_variant, alpha=alpha, covariates=(),
                 priors={"mu": mu_prior, "tau": tau_prior, "delta": bias_prior}, heterogeneity=heterogeneity)
    def listed(values: Any) -> Any:  # one number is a list of one
        return [values] if isinstance(values, (int, float)) and not isinstance(values, bool) else values

    options = {
        "true_hrs": listed(true_hrs), "bias_means": listed(bias_means), "bias_sds": listed(bias_sds), "n_sim": n_sim,
        "tau": tau,
        "threshold": threshold, "level": level,
    }  # None: run_simulation's default
    return run_simulation(
        ModelData.from_table(table, spec), spec, seed=seed, workers=workers, scheduler=scheduler,
        progress=False, **{k: v for k, v in options.items() if v is not None},
    )


# --------------------------------------------------------------------------------------------
# the evidence, audited (issue #12)
# --------------------------------------------------------------------------------------------
def multiverse(
    data: Studies | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLDS[0],
    switches: Mapping[str, Sequence[str]] | None = None,
    models: Sequence[str] | None = None,
    tau_priors: Sequence[str] | None = None,
    bias_priors: Sequence[str] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> MultiverseResult:
    """Every specification at once (``synthesis multiverse``): the curation switches of the
    bundled data (``data=None``) x models x tau priors x bias priors, fitted exactly; on other
    data only the model and prior dimensions (:func:`synthesis.specifications.run_multiverse`).

    Examples
    --------
    >>> import synthesis as syn
    >>> r = syn.multiverse(models=["bias"], tau_priors=["halfnormal(0.5)"], bias_priors=["normal(0, 0.5)"], workers=1)
    >>> r.to_json()["n_specifications"] > 100
    True
    """
    from synthesis.specifications import run_multiverse

    return run_multiverse(
        None if data is None else load_studies(data), threshold=threshold, switches=switches, models=models,
        tau_priors=tau_priors, bias_priors=bias_priors, workers=workers, scheduler=scheduler, progress=False,
    )


def reconcile_published(
    pools: str | Path | None = None, *, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> ReconcileResult:
    """How the published pooled HRs came about (``synthesis reconcile``): each reproduced from
    its own inputs, then walked to this tool's answer one change at a time
    (:func:`synthesis.reconcile.reconcile`; ``pools`` default the bundled
    ``published_pools.json``).

    Examples
    --------
    >>> import synthesis as syn
    >>> r = syn.reconcile_published()
    >>> [p["name"] for p in r.to_json()["published"]][:2]
    ['Gera 2020, prospective', 'Gera 2020, all LRT']
    """
    from synthesis.reconcile import reconcile

    return reconcile(pools, thresholds=thresholds)
