"""The cells of the report's tables as text: the decision table, each prior sweep, the
frequentist pools, the meta-regression, the publication-bias diagnostics, the priors, and the
model choice (posterior model probabilities, inclusion Bayes factors, stacking, power-scaling).

Each builder returns a :data:`Table`, a header and rows of strings, that
:mod:`synthesis.report.document` writes as HTML and Markdown. The cells show numbers the result
objects hold, formatted by :mod:`synthesis.report.formats`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from synthesis.analysis import COMBINED_ROWS, ROW_AVERAGED
from synthesis.base import INTERVAL_LABEL, PARAMETER_SYMBOLS
from synthesis.models.spec import threshold_key
from synthesis.report.formats import (
    bayes_factor,
    interval,
    model_prob,
    num,
    prior_lines,
    prior_sources,
    prob,
    pvalue,
)
from synthesis.report.narrative import model_labels

if TYPE_CHECKING:
    from synthesis.analysis import AnalysisResult, DecisionRow

#: A table as text: (header, rows of cells).
Table = tuple[list[str], list[list[str]]]
#: How the decision table shows a fit's convergence (``DecisionRow.converged``).
CONVERGED_TEXT: dict[bool | None, str] = {True: "yes", False: "NO", None: "n/a (exact engine)"}
#: Per-study tables of report.html and report.md list at most this many studies (the most
#: precise, by their standard error); the full tables are CSV files of the report folder, and above
#: it the fits' per-study posterior summaries go to CSV files rather than into their JSON.
REPORT_MAX_STUDY_ROWS = 500
#: The report folder's full leave-one-out table, written when the pages list only part of it.
LEAVE_ONE_OUT_CSV = "leave_one_out.csv"
#: The report folder's table of the model averaging under each mu prior (:func:`mu_prior_cells`).
MU_PRIOR_CSV = "mu_prior_sensitivity.csv"


def as_dict(obj: Any) -> dict[str, Any]:
    """A result object as a dict: its ``to_dict()``, a dataclass's fields, or a mapping.

    Examples
    --------
    >>> import synthesis as syn
    >>> as_dict(syn.pool(syn.load_dataset("dnmbc_lrt"), method="REML"))["k"]
    17
    >>> as_dict({"a": 1}), as_dict(None), as_dict(3)
    ({'a': 1}, {}, {'value': '3'})
    """
    if obj is None:
        return {}
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    return {"value": str(obj)}


def threshold_keys(thresholds: Sequence[float]) -> list[str]:
    """The keys of ``p_hr_below`` for ``thresholds`` ("0.8", "1.0").

    Examples
    --------
    >>> threshold_keys([0.8, 1])
    ['0.8', '1.0']
    """
    return [threshold_key(t) for t in thresholds]


def frequentist_methods(rows: Sequence[DecisionRow]) -> list[str]:
    """The frequentist methods of the decision rows, in first-seen order.

    Examples
    --------
    >>> import synthesis as syn
    >>> from synthesis.analysis import decision_rows, frequentist_pools, standard_runs
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> fit = syn.fit(table, model="bias", tau_prior="halfnormal(0.5)", engine="exact")
    >>> rows = decision_rows(standard_runs(table)[2], fit, frequentist_pools(table), [1.0])
    >>> frequentist_methods(rows)
    ['dl', 'reml', 'hksj']
    """
    return list(dict.fromkeys(m for r in rows for m in r.frequentist))


def decision_cells(result: AnalysisResult) -> Table:
    """The decision table: one row per model (and covariate value), priors as "; "-joined
    labels in column 1.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import decision_rows, frequentist_pools, standard_runs
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> fit = syn.fit(table, model="bias", tau_prior="halfnormal(0.5)", engine="exact")
    >>> rows = decision_rows(standard_runs(table)[2], fit, frequentist_pools(table), [1.0])
    >>> # a stand-in for an AnalysisResult: only the attributes this function reads
    >>> result = SimpleNamespace(decision=SimpleNamespace(rows=rows), thresholds=(1.0,), fits={"bias": fit})
    >>> header, body = decision_cells(result)
    >>> dict(zip(header, body[0]))
    {'Model': 'Design-bias adjusted (additive)',
     'Priors': 'μ ~ normal(mean=0, sd=1); τ ~ half-normal(scale=0.5); δ ~ normal(mean=0, sd=0.5)',
     'Engine': 'exact', 'k': '17', 'Posterior HR [95% CrI]': '0.91 [0.78, 1.06]',
     'Predictive HR, new RCT [95% PrI]': '0.91 [0.74, 1.12]', 'P(HR < 1)': '0.90',
     'DL HR [95% CI]': '0.68 [...]', 'REML HR [95% CI]': '0.69 [0.63, 0.77]',
     'HKSJ HR [95% CI]': '0.69 [...]', 'Converged': 'n/a (exact engine)',
     'Note': 'frequentist columns: unadjusted (no bias term)'}
    """
    rows = result.decision.rows
    methods = frequentist_methods(rows)
    keys = threshold_keys(result.thresholds)
    header = ["Model", "Priors", "Engine", "k", f"Posterior HR [{INTERVAL_LABEL} CrI]",
              f"Predictive HR, new RCT [{INTERVAL_LABEL} PrI]"]
    header += [f"P(HR < {float(t):g})" for t in keys]
    header += [f"{m.upper()} HR [{INTERVAL_LABEL} CI]" for m in methods]
    header += ["Converged", "Note"]
    body = []
    for r in rows:
        pred = r.predictive_hr
        cells = [
            r.label,
            "; ".join(row_prior_lines(result, r)),
            r.engine,
            str(r.k),
            interval(r.hr.median, r.hr.q025, r.hr.q975),
            interval(pred.median, pred.q025, pred.q975) if pred is not None else "n/a",
        ]
        cells += [prob(r.p_hr_below.get(t)) for t in keys]
        cells += [interval(*r.frequentist[m]) if m in r.frequentist else "n/a" for m in methods]
        cells += [CONVERGED_TEXT[r.converged], r.note]
        body.append(cells)
    return header, body


def row_prior_lines(result: AnalysisResult, row: DecisionRow) -> list[str]:
    """The priors of a decision row: its fit's, or for a combined row (model-averaged, stacked)
    the priors shared by the models it combines.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import ModelChoice, model_choice_rows
    >>> choice = ModelChoice(averaging=syn.average(syn.load_dataset("dnmbc_lrt"), thresholds=[0.8]))
    >>> row = model_choice_rows(choice, [0.8])[0]
    >>> # a stand-in for an AnalysisResult: only the attributes this function reads
    >>> row_prior_lines(SimpleNamespace(model_choice=choice, fits={}), row)
    ['μ ~ normal(mean=0, sd=1)', 'τ ~ half-normal(scale=0.5)', 'δ ~ normal(mean=0, sd=0.5)']
    """
    if row.kind not in COMBINED_ROWS:
        return prior_lines(result.fits.get(row.model_key))
    choice = result.model_choice
    if choice is None:
        return []
    if row.kind == ROW_AVERAGED and choice.averaging is not None:
        labels = dict(choice.averaging.priors)
    elif choice.stacking is not None:
        spec = choice.stacking.spec
        labels = spec.priors.labels(spec.parameters)
    else:
        return []
    return [f"{PARAMETER_SYMBOLS.get(n, n)} ~ {label}" for n, label in labels.items()]


def averaging_cells(result: AnalysisResult) -> Table:
    """The models of the model averaging: components, exact log marginal likelihood, prior and
    posterior probability, and the HR given the model.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import ModelChoice
    >>> choice = ModelChoice(averaging=syn.average(syn.load_dataset("dnmbc_lrt"), thresholds=[0.8]))
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> header, body = averaging_cells(SimpleNamespace(model_choice=choice))
    >>> header
    ['Model', 'log marginal likelihood', 'Prior probability', 'Posterior probability',
     'HR given the model [95% CrI]', 'P(HR < 0.8) given the model']
    >>> body[2], body[6]
    (['bias (additive)', '4.364', '0.125', '0.722', '1 (no effect)', '0'],
     ['effect + bias (additive)', '2.723', '0.125', '0.140', '0.90 [0.79, 1.04]', '0.04'])
    """
    avg = result.model_choice.averaging
    keys = threshold_keys(avg.thresholds)
    header = ["Model", "log marginal likelihood", "Prior probability", "Posterior probability",
              f"HR given the model [{INTERVAL_LABEL} CrI]"]
    header += [f"P(HR < {float(t):g}) given the model" for t in keys]
    body = []
    for m in avg.models:
        hr = interval(m.hr.median, m.hr.q025, m.hr.q975) if m.effect else "1 (no effect)"
        probs = [prob(m.hr.p_below[t]) if m.effect else "0" for t in keys]
        body.append([m.label, num(m.log_marginal_likelihood, 3), model_prob(m.prior_prob),
                     model_prob(m.posterior_prob), hr, *probs])
    return header, body


def inclusion_records(result: AnalysisResult) -> list[dict[str, Any]]:
    """One record per component of the model averaging (the rows of inclusion_bf.csv): prior
    and posterior inclusion probability, inclusion Bayes factor (and its log) and its words.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import ModelChoice
    >>> choice = ModelChoice(averaging=syn.average(syn.load_dataset("dnmbc_lrt")))
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> [(r["component"], r["evidence"]) for r in inclusion_records(SimpleNamespace(model_choice=choice))]
    [('effect', 'moderate evidence against'), ('bias', 'extreme evidence for'),
     ('heterogeneity', 'moderate evidence against')]
    """
    from synthesis.models.averaging import evidence_words

    avg = result.model_choice.averaging
    return [
        {
            "component": n,
            "prior_inclusion": avg.prior_inclusion[n],
            "posterior_inclusion": avg.posterior_inclusion[n],
            "inclusion_bf": avg.inclusion_bf[n],
            "log_inclusion_bf": avg.log_inclusion_bf[n],
            "evidence": evidence_words(avg.inclusion_bf[n]),
        }
        for n in avg.components
    ]


def inclusion_cells(result: AnalysisResult) -> Table:
    """The inclusion Bayes factors of the model averaging with their evidence words.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import ModelChoice
    >>> choice = ModelChoice(averaging=syn.average(syn.load_dataset("dnmbc_lrt")))
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> header, body = inclusion_cells(SimpleNamespace(model_choice=choice))
    >>> header, body[0]
    (['Component', 'Prior inclusion probability', 'Posterior inclusion probability', 'Inclusion BF',
      'Evidence'], ['effect', '0.500', '0.161', '0.192', 'moderate evidence against an effect'])
    """
    nouns = {"effect": "an effect", "bias": "design bias", "heterogeneity": "heterogeneity"}
    header = ["Component", "Prior inclusion probability", "Posterior inclusion probability", "Inclusion BF", "Evidence"]
    body = [
        [r["component"], model_prob(r["prior_inclusion"]), model_prob(r["posterior_inclusion"]),
         bayes_factor(r["inclusion_bf"]),
         f"{r['evidence']} {nouns.get(r['component'], r['component'])}" if r["inclusion_bf"] is not None else r["evidence"]]
        for r in inclusion_records(result)
    ]
    return header, body


def mu_prior_cells(result: AnalysisResult) -> Table:
    """The model averaging under each mu prior normal(0, s): the effect inclusion Bayes factor
    with its evidence words, the posterior probability of no effect, the averaged P(HR < T) at
    the tipping threshold T and the HR given an effect.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import ModelChoice, mu_prior_sensitivity, standard_runs
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> spec = {run.key: run.spec for run in standard_runs(table)}["bias"]
    >>> choice = ModelChoice(mu_prior=mu_prior_sensitivity(table, spec, scales=[0.2, 2.0], thresholds=[0.8]))
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> header, body = mu_prior_cells(SimpleNamespace(model_choice=choice))
    >>> header
    ['μ prior', 'Effect BF', 'Evidence', 'P(no effect)', 'Averaged P(HR < 0.8)', 'HR given an effect [95% CrI]']
    >>> body
    [['normal(mean=0, sd=0.2)', '0.812', 'anecdotal evidence against an effect', '0.55', '0.01', '0.91 [0.80, 1.04]'],
     ['normal(mean=0, sd=2)', '0.0963', 'strong evidence against an effect', '0.91', '< 0.01', '0.90 [0.79, 1.04]']]
    """
    from synthesis.analysis import mu_prior_records

    choice = result.model_choice
    key = threshold_key(choice.threshold)
    header = ["μ prior", "Effect BF", "Evidence", "P(no effect)", f"Averaged P(HR < {float(key):g})",
              f"HR given an effect [{INTERVAL_LABEL} CrI]"]
    body = [
        [r["mu_prior"], bayes_factor(r["effect_bf"]),
         f"{r['evidence']} an effect" if r["effect_bf"] is not None else r["evidence"],
         prob(r["p_no_effect"]), prob(r.get(f"p_hr_below_{key}")),
         interval(r["hr_given_effect"], r["hr_given_effect_q025"], r["hr_given_effect_q975"])
         if r["hr_given_effect"] is not None else "n/a"]
        for r in mu_prior_records(choice.mu_prior)
    ]
    return header, body


def stacking_cells(result: AnalysisResult) -> Table:
    """The bias variants compared by leave-one-study-out cross-validation: elpd_loo with its SE,
    the difference to the best variant, the stacking weight, the HR and P(HR < T); a last row
    for the stacked posterior.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import ModelChoice
    >>> cmp = syn.compare(syn.load_dataset("dnmbc_lrt"), engine="exact", bias_variants=["additive", "downweight"], thresholds=[0.8])
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> header, body = stacking_cells(SimpleNamespace(model_choice=ModelChoice(stacking=cmp)))
    >>> header
    ['Bias variant', 'Engine (LOO)', 'elpd_loo (SE)', 'Difference to best (SE)', 'Stacking weight',
     'Posterior HR [95% CrI]', 'P(HR < 0.8)']
    >>> body[0], body[-1]
    (['additive', 'exact (exact)', '5.39 (3.54)', '0.00 (0.00)', '0.981', '0.91 [0.78, 1.06]', '0.05'],
     ['stacked', '', '', '', '1.000', '0.90 [0.75, 1.06]', '0.07'])
    """
    cmp = result.model_choice.stacking
    keys = threshold_keys(cmp.thresholds)
    header = ["Bias variant", "Engine (LOO)", "elpd_loo (SE)", "Difference to best (SE)", "Stacking weight",
              f"Posterior HR [{INTERVAL_LABEL} CrI]"] + [f"P(HR < {float(t):g})" for t in keys]
    body = []
    for v in cmp.variants:
        flag = "" if v.converged else " NOT CONVERGED"
        body.append([
            v.variant + flag, f"{v.fit.engine} ({v.loo.method})", f"{num(v.loo.elpd)} ({num(v.loo.se)})",
            f"{num(v.comparison.elpd_diff)} ({num(v.comparison.dse)})", num(v.comparison.weight, 3),
            interval(v.fit.hr.median, v.fit.hr.q025, v.fit.hr.q975),
            *[prob(v.fit.p_hr_below.get(t)) for t in keys],
        ])
    s = cmp.stacked
    body.append(["stacked", "", "", "", num(1.0, 3), interval(s.median, s.q025, s.q975),
                 *[prob((s.p_below or {}).get(t)) for t in keys]])
    return header, body


def powerscale_cells(result: AnalysisResult) -> Table:
    """The power-scaling sensitivities (Kallioinen et al. 2024) of each quantity to the prior, the
    likelihood and the non-randomised studies' likelihood, with the diagnosis.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import ModelChoice
    >>> ps = syn.psense(syn.load_dataset("dnmbc_lrt"), thresholds=[0.8])
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> header, body = powerscale_cells(SimpleNamespace(model_choice=ModelChoice(powerscale=ps)))
    >>> header
    ['Quantity', 'Prior', 'Likelihood', "Non-randomised studies' likelihood", 'Diagnosis']
    >>> body[1]
    ['τ', '0.008', '0.265', '0.085', 'no concern; moves with the non-randomised studies']
    """
    ps = result.model_choice.powerscale
    header = ["Quantity", "Prior", "Likelihood", "Non-randomised studies' likelihood", "Diagnosis"]
    body = [
        [PARAMETER_SYMBOLS.get(r.parameter, r.parameter), num(r.prior, 3), num(r.likelihood, 3),
         num(r.nonrandomised_likelihood, 3), r.diagnosis]
        for r in ps.rows
    ]
    return header, body


def sweep_cells(result: AnalysisResult, key: str) -> Table:
    """Every fit of the prior sweep of model ``key``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> sweep = syn.sweep(syn.load_dataset("dnmbc_lrt"), model="bias", thresholds=[0.8],
    ...                   tau_priors=["halfnormal(0.1)", "halfcauchy(1)"], bias_priors=["normal(0, 0.5)"])
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> header, body = sweep_cells(SimpleNamespace(sweeps={"bias": sweep}), "bias")
    >>> header
    ['τ prior', 'δ prior', 'Posterior HR [95% CrI]', 'P(HR < 0.8)', 'Posterior median τ', 'Engine']
    >>> body[0]
    ['half-normal(scale=0.1)', 'normal(mean=0, sd=0.5)', '0.91 [0.78, 1.05]', '0.05', '0.039', 'exact']
    """
    sweep = result.sweeps[key]
    has_bias = any(r.bias_prior is not None for r in sweep.rows)
    keys = threshold_keys(sweep.thresholds)
    header = ["τ prior"] + (["δ prior"] if has_bias else []) + [f"Posterior HR [{INTERVAL_LABEL} CrI]"]
    header += [f"P(HR < {float(t):g})" for t in keys] + ["Posterior median τ", "Engine"]
    body = []
    for r in sweep.rows:
        cells = [r.tau_prior] + ([r.bias_prior or "n/a"] if has_bias else [])
        cells.append(interval(r.hr_median, r.hr_q025, r.hr_q975))
        cells += [prob(r.p_hr_below.get(t)) for t in keys]
        cells += [num(r.tau_median, 3), r.engine]
        body.append(cells)
    return header, body


def pool_records(result: AnalysisResult) -> list[dict[str, Any]]:
    """One flat record per (subset, method) of the frequentist pools (the rows of pools.csv).

    List values are joined with "; " and a result's own ``method`` field is renamed
    ``estimator``, so that ``method`` names the pool.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> pooled = syn.pool(syn.load_dataset("dnmbc_lrt"), method="REML")
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> [record] = pool_records(SimpleNamespace(pools={"all": {"REML": pooled}}))
    >>> record["subset"], record["method"], record["estimator"], record["k"], round(record["hr"], 3)
    ('all', 'REML', 'REML', 17, 0.693)
    """
    records = []
    for subset, methods in result.pools.items():
        for name, pooled in (methods or {}).items():
            rec: dict[str, Any] = {"subset": subset, "method": name}
            for k, v in as_dict(pooled).items():
                if isinstance(v, (list, tuple)):
                    v = "; ".join(str(x) for x in v)
                rec["estimator" if k == "method" else k] = v
            records.append(rec)
    return records


def pool_cells(result: AnalysisResult) -> Table:
    """The frequentist pools: HR with CI, prediction interval, τ², I² and Q.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> pooled = syn.pool(syn.load_dataset("dnmbc_lrt"), method="REML")
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> header, body = pool_cells(SimpleNamespace(pools={"all": {"REML": pooled}}))
    >>> dict(zip(header, body[0]))
    {'Studies': 'all', 'Method': 'REML', 'k': '17', 'HR [95% CI]': '0.69 [0.63, 0.77]',
     '95% prediction interval': '0.50 to 0.96', 'τ²': '0.0245', 'I² (%)': '81.0', 'Q (p)': '45.66 (< 0.001)'}
    """
    header = ["Studies", "Method", "k", f"HR [{INTERVAL_LABEL} CI]", f"{INTERVAL_LABEL} prediction interval",
              "τ²", "I² (%)", "Q (p)"]
    body = [
        [
            str(rec["subset"]),
            str(rec["method"]),
            str(rec.get("k", "n/a")),
            interval(rec.get("hr"), rec.get("hr_ci_lower"), rec.get("hr_ci_upper")),
            f"{num(rec.get('pi_hr_lower'))} to {num(rec.get('pi_hr_upper'))}",
            num(rec.get("tau2"), 4),
            num(rec.get("i2"), 1),
            f"{num(rec.get('q'))} ({pvalue(rec.get('q_pvalue'))})",
        ]
        for rec in pool_records(result)
    ]
    return header, body


def _pubbias_lines(d: Mapping[str, Any]) -> list[str]:
    """One sentence per publication-bias test present in ``d`` (a ``BiasResult`` as a dict)."""
    lines = []
    method = d.get("method", "")
    if d.get("egger"):
        e = d["egger"]
        lines.append(f"Egger's regression test ({method} model): z = {num(e.get('z'))}, p = {pvalue(e.get('p'))}.")
    if d.get("begg"):
        b = d["begg"]
        lines.append(f"Begg and Mazumdar's rank correlation: Kendall's τ = {num(b.get('tau'))}, "
                     f"p = {pvalue(b.get('p'))}.")
    tf = d.get("trimfill") or {}
    if tf.get("k0") is not None:
        lines.append(
            f"Trim and fill (L0, {method}): {tf['k0']} stud{'y' if tf['k0'] == 1 else 'ies'} filled on the "
            f"{tf.get('side')} side; adjusted HR {interval(tf.get('hr'), tf.get('hr_ci_lower'), tf.get('hr_ci_upper'))}"
            f" ({INTERVAL_LABEL} CI)."
        )
    fsn = d.get("failsafe_n") or {}
    if fsn.get("rosenthal") is not None:
        lines.append(f"Rosenthal's fail-safe N: {fsn['rosenthal']} (combined p = {pvalue(fsn.get('p'))}).")
    return lines


def pubbias_blocks(result: AnalysisResult) -> tuple[list[str], Table | None, list[str]]:
    """The publication-bias diagnostics.

    Returns
    -------
    tuple
        (one sentence per test, the leave-one-out table or ``None``, notes).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> # a stand-in for an AnalysisResult: only the attributes this function reads
    >>> result = SimpleNamespace(pubbias=syn.bias_diagnostics(table), table=table)
    >>> lines, (header, body), notes = pubbias_blocks(result)
    >>> lines[0]
    "Egger's regression test (DL model): z = 1.90, p = 0.057."
    >>> header, body[0], notes
    (['Study left out', 'HR [95% CI]', 'τ²', 'I² (%)'], ['Badwe 2015 (TATA)', '0.66 [0.62, 0.70]', '0.0060', '51.9'], [])
    >>> pubbias_blocks(SimpleNamespace(pubbias=None))
    ([], None, ['no publication-bias diagnostics in this analysis'])
    """
    d = as_dict(result.pubbias)
    if not d:
        return [], None, ["no publication-bias diagnostics in this analysis"]
    loo = d.get("leave_one_out") or []
    notes = [str(n) for n in d.get("notes") or []]
    if len(loo) > REPORT_MAX_STUDY_ROWS:
        notes.append(
            f"the leave-one-out table lists the {REPORT_MAX_STUDY_ROWS} most precise of {len(loo):,} "
            f"studies (smallest standard error); every study is in {LEAVE_ONE_OUT_CSV}"
        )
        loo = [loo[i] for i in most_precise(result, [str(r.get("study")) for r in loo])]
    table = None
    if loo:
        header = ["Study left out", f"HR [{INTERVAL_LABEL} CI]", "τ²", "I² (%)"]
        body = [
            [str(r.get("study")), interval(r.get("hr"), r.get("hr_ci_lower"), r.get("hr_ci_upper")),
             num(r.get("tau2"), 4), num(r.get("i2"), 1)]
            for r in loo
        ]
        table = (header, body)
    return _pubbias_lines(d), table, notes


def most_precise(result: AnalysisResult, studies: Sequence[str]) -> list[int]:
    """Positions in ``studies`` of the :data:`REPORT_MAX_STUDY_ROWS` studies with the smallest
    standard error in the analysis table (ties in their given order, studies missing from the table
    last), in their given order.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import pandas as pd
    >>> import synthesis as syn
    >>> frame = pd.DataFrame({"study": ["A", "B", "C"], "hr": [0.8, 0.7, 1.1],
    ...                       "ci_lower": [0.6, 0.5, 0.8], "ci_upper": [1.07, 0.98, 1.51]})
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> result = SimpleNamespace(table=syn.load_studies(frame))
    >>> most_precise(result, ["C", "not in the table", "A"])  # all fit under REPORT_MAX_STUDY_ROWS
    [0, 1, 2]
    """
    frame = result.table.frame
    se = dict(zip(frame["study"].astype(str), frame["se"].astype(float), strict=True))
    order = sorted(range(len(studies)), key=lambda i: se.get(studies[i], float("inf")))
    return sorted(order[:REPORT_MAX_STUDY_ROWS])


def metareg_blocks(result: AnalysisResult) -> tuple[list[str], Table | None]:
    """The frequentist meta-regression.

    Returns
    -------
    tuple
        (a summary sentence followed by the notes, the coefficient table or ``None``); empty
        lines without a meta-regression.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> fitted = syn.metareg(syn.load_dataset("dnmbc_lrt"), covariates=["bone_only_fraction"])
    >>> # a stand-in for an AnalysisResult: only the attribute this function reads
    >>> lines, (header, body) = metareg_blocks(SimpleNamespace(metareg=fitted))
    >>> print(lines[0])
    Frequentist mixed-effects meta-regression (REML; k = 3, 14 studies without the covariate dropped):
    residual τ² = 0.1442, QM p = 0.463, R² = 0.0%.
    >>> body
    [['intercept', '0.813', '-1.545 to 3.171', '0.499'], ['bone_only_fraction', '-2.325', '-8.541 to 3.890', '0.463']]
    >>> metareg_blocks(SimpleNamespace(metareg=None))
    ([], None)
    """
    d = as_dict(result.metareg)
    if not d:
        return [], None
    dropped = f", {d.get('dropped')} studies without the covariate dropped" if d.get("dropped") else ""
    lines = [
        f"Frequentist mixed-effects meta-regression ({d.get('method', '')}"
        f"{', Knapp-Hartung' if d.get('hksj') else ''}; k = {d.get('k')}{dropped}): "
        f"residual τ² = {num(d.get('tau2'), 4)}, QM p = {pvalue(d.get('qm_pvalue'))}, "
        f"R² = {num(d.get('r2'), 1)}%."
    ]
    coefs = d.get("coefficients") or {}
    header = ["Coefficient", "Estimate (log HR)", f"{INTERVAL_LABEL} CI", "p"]
    body = [
        [name, num(c.get("estimate"), 3), f"{num(c.get('ci_lower'), 3)} to {num(c.get('ci_upper'), 3)}",
         pvalue(c.get("pvalue"))]
        for name, c in coefs.items()
    ]
    lines += [str(n) for n in d.get("notes") or []]
    return lines, (header, body) if body else None


def prior_cells(result: AnalysisResult) -> Table:
    """The priors of every model with the sources of its empirical priors.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import synthesis as syn
    >>> from synthesis.analysis import standard_runs
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> fit = syn.fit(table, model="bias", tau_prior="halfnormal(0.5)", engine="exact")
    >>> # a stand-in for an AnalysisResult: only the attributes this function reads
    >>> prior_cells(SimpleNamespace(runs=standard_runs(table), fits={"bias": fit}))
    (['Model', 'Priors', 'Sources of empirical priors'],
     [['Design-bias adjusted (additive)',
       'μ ~ normal(mean=0, sd=1); τ ~ half-normal(scale=0.5); δ ~ normal(mean=0, sd=0.5)', 'none']])
    """
    labels = model_labels(result)
    body = [
        [labels.get(k, k), "; ".join(prior_lines(f)), "; ".join(prior_sources(f)) or "none"]
        for k, f in result.fits.items()
    ]
    return ["Model", "Priors", "Sources of empirical priors"], body
