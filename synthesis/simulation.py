"""Running a simulation of operating characteristics (:mod:`synthesis.models.operating`) in
parallel: local processes (``workers``) or an existing Dask cluster (``scheduler``), with a
progress bar on stderr. The work is cut into jobs of a fixed number of replicates whose seeds
depend only on (scenario, replicate), so the result is the same however it is split.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from numbers import Integral

from synthesis.base import DEFAULT_SEED
from synthesis.errors import InputError
from synthesis.models.operating import (
    ANALYSES,
    DEFAULT_BIAS_MEANS,
    DEFAULT_BIAS_SDS,
    DEFAULT_N_SIM,
    DEFAULT_TRUE_HRS,
    Scenario,
    SimulationResult,
    jobs_for,
    run_chunk,
    scenario_grid,
)
from synthesis.models.preposterior import RULE_LEVEL, RULE_THRESHOLD
from synthesis.models.spec import ModelData, ModelSpec, check_seed, check_thresholds
from synthesis.sweeps import run_parallel

#: Most replicates per scenario a run accepts (memory and time stay bounded).
MAX_N_SIM = 10_000_000


def run_simulation(
    data: ModelData,
    spec: ModelSpec | None = None,
    *,
    true_hrs: Sequence[float] = DEFAULT_TRUE_HRS,
    bias_means: Sequence[float] = DEFAULT_BIAS_MEANS,
    bias_sds: Sequence[float] = DEFAULT_BIAS_SDS,
    n_sim: int = DEFAULT_N_SIM,
    tau: float = 0.0,
    threshold: float = RULE_THRESHOLD,
    level: float = RULE_LEVEL,
    seed: int = DEFAULT_SEED,
    workers: int | None = 1,
    scheduler: str | None = None,
    progress: bool | None = None,
) -> SimulationResult:
    """Operating characteristics of ``P(HR < threshold) > level`` over a grid of truths.

    Parameters
    ----------
    data
        The evidence base whose SEs and designs every simulated one keeps (both designs needed).
    spec
        Priors (and bias variant: additive or downweight; ``heterogeneity=False`` analyses with
        tau fixed at 0) of the analyses; its model is ignored (the three analyses are fixed).
    true_hrs, bias_means, bias_sds
        The grid of truths: true randomised HR, bias factor b of non-randomised studies (HR
        scale, 1 = none), study-to-study SD of their bias (log scale).
    n_sim
        Simulated evidence bases per scenario.
    tau
        True between-study SD of the simulated effects (log scale).
    workers, scheduler
        Local processes (1 = this process) or a Dask scheduler address.

    Examples
    --------
    >>> import synthesis as syn
    >>> spec = ModelSpec("bias")
    >>> data = ModelData.from_table(syn.load_dataset("dnmbc_lrt"), spec)

    The naive pool recommends about 90% of the time at a true HR of 1 when the registries are
    biased by 0.6 (0.895 +/- 0.007 over 2,000 replicates; 200 here, MC SE 0.02):

    >>> res = run_simulation(data, spec, true_hrs=[1.0], bias_means=[0.6], bias_sds=[0.05], n_sim=200, progress=False)
    >>> res.p_recommend(0)["naive"] > 0.8, res.p_recommend(0)["bias"] < 0.1
    (True, True)
    """
    start = time.perf_counter()
    spec = spec if spec is not None else ModelSpec("bias")
    threshold = check_thresholds([threshold], "threshold")[0]
    if not 0.0 < float(level) < 1.0:
        raise InputError(f"level must be strictly between 0 and 1, got {level!r}", parameter="level")
    seed = check_seed(seed)
    if isinstance(n_sim, bool) or not isinstance(n_sim, Integral) or not 1 <= n_sim <= MAX_N_SIM:
        raise InputError(f"n_sim must be an integer from 1 to {MAX_N_SIM}, got {n_sim!r}", parameter="n_sim")
    if not (float(tau) >= 0.0 and float(tau) < float("inf")):
        raise InputError(f"tau must be a finite SD >= 0, got {tau!r}", parameter="tau")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, Integral) or workers < 1):
        raise InputError(f"workers must be an integer >= 1, got {workers!r}", parameter="workers")
    if spec.has_bias and spec.bias_variant not in ("additive", "downweight"):
        raise InputError(
            f"simulate analyses the additive and downweight bias variants (batched exact engine), not {spec.bias_variant!r}",
            parameter="bias_variant",
        )
    scenarios = scenario_grid(true_hrs, bias_means, bias_sds)
    jobs = jobs_for(data, spec, scenarios, int(n_sim), tau=float(tau), seed=seed, threshold=threshold, level=float(level))
    run_chunk(jobs[0][:4] + (0, 1) + jobs[0][6:])  # refuse a design the batched engine cannot take, before any pool starts
    show = sys.stderr.isatty() if progress is None else progress
    parts = run_parallel(run_chunk, jobs, workers=workers, scheduler=scheduler, show=show,
                         desc=f"simulate ({len(scenarios)} scenarios x {n_sim})")
    recommend = [dict.fromkeys(ANALYSES, 0) for _ in scenarios]
    grid_end = dict.fromkeys(ANALYSES, 0)
    for part in parts:
        for a in ANALYSES:
            recommend[part.scenario][a] += part.recommend[a]
            grid_end[a] += part.grid_end[a]
    notes = [
        f"{a}: in {n} of {len(scenarios) * n_sim} simulated evidence bases the posterior of tau reached an "
        "end of the scenario's tau grid; they were re-analysed on their own adaptive grid (the exact engine)"
        for a, n in grid_end.items() if n
    ]
    notes += _reading_notes(scenarios, threshold)
    where = f"Dask scheduler {scheduler}" if scheduler else f"{workers or 'all'} worker(s)"
    return SimulationResult(
        threshold=threshold, level=float(level), scenarios=scenarios, n_sim=int(n_sim), recommend=recommend,
        tau=float(tau), seed=seed, spec=spec, k=data.k, seconds=time.perf_counter() - start,
        workers=where, notes=notes,
    )


def _reading_notes(scenarios: Sequence[Scenario], threshold: float) -> list[str]:
    """How to read P(recommend) at the scenarios' true HRs: the rule claims HR < T, so where the
    true HR is T itself it is at the boundary of that claim (a recommendation there is neither an
    error nor a detection; a calibrated rule recommends at most about 1 - level of the time), and
    only true HRs below T measure the power of the claim.

    Examples
    --------
    >>> _reading_notes([Scenario(1.0, 1.0, 0.1), Scenario(0.8, 1.0, 0.1)], 0.8)[0][:46]
    'true HR 0.8 is the threshold T itself: the rul'
    >>> _reading_notes([Scenario(0.7, 1.0, 0.1)], 0.8)
    []
    >>> _reading_notes([Scenario(1.0, 1.0, 0.1)], 0.8)
    ['no scenario has a true HR below T = 0.8: the table shows error rates, not power (e.g. --true-hr 1,0.64)']
    >>> _reading_notes([Scenario(0.9, 1.0, 0.1), Scenario(0.8, 1.0, 0.1)], 0.9)[0].endswith("of the time")
    True
    """
    hrs = sorted({sc.true_hr for sc in scenarios}, reverse=True)
    below = [h for h in hrs if h < threshold and not math.isclose(h, threshold, rel_tol=1e-12)]
    hint = ",".join(f"{h:g}" for h in [*hrs, round(threshold * 0.8, 2)])
    notes = []
    if any(math.isclose(h, threshold, rel_tol=1e-12) for h in hrs):
        notes.append(
            f"true HR {threshold:g} is the threshold T itself: the rule claims HR < {threshold:g}, so there it is at "
            "the boundary of its claim and a well-calibrated rule recommends at most about 1 - level of the time"
            + ("" if below else f"; the power of the claim needs a true HR below {threshold:g} (e.g. --true-hr {hint})")
        )
    elif not below:
        notes.append(f"no scenario has a true HR below T = {threshold:g}: the table shows error rates, not power "
                     f"(e.g. --true-hr {hint})")
    return notes
