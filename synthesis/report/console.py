"""The decision table as ``synthesis run`` and ``synthesis report`` print it: short model
labels, the posterior HR with its interval in one column and P(HR < T) as "P<T", within
:data:`CONSOLE_WIDTH` columns (columns that do not fit go to a second block under the first)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from synthesis.analysis import AVERAGED_GIVEN_EFFECT_KEY, ROW_AT_COVARIATE, STACKED_KEY
from synthesis.base import INTERVAL_LABEL
from synthesis.models.fit import at_label
from synthesis.report.formats import num, prob
from synthesis.report.tables import threshold_keys

if TYPE_CHECKING:
    from synthesis.analysis import AnalysisResult, DecisionRow

#: Widest line the table prints.
CONSOLE_WIDTH = 100
#: Widest the model column may be when the other columns need more than one block anyway
#: (longer labels are cut short).
SPLIT_LABEL_WIDTH = 40
#: Spaces between columns.
GAP = "  "
#: Short labels of the standard models (others print their full label, cut to fit).
SHORT_LABELS: dict[str, str] = {
    "re_all": "Random effects, all",
    "re_rct": "Random effects, RCTs",
    "bias": "Design-bias adjusted",
    "bias_metareg": "Bias-adjusted meta-reg.",
    STACKED_KEY: "Stacked bias variants",
}


def _short_label(row: DecisionRow, with_points: set[str]) -> str:
    """"Bias-adjusted meta-reg., mean" for a model with covariate rows (its key in
    ``with_points``); "  at x=0.5" for those."""
    if row.kind == ROW_AT_COVARIATE:
        return f"  at {at_label(row.point or {})}"
    if row.key == AVERAGED_GIVEN_EFFECT_KEY:  # under the model-averaged row
        return "  given an effect"
    label = SHORT_LABELS.get(row.model_key, row.label)
    return f"{label}, mean" if row.model_key in with_points else label


def _hr_cell(median: float, lower: float, upper: float) -> str:
    """"0.69 (0.62-0.79)"."""
    return f"{num(median)} ({num(lower)}-{num(upper)})"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _blocks(widths: Sequence[int], room: int) -> list[list[int]]:
    """Indices of the columns after the model column, packed into blocks of at most ``room``."""
    blocks: list[list[int]] = [[]]
    used = 0
    for j, w in enumerate(widths):
        if blocks[-1] and used + len(GAP) + w > room:
            blocks.append([])
            used = 0
        blocks[-1].append(j)
        used += len(GAP) + w
    return blocks


def console_decision_table(result: AnalysisResult, width: int = CONSOLE_WIDTH) -> str:
    """The decision table as plain text, every line at most ``width`` characters.

    Parameters
    ----------
    result
        The analysis.
    width
        The widest line.

    Returns
    -------
    str
        A legend line and the table: model, engine, k, posterior median HR with its
        equal-tailed credible interval, and P(HR < T) per threshold.

    Examples
    --------
    >>> import pandas as pd
    >>> import synthesis as syn
    >>> frame = pd.DataFrame({
    ...     "study": ["T1", "T2", "T3", "O1", "O2", "O3"],
    ...     "design": ["rct", "rct", "rct", "retrospective", "retrospective", "prospective"],
    ...     "hr": [0.95, 0.85, 1.05, 0.65, 0.6, 0.7],
    ...     "ci_lower": [0.7, 0.6, 0.8, 0.55, 0.5, 0.5], "ci_upper": [1.29, 1.2, 1.38, 0.77, 0.72, 0.98]})
    >>> text = console_decision_table(syn.analyse(frame, name="example"), width=100)
    >>> print(text)
    HR: posterior median with its 95% equal-tailed credible interval; P<T: posterior P(HR < T)
    <BLANKLINE>
    Model                      Engine  k      HR (95% CrI)   P<0.7   P<0.8  P<0.9   P<1
    Model-averaged (8 models)  exact   6  1.00 (0.89-1.01)  < 0.01  < 0.01   0.03  0.07
      given an effect          exact   6  0.95 (0.77-1.13)    0.01    0.05   0.29  0.72
    Stacked bias variants      exact   6  0.94 (0.75-1.16)    0.01    0.07   0.32  0.72
    Random effects, all        exact   6  0.77 (0.61-1.00)    0.19    0.65   0.91  0.97
    Random effects, RCTs       exact   3  0.96 (0.68-1.33)    0.03    0.10   0.31  0.63
    Design-bias adjusted       exact   6  0.94 (0.75-1.16)    0.01    0.07   0.32  0.72
    >>> max(len(line) for line in text.splitlines()) <= 100
    True
    """
    rows = result.decision.rows
    keys = threshold_keys(result.thresholds)
    with_points = {r.model_key for r in rows if r.kind == ROW_AT_COVARIATE}
    header = ["Engine", "k", f"HR ({INTERVAL_LABEL} CrI)"] + [f"P<{float(t):g}" for t in keys]
    body = [
        [r.engine, str(r.k), _hr_cell(r.hr.median, r.hr.q025, r.hr.q975)] + [prob(r.p_hr_below.get(t)) for t in keys]
        for r in rows
    ]
    widths = [max(len(c) for c in [h, *(b[j] for b in body)]) for j, h in enumerate(header)]
    labels = [_short_label(r, with_points) for r in rows]
    others = sum(len(GAP) + w for w in widths)
    natural = max(len(x) for x in ["Model", *labels])
    label_width = natural if natural + others <= width else min(natural, SPLIT_LABEL_WIDTH)
    label_width = min(label_width, width - len(GAP) - max(widths))
    labels = [_cut(x, label_width) for x in labels]
    legend = (f"HR: posterior median with its {INTERVAL_LABEL} equal-tailed credible interval; "
              "P<T: posterior P(HR < T)")
    lines = textwrap.wrap(legend, width)
    for block in _blocks(widths, width - label_width):
        lines.append("")
        for label, cells in zip(["Model", *labels], [header, *body], strict=True):
            lines.append(label.ljust(label_width) + "".join(GAP + _align(cells[j], widths[j], j) for j in block))
    return "\n".join(line.rstrip() for line in lines)


def _align(cell: str, width: int, column: int) -> str:
    """The engine (column 0) left-aligned, numbers right-aligned."""
    return cell.ljust(width) if column == 0 else cell.rjust(width)
