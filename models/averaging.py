r"""Bayesian model averaging over effect, design bias and heterogeneity, with exact marginal
likelihoods.

The model space is the product of three yes/no questions (a component is *included* when its
parameter is free):

* effect: ``mu = 0`` or ``mu ~`` its prior (three-level bias: ``mu = mu_rct`` is a design
  mean, and its no-effect model is the three-level prior conditioned on ``mu_rct = 0``, kappa's
  prior included: the null whose Bayes factor is the Savage-Dickey ratio
  ``p(mu_rct = 0 | y) / p(mu_rct = 0)``, see :mod:`synthesis.models.exact`);
* design bias: ``delta = 0`` (all studies estimate ``mu``) or the bias model of
  :mod:`synthesis.models.spec` (variant ``additive``, ``downweight``, ``random`` or
  ``three-level``); this dimension exists only when the table has both randomised and
  non-randomised studies;
* heterogeneity: ``tau = 0`` (a common effect) or ``tau ~`` its prior.

With prior model probabilities ``p(M)`` and the exact marginal likelihoods
``p(y | M) = ∫ p(y | θ, M) p(θ | M) dθ`` of the exact engine (:mod:`synthesis.models.exact`),

.. math::

    p(M \mid y) = \frac{p(y \mid M)\, p(M)}{\sum_{M'} p(y \mid M')\, p(M')},

computed with the log-sum-exp trick (no overflow or underflow for any spread of log marginal
likelihoods). The prior model probabilities are products of per-component inclusion
probabilities (``effect=0.5,bias=0.5,heterogeneity=0.5`` by default: all models equally likely
a priori), the way RoBMA gives every component its prior weight (Bartoš F, Maier M, Quintana DS,
Wagenmakers E-J. 2022. Adjusting for publication bias in JASP and R: selection models, PET-PEESE,
and robust Bayesian meta-analysis. AMPPS 5(3), doi:10.1177/25152459221109259); with several
bias variants, the bias inclusion probability is split equally among them. The *inclusion Bayes
factor* of a component is its posterior inclusion odds over its prior inclusion odds (Hinne M,
Gronau QF, van den Bergh D, Wagenmakers E-J. 2020. A conceptual introduction to Bayesian model
averaging. AMPPS 3(2):200-215, doi:10.1177/2515245919898657; Gronau QF, Heck DW, Berkhout SW,
Haaf JM, Wagenmakers E-J. 2021. A primer on Bayesian model-averaged meta-analysis. AMPPS 4(3),
doi:10.1177/25152459211031256).

The model-averaged HR. In every model ``mu`` is the log HR of a *randomised* comparison: in the
bias models the non-randomised studies estimate ``mu + delta`` (or are down-weighted), and in the
models without a bias term all studies estimate ``mu``, randomised ones included. The averaged
posterior of the log HR is therefore the posterior of the effect in a randomised comparison,
averaged over the uncertainty about bias and heterogeneity:

.. math::

    p(\log \mathrm{HR} \mid y) = \sum_{M:\ \text{effect}} p(M \mid y)\, p(\mu \mid y, M)
        + P_0\, \delta_0, \qquad P_0 = \sum_{M:\ \mu = 0} p(M \mid y),

a mixture of each effect model's exact posterior of ``mu`` (itself a mixture of normals over the
tau grid) and a point mass (spike) at ``HR = 1`` carrying the posterior probability of the
no-effect models. Its CDF ``F`` jumps by ``P_0`` at 0; quantiles are the generalised inverse
``Q(p) = inf{x: F(x) >= p}``, so a quantile falls exactly on ``HR = 1`` whenever
``F(0-) < p <= F(0)``. ``P(HR < T) = F((log T)-)`` counts the spike only for ``T > 1`` (an HR of
exactly 1 is not below 1). The same summaries *conditional on an effect* average the effect
models only (renormalised; no spike).

Examples
--------
>>> import synthesis as syn
>>> result = average_models(syn.load_dataset("dnmbc_lrt"))
>>> len(result.models), result.components
(8, ('effect', 'bias', 'heterogeneity'))
>>> round(sum(m.posterior_prob for m in result.models), 12)
1.0
"""

from __future__ import annotations

import math
import re
import textwrap
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special

from synthesis.base import DEFAULT_THRESHOLDS, INTERVAL_PROB
from synthesis.errors import InputError, ModelError
from synthesis.models.display import fmt, html_block, html_table, small_sample_note
from synthesis.models.exact import (
    exact_posterior,
    exact_unsupported_reason,
    mixture_quantiles,
    without_pymc_advice,
)
from synthesis.models.spec import (
    BIAS_VARIANTS,
    ModelData,
    ModelSpec,
    StudySource,
    check_thresholds,
    threshold_key,
)

if TYPE_CHECKING:
    import pandas as pd

#: The yes/no questions of the model space, in the order models are listed.
COMPONENTS: tuple[str, ...] = ("effect", "bias", "heterogeneity")
#: Prior inclusion probability of each component unless the user gives another (all models
#: equally likely a priori).
DEFAULT_INCLUSION_PROB = 0.5
#: ``bias_variants=ALL_VARIANTS`` averages over every bias variant.
ALL_VARIANTS = "all"
#: Evidence categories of a Bayes factor BF >= 1 (lower bounds), after Jeffreys H. 1961. Theory
#: of Probability, 3rd ed., Appendix B, as labelled by Lee MD, Wagenmakers E-J. 2013. Bayesian
#: Cognitive Modeling, Table 7.1 (BF < 1: the same words for 1 / BF, as evidence against).
EVIDENCE_CATEGORIES: tuple[tuple[float, str], ...] = (
    (100.0, "extreme"),
    (30.0, "very strong"),
    (10.0, "strong"),
    (3.0, "moderate"),
    (1.0, "anecdotal"),
)
#: Mixture components lighter than this fraction of the heaviest are dropped from the averaged
#: posterior (their total mass is below 1e-14 of it).
_PRUNE = 1e-16
_PROBS = np.array([0.5, (1.0 - INTERVAL_PROB) / 2.0, (1.0 + INTERVAL_PROB) / 2.0])
_PRIOR_ITEM = re.compile(r"^\s*([A-Za-z_]+)\s*=\s*(\S+)\s*$")


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------
def parse_prior_prob(value: str | Mapping[str, float] | None) -> dict[str, float]:
    """Per-component prior inclusion probabilities, the defaults merged with the user's.

    Parameters
    ----------
    value
        ``"effect=0.5,bias=0.5,heterogeneity=0.5"`` (any subset of the components, comma
        separated), the same as a mapping, or ``None`` (every component 0.5). Each value is a
        probability in [0, 1]; 0 or 1 removes the models without / with the component (their
        inclusion Bayes factor is then undefined and reported as ``None``).

    Raises
    ------
    InputError
        Naming ``prior_prob``: an unknown component, a component given twice, a value that is not
        a number in [0, 1].

    Examples
    --------
    >>> parse_prior_prob("effect=0.25, heterogeneity=1")
    {'effect': 0.25, 'bias': 0.5, 'heterogeneity': 1.0}
    >>> parse_prior_prob({"bias": 2})
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: prior_prob: bias must be a probability in [0, 1], got 2
    """
    out = dict.fromkeys(COMPONENTS, DEFAULT_INCLUSION_PROB)
    if value is None:
        return out
    items: list[tuple[str, Any]]
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, str):
        items = []
        for part in value.split(","):
            m = _PRIOR_ITEM.match(part)
            if not m:
                raise InputError(
                    f"prior_prob: expected COMPONENT=PROBABILITY joined by ',' (e.g. "
                    f"effect=0.5,bias=0.5,heterogeneity=0.5), got {value!r}",
                    parameter="prior_prob",
                )
            items.append((m.group(1), m.group(2)))
    else:
        raise InputError(
            f"prior_prob must be a string or a mapping, got {type(value).__name__}", parameter="prior_prob"
        )
    seen: set[str] = set()
    for name, raw in items:
        if name not in COMPONENTS:
            raise InputError(
                f"prior_prob: unknown component {name!r}; components: {', '.join(COMPONENTS)}",
                parameter="prior_prob",
            )
        if name in seen:
            raise InputError(f"prior_prob: {name} given twice", parameter="prior_prob")
        seen.add(name)
        try:
            p = float(raw)
        except (TypeError, ValueError):
            p = math.nan
        if isinstance(raw, bool) or not (0.0 <= p <= 1.0):
            raise InputError(
                f"prior_prob: {name} must be a probability in [0, 1], got {raw!s}", parameter="prior_prob"
            )
        out[name] = p
    return out


def parse_bias_variants(value: str | Iterable[str] | None, default: str) -> tuple[str, ...]:
    """The bias variants to average over: ``None`` -> ``(default,)``, ``"all"`` -> every variant,
    or a comma-separated string / sequence of variant names.

    Examples
    --------
    >>> parse_bias_variants("all", "additive")
    ('additive', 'random', 'downweight', 'three-level')
    >>> parse_bias_variants(None, "downweight"), parse_bias_variants("additive,downweight", "additive")
    (('downweight',), ('additive', 'downweight'))
    """
    if value is None:
        return (default,)
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    if names == [ALL_VARIANTS]:
        return BIAS_VARIANTS
    bad = [n for n in names if n not in BIAS_VARIANTS]
    if bad or not names:
        raise InputError(
            f"bias_variants: unknown variant(s) {', '.join(map(repr, bad)) or 'none given'}; "
            f"choose {ALL_VARIANTS!r} or from {', '.join(BIAS_VARIANTS)}",
            parameter="bias_variants",
        )
    return tuple(dict.fromkeys(names))


def evidence_words(bf: float | None) -> str:
    """The conventional words for an inclusion Bayes factor (:data:`EVIDENCE_CATEGORIES`).

    Examples
    --------
    >>> evidence_words(4.2), evidence_words(1 / 40), evidence_words(1.0), evidence_words(None)
    ('moderate evidence for', 'very strong evidence against', 'no evidence either way', 'undefined')
    """
    if bf is None or math.isnan(bf) or bf < 0.0:
        return "undefined"
    if bf == 1.0:
        return "no evidence either way"
    ratio, side = (bf, "for") if bf > 1.0 else (1.0 / bf if bf > 0.0 else math.inf, "against")
    for bound, word in EVIDENCE_CATEGORIES:
        if ratio >= bound:
            return f"{word} evidence {side}"
    return f"anecdotal evidence {side}"  # pragma: no cover (ratio >= 1 always matches)


# --------------------------------------------------------------------------------------------
# Mixtures with a spike at log HR = 0
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpikeMixture:
    r"""The distribution ``(1 - spike) sum_g w_g N(m_g, s_g^2) + spike * delta_0`` of a log HR
    (``weights`` sum to one over the normal components; ``spike`` in [0, 1])."""

    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray
    spike: float = 0.0

    def cdf(self, x: np.ndarray | float, *, strict: bool = False) -> np.ndarray:
        """``F(x) = P(X <= x)``, or ``P(X < x)`` when ``strict`` (the spike at 0 counted only when
        it lies strictly below ``x``)."""
        x = np.asarray(x, dtype=float)
        cont = special.ndtr((x[..., None] - self.means) / self.sds) @ self.weights if self.weights.size else np.zeros(x.shape)
        at = (x > 0.0) if strict else (x >= 0.0)
        return (1.0 - self.spike) * cont + self.spike * at

    def ppf(self, q: Sequence[float] | np.ndarray) -> np.ndarray:
        """Quantiles ``Q(p) = inf{x: F(x) >= p}``: 0 when ``F(0-) < p <= F(0)``; otherwise the
        quantile of the normal part at the probability with the spike taken out.

        Examples
        --------
        Half the mass at 0, half N(1, 1): the median and everything up to F(0) = 0.5 + 0.5
        Phi(-1) fall on the spike.

        >>> mix = SpikeMixture(np.array([1.0]), np.array([1.0]), np.array([1.0]), spike=0.5)
        >>> np.round(mix.ppf([0.05, 0.5, 0.9]), 4).tolist()
        [-0.2816, 0.0, 1.8416]
        """
        p = np.atleast_1d(np.asarray(q, dtype=float))
        out = np.zeros(p.shape)
        c = 1.0 - self.spike
        if c <= 0.0 or self.weights.size == 0:
            return out
        below = float(self.cdf(0.0, strict=True)) if self.spike > 0.0 else math.nan  # F(0-)
        if self.spike > 0.0:
            lower = p <= below
            upper = p > below + self.spike
            target = np.where(lower, p / c, (p - self.spike) / c)
            solve = lower | upper
        else:
            target, solve = p, np.ones(p.shape, dtype=bool)
        if solve.any():
            t = np.clip(target[solve], 0.0, 1.0)
            out[solve] = mixture_quantiles(self.weights, self.means[:, None], self.sds[:, None], t)[0]
        return out


def _combine(parts: Sequence[tuple[float, Any]], spike: float) -> SpikeMixture:
    """One :class:`SpikeMixture` from (probability, NormalMixture) parts whose probabilities sum to
    ``1 - spike``."""
    if not parts:
        return SpikeMixture(np.zeros(0), np.zeros(0), np.ones(0), spike=1.0)
    w = np.concatenate([p * np.asarray(m.weights, dtype=float) for p, m in parts])
    mu = np.concatenate([np.asarray(m.means, dtype=float) for _, m in parts])
    sd = np.concatenate([np.asarray(m.sds, dtype=float) for _, m in parts])
    keep = w > _PRUNE * w.max()
    w = w[keep] / w[keep].sum()
    return SpikeMixture(w, mu[keep], sd[keep], spike=spike)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AveragedHR:
    """Posterior summary of a model-averaged HR: median, equal-tailed interval, P(HR < T) and the
    probability of the spike at HR = 1 that the summary includes (0 when conditional on an
    effect)."""

    median: float
    q025: float
    q975: float
    p_below: dict[str, float]
    spike: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "hr_median": self.median,
            "hr_q025": self.q025,
            "hr_q975": self.q975,
            "p_hr_below": dict(self.p_below),
            "spike_prob": self.spike,
        }


@dataclass(frozen=True)
class AveragedModel:
    """One model of the space: its components, exact log marginal likelihood, prior and posterior
    probability and its own HR summary (``HR = 1`` exactly for a no-effect model)."""

    effect: bool
    bias: bool
    heterogeneity: bool
    bias_variant: str | None
    log_marginal_likelihood: float
    prior_prob: float
    posterior_prob: float
    hr: AveragedHR
    spec: ModelSpec = field(repr=False, compare=False)

    @property
    def label(self) -> str:
        """``effect + bias (additive) + heterogeneity``; ``null`` when nothing is free."""
        parts = (["effect"] if self.effect else []) + (
            [f"bias ({self.bias_variant})"] if self.bias else []
        ) + (["heterogeneity"] if self.heterogeneity else [])
        return " + ".join(parts) or "null (mu = 0, tau = 0)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "effect": self.effect,
            "bias": self.bias,
            "heterogeneity": self.heterogeneity,
            "bias_variant": self.bias_variant,
            "log_marginal_likelihood": self.log_marginal_likelihood,
            "prior_prob": self.prior_prob,
            "posterior_prob": self.posterior_prob,
            "hr_median": self.hr.median,
            "hr_q025": self.hr.q025,
            "hr_q975": self.hr.q975,
            "p_hr_below": dict(self.hr.p_below),
        }


@dataclass(frozen=True)
class AveragingResult:
    """Everything ``synthesis average`` reports: the models, the inclusion Bayes factors and the
    model-averaged HR of a randomised comparison (with and without the no-effect spike)."""

    models: tuple[AveragedModel, ...]
    components: tuple[str, ...]
    prior_inclusion: dict[str, float]
    posterior_inclusion: dict[str, float]
    inclusion_bf: dict[str, float | None]
    log_inclusion_bf: dict[str, float | None]
    averaged: AveragedHR
    averaged_given_effect: AveragedHR | None
    thresholds: tuple[float, ...]
    priors: dict[str, str]
    k: int
    source: str
    notes: tuple[str, ...] = ()
    timing: dict[str, float] = field(default_factory=dict)
    interval_prob: float = INTERVAL_PROB
    #: False when the table has no randomised study: mu is then what the non-randomised studies
    #: estimate, design bias included
    randomised: bool = True

    @property
    def estimand(self) -> str:
        """What the averaged HR is: of a randomised comparison, or (no randomised study) as the
        non-randomised studies estimate it."""
        if self.randomised:
            return "HR of a randomised comparison"
        return "HR as the non-randomised studies estimate it (design bias included; no randomised study)"

    def evidence(self, name: str) -> str:
        """The evidence words for component ``name``; when its inclusion Bayes factor is undefined
        (prior inclusion probability 0 or 1), why it is not estimable."""
        if self.inclusion_bf.get(name) is None:
            return f"not estimable: the prior gives the {name} probability {self.prior_inclusion[name]:g}"
        return f"{evidence_words(self.inclusion_bf[name])} {name}"

    def __str__(self) -> str:
        return format_averaging(self)

    def _repr_html_(self) -> str:
        """The models table, the inclusion Bayes factors and the averaged HRs as HTML tables."""
        pct = f"{100 * self.interval_prob:g}%"
        models = html_table(
            ["model", "log ML", "prior", "posterior", f"HR given the model ({pct} CrI)"],
            [
                [m.label, f"{m.log_marginal_likelihood:.3f}", f"{m.prior_prob:.3f}",
                 _prob_text(m.posterior_prob), _hr_text(m.hr) if m.effect else "1 (fixed)"]
                for m in self.models
            ],
            caption="Models",
        )
        bfs = html_table(
            ["component", "inclusion BF", "P(included | data)", "evidence"],
            [
                [n, _bf_text(self.inclusion_bf[n]), _prob_text(self.posterior_inclusion[n]),
                 self.evidence(n)]
                for n in self.components
            ],
            caption="Inclusion Bayes factors (Jeffreys 1961; Lee & Wagenmakers 2013)",
        )
        rows = [("averaged over all models (spike at HR = 1 included)", self.averaged)]
        if self.averaged_given_effect is not None:
            rows.append(("conditional on an effect", self.averaged_given_effect))
        keys = list(self.averaged.p_below)
        hrs = html_table(
            ["", f"HR ({pct} CrI)", *[f"P(HR < {k})" for k in keys]],
            [[label, _hr_text(r), *[fmt(r.p_below[k]) for k in keys]] for label, r in rows],
            caption=f"Model-averaged {self.estimand}",
        )
        return html_block(
            f"Bayesian model averaging, {len(self.models)} models; k = {self.k} ({self.source})",
            [models, bfs, hrs],
            self.notes,
        )

    def to_json(self) -> dict[str, Any]:
        """The ``synthesis average --json`` document (non-finite numbers become ``None``)."""
        out = {
            "k": self.k,
            "source": self.source,
            "components": list(self.components),
            "priors": dict(self.priors),
            "prior_inclusion": dict(self.prior_inclusion),
            "posterior_inclusion": dict(self.posterior_inclusion),
            "models": [m.to_dict() for m in self.models],
            # every component's key, None where the component is not in the model space
            "inclusion_bf": {n: self.inclusion_bf.get(n) for n in COMPONENTS},
            "log_inclusion_bf": {n: self.log_inclusion_bf.get(n) for n in COMPONENTS},
            "averaged": self.averaged.to_dict(),
            "averaged_given_effect": (
                self.averaged_given_effect.to_dict() if self.averaged_given_effect is not None else None
            ),
            "interval": {"prob": self.interval_prob, "kind": "equal-tailed"},
            "estimand": f"{self.estimand} (exp(mu))",
            "notes": list(self.notes),
            "timing": dict(self.timing),
        }
        return _finite(out)

    def to_frame(self) -> pd.DataFrame:
        """One row per model: components, log marginal likelihood, prior and posterior
        probability and the model's HR.

        Examples
        --------
        >>> import synthesis as syn
        >>> frame = average_models(syn.load_dataset("dnmbc_lrt")).to_frame()
        >>> frame.shape, list(frame.columns[:4])
        ((8, 12), ['effect', 'bias', 'heterogeneity', 'bias_variant'])
        """
        import pandas as pd

        rows = []
        for m in self.models:
            d = m.to_dict()
            p = d.pop("p_hr_below")
            rows.append(d | {f"p_hr_below_{k}": v for k, v in p.items()})
        return pd.DataFrame.from_records(rows)


def _finite(obj: Any) -> Any:
    """Non-finite floats to ``None`` (strict JSON), recursively."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


# --------------------------------------------------------------------------------------------
# The computation
# --------------------------------------------------------------------------------------------
def has_bias_dimension(table: StudySource) -> bool:
    """Whether the table has both randomised and non-randomised studies (a design column with
    both kinds): only then is design bias a question the data can address."""
    if not table.has_design:
        return False
    nr = np.asarray(table.nonrandomised, dtype=bool)
    return bool(nr.any() and not nr.all())


def _model_spec(base: ModelSpec, effect: bool, bias: bool, heterogeneity: bool, variant: str | None) -> ModelSpec:
    return replace(
        base,
        model="bias" if bias else "re",
        bias_variant=variant or base.bias_variant,
        covariates=(),
        effect=effect,
        heterogeneity=heterogeneity,
    )


def _summary(mix: SpikeMixture, thresholds: Sequence[float]) -> AveragedHR:
    med, lo, hi = np.exp(mix.ppf(_PROBS))
    log_t = np.log(np.asarray(thresholds, dtype=float))
    below = np.atleast_1d(mix.cdf(log_t, strict=True))
    return AveragedHR(
        median=float(med),
        q025=float(lo),
        q975=float(hi),
        p_below={threshold_key(t): float(v) for t, v in zip(thresholds, below, strict=True)},
        spike=float(mix.spike),
    )


def _failure_message(failures: Sequence[tuple[str | None, str, str]], variants: Sequence[str]) -> str:
    """Which models could not be fitted exactly, and why (each reason once; no PyMC hint:
    averaging needs exact marginal likelihoods)."""
    reasons: dict[str, str] = {}
    for variant, model, reason in failures:
        what = f"bias variant {variant!r}" if variant is not None else f"model {model!r}"
        reasons.setdefault(what, without_pymc_advice(reason).split("; use engine=")[0])
    bad = {v for v, _, _ in failures if v is not None}
    ok = [v for v in variants if v not in bad]
    text = (
        "model averaging needs the exact marginal likelihood of every model, and the exact engine "
        "cannot fit these: "
        + "; ".join(r if r.startswith(w) else f"{w}: {r}" for w, r in reasons.items())
    )
    if bad and ok:
        text += f". The other variants can be averaged: bias_variants={','.join(ok)!r}"
    return text


def average_models(
    table: StudySource,
    spec: ModelSpec | None = None,
    *,
    prior_prob: str | Mapping[str, float] | None = None,
    bias_variants: str | Iterable[str] | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> AveragingResult:
    """Average the effect x design-bias x heterogeneity models with exact marginal likelihoods.

    Parameters
    ----------
    table
        A validated study table. Without both randomised and non-randomised studies the bias
        dimension is dropped (4 models).
    spec
        Supplies the priors (mu, delta, tau, kappa), the bias variant and ``alpha``; its ``model``
        is ignored and it may not have covariates. Default: the default priors, additive bias.
    prior_prob
        Prior inclusion probability per component (:func:`parse_prior_prob`); the prior
        probability of a model is the product over components, the bias part split equally
        among the bias variants.
    bias_variants
        ``None`` (the spec's variant), ``"all"`` (additive, random, downweight, three-level:
        2 x (1 + 4) x 2 = 20 models) or a list of variants. The three-level variant's no-effect
        model is its prior conditioned on mu_rct = 0 (the Savage-Dickey-consistent null,
        see above; a note says so). A variant the exact
        engine cannot fit in every cell of the model space (e.g. three-level on a table whose
        non-randomised studies have no design the model knows) is an error naming it and the
        variants that can be averaged (no silent omission).
    thresholds
        Report ``P(HR < T)`` for each T.

    Returns
    -------
    AveragingResult
        Prints as ``synthesis average``; ``to_json()`` is ``synthesis average --json``.

    Raises
    ------
    ModelError
        When a model of the space cannot be fitted exactly (the message lists which and why).

    Examples
    --------
    >>> import synthesis as syn
    >>> result = average_models(syn.load_dataset("dnmbc_lrt"), prior_prob="effect=0.5")
    >>> sorted(result.inclusion_bf)
    ['bias', 'effect', 'heterogeneity']
    >>> result.averaged.spike + sum(m.posterior_prob for m in result.models if m.effect)  # doctest: +ELLIPSIS
    1.0...
    """
    t0 = time.perf_counter()
    base = spec if spec is not None else ModelSpec()
    if base.covariates:
        raise InputError(
            "model averaging is over the effect, bias and heterogeneity terms only; it takes no "
            f"covariates (got {', '.join(base.covariates)})",
            parameter="covariates",
        )
    if not (isinstance(base.alpha, (int, float)) and 0.0 < base.alpha <= 1.0):  # NaN fails too
        raise InputError(f"alpha must be in (0, 1], got {base.alpha!r}", parameter="alpha")
    probs = parse_prior_prob(prior_prob)
    thresholds = check_thresholds(thresholds)
    with_bias = has_bias_dimension(table)
    nonrandomised = np.asarray(table.nonrandomised, dtype=bool) if table.has_design else np.zeros(int(table.k), bool)
    randomised = not (table.has_design and nonrandomised.all())
    variants = parse_bias_variants(bias_variants, base.bias_variant)
    notes: list[str] = []
    components = COMPONENTS if with_bias else ("effect", "heterogeneity")
    if not with_bias:
        why = (
            "the table has no design column" if not table.has_design
            else "all studies have the same design (randomised or not)"
        )
        notes.append(f"no design-bias dimension: {why}; 4 models (effect x heterogeneity)")
        if table.has_design and np.asarray(table.nonrandomised, dtype=bool).all():
            notes.append(
                "no randomised study: mu (and the averaged HR) is the effect the non-randomised "
                "studies estimate, design bias included"
            )
        if prior_prob is not None and "bias" in (
            prior_prob if isinstance(prior_prob, Mapping) else str(prior_prob)
        ):
            notes.append("the prior inclusion probability given for bias is not used")
    small = small_sample_note(
        int(table.k), int((~nonrandomised).sum()), "the Bayes factors and posterior model probabilities"
    )
    if small is not None:
        notes.append(small)
    # the model space, in a fixed order
    space: list[tuple[bool, bool, bool, str | None, float]] = []
    bias_options: list[tuple[bool, str | None, float]] = [(False, None, 1.0 - probs["bias"])] if with_bias else [(False, None, 1.0)]
    if with_bias:
        bias_options += [(True, v, probs["bias"] / len(variants)) for v in variants]
    for effect in (False, True):
        pe = probs["effect"] if effect else 1.0 - probs["effect"]
        for bias, variant, pb in bias_options:
            for het in (False, True):
                ph = probs["heterogeneity"] if het else 1.0 - probs["heterogeneity"]
                space.append((effect, bias, het, variant, pe * pb * ph))
    # fit every model exactly
    data_cache: dict[str, ModelData] = {}
    fitted: list[tuple[ModelSpec, Any]] = []
    failures: list[tuple[str | None, str, str]] = []
    for effect, bias, het, variant, _ in space:
        sp = _model_spec(base, effect, bias, het, variant)
        data = data_cache.get(sp.model)
        if data is None:
            data = data_cache[sp.model] = ModelData.from_table(table, sp)
        reason = exact_unsupported_reason(sp, data)
        if reason is None:
            try:
                post = exact_posterior(data, sp)
            except ModelError as exc:
                reason = str(exc)
        if reason is not None:
            failures.append((variant if bias else None, sp.model, reason))
            continue
        fitted.append((sp, post))
    if failures:
        raise ModelError(_failure_message(failures, variants))
    log_ml = np.array([float(post.log_marginal_likelihood) for _, post in fitted])
    prior = np.array([p for *_, p in space])
    with np.errstate(divide="ignore"):
        log_joint = log_ml + np.log(prior)
    log_total = special.logsumexp(log_joint)
    posterior = np.exp(log_joint - log_total)
    # inclusion: posterior odds / prior odds, in logs
    flags = {"effect": np.array([s[0] for s in space]), "bias": np.array([s[1] for s in space]),
             "heterogeneity": np.array([s[2] for s in space])}
    prior_incl, post_incl, bf, log_bf = {}, {}, {}, {}
    for name in components:
        inc = flags[name]
        prior_incl[name] = float(prior[inc].sum())
        post_incl[name] = float(posterior[inc].sum())
        if 0.0 < prior_incl[name] < 1.0:
            lb = (special.logsumexp(log_joint[inc]) - special.logsumexp(log_joint[~inc])) - (
                math.log(prior_incl[name]) - math.log1p(-prior_incl[name])
            )
            log_bf[name] = float(lb)
            bf[name] = float(math.exp(lb)) if lb < 709.0 else math.inf
        else:
            log_bf[name] = bf[name] = None
            notes.append(
                f"prior inclusion probability of {name} is {prior_incl[name]:g}: its inclusion Bayes "
                "factor is undefined"
            )
    # each model's own HR, then the averages
    mixtures: list[Any] = []
    models = []
    for (effect, bias, het, variant, _), (sp, post), lml, pp, qp in zip(
        space, fitted, log_ml, prior, posterior, strict=True
    ):
        mix = post.linear(post.contrast("mu")) if effect else None
        mixtures.append(mix)
        own = _combine([(1.0, mix)], 0.0) if effect else _combine([], 1.0)
        models.append(
            AveragedModel(
                effect=effect, bias=bias, heterogeneity=het, bias_variant=variant if bias else None,
                log_marginal_likelihood=float(lml), prior_prob=float(pp), posterior_prob=float(qp),
                hr=_summary(own, thresholds), spec=sp,
            )
        )
    eff = flags["effect"]
    spike = float(posterior[~eff].sum())
    parts = [(float(posterior[i]), mixtures[i]) for i in np.flatnonzero(eff) if posterior[i] > 0.0]
    averaged = _summary(_combine(parts, spike) if parts else _combine([], 1.0), thresholds)
    given = None
    if np.isfinite(log_joint[eff]).any():
        w = np.exp(log_joint[eff] - special.logsumexp(log_joint[eff]))  # stable even if P(effect | y) underflows
        cond = [(float(wi), mixtures[i]) for wi, i in zip(w, np.flatnonzero(eff), strict=True) if wi > 0.0]
        given = _summary(_combine(cond, 0.0), thresholds)
    priors = base.priors.labels(("mu", "tau") + (("delta",) if with_bias else ()))
    if with_bias and any(v in ("random", "three-level") for v in variants):
        priors["kappa"] = base.priors.kappa.label
    if with_bias and "three-level" in variants:
        notes.append(
            "three-level: its no-effect models condition the three-level prior on mu_rct = 0 (kappa's "
            "prior reweighted by the prior density of mu_rct at 0), so that their Bayes factor "
            "against the effect model is the Savage-Dickey ratio p(mu_rct = 0 | y) / p(mu_rct = 0)"
        )
    if with_bias and "downweight" in variants:
        notes.append(f"downweight: within-study variances of non-randomised studies divided by alpha = {base.alpha:g}")
    return AveragingResult(
        models=tuple(models),
        components=components,
        prior_inclusion=prior_incl,
        posterior_inclusion=post_incl,
        inclusion_bf=bf,
        log_inclusion_bf=log_bf,
        averaged=averaged,
        averaged_given_effect=given,
        thresholds=tuple(thresholds),
        priors=priors,
        k=int(table.k),
        source=str(getattr(table, "source", "")),
        notes=tuple(notes),
        timing={"total_s": time.perf_counter() - t0},
        randomised=randomised,
    )


# --------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------
def _bf_text(bf: float | None) -> str:
    if bf is None:
        return "undefined"
    if not math.isfinite(bf) or bf >= 1e4:
        return "> 10000"
    if bf < 1e-4:
        return "< 0.0001"
    return f"{bf:.3g}"


def _prob_text(p: float) -> str:
    """A probability with 4 decimals, ``< 0.0001`` / ``> 0.9999`` at the ends (never a bare 0 or 1
    for a probability that is not exactly 0 or 1)."""
    if 0.0 < p < 1e-4:
        return "< 0.0001"
    if 1.0 - 1e-4 < p < 1.0:
        return "> 0.9999"
    return f"{p:.4f}"


def _hr_text(r: AveragedHR) -> str:
    return f"{fmt(r.median)} ({fmt(r.q025)} to {fmt(r.q975)})"


def format_averaging(result: AveragingResult) -> str:
    """An averaging result as ``synthesis average`` prints it.

    Examples
    --------
    >>> import synthesis as syn
    >>> text = format_averaging(average_models(syn.load_dataset("dnmbc_lrt")))
    >>> text.splitlines()[0]  # doctest: +ELLIPSIS
    'Bayesian model averaging over 8 models (effect x bias x heterogeneity); k = 17 studies (...)'
    """
    pct = f"{100 * result.interval_prob:g}%"
    dims = " x ".join(result.components)
    lines = [f"Bayesian model averaging over {len(result.models)} models ({dims}); k = {result.k} studies ({result.source})"]
    lines.append(
        "Engine: exact (marginal likelihoods and posteriors by quadrature over tau, and kappa where "
        "the bias variant has it; no Monte Carlo error)"
    )
    lines.append("Priors of the free parameters:")
    for name, label in result.priors.items():
        lines.append(f"  {name:<6} {label}")
    lines.append(
        "Prior inclusion probabilities: "
        + ", ".join(f"{n} {result.prior_inclusion[n]:g}" for n in result.components)
    )
    lines.append("")
    width = max(len(m.label) for m in result.models)
    lines.append(f"  {'model':<{width}}  {'log ML':>10}  {'prior':>6}  {'posterior':>9}  HR given the model ({pct} CrI)")
    for m in result.models:
        hr = _hr_text(m.hr) if m.effect else "1 (fixed)"
        lines.append(
            f"  {m.label:<{width}}  {m.log_marginal_likelihood:>10.3f}  {m.prior_prob:>6.3f}  "
            f"{_prob_text(m.posterior_prob):>9}  {hr}"
        )
    lines.append("")
    lines.append(
        "Inclusion Bayes factors (posterior inclusion odds / prior inclusion odds; words after "
        "Jeffreys 1961 as labelled by Lee & Wagenmakers 2013):"
    )
    for n in result.components:
        lines.append(
            f"  {n:<14} BF = {_bf_text(result.inclusion_bf[n]):>9}   P(included | data) = "
            f"{_prob_text(result.posterior_inclusion[n]):>8}   {result.evidence(n)}"
        )
    lines.append("")
    lines.append(f"Model-averaged {result.estimand}: median ({pct} equal-tailed CrI); P(HR < T)")

    def row(label: str, r: AveragedHR) -> str:
        probs = ", ".join(f"P(HR < {k}) = {fmt(v)}" for k, v in r.p_below.items())
        return f"  {label:<28}{_hr_text(r)}; {probs}"

    lines.append(row("averaged over all models", result.averaged))
    if result.averaged_given_effect is not None:
        lines.append(row("conditional on an effect", result.averaged_given_effect))
    spike = result.averaged.spike
    if result.averaged_given_effect is not None:
        text = (
            f"The first row includes the spike at HR = 1 of the no-effect models (posterior probability "
            f"{_prob_text(spike)}): quantiles that fall on it print as 1.000, and P(HR < T) counts it only "
            "for T > 1. The second row averages the effect models only (no spike)."
        )
    else:
        why = f" (the prior gives the effect probability {result.prior_inclusion['effect']:g})" if result.prior_inclusion["effect"] == 0.0 else ""
        text = (
            f"No effect model has positive posterior probability{why}: the row is the spike at HR = 1 of the no-effect models, "
            "so every quantile is 1.000 and P(HR < T) is 1 for T > 1 and 0 otherwise."
        )
    lines += textwrap.wrap(text, width=100)
    for note in result.notes:
        lines.append(f"Note: {note}")
    lines.append(f"Timing: total {result.timing.get('total_s', math.nan):.2f} s")
    return "\n".join(lines)
