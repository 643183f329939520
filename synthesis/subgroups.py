"""Subgroup pooling (RCT vs non-randomised) and the test for subgroup differences.

Convention (stated in every result as ``convention``): each subgroup is pooled on its own with
the chosen estimator, so every subgroup has its **own tau^2** (random effects within subgroups);
the test for subgroup differences is then the fixed-effect heterogeneity statistic of the
subgroup estimates,

    Q_between = sum_g w_g (mu_g - mu_bar)^2,   w_g = 1 / SE(mu_g)^2,   mu_bar = sum w_g mu_g / sum w_g,

referred to chi^2 with G - 1 df. This is metafor's documented approach for subgroups with
separate tau^2 (``rma(est, sei = se, mods = ~ group, method = "FE")`` on the subgroup fits, whose
``QM`` equals Q_between) and the ``Q.b.random`` of R's meta with its default
``tau.common = FALSE``. With ``hksj`` the subgroup SEs are the Knapp-Hartung ones, as metafor's
fits would give. A subgroup with a single study contributes that study's estimate and SE
(tau^2 = 0, no Knapp-Hartung scaling, which would otherwise give SE = 0).

Borenstein M, Hedges LV, Higgins JPT, Rothstein HR (2009). Introduction to Meta-Analysis,
chapter 19 (separate estimates of tau^2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from synthesis.errors import InputError
from synthesis.pooling import (
    DEFAULT_LEVEL,
    PoolResult,
    check_inputs,
    format_hr_ci,
    format_p_equals,
    generalised_q,
    pool,
)
from synthesis.studies import StudyTable

CONVENTION = (
    "random effects within subgroups with a separate tau^2 per subgroup; Q_between is the "
    "fixed-effect Q of the subgroup estimates on G - 1 df (metafor rma(est, sei, mods = ~group, "
    "method = 'FE'); meta tau.common = FALSE)"
)
RCT_LABEL = "rct"
NONRANDOMISED_LABEL = "nonrandomised"


@dataclass(frozen=True)
class SubgroupResult:
    """Pooled estimates per subgroup and the test for subgroup differences."""

    method: str
    hksj: bool
    groups: dict[str, PoolResult]
    q_between: float | None
    df: int
    p: float | None
    convention: str = CONVENTION
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        """The subgroup section ``synthesis pool --by-design`` prints after the pooled result."""
        lines = ["By design (random effects with a separate tau^2 per subgroup; Q_between of the "
                 "subgroup estimates):"]
        for name, g in self.groups.items():
            lines.append(f"  {name:<14} k = {g.k:<3} HR {format_hr_ci(g.estimate, g.ci_lower, g.ci_upper)}"
                         f"  tau^2 = {g.tau2:.4g}, I^2 = {g.i2:.1f}%")
        if self.q_between is not None:
            lines.append(f"  Test for subgroup differences: Q_between = {self.q_between:.3f} on "
                         f"{self.df} df, {format_p_equals(self.p)}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "hksj": self.hksj,
            "convention": self.convention,
            "groups": {name: r.to_dict() for name, r in self.groups.items()},
            "q_between": self.q_between,
            "df": self.df,
            "p": self.p,
            "notes": list(self.notes),
        }


def subgroup_analysis(
    y: Any,
    v: Any,
    labels: Sequence[str],
    *,
    method: str = "REML",
    hksj: bool = False,
    level: float = DEFAULT_LEVEL,
) -> SubgroupResult:
    """Pool each subgroup (labels in order of first appearance) and test their difference.

    Examples
    --------
    Two pairs of identical studies, log HR 0 and 1 with SE 0.5 per subgroup: ``Q_between =
    (0 - 0.5)^2 / 0.25 + (1 - 0.5)^2 / 0.25 = 2`` on 1 df.

    >>> r = subgroup_analysis([0.0, 0.0, 1.0, 1.0], [0.5] * 4, ["a", "a", "b", "b"], method="FE")
    >>> [g.estimate for g in r.groups.values()], round(r.q_between, 6), r.df, round(r.p, 4)
    ([0.0, 1.0], 2.0, 1, 0.1573)
    """
    y, v, _ = check_inputs(y, v)
    labels = [str(x) for x in labels]
    if len(labels) != y.size:
        raise InputError(f"{len(labels)} subgroup labels for {y.size} studies")
    groups: dict[str, PoolResult] = {}
    notes: list[str] = []
    for name in dict.fromkeys(labels):
        mask = np.array([lab == name for lab in labels])
        single = int(mask.sum()) == 1
        if single:
            notes.append(f"subgroup {name!r} has a single study: its own estimate and SE")
        groups[name] = pool(y[mask], v[mask], method=method, hksj=hksj and not single, level=level)
    if len(groups) < 2:
        notes.append("only one subgroup present: no test for subgroup differences")
        return SubgroupResult(method, hksj, groups, None, 0, None, notes=tuple(notes))
    est = np.array([g.estimate for g in groups.values()])
    se = np.array([g.se for g in groups.values()])
    if not np.all(np.isfinite(se) & (se > 0)):
        notes.append("a subgroup SE is zero or undefined: no test for subgroup differences")
        return SubgroupResult(method, hksj, groups, None, len(groups) - 1, None, notes=tuple(notes))
    q_b = generalised_q(0.0, est, se**2, np.ones((est.size, 1)))
    df = len(groups) - 1
    p = float(stats.chi2.sf(q_b, df))
    return SubgroupResult(method, hksj, groups, float(q_b), df, p if math.isfinite(p) else None, notes=tuple(notes))


def pool_by_design(
    table: StudyTable,
    *,
    method: str = "REML",
    hksj: bool = False,
    level: float = DEFAULT_LEVEL,
) -> SubgroupResult:
    """Subgroups ``rct`` and ``nonrandomised`` (prospective and retrospective) of a study table.

    Examples
    --------
    >>> from synthesis.datasets import load_dataset
    >>> print(pool_by_design(load_dataset("dnmbc_lrt"), method="DL"))
    By design (random effects with a separate tau^2 per subgroup; Q_between of the subgroup estimates):
      rct            k = 5   HR 0.931 (0.747 to 1.161)  tau^2 = 0.03317, I^2 = 55.2%
      nonrandomised  k = 12  HR 0.629 (0.609 to 0.649)  tau^2 = 0, I^2 = 0.0%
      Test for subgroup differences: Q_between = 11.955 on 1 df, p = 0.0005
    """
    if not table.has_design:
        raise InputError(
            "--by-design needs a 'design' column (rct, prospective or retrospective)",
            file=table.source,
            line=1,
            column="design",
        )
    labels = [NONRANDOMISED_LABEL if nr else RCT_LABEL for nr in table.nonrandomised]
    return subgroup_analysis(table.y, table.v, labels, method=method, hksj=hksj, level=level)
