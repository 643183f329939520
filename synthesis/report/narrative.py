"""What the report says in sentences: the question, the plain-language answer, the
convergence problems, the warnings, the summary of each prior sweep and of the model choice
(model averaging, stacking).

Every sentence is built from numbers the :class:`~synthesis.analysis.AnalysisResult` holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from synthesis.analysis import ROW_MODEL
from synthesis.base import INTERVAL_LABEL, PARAMETER_SYMBOLS
from synthesis.models.spec import threshold_key
from synthesis.report.formats import INTERVAL_KIND, num, prob, prob_relation

if TYPE_CHECKING:
    from synthesis.analysis import AnalysisResult, DecisionRow
    from synthesis.models.averaging import AveragedHR, AveragingResult

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


def _probs_text(p_below: dict[str, float]) -> str:
    return "; ".join(f"P(HR < {float(t):g}) {prob_relation(p)}" for t, p in p_below.items())


def _hr_clause(r: AveragedHR, kind: str) -> str:
    return f"{num(r.median)} ({kind} {num(r.q025)} to {num(r.q975)}); {_probs_text(r.p_below)}"


def averaging_assumption(avg: AveragingResult) -> str:
    """What the model-averaged result rests on: the prior model probabilities, the bias model and
    the priors.

    Examples
    --------
    >>> import synthesis as syn
    >>> print(averaging_assumption(syn.average(syn.load_dataset("dnmbc_lrt"))))
    equal prior probabilities for the 8 models (each of effect, design bias and heterogeneity
    present or absent), the additive design-bias model (non-randomised studies estimate μ + δ) and
    the priors μ ~ normal(mean=0, sd=1), τ ~ half-normal(scale=0.5), δ ~ normal(mean=0, sd=0.5)
    """
    n = len(avg.models)
    names = {"effect": "effect", "bias": "design bias", "heterogeneity": "heterogeneity"}
    comps = [names.get(c, c) for c in avg.components]
    listed = ", ".join(comps[:-1]) + " and " + comps[-1] if len(comps) > 1 else comps[0]
    if len({round(m.prior_prob, 12) for m in avg.models}) == 1:
        probs = f"equal prior probabilities for the {n} models (each of {listed} present or absent)"
    else:
        probs = "prior inclusion probabilities " + ", ".join(
            f"{names.get(c, c)} {avg.prior_inclusion[c]:g}" for c in avg.components
        ) + f" over the {n} models"
    variants = sorted({m.bias_variant for m in avg.models if m.bias_variant})
    bias = ""
    if variants:
        what = {"additive": "non-randomised studies estimate μ + δ"}
        detail = f" ({what[variants[0]]})" if len(variants) == 1 and variants[0] in what else ""
        bias = f", the {' and '.join(variants)} design-bias model{'s' if len(variants) > 1 else ''}{detail}"
    priors = ", ".join(f"{PARAMETER_SYMBOLS.get(k, k)} ~ {v}" for k, v in avg.priors.items())
    return f"{probs}{bias} and the priors {priors}"


def mu_prior_clause(mu_prior: dict[float, AveragingResult]) -> str:
    """How the probability of no effect moves with the mu prior, from the narrowest to the widest
    prior of :attr:`~synthesis.analysis.ModelChoice.mu_prior` (empty without two priors).

    Examples
    --------
    >>> import synthesis as syn
    >>> from synthesis.analysis import mu_prior_sensitivity, standard_runs
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> spec = {run.key: run.spec for run in standard_runs(table)}["bias"]
    >>> print(mu_prior_clause(mu_prior_sensitivity(table, spec, scales=[0.2, 1.0, 2.0], thresholds=[0.8])))
    the posterior probability of no effect depends on the prior on μ: 0.55 under μ ~ normal(mean=0,
    sd=0.2), 0.91 under μ ~ normal(mean=0, sd=2)
    """
    if len(mu_prior) < 2:
        return ""
    lo, hi = mu_prior[min(mu_prior)], mu_prior[max(mu_prior)]
    return (
        "the posterior probability of no effect depends on the prior on μ: "
        f"{prob(lo.averaged.spike)} under μ ~ {lo.priors.get('mu', '')}, "
        f"{prob(hi.averaged.spike)} under μ ~ {hi.priors.get('mu', '')}"
    )


def averaged_answer(avg: AveragingResult, mu_prior: dict[float, AveragingResult] | None = None) -> str:
    """The model-averaged result in words (the answer's lead): the posterior probability of no
    effect, the HR given an effect, then P(HR < T) averaged over all models (the no-effect
    spike included), how the probability of no effect moves with the mu prior
    (:func:`mu_prior_clause`, when ``mu_prior`` holds two or more priors) and the assumption it
    rests on.

    The averaged median and interval are not in the lead: with most of the posterior mass on the
    no-effect spike they sit at HR = 1 and read as if harm and benefit were excluded.

    Examples
    --------
    >>> import synthesis as syn
    >>> print(averaged_answer(syn.average(syn.load_dataset("dnmbc_lrt"), thresholds=[0.8])))
    Averaged over 8 models, the posterior probability that there is no effect at all (HR exactly 1)
    is 0.84. Given an effect, the posterior median HR of a randomised comparison is 0.90 (95%
    equal-tailed credible interval 0.79 to 1.04); P(HR < 0.8) = 0.04. Averaged over all 8 models,
    the no-effect ones included, P(HR < 0.8) = 0.01. This rests on equal prior probabilities for the 8
    models ...
    """
    a = avg.averaged
    n = len(avg.models)
    g = avg.averaged_given_effect
    if a.spike > 0.0:
        s = (
            f"Averaged over {n} models, the posterior probability that there is no effect at all "
            f"(HR exactly 1) is {prob(a.spike)}."
        )
        if g is not None:
            s += f" Given an effect, the posterior median HR of a randomised comparison is {_hr_clause(g, INTERVAL_KIND)}."
        s += f" Averaged over all {n} models, the no-effect ones included, {_probs_text(a.p_below)}."
    else:
        s = (
            f"Averaged over {n} models, the posterior median HR of a randomised comparison is "
            f"{_hr_clause(a, INTERVAL_KIND)}."
        )
    clause = mu_prior_clause(mu_prior or {})
    if clause:
        s += f" In this, {clause}."
    return s + f" This rests on {averaging_assumption(avg)}."


def mu_prior_summary(result: AnalysisResult) -> str:
    """The sentence over the mu-prior table: why the effect Bayes factor moves with the prior
    (Lindley's paradox) and by how much here.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import ModelChoice, mu_prior_sensitivity, standard_runs
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> spec = {run.key: run.spec for run in standard_runs(table)}["bias"]
    >>> choice = ModelChoice(mu_prior=mu_prior_sensitivity(table, spec, scales=[0.2, 2.0], thresholds=[0.8]))
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> print(mu_prior_summary(SimpleNamespace(model_choice=choice)))
    The Bayes factor for an effect depends on how large an effect the prior on μ considers plausible
    (Lindley's paradox): a wider prior spreads its mass over large effects the data rule out and so
    penalises the effect model. From μ ~ normal(mean=0, sd=0.2) to μ ~ normal(mean=0, sd=2) the
    effect BF goes from 0.812 to 0.0963 and the posterior probability of no effect from 0.55 to 0.91,
    while the HR given an effect stays between 0.90 and 0.91.
    """
    from synthesis.report.formats import bayes_factor

    mp = result.model_choice.mu_prior
    s = (
        "The Bayes factor for an effect depends on how large an effect the prior on μ considers plausible "
        "(Lindley's paradox): a wider prior spreads its mass over large effects the data rule out and so "
        "penalises the effect model."
    )
    if len(mp) < 2:
        return s
    lo, hi = mp[min(mp)], mp[max(mp)]
    s += (
        f" From μ ~ {lo.priors.get('mu', '')} to μ ~ {hi.priors.get('mu', '')} the effect BF goes from "
        f"{bayes_factor(lo.inclusion_bf.get('effect'))} to {bayes_factor(hi.inclusion_bf.get('effect'))} and the "
        f"posterior probability of no effect from {prob(lo.averaged.spike)} to {prob(hi.averaged.spike)}"
    )
    given = [r.averaged_given_effect.median for r in mp.values() if r.averaged_given_effect is not None]
    if given:
        s += f", while the HR given an effect stays between {num(min(given))} and {num(max(given))}"
    return s + "."


def heterogeneity_sentence(result: AnalysisResult) -> str:
    """Where the evidence about heterogeneity comes from: τ is shared by both designs, so its
    inclusion Bayes factor weighs all studies, and the randomised trials' own I² (frequentist
    REML, from :attr:`~synthesis.analysis.AnalysisResult.pools`) may tell another story. Empty
    without the heterogeneity component, the design-bias dimension or a randomised-only pool.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import ModelChoice, frequentist_pools, model_data, standard_runs
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> rct, _ = model_data(table, {run.key: run for run in standard_runs(table)}["re_rct"])
    >>> # a stand-in for an AnalysisResult: only the attributes this function reads
    >>> result = SimpleNamespace(model_choice=ModelChoice(averaging=syn.average(table)),
    ...                          pools={"rct": frequentist_pools(rct)})
    >>> print(heterogeneity_sentence(result))
    The between-study SD τ is shared by the randomised and the non-randomised studies, so the
    heterogeneity Bayes factor (0.16, moderate evidence against heterogeneity) weighs all 17 studies
    together, of which the 12 non-randomised ones are the majority; it is not evidence about the 5
    randomised trials alone, whose own I² is 55% (frequentist REML).
    """
    from synthesis.models.averaging import evidence_words
    from synthesis.report.formats import bayes_factor

    choice = result.model_choice
    avg = choice.averaging if choice is not None else None
    pool = (getattr(result, "pools", {}) or {}).get("rct", {}).get("REML")
    if avg is None or pool is None or "heterogeneity" not in avg.components or "bias" not in avg.components:
        return ""
    bf = avg.inclusion_bf.get("heterogeneity")
    if bf is None:
        return ""
    k_rct = int(pool.k)
    k_nr = int(avg.k) - k_rct
    return (
        f"The between-study SD τ is shared by the randomised and the non-randomised studies, so the "
        f"heterogeneity Bayes factor ({bayes_factor(bf)}, {evidence_words(bf)} heterogeneity) weighs all "
        f"{avg.k} studies together, of which the {k_nr} non-randomised ones are the majority"
        if k_nr > k_rct else
        f"The between-study SD τ is shared by the randomised and the non-randomised studies, so the "
        f"heterogeneity Bayes factor ({bayes_factor(bf)}, {evidence_words(bf)} heterogeneity) weighs all "
        f"{avg.k} studies together"
    ) + (
        f"; it is not evidence about the {k_rct} randomised trials alone, whose own I² is "
        f"{pool.i2:.0f}% (frequentist REML)."
    )


def averaging_summary(avg: AveragingResult) -> str:
    """The model averaging in two sentences: how the models were weighed, the most probable
    model and what the inclusion Bayes factors say.

    Examples
    --------
    >>> import synthesis as syn
    >>> print(averaging_summary(syn.average(syn.load_dataset("dnmbc_lrt"))))
    Each model's exact marginal likelihood (exact engine: quadrature over τ, no Monte Carlo error)
    and its prior probability give its posterior probability. The most probable model is 'bias
    (additive)' (posterior probability 0.722). The data give moderate evidence against an effect (BF
    0.192), extreme evidence for design bias (BF > 10,000) and moderate evidence against
    heterogeneity (BF 0.16).
    """
    from synthesis.models.averaging import evidence_words
    from synthesis.report.formats import bayes_factor, model_prob

    best = max(avg.models, key=lambda m: m.posterior_prob)
    nouns = {"effect": "an effect", "bias": "design bias", "heterogeneity": "heterogeneity"}
    words = [
        f"{evidence_words(avg.inclusion_bf[c])} {nouns.get(c, c)} (BF {bayes_factor(avg.inclusion_bf[c])})"
        for c in avg.components
        if avg.inclusion_bf[c] is not None
    ]
    s = (
        "Each model's exact marginal likelihood (exact engine: quadrature over τ, no Monte Carlo error) "
        "and its prior probability give its posterior probability. The most probable model is "
        f"'{best.label}' (posterior probability {model_prob(best.posterior_prob)})."
    )
    if words:
        s += " The data give " + (", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]) + "."
    return s


def stacking_summary(result: AnalysisResult) -> str:
    """Which bias variants were stacked and how, their weights and the stacked HR.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import ModelChoice
    >>> cmp = syn.compare(syn.load_dataset("dnmbc_lrt"), engine="exact", bias_variants=["additive", "downweight"], thresholds=[0.8])
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> print(stacking_summary(SimpleNamespace(model_choice=ModelChoice(stacking=cmp))))
    Stacked: the additive and downweight bias variants, each fitted by the exact engine and scored
    by exact leave-one-study-out cross-validation (LOO: the predictive density of each study given
    the others); stacking weights (Yao et al. 2018, doi:10.1214/17-BA1091) additive 0.981,
    downweight 0.019. The stacked posterior median HR is 0.90 (95% CrI 0.75 to 1.06); P(HR < 0.8) =
    0.07. Stacking weights are not model probabilities: they are the mixture weights that best
    predict each left-out study, so a weight of 0 means a variant adds no predictive value beside the
    others, not that it is refuted. Settings: the downweight variant divides the non-randomised
    studies' variances by alpha = 0.5.
    """
    choice = result.model_choice
    cmp = choice.stacking
    names = [v.variant for v in cmp.variants]
    how = {(v.fit.engine, v.loo.method) for v in cmp.variants}
    scored = (
        "each fitted by the exact engine and scored by exact leave-one-study-out cross-validation "
        "(LOO: the predictive density of each study given the others)"
        if how == {("exact", "exact")}
        else "scored by leave-one-study-out cross-validation (" + ", ".join(f"{v.variant}: {v.fit.engine} fit, {v.loo.method} LOO" for v in cmp.variants) + ")"
    )
    weights = ", ".join(f"{v.variant} {v.comparison.weight:.3f}" for v in cmp.variants)
    st = cmp.stacked
    s = (
        f"Stacked: the {_and(names)} bias variants, {scored}; stacking weights (Yao et al. 2018, "
        f"doi:10.1214/17-BA1091) {weights}. The stacked posterior median HR is {num(st.median)} "
        f"({INTERVAL_LABEL} CrI {num(st.q025)} to {num(st.q975)}); {_probs_text(st.p_below or {})}."
    )
    if choice.unstacked:
        s += " Not stacked: " + "; ".join(f"{v} ({why})" for v, why in choice.unstacked.items()) + "."
    s += (
        " Stacking weights are not model probabilities: they are the mixture weights that best predict "
        "each left-out study, so a weight of 0 means a variant adds no predictive value beside the others, "
        "not that it is refuted."
    )
    settings = []
    if "downweight" in names:
        settings.append(f"the downweight variant divides the non-randomised studies' variances by alpha = {cmp.spec.alpha:g}")
    kappa_variants = [n for n in names if n in ("random", "three-level")]
    if kappa_variants:
        settings.append(f"the {_and(kappa_variants)} variant{'s' if len(kappa_variants) > 1 else ''} use"
                        f"{'' if len(kappa_variants) > 1 else 's'} κ ~ {cmp.spec.priors.kappa.label}")
    if settings:
        s += " Settings: " + "; ".join(settings) + "."
    return s


def _and(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def answer(result: AnalysisResult) -> str:
    """The plain-language answer: the model-averaged result first (with the assumption it rests
    on), then one sentence per headline model, built from the numbers.

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
    >>> print(answer(SimpleNamespace(decision=SimpleNamespace(rows=rows), covariate="bone_only_fraction",
    ...                              model_choice=None)))
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
    choice = getattr(result, "model_choice", None)
    lead = (
        [averaged_answer(choice.averaging, getattr(choice, "mu_prior", None))]
        if choice is not None and choice.averaging is not None else []
    )
    sentences = [_answer_sentence(row, result.covariate, i == 0) for i, row in enumerate(rows)]
    if lead and sentences:
        sentences[0] = "Model by model: " + sentences[0][0].lower() + sentences[0][1:]
    return " ".join([*lead, *sentences, PRIOR_CAVEAT])


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
