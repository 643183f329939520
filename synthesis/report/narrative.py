"""What the report says in sentences: the question, the plain-language answer, the
convergence problems, the warnings and the summary of each prior sweep.

Every sentence is built from numbers the :class:`~synthesis.analysis.AnalysisResult` holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from synthesis.analysis import ROW_MODEL
from synthesis.base import INTERVAL_LABEL
from synthesis.models.spec import threshold_key
from synthesis.report.formats import INTERVAL_KIND, num, prob, prob_relation

if TYPE_CHECKING:
    from synthesis.analysis import AnalysisResult, DecisionRow

#: How the plain-language answer introduces each model of the standard set (in this order).
ANSWER_PHRASES: dict[str, str] = {
    "re_rct": "Among the randomised trials alone (k = {k})",
    "bias": "Using all {k} studies with the non-randomised ones adjusted for design bias",
    "bias_metareg": "Adding {covariate} as a covariate (HR at its mean, k = {k})",
    "re_all": "Pooling all {k} studies as if every design estimated the same effect",
}
#: The closing sentence of the answer.
PRIOR_CAVEAT = (
    "Each result depends on the priors listed beside it in the decision table; the sensitivity "
    "section shows how it moves when the prior on the between-study SD τ changes."
)


def dedupe(items: Iterable[str]) -> list[str]:
    """``items`` without repeats, in their first order.

    Examples
    --------
    >>> dedupe(["low k", "wide CI", "low k"])
    ['low k', 'wide CI']
    """
    return list(dict.fromkeys(items))


def model_labels(result: AnalysisResult) -> dict[str, str]:
    """Model key -> label of every model of the analysis.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import standard_runs
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> result = SimpleNamespace(runs=standard_runs(syn.load_dataset("dnmbc_lrt")))
    >>> model_labels(result)
    {'re_all': 'Random effects, all studies', 're_rct': 'Random effects, RCTs only',
     'bias': 'Design-bias adjusted (additive)',
     'bias_metareg': 'Bias-adjusted meta-regression on bone_only_fraction'}
    """
    return {run.key: run.label for run in result.runs}


def convergence_problems(result: AnalysisResult) -> list[tuple[str, list[str]]]:
    """The fits whose diagnostics failed.

    Parameters
    ----------
    result
        The analysis.

    Returns
    -------
    list of (str, list of str)
        (model label, diagnostic messages) for every fit with ``diagnostics.converged`` false.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import standard_runs
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> fit = syn.fit(table, model="bias", tau_prior="halfnormal(0.5)", engine="exact")
    >>> fit.diagnostics is None  # the exact engine has no MCMC diagnostics to fail
    True
    >>> # a stand-in for an AnalysisResult: only the attributes this function reads
    >>> convergence_problems(SimpleNamespace(runs=standard_runs(table), fits={"bias": fit}))
    []
    """
    labels = model_labels(result)
    out = []
    for key, fit in result.fits.items():
        diag = fit.diagnostics
        if diag is not None and not diag.converged:
            out.append((labels.get(key, key), list(diag.messages) or ["diagnostics failed"]))
    return out


def warning_groups(result: AnalysisResult) -> tuple[list[str], list[str]]:
    """The warnings of an analysis in two groups.

    Returns
    -------
    tuple of (list of str, list of str)
        Data-validation warnings (from reading the input), and the other warnings that the
        convergence block does not already say.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> # a stand-in for an AnalysisResult: only the attributes this function reads
    >>> result = SimpleNamespace(table=table, runs=[], fits={},
    ...                          warnings=["no meta-regression", "no meta-regression"])
    >>> warning_groups(result)
    ([], ['no meta-regression'])
    """
    validation = dedupe(result.table.warnings)
    failed = [label for label, _ in convergence_problems(result)]
    other = [
        w
        for w in dedupe(result.warnings)
        if w not in validation and not any(w.startswith(f"{label}:") for label in failed)
    ]
    return validation, other


def question(result: AnalysisResult) -> str:
    """The question the report answers.

    ``provenance['question']`` when the analysis gives one; otherwise the bundled dataset's
    question, or a question about the studies of the input file.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> # stand-ins for an AnalysisResult: only the attributes this function reads
    >>> mine = SimpleNamespace(provenance=None, name="mine", source="mine.csv", thresholds=(0.8, 1.0))
    >>> print(question(mine))
    For the studies in mine.csv: what is the hazard ratio (HR) of a randomised comparison, and how
    probable is a benefit beyond each decision threshold (HR below 0.8, 1)?
    >>> question(SimpleNamespace(provenance={"question": "Does surgery help?"}))
    'Does surgery help?'
    """
    given = result.provenance.get("question") if result.provenance else None
    if given:
        return str(given)
    from synthesis.datasets import DATASETS

    ts = ", ".join(f"{t:g}" for t in result.thresholds)
    what = DATASETS[result.name][1] if result.name in DATASETS else f"For the studies in {result.source}"
    return (
        f"{what}: what is the hazard ratio (HR) of a randomised comparison, and how probable is "
        f"a benefit beyond each decision threshold (HR below {ts})?"
    )


def _answer_sentence(row: DecisionRow, covariate: str, first: bool) -> str:
    """One model's sentence of the answer (the first one names the interval in full)."""
    phrase = ANSWER_PHRASES.get(row.key, "{label} (k = {k})").format(k=row.k, covariate=covariate, label=row.label)
    probs = "; ".join(f"P(HR < {float(t):g}) {prob_relation(p)}" for t, p in row.p_hr_below.items())
    kind = INTERVAL_KIND if first else f"{INTERVAL_LABEL} CrI"
    s = f"{phrase}, the posterior median HR is {num(row.hr.median)} ({kind} {num(row.hr.q025)} to {num(row.hr.q975)})"
    s += f"; {probs}." if probs else "."
    if first and row.predictive_hr is not None:
        s += (
            f" The HR of a new randomised trial is predicted to lie between {num(row.predictive_hr.q025)} "
            f"and {num(row.predictive_hr.q975)} ({INTERVAL_LABEL} prediction interval)."
        )
    if row.converged is False:
        s += " This fit failed its convergence checks: treat it with caution."
    return s


def answer(result: AnalysisResult) -> str:
    """The plain-language answer: one sentence per headline model, built from the numbers.

    The headline models are the decision rows not evaluated at a covariate value, in the order
    of :data:`ANSWER_PHRASES`; the answer closes with :data:`PRIOR_CAVEAT`.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import decision_rows, frequentist_pools, standard_runs
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> run = standard_runs(table)[2]
    >>> fit = syn.fit(table, model="bias", tau_prior="halfnormal(0.5)", engine="exact")
    >>> rows = decision_rows(run, fit, frequentist_pools(table), [0.8, 1.0])
    >>> # a stand-in for an AnalysisResult: only the attributes this function reads
    >>> print(answer(SimpleNamespace(decision=SimpleNamespace(rows=rows), covariate="bone_only_fraction")))
    Using all 17 studies with the non-randomised ones adjusted for design bias, the posterior median
    HR is 0.91 (95% equal-tailed credible interval 0.78 to 1.06); P(HR < 0.8) = 0.05; P(HR < 1) =
    0.90. The HR of a new randomised trial is predicted to lie between 0.74 and 1.12 (95% prediction
    interval). Each result depends on the priors listed beside it in the decision table; ...
    """
    rows = [r for r in result.decision.rows if r.kind == ROW_MODEL]
    order = {key: i for i, key in enumerate(ANSWER_PHRASES)}
    rows.sort(key=lambda r: order.get(r.key, len(order)))
    if not rows:
        return "No model was fitted."
    sentences = [_answer_sentence(row, result.covariate, i == 0) for i, row in enumerate(rows)]
    return " ".join([*sentences, PRIOR_CAVEAT])


def sweep_summary(result: AnalysisResult, key: str) -> str:
    """One sentence on the sweep of model ``key``: the smallest and largest posterior median HR
    and P(HR < T) among its rows, the engines and the time it took.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> sweep = syn.sweep(syn.load_dataset("dnmbc_lrt"), model="bias", thresholds=[0.8],
    ...                   tau_priors=["halfnormal(0.1)", "halfcauchy(1)"], bias_priors=["normal(0, 0.5)"])
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> print(sweep_summary(SimpleNamespace(sweeps={"bias": sweep}), "bias"))
    Across 2 prior settings the posterior median HR ranges from 0.91 to 0.91; P(HR < 0.8) from 0.05
    to 0.05 (2 exact fits, ... s).
    """
    sweep = result.sweeps[key]
    if not sweep.rows:
        return "The sweep has no rows."
    meds = [r.hr_median for r in sweep.rows]
    parts = [
        f"Across {len(sweep.rows)} prior settings the posterior median HR ranges from "
        f"{num(min(meds))} to {num(max(meds))}"
    ]
    for t in sweep.thresholds:
        ps = [p for r in sweep.rows if (p := r.p_hr_below.get(threshold_key(t))) is not None]
        if ps:
            parts.append(f"P(HR < {t:g}) from {prob(min(ps))} to {prob(max(ps))}")
    engines = ", ".join(f"{n} {e}" for e, n in sweep.engines.items())
    return "; ".join(parts) + f" ({engines + ' fits, ' if engines else ''}{sweep.seconds:.2f} s)."
