"""What to fit: the model specification and the numeric data a model is built from.

Models (theta_i is the true log HR of study i, y_i ~ N(theta_i, se_i^2)):

* ``re``:           theta_i = mu + u_i,                         u_i ~ N(0, tau^2)
* ``bias``:         theta_i = mu + delta * nr_i + u_i           (nr_i = 1 for non-randomised)
* ``metareg``:      theta_i = mu + sum_j beta_j (x_ij - c_j) + u_i
* ``bias-metareg``: both terms.

Two switches restrict any of these (engine ``exact`` only): ``effect=False`` fixes mu = 0 (HR = 1
in a randomised comparison: the null model of a Bayes factor for an effect; bias and beta terms
stay), ``heterogeneity=False`` fixes tau = 0 (the common-effect model, u_i = 0).

``mu`` is the effect in a randomised comparison (at the covariate centres c_j for the
meta-regressions): the estimand the decision outputs are about.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from synthesis.base import SEED_MAX
from synthesis.errors import InputError, ModelError
from synthesis.models.multilevel import check_rho, cluster_labels
from synthesis.models.priors import (
    DEFAULT_PRIORS,
    PriorConfig,
    PriorSpec,
    parse_prior,
    resolve_priors,
)

MODELS: tuple[str, ...] = ("re", "bias", "metareg", "bias-metareg")
BIAS_VARIANTS: tuple[str, ...] = ("additive", "random", "downweight", "three-level")
#: nutpie's mass-matrix adaptation. "diag" is robust on the dnMBC data. "low_rank"
#: (a diagonal plus a low-rank correction learnt from draws and gradients) captures the strong
#: mu-delta-beta posterior correlations: on the k = 60 bias-metareg benchmark, 4 x 1000 draws,
#: the bulk ESS of mu rose from ~850-910 to ~6900-7400, delta 890-940 -> 7350-7600, beta
#: 1700-1800 -> 6800-7400 (tau unchanged, ~1250), for 0.7 s more sampling; but on the dnMBC bias
#: model at target_accept 0.95 it left one chain stuck (bulk ESS 7) in 1 of 6 seeds and
#: diverged more often than "diag" (0.99 fixed both in 6 of 6 seeds).
#: "auto" (the default) therefore samples with "low_rank" first and, only if that run fails its
#: diagnostics, samples again with "diag" from the same compiled model (a note says so).
DEFAULT_ADAPTATION = "auto"
ADAPTATIONS: tuple[str, ...] = ("low_rank", "diag")
#: Adaptations a user may ask for: nutpie's two, or "auto" (see above).
ADAPTATION_CHOICES: tuple[str, ...] = ("auto", *ADAPTATIONS)
#: The default prior of tau_within (multilevel models): the default prior of tau.
DEFAULT_TAU_WITHIN_PRIOR = DEFAULT_PRIORS["tau"]


class StudySource(Protocol):
    """What the model layer reads from a validated study table.

    :class:`synthesis.studies.StudyTable` is one; the model layer names only this protocol, so it
    never imports the pipeline.
    """

    source: str
    has_design: bool

    @property
    def k(self) -> int: ...
    @property
    def studies(self) -> list[str]: ...
    @property
    def y(self) -> np.ndarray: ...
    @property
    def se(self) -> np.ndarray: ...
    @property
    def nonrandomised(self) -> np.ndarray: ...
    @property
    def designs(self) -> list[str | None]: ...
    def covariate_matrix(self, names: Iterable[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class ModelSpec:
    """A model choice: which terms, which bias variant, which covariates, which priors."""

    model: str = "re"
    bias_variant: str = "additive"
    alpha: float = 0.5
    covariates: tuple[str, ...] = ()
    priors: PriorConfig = field(default_factory=resolve_priors)
    #: False: mu fixed at 0 (HR = 1 for a randomised comparison; the null model).
    effect: bool = True
    #: False: tau fixed at 0 (a common-effect model: no between-study heterogeneity). In a
    #: multilevel model (``cluster`` set) both tau and tau_within are fixed at 0.
    heterogeneity: bool = True
    #: Multilevel model (issue #13): the column whose value groups rows into clusters (cohorts);
    #: theta_ij = mu (+ terms) + u_i + e_ij, u_i ~ N(0, tau^2) between clusters, e_ij ~
    #: N(0, tau_within^2) within (:mod:`synthesis.models.multilevel`). ``None``: one level.
    cluster: str | None = None
    #: Within-cluster sampling correlation of a multilevel model, in [0, 1) (metafor's vcalc).
    rho: float = 0.0
    #: Prior of tau_within (``None``: the default tau prior, :data:`DEFAULT_TAU_WITHIN_PRIOR`).
    tau_within_prior: PriorSpec | None = None

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise InputError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.bias_variant not in BIAS_VARIANTS:
            raise InputError(
                f"unknown bias variant {self.bias_variant!r}; choose one of {', '.join(BIAS_VARIANTS)}"
            )
        if self.has_bias and self.bias_variant == "downweight" and not 0.0 < self.alpha <= 1.0:
            raise InputError(f"alpha must be in (0, 1], got {self.alpha:g}", parameter="alpha")
        for name in ("effect", "heterogeneity"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be True or False, got {getattr(self, name)!r}", parameter=name)
        if self.cluster is not None:
            if not isinstance(self.cluster, str) or not self.cluster.strip():
                raise InputError(f"cluster must name a column, got {self.cluster!r}", parameter="cluster")
            if self.has_bias and self.bias_variant in ("random", "three-level"):
                raise InputError(
                    f"the {self.bias_variant} bias variant adds a third variance parameter to a multilevel "
                    "model (cluster); use the additive or downweight variant",
                    parameter="bias_variant",
                )
        check_rho(self.rho)
        if self.rho and self.cluster is None:
            raise InputError("rho (a within-cluster sampling correlation) needs a cluster", parameter="rho")
        if self.has_covariates and not self.covariates:
            raise InputError(f"model {self.model!r} needs at least one covariate", parameter="covariates")
        if not self.has_covariates and self.covariates:
            raise InputError(
                f"model {self.model!r} takes no covariates; use metareg or bias-metareg"
            )

    @property
    def has_bias(self) -> bool:
        return self.model in ("bias", "bias-metareg")

    @property
    def has_covariates(self) -> bool:
        return self.model in ("metareg", "bias-metareg")

    @property
    def multilevel(self) -> bool:
        """Whether rows are grouped in clusters (tau between, tau_within within)."""
        return self.cluster is not None

    @property
    def tau_within(self) -> PriorSpec:
        """The prior of tau_within (multilevel models).

        Examples
        --------
        >>> ModelSpec("re", cluster="cohort").tau_within.label
        'half-normal(scale=0.5)'
        """
        return self.tau_within_prior if self.tau_within_prior is not None else parse_prior(DEFAULT_TAU_WITHIN_PRIOR, "tau")

    @property
    def parameters(self) -> tuple[str, ...]:
        """Names of the parameters with priors in this model (``mu``/``tau`` only when not fixed).

        Examples
        --------
        >>> ModelSpec("bias").parameters
        ('mu', 'tau', 'delta')
        >>> ModelSpec("bias", effect=False, heterogeneity=False).parameters
        ('delta',)
        """
        names = (["mu"] if self.effect else []) + (["tau"] if self.heterogeneity else [])
        if self.has_bias and self.bias_variant in ("additive", "random"):
            names.append("delta")
        if self.has_bias and self.bias_variant in ("random", "three-level"):
            # three-level: kappa is the SD of the design-level means; delta is derived there
            # (mean non-randomised design mean minus the rct mean) and has no prior.
            names.append("kappa")
        if self.has_covariates:
            names.append("beta")
        return tuple(names)

    def describe(self) -> dict:
        """A JSON-ready description (model, variant, covariates, fixed parameters, priors with labels).

        Examples
        --------
        >>> ModelSpec("re", heterogeneity=False).describe()
        {'model': 're', 'heterogeneity': False, 'tau': 'fixed at 0 (common effect)', 'priors': {'mu': 'normal(mean=0, sd=1)'}}
        """
        out: dict = {"model": self.model}
        if self.has_bias:
            out["bias_variant"] = self.bias_variant
            if self.bias_variant == "downweight":
                out["alpha"] = self.alpha
        if self.has_covariates:
            out["covariates"] = list(self.covariates)
        if not self.effect:
            out["effect"] = False
            out["mu"] = "fixed at 0 (HR = 1)"
        if not self.heterogeneity:
            out["heterogeneity"] = False
            out["tau"] = "fixed at 0 (common effect)"
        out["priors"] = self.priors.labels(self.parameters)
        if self.multilevel:
            out["cluster"] = self.cluster
            out["rho"] = self.rho
            if self.heterogeneity:
                out["priors"]["tau_within"] = self.tau_within.label
            else:
                out["tau_within"] = "fixed at 0 (common effect)"
        return out


@dataclass(frozen=True)
class ModelData:
    """The arrays a model is built from, extracted once from a validated study table.

    ``x`` holds raw covariate values (NaN = missing); ``centres`` are the means of the observed
    values, so that ``mu`` is the randomised effect at the average covariate values.
    """

    studies: tuple[str, ...]
    y: np.ndarray
    se: np.ndarray
    nonrandomised: np.ndarray
    designs: tuple[str | None, ...]
    covariates: tuple[str, ...]
    x: np.ndarray
    centres: np.ndarray
    source: str = ""
    #: Multilevel models: each row's cluster label (empty otherwise).
    clusters: tuple[str, ...] = ()

    @property
    def k(self) -> int:
        return len(self.y)

    @property
    def missing(self) -> np.ndarray:
        """Boolean (k, p) mask of missing covariate values."""
        return np.isnan(self.x)

    @property
    def n_missing(self) -> int:
        return int(self.missing.sum())

    @classmethod
    def from_table(cls, table: StudySource, spec: ModelSpec) -> ModelData:
        """Extract and check the arrays ``spec`` needs from ``table``."""
        nr = table.nonrandomised.astype(bool)
        if spec.has_bias:
            if not table.has_design:
                raise ModelError(
                    f"{table.source}: model {spec.model!r} needs a 'design' column (rct / prospective / retrospective)"
                )
            if nr.all():
                raise ModelError(
                    f"{table.source}: model {spec.model!r} needs at least one randomised (rct) study: "
                    "without one, mu (the randomised effect) is identified by its prior alone"
                )
            if not nr.any():
                raise ModelError(
                    f"{table.source}: model {spec.model!r} needs at least one non-randomised study; use model='re'"
                )
        x = table.covariate_matrix(spec.covariates) if spec.has_covariates else np.zeros((table.k, 0))
        centres = np.zeros(x.shape[1])
        for j, name in enumerate(spec.covariates):
            observed = x[~np.isnan(x[:, j]), j]
            if observed.size == 0:
                raise ModelError(f"{table.source}: covariate {name!r} has no observed values")
            centres[j] = observed.mean()
        clusters = tuple(cluster_labels(table, spec.cluster)) if spec.multilevel else ()
        return cls(
            clusters=clusters,
            studies=tuple(table.studies),
            y=table.y,
            se=table.se,
            nonrandomised=nr,
            designs=tuple(table.designs),
            covariates=tuple(spec.covariates),
            x=x,
            centres=centres,
            source=table.source,
        )


def threshold_key(t: float) -> str:
    """JSON key of a threshold: ``0.8 -> "0.8"``, ``1 -> "1.0"``.

    Examples
    --------
    >>> threshold_key(0.8), threshold_key(1)
    ('0.8', '1.0')
    """
    return repr(float(t))


def check_seed(seed: int | None, name: str = "seed") -> int | None:
    """A random seed as a plain int, or ``None`` (unseeded).

    Parameters
    ----------
    seed
        An integer in ``[0, SEED_MAX]`` (both samplers accept that range), or ``None``.
    name
        The parameter the message names (the command line shows its flag, ``--seed``).

    Raises
    ------
    InputError
        For anything else (negative, too large, a bool, a float, text).

    Examples
    --------
    >>> check_seed(42), check_seed(None)
    (42, None)
    >>> check_seed(-1)
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: seed must be an integer from 0 to 4294967295 (2**32 - 1), got -1
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= SEED_MAX:
        raise InputError(f"{name} must be an integer from 0 to {SEED_MAX} (2**32 - 1), got {seed!r}", parameter=name)
    return int(seed)


def check_thresholds(thresholds: Iterable[float], name: str = "thresholds") -> tuple[float, ...]:
    """Decision thresholds as floats, each a finite hazard ratio > 0.

    Raises
    ------
    InputError
        Naming ``name`` and the offending value (0, negative, infinite, NaN or not a number).

    Examples
    --------
    >>> check_thresholds([0.8, "1"])
    (0.8, 1.0)
    >>> check_thresholds([0])
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: thresholds must be a finite hazard ratio > 0, got 0
    """
    out = []
    for t in thresholds:
        try:
            value = float(t)
        except (TypeError, ValueError):
            raise InputError(f"{name} must be a hazard ratio > 0, got {t!r}", parameter=name) from None
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a finite hazard ratio > 0, got {value:g}", parameter=name)
        out.append(value)
    return tuple(out)
