"""Prior-sensitivity sweeps: refit a model over a grid of tau priors (and, for the bias models,
bias priors) and record how the posterior HR and P(HR < T) move.

The exact engine is used wherever the model allows it (milliseconds per prior: the marginal
likelihood over the tau grid is computed once and reweighted per prior); otherwise each prior
family is compiled once with PyMC/nutpie and refitted with new hyperparameters as data.
Independent fits run in parallel (``workers``), optionally on an existing Dask cluster.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import as_completed as futures_completed
from dataclasses import dataclass, field, replace
from numbers import Integral
from typing import Any

import pandas as pd

from synthesis.base import DEFAULT_SEED, DEFAULT_THRESHOLDS
from synthesis.errors import InputError, ModelError
from synthesis.models.fit import ENGINES
from synthesis.models.priors import PriorSpec, parse_prior
from synthesis.models.results import FitResult
from synthesis.models.spec import ModelData, ModelSpec, check_seed, check_thresholds, threshold_key

#: Scales of the half-normal and half-Cauchy tau priors in the standard grid (0.05 to 2).
TAU_SCALES: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
#: Rates of the exponential tau priors (prior means 1/rate from 0.05 to 2).
EXPONENTIAL_RATES: tuple[float, ...] = (20.0, 10.0, 5.0, 2.0, 1.0, 0.5)
#: Bias-prior grid: SDs 0.1 to 1, centred at 0 (no expected direction) and at an informed
#: negative mean (non-randomised studies exaggerate benefit: log(0.8) = -0.223, i.e. a 20%
#: relative exaggeration of the hazard ratio).
BIAS_SDS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
BIAS_MEANS: tuple[float, ...] = (0.0, round(math.log(0.8), 3))
#: Engines a sweep may use: one of the fitting engines, or "auto" (exact wherever the model allows).
SWEEP_ENGINES: tuple[str, ...] = ("auto", *ENGINES)
#: Seconds to wait for a Dask scheduler (``--scheduler``) before giving up (Dask's default is 30).
SCHEDULER_TIMEOUT_S = 5.0


def standard_tau_priors() -> list[str]:
    """The standard tau-prior grid: half-normal and half-Cauchy scales 0.05-2, exponential
    rates, and the Turner et al. (2015) all-cause-mortality log-normal prior.

    Examples
    --------
    >>> grid = standard_tau_priors()
    >>> len(grid), grid[:2], grid[-1]
    (25, ['halfnormal(0.05)', 'halfnormal(0.1)'], 'turner2015-acm-nonpharm')
    """
    grid = [f"halfnormal({s:g})" for s in TAU_SCALES]
    grid += [f"halfcauchy({s:g})" for s in TAU_SCALES]
    grid += [f"exponential({r:g})" for r in EXPONENTIAL_RATES]
    grid.append("turner2015-acm-nonpharm")
    return grid


def standard_bias_priors() -> list[str]:
    """The standard bias-prior grid: normal priors with SDs :data:`BIAS_SDS`, centred at each
    of :data:`BIAS_MEANS`.

    Examples
    --------
    >>> standard_bias_priors()
    ['normal(0, 0.1)', 'normal(0, 0.25)', 'normal(0, 0.5)', 'normal(0, 1)',
     'normal(-0.223, 0.1)', 'normal(-0.223, 0.25)', 'normal(-0.223, 0.5)', 'normal(-0.223, 1)']
    """
    return [f"normal({m:g}, {s:g})" for m in BIAS_MEANS for s in BIAS_SDS]


def split_specs(text: str | None, default: list[str], parameter: str) -> list[PriorSpec]:
    """Parse a ';'-separated list of prior strings (``None`` = the default grid).

    Examples
    --------
    >>> [p.label for p in split_specs("halfnormal(0.5); exponential(2)", [], "tau")]
    ['half-normal(scale=0.5)', 'exponential(rate=2)']
    >>> [p.label for p in split_specs(None, ["halfcauchy(1)"], "tau")]
    ['half-Cauchy(scale=1)']
    """
    items = default if text is None else [t.strip() for t in text.split(";") if t.strip()]
    if not items:
        raise InputError(f"empty list of {parameter} priors")
    return [parse_prior(t, parameter) for t in items]


def prior_scale(spec: PriorSpec) -> float:
    """A single number to put a prior on the x-axis of a sensitivity plot: the prior median.

    Examples
    --------
    >>> round(prior_scale(parse_prior("halfnormal(1)", "tau")), 4)
    0.6745
    """
    return float(spec.ppf(0.5))


@dataclass(frozen=True)
class SweepRow:
    """One refit of a sweep."""

    model: str
    tau_prior: str
    bias_prior: str | None
    engine: str
    hr_median: float
    hr_q025: float
    hr_q975: float
    p_hr_below: dict[str, float]
    tau_family: str
    tau_prior_median: float
    bias_mean: float | None = None
    bias_sd: float | None = None
    tau_median: float | None = None
    converged: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "tau_prior": self.tau_prior,
            "bias_prior": self.bias_prior,
            "engine": self.engine,
            "hr_median": self.hr_median,
            "hr_q025": self.hr_q025,
            "hr_q975": self.hr_q975,
            "p_hr_below": dict(self.p_hr_below),
            "tau_family": self.tau_family,
            "tau_prior_median": self.tau_prior_median,
            "bias_mean": self.bias_mean,
            "bias_sd": self.bias_sd,
            "tau_median": self.tau_median,
            "converged": self.converged,
        }


@dataclass
class SweepResult:
    """All rows of a sweep, with the thresholds and the time it took."""

    rows: list[SweepRow]
    thresholds: tuple[float, ...]
    seconds: float
    engines: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [r.to_dict() for r in self.rows],
            "thresholds": list(self.thresholds),
            "seconds": self.seconds,
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per fit: the priors, the HR summary and ``p_hr_below_<T>`` columns."""
        records = []
        for r in self.rows:
            d = r.to_dict()
            for key, p in d.pop("p_hr_below").items():
                d[f"p_hr_below_{key}"] = p
            records.append(d)
        return pd.DataFrame.from_records(records)

    def _shown(self) -> pd.DataFrame:
        """The columns ``synthesis sweep`` prints."""
        frame = self.to_frame()
        cols = ["tau_prior", "bias_prior", "engine", "hr_median", "hr_q025", "hr_q975"]
        cols += [c for c in frame.columns if c.startswith("p_hr_below_")]
        return frame[[c for c in cols if c in frame.columns]]

    def __str__(self) -> str:
        """The sweep as ``synthesis sweep`` prints it.

        Examples
        --------
        >>> import synthesis as syn
        >>> r = syn.sweep(syn.load_dataset("dnmbc_lrt"), tau_priors=["halfnormal(0.5)", "halfcauchy(1)"])
        >>> print(r)  # doctest: +ELLIPSIS
        re: 2 fits in ... s ({'exact': 2})
        HR: posterior median and 95% equal-tailed credible interval; P(HR < T) posterior probability
        ...
        """
        model = self.rows[0].model if self.rows else ""
        return "\n".join([
            f"{model}: {len(self.rows)} fits in {self.seconds:.2f} s ({self.engines})",
            "HR: posterior median and 95% equal-tailed credible interval; P(HR < T) posterior probability",
            self._shown().to_string(index=False, float_format=lambda x: f"{x:.3f}"),
        ])

    def _repr_html_(self) -> str:
        from synthesis.models.display import html_block, html_table

        frame = self._shown()
        rows = [["" if v is None else f"{v:.3f}" if isinstance(v, float) else v for v in row]
                for row in frame.itertuples(index=False)]
        model = self.rows[0].model if self.rows else ""
        title = f"Prior sensitivity sweep: {model}, {len(self.rows)} fits in {self.seconds:.2f} s"
        return html_block(title, [html_table(list(frame.columns), rows)])

    def plot_sensitivity(self, *, fig: Any = None, **kwargs: Any) -> Any:
        """The posterior HR and P(HR < T) against the tau prior
        (:func:`synthesis.plots.plot_sensitivity`; keyword arguments go there).

        Examples
        --------
        >>> import synthesis as syn
        >>> r = syn.sweep(syn.load_dataset("dnmbc_lrt"), tau_priors=["halfnormal(0.5)", "halfcauchy(1)"])
        >>> type(r.plot_sensitivity()).__name__
        'Figure'
        """
        from synthesis.plots import plot_sensitivity

        if fig is not None:
            kwargs["fig"] = fig
        return plot_sensitivity(self, **kwargs)


def _row(fit: FitResult, spec: ModelSpec, tau: PriorSpec, bias: PriorSpec | None, label: str) -> SweepRow:
    return SweepRow(
        model=label,
        tau_prior=tau.label,
        bias_prior=bias.label if bias is not None else None,
        engine=fit.engine,
        hr_median=fit.hr.median,
        hr_q025=fit.hr.q025,
        hr_q975=fit.hr.q975,
        p_hr_below=dict(fit.p_hr_below),
        tau_family=_family(tau),
        tau_prior_median=prior_scale(tau),
        bias_mean=bias.params[0] if bias is not None else None,
        bias_sd=bias.params[1] if bias is not None and len(bias.params) > 1 else None,
        tau_median=fit.parameters["tau"].median if "tau" in fit.parameters else None,
        converged=fit.diagnostics.converged if fit.diagnostics is not None else None,
    )


def _family(prior: PriorSpec) -> str:
    """A prior's family for grouping sweep lines: the preset name for presets."""
    if prior.source is not None and "[" in prior.label:
        return prior.label.rsplit("[", 1)[1].rstrip("]")
    return prior.family


def _grid(spec: ModelSpec, tau_priors: Sequence[PriorSpec], bias_priors: Sequence[PriorSpec]) -> list[tuple[PriorSpec, PriorSpec | None]]:
    if spec.has_bias and "delta" in spec.parameters:
        return [(t, b) for b in bias_priors for t in tau_priors]
    return [(t, None) for t in tau_priors]


def _spec_with(spec: ModelSpec, tau: PriorSpec, bias: PriorSpec | None) -> ModelSpec:
    priors = replace(spec.priors, tau=tau) if bias is None else replace(spec.priors, tau=tau, delta=bias)
    return replace(spec, priors=priors)


def _pymc_chunk(args: tuple) -> list[FitResult]:
    """Worker entry point (top level so that it pickles for process pools and Dask): fit a chunk
    of specs that differ only in their priors, compiling the model once for the chunk."""
    from synthesis.models.pymc_fit import fit_pymc_many

    data, specs, thresholds, chains, draws, tune, seed = args
    return fit_pymc_many(data, specs, thresholds=thresholds, chains=chains, draws=draws, tune=tune, seed=seed)


def run_sweep(
    data: ModelData,
    spec: ModelSpec,
    *,
    label: str | None = None,
    tau_priors: Sequence[PriorSpec],
    bias_priors: Sequence[PriorSpec] = (),
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    engine: str = "auto",
    workers: int | None = None,
    scheduler: str | None = None,
    chains: int = 4,
    draws: int = 1000,
    tune: int = 1000,
    seed: int = DEFAULT_SEED,
    progress: bool | None = None,
) -> SweepResult:
    """Refit ``spec`` over every (tau prior, bias prior) pair and summarise each fit.

    ``engine="auto"`` uses the exact engine when it supports the model and PyMC otherwise; any
    engine outside :data:`SWEEP_ENGINES` is an :class:`~synthesis.errors.InputError`. A bias
    model swept without ``bias_priors`` keeps its own bias prior (``spec.priors.delta``).
    Thresholds must be finite hazard ratios > 0, ``workers`` >= 1 and ``seed`` in
    [0, 2**32 - 1] (:class:`~synthesis.errors.InputError` otherwise); a ``scheduler`` that
    does not answer within ``SCHEDULER_TIMEOUT_S`` seconds is an ``InputError`` too.

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt", subset="rct")
    >>> spec = ModelSpec("re")
    >>> taus = [parse_prior("halfnormal(0.1)", "tau"), parse_prior("halfnormal(1)", "tau")]
    >>> result = run_sweep(ModelData.from_table(table, spec), spec, tau_priors=taus, thresholds=[1.0])
    >>> result.engines
    {'exact': 2}
    >>> [(r.tau_prior, round(r.hr_median, 2), round(r.p_hr_below["1.0"], 2)) for r in result.rows]
    [('half-normal(scale=0.1)', 0.92, 0.83), ('half-normal(scale=1)', 0.93, 0.69)]
    """
    from synthesis.models.exact import exact_unsupported_reason, sweep_tau_priors

    start = time.perf_counter()
    label = label or spec.model
    thresholds = check_thresholds(thresholds)
    seed = check_seed(seed)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, Integral) or workers < 1):
        raise InputError(f"workers must be an integer >= 1, got {workers!r}")
    if engine not in SWEEP_ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of {', '.join(SWEEP_ENGINES)}")
    if not tau_priors:
        raise InputError("empty list of tau priors")
    if not bias_priors and "delta" in spec.parameters:
        bias_priors = (spec.priors.delta,)  # no bias grid: the model's own bias prior
    grid = _grid(spec, tau_priors, bias_priors)
    specs = [_spec_with(spec, t, b) for t, b in grid]
    reason = exact_unsupported_reason(specs[0], data)
    use_exact = engine == "exact" or (engine == "auto" and reason is None)
    if engine == "exact" and reason is not None:
        raise ModelError(f"--engine exact: {reason}")
    show = sys.stderr.isatty() if progress is None else progress
    fits: list[FitResult]
    if use_exact:
        # One marginal likelihood over the tau grid, reweighted per prior (delta-major order,
        # the same order as ``grid``).
        fits = sweep_tau_priors(
            data, spec, list(tau_priors), thresholds,
            delta_priors=list(bias_priors) if grid[0][1] is not None else None,
        )
    else:
        # nutpie already samples the chains of one fit on all cores, so by default the sweep runs
        # as ONE chunk: one compile, then every prior swapped in as data. ``workers`` > 1 (or a
        # Dask cluster) splits the grid into chunks fitted in parallel, one compile per chunk.
        n_chunks = max(1, min(len(specs), workers or 1))
        if scheduler and workers is None:
            n_chunks = len(specs)
        chunks = [specs[i::n_chunks] for i in range(n_chunks)]
        jobs = [(data, chunk, thresholds, chains, draws, tune, seed) for chunk in chunks]
        parts = run_parallel(_pymc_chunk, jobs, workers=n_chunks, scheduler=scheduler, show=show, desc=f"sweep {label} (PyMC)")
        by_spec = {id(sp): f for chunk, part in zip(chunks, parts, strict=True) for sp, f in zip(chunk, part, strict=True)}
        fits = [by_spec[id(sp)] for sp in specs]
    rows = [_row(f, s, t, b, label) for f, s, (t, b) in zip(fits, specs, grid, strict=True)]
    engines: dict[str, int] = {}
    for r in rows:
        engines[r.engine] = engines.get(r.engine, 0) + 1
    return SweepResult(rows=rows, thresholds=thresholds, seconds=time.perf_counter() - start, engines=engines)


def _progress_bar(total: int, show: bool, desc: str) -> Any:
    """A progress bar of ``total`` jobs, advanced with ``update()`` as each job finishes
    (disabled, every call a no-op, when ``show`` is False)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, disable=not show)


def run_parallel(func: Callable, jobs: list, *, workers: int | None, scheduler: str | None, show: bool, desc: str) -> list:
    """Run independent jobs ``func(job)``: on a Dask cluster if ``scheduler`` is given, else a
    process pool (``workers`` processes, default all cores; 1 = in this process).

    ``func`` must be a top-level function (it is pickled). Results are in the order of ``jobs``;
    the progress bar (``show``) advances as each job finishes, in whatever order.

    Examples
    --------
    >>> run_parallel(abs, [-1, 2, -3], workers=1, scheduler=None, show=False, desc="abs")
    [1, 2, 3]
    """
    with _progress_bar(len(jobs), show, desc) as bar:
        if scheduler:
            try:
                from dask.distributed import Client, as_completed
            except ImportError:
                raise InputError("--scheduler needs dask[distributed]: pip install 'dnmbc-synthesis[dask]'") from None
            client = _connect(Client, scheduler)
            try:
                futures = client.map(func, jobs, pure=False)
                for _ in as_completed(futures):
                    bar.update()
                return client.gather(futures)
            finally:
                client.close()
        n = workers or os.cpu_count() or 1
        if n <= 1 or len(jobs) <= 1:
            results = []
            for job in jobs:
                results.append(func(job))
                bar.update()
            return results
        with ProcessPoolExecutor(max_workers=min(n, len(jobs))) as pool:
            futures = [pool.submit(func, job) for job in jobs]
            for _ in futures_completed(futures):
                bar.update()
            return [f.result() for f in futures]


def _connect(client_class: type, scheduler: str) -> Any:
    """A Dask client of ``scheduler``, or an InputError within ``SCHEDULER_TIMEOUT_S`` seconds."""
    try:
        return client_class(scheduler, timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(
            f"--scheduler {scheduler}: could not connect to a Dask scheduler within "
            f"{SCHEDULER_TIMEOUT_S:g} s ({exc}); check the address (tcp://HOST:PORT) and that the scheduler runs"
        ) from None


def threshold_columns(thresholds: Sequence[float]) -> list[str]:
    """The ``p_hr_below`` keys (and sweep-frame column suffixes) of ``thresholds``.

    Examples
    --------
    >>> threshold_columns([0.8, 1])
    ['0.8', '1.0']
    """
    return [threshold_key(t) for t in thresholds]
