"""``synthesis psense``: power-scaling sensitivity (prior, likelihood, non-randomised studies'
likelihood) and prior-data conflict, exactly or on a PyMC fit (issue #11).

Without ``--model`` the design-bias model is fitted; when the data cannot support it (no
``design`` column, or only randomised or only non-randomised studies) the command falls back to
the random-effects model and says so (stderr, and ``notes`` in ``--json``). An explicit
``--model bias`` on such data is an error (exit 2) with the reason.
"""

from __future__ import annotations

import argparse
import math
import sys

from synthesis.base import DEFAULT_SEED
from synthesis.cli.common import (
    SEED_HELP,
    add_input_arguments,
    load_table,
    print_json,
    print_warnings,
    seed_arg,
)
from synthesis.cli.fit import add_model_arguments, build_spec
from synthesis.models.powerscale import NOT_CONVERGED
from synthesis.studies import StudyTable

#: The model fitted when ``--model`` is not given (and the data have both designs).
DEFAULT_MODEL = "bias"
#: The model fallen back to when the data cannot support :data:`DEFAULT_MODEL`.
FALLBACK_MODEL = "re"


def _sensitivity_threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    from synthesis.models.powerscale import SENSITIVITY_THRESHOLD

    p = sub.add_parser(
        "psense",
        help="power-scaling sensitivity to the prior, the likelihood and the non-randomised studies",
        description="Power-scaling sensitivity (Kallioinen et al. 2024, Stat Comput 34:57): how far "
        "the posterior moves when the prior, the likelihood or the non-randomised studies' "
        "likelihood is raised to a power near 1, and whether that signals prior-data conflict.\n"
        f"Without --model: the design-bias model, or {FALLBACK_MODEL} (with a note) when the data "
        "lack randomised or non-randomised studies.\n"
        "With --cluster (a multilevel model, exact engine only) each cluster's joint likelihood is "
        "scaled and the prior's power includes tau_within's prior.\n"
        "example: synthesis psense --engine exact --threshold 0.8 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(p)
    add_model_arguments(p)
    p.set_defaults(model=None)  # None: DEFAULT_MODEL, falling back to FALLBACK_MODEL
    p.add_argument("--engine", choices=("exact", "pymc"), default="exact", help="exact (default: every power-scaled posterior is another exact fit) or pymc (arviz-stats psense on NUTS draws)")
    p.add_argument("--sensitivity-threshold", type=_sensitivity_threshold, default=SENSITIVITY_THRESHOLD, metavar="S", help="sensitivity at or above which a component counts as influential (default %(default)s, as arviz-stats)")
    p.add_argument("--chains", type=int, default=4, help="pymc engine: chains")
    p.add_argument("--draws", type=int, default=2000, help="pymc engine: draws per chain")
    p.add_argument("--tune", type=int, default=1000, help="pymc engine: tuning steps")
    p.add_argument("--seed", type=seed_arg, default=DEFAULT_SEED, help=SEED_HELP)
    p.set_defaults(handler=run)


def _choose_model(args: argparse.Namespace, table: StudyTable, notes: list[str]) -> None:
    """Set ``args.model``: the user's, else :data:`DEFAULT_MODEL` when ``table`` has both designs,
    else :data:`FALLBACK_MODEL` with a note."""
    if args.model is not None:
        return
    nr = table.nonrandomised.astype(bool)
    if table.has_design and nr.any() and not nr.all():
        args.model = DEFAULT_MODEL
        return
    why = (
        "the data have no 'design' column"
        if not table.has_design
        else "every study is non-randomised" if nr.all() else "every study is randomised"
    )
    args.model = FALLBACK_MODEL
    notes.append(f"model {DEFAULT_MODEL!r} needs randomised and non-randomised studies and {why}: fitted {FALLBACK_MODEL!r} instead")


def run(args: argparse.Namespace) -> int:
    from synthesis.base import DEFAULT_THRESHOLDS
    from synthesis.models.powerscale import power_scale

    notes: list[str] = []
    # read the file once: the covariates named on the command line are loaded whatever the model
    table = load_table(args, covariates=tuple(dict.fromkeys(args.covariate or ())))
    _choose_model(args, table, notes)
    spec = build_spec(args)
    print_warnings(table, clustered=spec.multilevel)
    thresholds = tuple(args.threshold) if args.threshold else DEFAULT_THRESHOLDS
    result = power_scale(
        table,
        spec,
        engine=args.engine,
        thresholds=thresholds,
        threshold=args.sensitivity_threshold,
        fit_options={"chains": args.chains, "draws": args.draws, "tune": args.tune, "seed": args.seed},
    )
    result.notes[:0] = notes
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for note in result.notes:
        if note.startswith(NOT_CONVERGED):
            bar = "!" * 78
            print(f"{bar}\nWARNING: {note}\n{bar}", file=sys.stderr)
    if args.json:
        print_json(result.to_json())
    else:
        print(result)
    return 0
