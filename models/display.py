"""How results show themselves: the text the command line prints and HTML tables for notebooks.

Every result object's ``__str__`` is what its command prints, and its ``_repr_html_`` an HTML
table of the same numbers; the pieces they share live here, in the model layer, so that both
:class:`~synthesis.models.results.FitResult` and the pipeline's results (pooling,
meta-regression, bias diagnostics, sweeps, the main job) use one number format and one escaping
rule. Every text a user wrote (study names, file names, covariate names) is HTML-escaped.

Examples
--------
>>> from synthesis.models.display import fmt, html_table
>>> fmt(0.81234), fmt(None), fmt(float("nan"))
('0.812', 'NA', 'NA')
>>> print(html_table(["study", "HR"], [["<script>alert(1)</script>", fmt(0.8)]]))
<table class="synthesis">
<thead><tr><th>study</th><th>HR</th></tr></thead>
<tbody>
<tr><td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td>0.800</td></tr>
</tbody>
</table>
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from synthesis.models.spec import ModelSpec

if TYPE_CHECKING:
    from synthesis.models.results import FitResult, RatioSummary

#: How each parameter is named in the printed parameter table.
PARAMETER_LABELS: dict[str, str] = {
    "mu": "mu (log HR, RCT)",
    "tau": "tau (between-study SD)",
    "delta": "delta (design bias)",
    "kappa": "kappa",
    "tau_within": "tau_within (within SD)",
}
#: ... and in a multilevel model (rows grouped in clusters), where tau is between clusters.
MULTILEVEL_LABELS: dict[str, str] = {"tau": "tau (between-cluster SD)"}


def parameter_label(name: str, spec: ModelSpec) -> str:
    """The printed name of parameter ``name`` of a model ``spec``.

    Examples
    --------
    >>> parameter_label("tau", ModelSpec("re")), parameter_label("tau", ModelSpec("re", cluster="cohort"))
    ('tau (between-study SD)', 'tau (between-cluster SD)')
    """
    if spec.multilevel and name in MULTILEVEL_LABELS:
        return MULTILEVEL_LABELS[name]
    return PARAMETER_LABELS.get(name, name)


def fmt(x: float | None, digits: int = 3, *, missing: str = "NA") -> str:
    """A number with ``digits`` decimals, ``missing`` for ``None``, NaN and infinities (the one
    number format of printed results and of the report).

    Examples
    --------
    >>> fmt(1.23456), fmt(1234.5, 0), fmt(None), fmt(float("inf"), missing="n/a")
    ('1.235', '1234', 'NA', 'n/a')
    """
    return missing if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def ratio_text(r: RatioSummary) -> str:
    """``median (lower to upper)`` of a hazard-ratio summary.

    Examples
    --------
    >>> from synthesis.models.results import RatioSummary
    >>> ratio_text(RatioSummary(0.8, 0.6, 1.05))
    '0.800 (0.600 to 1.050)'
    """
    return f"{fmt(r.median)} ({fmt(r.q025)} to {fmt(r.q975)})"


def html_table(
    header: Sequence[Any], rows: Sequence[Sequence[Any]], *, caption: str | None = None
) -> str:
    """An HTML table with every cell escaped (cells are converted with ``str``).

    Examples
    --------
    >>> html_table(["a"], [["x & y"]], caption="<b>")  # doctest: +ELLIPSIS
    '<table class="synthesis">\\n<caption>&lt;b&gt;</caption>\\n<thead><tr><th>a</th>...'
    """
    lines = ['<table class="synthesis">']
    if caption:
        lines.append(f"<caption>{html.escape(str(caption))}</caption>")
    lines.append("<thead><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr></thead>")
    lines.append("<tbody>")
    for row in rows:
        lines.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    lines.append("</tbody>")
    lines.append("</table>")
    return "\n".join(lines)


def html_block(title: str, parts: Sequence[str], notes: Sequence[str] = ()) -> str:
    """A titled ``<div>`` of HTML parts (already escaped) and escaped notes.

    Examples
    --------
    >>> html_block("Pool <1>", ["<p>x</p>"], ["a < b"])
    '<div class="synthesis-result"><strong>Pool &lt;1&gt;</strong>\\n<p>x</p>\\n<p>note: a &lt; b</p></div>'
    """
    body = [f"<strong>{html.escape(title)}</strong>", *parts]
    body += [f"<p>note: {html.escape(n)}</p>" for n in notes]
    return '<div class="synthesis-result">' + "\n".join(body) + "</div>"


#: Fewer studies than this (or fewer randomised studies than :data:`SMALL_RANDOMISED`) and the
#: model comparison (Bayes factors, LOO, stacking) rests mostly on the priors: a note says so.
SMALL_K = 5
#: See :data:`SMALL_K`.
SMALL_RANDOMISED = 3


def small_sample_note(k: int, n_randomised: int | None, what: str) -> str | None:
    """A warning when ``k < SMALL_K`` or ``n_randomised < SMALL_RANDOMISED`` (``None`` otherwise):
    with so few studies ``what`` rests mostly on the priors.

    Examples
    --------
    >>> small_sample_note(2, 2, "the Bayes factors")
    'only k = 2 studies (2 randomised): the Bayes factors rest mostly on the priors, not on the data'
    >>> small_sample_note(17, 5, "the Bayes factors") is None
    True
    """
    if k >= SMALL_K and (n_randomised is None or n_randomised >= SMALL_RANDOMISED):
        return None
    rct = f" ({n_randomised} randomised)" if n_randomised is not None else ""
    return f"only k = {k} studies{rct}: {what} rest mostly on the priors, not on the data"


def fixed_parameters(spec: ModelSpec) -> list[str]:
    """How a spec's fixed parameters print: ``mu = 0 (no effect)``, ``tau = 0 (common effect)``.

    Examples
    --------
    >>> fixed_parameters(ModelSpec("re", effect=False, heterogeneity=False))
    ['mu = 0 (no effect)', 'tau = 0 (common effect)']
    """
    return ["mu = 0 (no effect)"] * (not spec.effect) + ["tau = 0 (common effect)"] * (not spec.heterogeneity)


def prior_labels(spec: ModelSpec) -> dict[str, str]:
    """The prior of each free parameter of ``spec``, labelled; ``{}`` when there is none
    (``mu`` and ``tau`` both fixed at 0).

    Examples
    --------
    >>> prior_labels(ModelSpec("re", effect=False, heterogeneity=False))
    {}
    >>> list(prior_labels(ModelSpec("re")))
    ['mu', 'tau']
    """
    return spec.priors.labels(spec.parameters) if spec.parameters else {}


def format_fit(result: FitResult) -> str:
    """A fit as ``synthesis fit`` prints it: every prior labelled, the kind of interval stated.

    Examples
    --------
    >>> import synthesis as syn
    >>> fit = syn.fit(syn.load_dataset("dnmbc_lrt"), model="re", engine="exact")
    >>> print(format_fit(fit).splitlines()[:2])  # doctest: +NORMALIZE_WHITESPACE
    ['Model: re; k = 17 studies (dnmbc_lrt (bundled dnmbc_lrt.csv))',
     'Engine: exact (quadrature over tau; no Monte Carlo error)']
    """
    spec = result.spec
    pct = f"{100 * result.interval_prob:g}%"
    lines = []
    what = spec.model
    if spec.has_bias:
        what += f", bias variant {spec.bias_variant}" + (f" (alpha = {spec.alpha:g})" if spec.bias_variant == "downweight" else "")
    if spec.has_covariates:
        what += f", covariates {', '.join(spec.covariates)}"
    what += "".join(f", {fixed}" for fixed in fixed_parameters(spec))
    lines.append(f"Model: {what}; k = {result.k} studies ({result.source})")
    if result.engine == "pymc":
        post = result.posterior
        settings = json.loads(post.attrs.get("sampler_settings", "{}")) if post is not None else {}
        sampler = post.attrs.get("sampler", "nutpie") if post is not None else "nutpie"
        lines.append(
            f"Engine: PyMC model, NUTS via {sampler}; {settings.get('chains')} chains x "
            f"{settings.get('draws')} draws after {settings.get('tune')} tuning steps, "
            f"target_accept {settings.get('target_accept')}, seed {result.seed}"
        )
    else:
        if not spec.heterogeneity:
            how = "quadrature over kappa" if "kappa" in result.parameters else "closed form"
            lines.append(f"Engine: exact ({how} (tau fixed at 0); no Monte Carlo error)")
        else:
            over = "tau and kappa" if "kappa" in result.parameters else "tau"
            lines.append(f"Engine: exact (quadrature over {over}; no Monte Carlo error)")
    labels = prior_labels(spec)
    lines.append("Priors:" + ("" if labels else " none (no free parameters)"))
    for name, label in labels.items():
        lines.append(f"  {name:<6} {label}")
    lines.append(f"Intervals: posterior median and {pct} equal-tailed credible interval.")
    lines.append("")
    header = f"  {'parameter':<24}{'median':>9}  {pct + ' CrI':<22}"
    mcmc = result.engine == "pymc"
    if mcmc:
        header += f"{'R-hat':>7}{'ESS bulk':>10}"
    lines.append(header)
    rows = [(n, s) for n, s in result.parameters.items()]
    rows += [(f"beta[{c}]", s) for c, s in result.beta.items()]
    for name, s in rows:
        row = f"  {parameter_label(name, result.spec):<24}{fmt(s.median):>9}  {fmt(s.q025) + ' to ' + fmt(s.q975):<22}"
        if mcmc:
            row += f"{fmt(s.r_hat):>7}{fmt(s.ess_bulk, 0):>10}"
        lines.append(row)
    lines.append("")
    probs = ", ".join(f"P(HR < {k}) = {fmt(v)}" for k, v in result.p_hr_below.items())
    lines.append(f"HR of a randomised comparison: {ratio_text(result.hr)}; {probs}")
    pprobs = ", ".join(f"P < {k}: {fmt(v)}" for k, v in result.p_predictive_hr_below.items())
    lines.append(f"Predictive HR of a new randomised study: {ratio_text(result.predictive_hr)}; {pprobs}")
    for label, r in result.hr_at.items():
        extra = ", ".join(f"P(HR < {k}) = {fmt(v)}" for k, v in (r.p_below or {}).items())
        lines.append(f"HR at {label}: {ratio_text(r)}" + (f"; {extra}" if extra else ""))
    if spec.has_covariates:
        lines.append(f"Imputed covariate values: {result.imputed}")
    lines.append("")
    lines.append(f"Studies: observed HR (95% CI) -> posterior HR ({pct} CrI)")
    width = max((len(s.study) for s in result.study_effects), default=5)
    for s in result.study_effects:
        lines.append(
            f"  {s.study:<{width}}  {(s.design or ''):<13} {fmt(s.observed_hr)} ({fmt(s.observed_lower)} to "
            f"{fmt(s.observed_upper)}) -> {ratio_text(s.hr)}"
        )
    d = result.diagnostics
    if d is not None:
        lines.append("")
        state = "converged" if d.converged else "NOT CONVERGED"
        lines.append(
            f"Diagnostics: {state}; divergences {d.divergences}, max R-hat {fmt(d.max_r_hat)}, "
            f"min bulk ESS {fmt(d.min_ess_bulk, 0)} (headline parameters)"
        )
        lines += [f"  - {m}" for m in d.messages]
    if result.log_marginal_likelihood is not None:
        lines.append(f"Log marginal likelihood log p(y | model): {result.log_marginal_likelihood:.4f}")
    for note in result.notes:
        lines.append(f"Note: {note}")
    t = result.timing
    lines.append(
        "Timing: " + ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in t.items() if isinstance(v, (int, float)))
    )
    return "\n".join(lines)


def fit_html(result: FitResult) -> str:
    """A fit as HTML: priors, the parameter table, the headline HRs and the study effects.

    Examples
    --------
    >>> import synthesis as syn
    >>> fit = syn.fit(syn.load_dataset("dnmbc_lrt"), model="re", engine="exact")
    >>> fit_html(fit)[:60]
    '<div class="synthesis-result"><strong>Model re, exact engine'
    """
    spec = result.spec
    pct = f"{100 * result.interval_prob:g}%"
    priors = html_table(["parameter", "prior"], list(prior_labels(spec).items()) or [["none", "no free parameters"]], caption="Priors")
    mcmc = result.engine == "pymc"
    head = ["parameter", "median", f"{pct} CrI"] + (["R-hat", "ESS bulk"] if mcmc else [])
    rows = []
    for name, s in [*result.parameters.items(), *((f"beta[{c}]", s) for c, s in result.beta.items())]:
        row = [parameter_label(name, spec), fmt(s.median), f"{fmt(s.q025)} to {fmt(s.q975)}"]
        if mcmc:
            row += [fmt(s.r_hat), fmt(s.ess_bulk, 0)]
        rows.append(row)
    params = html_table(head, rows, caption=f"Posterior medians and {pct} equal-tailed credible intervals (log scale)")
    hrs = [["HR of a randomised comparison", ratio_text(result.hr),
            ", ".join(f"P(HR < {k}) = {fmt(v)}" for k, v in result.p_hr_below.items())],
           ["Predictive HR of a new randomised study", ratio_text(result.predictive_hr),
            ", ".join(f"P(HR < {k}) = {fmt(v)}" for k, v in result.p_predictive_hr_below.items())]]
    hrs += [[f"HR at {label}", ratio_text(r), ", ".join(f"P(HR < {k}) = {fmt(v)}" for k, v in (r.p_below or {}).items())]
            for label, r in result.hr_at.items()]
    ratios = html_table(["quantity", f"HR ({pct} CrI)", "probabilities"], hrs)
    studies = html_table(
        ["study", "design", "observed HR (95% CI)", f"posterior HR ({pct} CrI)"],
        [[s.study, s.design or "", f"{fmt(s.observed_hr)} ({fmt(s.observed_lower)} to {fmt(s.observed_upper)})",
          ratio_text(s.hr)] for s in result.study_effects],
    )
    notes = list(result.notes)
    if result.diagnostics is not None:
        d = result.diagnostics
        notes.insert(0, ("converged" if d.converged else "NOT CONVERGED: ") + "; ".join(d.messages))
    if result.log_marginal_likelihood is not None:
        notes.append(f"log marginal likelihood log p(y | model) = {result.log_marginal_likelihood:.4f}")
    fixed = "".join(f", {f}" for f in fixed_parameters(spec))
    title = f"Model {spec.model}{fixed}, {result.engine} engine; k = {result.k} studies ({result.source})"
    return html_block(title, [priors, params, ratios, studies], notes)
