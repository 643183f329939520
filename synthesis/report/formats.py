"""How the report writes numbers, intervals, probabilities, priors and file names.

Every cell and sentence of the report goes through these functions, so a number reads the same
in the HTML page, the Markdown and the console. They format what a result holds; nothing here
computes a statistic.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from synthesis.base import INTERVAL_LABEL, PARAMETER_SYMBOLS
from synthesis.models.display import fmt

if TYPE_CHECKING:
    from synthesis.models.results import FitResult

#: How every credible interval in the report is described.
INTERVAL_KIND = f"{INTERVAL_LABEL} equal-tailed credible interval"


def num(x: Any, digits: int = 2) -> str:
    """``x`` to ``digits`` decimals; "n/a" for ``None``, NaN and infinities.

    Parameters
    ----------
    x
        A number, or anything else (returned as ``str(x)`` when it is not a number).
    digits
        Decimals to show.

    Returns
    -------
    str
        The text of the number.

    Examples
    --------
    >>> num(0.6912), num(None), num(float("nan")), num(1.23456, 3)
    ('0.69', 'n/a', 'n/a', '1.235')
    """
    if x is None:
        return fmt(None, missing="n/a")
    try:
        value = float(x)
    except (TypeError, ValueError):
        return str(x)
    return fmt(value, digits, missing="n/a")


def interval(median: Any, lower: Any, upper: Any) -> str:
    """A point estimate with its interval, as "0.69 [0.62, 0.79]".

    Examples
    --------
    >>> interval(0.6912, 0.62, 0.79), interval(0.7, None, 1.2)
    ('0.69 [0.62, 0.79]', '0.70 [n/a, 1.20]')
    """
    return f"{num(median)} [{num(lower)}, {num(upper)}]"


def prob(p: Any) -> str:
    """A posterior probability to two decimals; "< 0.01" / "> 0.99" rather than 0.00 / 1.00.

    Examples
    --------
    >>> prob(0.4213), prob(0.001), prob(0.9999)
    ('0.42', '< 0.01', '> 0.99')
    """
    try:
        value = float(p)
    except (TypeError, ValueError):
        return num(p)
    if 0.0 <= value < 0.005:
        return "< 0.01"
    if 0.995 < value <= 1.0:
        return "> 0.99"
    return num(value, 2)


def prob_relation(p: Any) -> str:
    """"= 0.42", "< 0.01" or "> 0.99" (to follow "P(HR < T)" in a sentence).

    Examples
    --------
    >>> prob_relation(0.4213), prob_relation(0.001), prob_relation(0.9999)
    ('= 0.42', '< 0.01', '> 0.99')
    """
    text = prob(p)
    return text if text[0] in "<>" else f"= {text}"


def model_prob(p: Any) -> str:
    """A posterior or prior model probability to three decimals; "< 0.001" / "> 0.999" rather
    than 0.000 / 1.000 for a probability that is not exactly 0 or 1.

    Examples
    --------
    >>> model_prob(0.72204), model_prob(3e-9), model_prob(0.99996), model_prob(0.125), model_prob(None)
    ('0.722', '< 0.001', '> 0.999', '0.125', 'n/a')
    """
    try:
        value = float(p)
    except (TypeError, ValueError):
        return num(p)
    if 0.0 < value < 0.0005:
        return "< 0.001"
    if 0.9995 < value < 1.0:
        return "> 0.999"
    return num(value, 3)


#: Bayes factors beyond these bounds are written as "> 10,000" / "< 1/10,000".
BF_DISPLAY_MAX = 1e4


def bayes_factor(bf: Any) -> str:
    """A Bayes factor to three significant digits; "> 10,000" and "< 1/10,000" beyond
    :data:`BF_DISPLAY_MAX`; "undefined" for ``None`` (a component whose prior inclusion
    probability is 0 or 1).

    Examples
    --------
    >>> bayes_factor(0.19214), bayes_factor(2.5e7), bayes_factor(float("inf")), bayes_factor(1e-6), bayes_factor(None)
    ('0.192', '> 10,000', '> 10,000', '< 1/10,000', 'undefined')
    """
    if bf is None:
        return "undefined"
    value = float(bf)
    if value != value:
        return "undefined"
    if value >= BF_DISPLAY_MAX:
        return f"> {BF_DISPLAY_MAX:,.0f}"
    if value <= 1.0 / BF_DISPLAY_MAX:
        return f"< 1/{BF_DISPLAY_MAX:,.0f}"
    return f"{value:.3g}"


def pvalue(p: Any) -> str:
    """A test's p-value: three decimals, or "< 0.001".

    Examples
    --------
    >>> pvalue(0.04321), pvalue(0.0004), pvalue(None)
    ('0.043', '< 0.001', 'n/a')
    """
    try:
        if 0 <= float(p) < 0.001:
            return "< 0.001"
    except (TypeError, ValueError):
        pass
    return num(p, 3)


def safe_name(key: str) -> str:
    """A model key as a file stem: anything but letters, digits, "_", "." and "-" becomes "_".

    Examples
    --------
    >>> safe_name("bias_metareg@bone_only_fraction=0.5"), safe_name("re all / rct")
    ('bias_metareg_bone_only_fraction_0.5', 're_all_rct')
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)


def priors_of(fit: FitResult | None) -> dict[str, str]:
    """Parameter name -> prior label of a fit's parameters (empty without a fit).

    Examples
    --------
    >>> import synthesis as syn
    >>> fit = syn.fit(syn.load_dataset("dnmbc_lrt"), model="bias", tau_prior="halfnormal(0.5)", engine="exact")
    >>> priors_of(fit)
    {'mu': 'normal(mean=0, sd=1)', 'tau': 'half-normal(scale=0.5)', 'delta': 'normal(mean=0, sd=0.5)'}
    >>> priors_of(None)
    {}
    """
    if fit is None:
        return {}
    return fit.spec.priors.labels(fit.spec.parameters)


def prior_lines(fit: FitResult | None) -> list[str]:
    """The priors of a fit as "τ ~ halfnormal(0.5)", one per parameter.

    Examples
    --------
    >>> import synthesis as syn
    >>> fit = syn.fit(syn.load_dataset("dnmbc_lrt"), model="bias", tau_prior="halfnormal(0.5)", engine="exact")
    >>> prior_lines(fit)
    ['μ ~ normal(mean=0, sd=1)', 'τ ~ half-normal(scale=0.5)', 'δ ~ normal(mean=0, sd=0.5)']
    """
    return [f"{PARAMETER_SYMBOLS.get(n, n)} ~ {label}" for n, label in priors_of(fit).items()]


def prior_sources(fit: FitResult | None) -> list[str]:
    """The citations of a fit's empirical priors, as "τ: Turner et al. 2015 ...".

    Examples
    --------
    >>> import synthesis as syn
    >>> table = syn.load_dataset("dnmbc_lrt")
    >>> fit = syn.fit(table, model="re", tau_prior="turner2015-acm-nonpharm", engine="exact")
    >>> prior_sources(fit)
    ['τ: Turner et al. 2015, Stat Med 34:984-998 (doi:10.1002/sim.6381), Table IV, ...']
    >>> prior_sources(syn.fit(table, model="re", tau_prior="halfnormal(0.5)", engine="exact"))
    []
    """
    if fit is None:
        return []
    specs = {n: getattr(fit.spec.priors, n) for n in fit.spec.parameters}
    return [f"{PARAMETER_SYMBOLS.get(n, n)}: {p.source}" for n, p in specs.items() if p.source]
