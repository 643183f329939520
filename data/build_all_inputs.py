"""Build the analysis set "all inputs" ``dnmbc_lrt_all_inputs.csv`` (issue #13).

The default analysis set (``dnmbc_lrt.csv``, rows with ``include`` true) keeps one row per cohort.
"All inputs" keeps every row of the evidence table with a usable effect (a hazard ratio with a
confidence interval, or with a p-value from which the curation rebuilt one), so that several
inputs per cohort (several periods of one registry, several arms against one control, several
reports of one trial, subgroups) can be pooled by a multilevel model with the cohort as the
cluster (``synthesis pool --cluster cohort``), or as if independent (what Gera et al. 2020 did).

Built from the same inputs as ``dnmbc_lrt.csv`` and by the same code
(:func:`build_dnmbc_lrt.build`, which checks the curation against the sources): nothing is
recomputed here. Each output row is the ``dnmbc_lrt.csv`` row with

* ``include`` set to true (every row is an input of this analysis set);
* ``default_set``: the row's ``include`` in ``dnmbc_lrt.csv`` (true for the one-row-per-cohort set);
* ``exclusion_reason``: why the row is not in the default set (empty when it is), unchanged;
* ``cluster``: the cohort (the multilevel models' cluster; equal to ``cohort``).

Rows keep the evidence table's order. Output is deterministic: same inputs, same bytes. Run
``python data/build_all_inputs.py`` (or ``python -m synthesis.bundled.build_all_inputs``) to
rewrite ``dnmbc_lrt_all_inputs.csv`` next to this file.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

try:  # as the installed package synthesis.bundled
    from synthesis.bundled.build_dnmbc_lrt import OUTPUT_COLUMNS, build, write_built
except ImportError:  # pragma: no cover (run as a script from a source tree without the package)
    from build_dnmbc_lrt import OUTPUT_COLUMNS, build, write_built  # type: ignore[no-redef]

OUTPUT_FILE = "dnmbc_lrt_all_inputs.csv"
#: The columns of the output: those of ``dnmbc_lrt.csv`` plus the two below, after ``include``.
ALL_INPUTS_COLUMNS: tuple[str, ...] = tuple(
    c for name in OUTPUT_COLUMNS for c in ((name, "default_set") if name == "include" else (name,))
) + ("cluster",)


def usable(row: dict[str, str]) -> bool:
    """Whether a row of ``dnmbc_lrt.csv`` has a usable effect: an HR with both CI limits."""
    return all(row[c].strip() for c in ("hr", "ci_lower", "ci_upper"))


def build_all_inputs(sources_dir: str | Path, curation_dir: str | Path) -> str:
    """Return the text of ``dnmbc_lrt_all_inputs.csv`` (``\\n`` line endings).

    Every row of :func:`build_dnmbc_lrt.build`'s output with a usable effect (:func:`usable`),
    with ``default_set`` (its original ``include``), ``include`` true and ``cluster`` = ``cohort``.
    A usable row without a cohort is refused (:class:`ValueError`): its cluster would be unknown.
    """
    rows = list(csv.DictReader(io.StringIO(build(sources_dir, curation_dir))))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ALL_INPUTS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        if not usable(row):
            continue
        if not row["cohort"].strip():
            raise ValueError(f"{row['evidence_row']}: a row with a usable effect needs a cohort")
        record = dict(row)
        record["default_set"] = row["include"]
        record["include"] = "true"
        record["cluster"] = row["cohort"]
        writer.writerow(record)
    return out.getvalue()


def main() -> None:
    """Rewrite ``dnmbc_lrt_all_inputs.csv`` next to this file from ``sources/`` and ``curation/``."""
    here = Path(__file__).resolve().parent
    write_built(build_all_inputs(here / "sources", here / "curation"), here / OUTPUT_FILE)


if __name__ == "__main__":
    main()
