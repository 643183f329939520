"""``synthesis plan``: would one more randomised trial settle it, and how big must it be?
Preposterior analysis of a new two-arm RCT over trial sizes (issue #14)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from synthesis.cli.common import add_input_arguments, check_out, emit, probability_arg
from synthesis.errors import InputError, ModelError

if TYPE_CHECKING:
    from synthesis.models.spec import ModelData

#: The command recorded in the marker of the folders ``plan --out`` writes.
OUTPUT_COMMAND = "plan"
#: Figure written by ``--out`` (file stem; PNG and SVG).
FIGURE_STEM = "plan"


def _number_list(kind: str, *, integer: bool = False, most: float = math.inf):  # noqa: ANN202 - an argparse type
    """A comma-separated list of numbers > 0 (with ``most`` finite: from 1/most to most)."""
    least = 1.0 / most
    span = "> 0" if math.isinf(most) else f"from {least:g} to {most:g}"

    def parse(text: str) -> list[float]:
        values = []
        for part in text.split(","):
            try:
                value = float(part)
            except ValueError:
                value = math.nan
            if not (0.0 < value < math.inf and least <= value <= most):
                raise argparse.ArgumentTypeError(f"must be a comma-separated list of {kind} {span}, got {text!r}")
            values.append(value)
        return values

    return parse


def positive_arg(text: str) -> float:
    """A finite number > 0 (``--allocation``)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0.0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    from synthesis.cli.fit import add_model_arguments
    from synthesis.models.preposterior import DEFAULT_EVENTS, RULE_LEVEL, RULE_THRESHOLD

    p = sub.add_parser(
        "plan",
        help="the next trial: predictive power and P(decision changes) over trial sizes",
        description=(
            "Preposterior analysis of a new two-arm randomised trial, from the current exact "
            "posterior (default model: design-bias, or random effects when the data lack "
            "randomised or non-randomised studies). For each size: the probability that the new "
            "trial alone is significant (two-sided 5%; benefit = HR < 1), that the synthesis then "
            "meets the rule P(HR < T) > level, that the decision changes from today's, the "
            "expected posterior SD of the randomised log HR and the expected value of sample "
            "information on the variance scale. Information of a trial with d events and "
            "allocation r: d r / (1 + r)^2 (d / 4 for 1:1).\n"
            "example: synthesis plan --events 200,500,1000 --threshold 0.8 --level 0.9 --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(p)
    add_model_arguments(p)
    p.set_defaults(model=None)  # None: bias if both designs are present, else re (with a note)
    for action in p._actions:  # fit's help says repeatable, default 0.8 and 1.0: plan takes one rule
        if action.dest == "threshold":
            action.help = f"the rule's HR threshold T, given once (default {RULE_THRESHOLD:g})"
        elif action.dest == "model":
            action.help = "model of the current evidence (default: bias with both designs present, else re)"
    p.add_argument("--events", type=_number_list("event counts"), default=None, metavar="D1,D2,...",
                   help=f"trial sizes in events (default {DEFAULT_EVENTS[0]} to {DEFAULT_EVENTS[-1]} in steps of "
                   f"{DEFAULT_EVENTS[1] - DEFAULT_EVENTS[0]})")
    p.add_argument("--patients", type=_number_list("patient counts"), default=None, metavar="N1,N2,...",
                   help="trial sizes in patients (with --event-prob: events = patients x event probability)")
    p.add_argument("--event-prob", type=probability_arg, default=None, metavar="P",
                   help="probability that a patient has an event during follow-up (with --patients)")
    p.add_argument("--allocation", type=positive_arg, default=1.0, metavar="R",
                   help="allocation ratio treatment:control (default 1)")
    p.add_argument("--level", type=probability_arg, default=RULE_LEVEL, metavar="P",
                   help=f"the rule recommends when P(HR < T) > P (default {RULE_LEVEL:g}; T from --threshold, "
                   f"default {RULE_THRESHOLD:g})")
    p.add_argument("--one-sided", type=probability_arg, default=None, metavar="ALPHA",
                   help="also report P(new trial significant one-sided at ALPHA in favour of treatment, HR < 1)")
    p.add_argument("--common-effect", action="store_true", help="fix tau = 0 (no between-study heterogeneity)")
    p.add_argument("--out", metavar="DIR", default=None, help="write plan.csv, plan.json and the figure (PNG and SVG) here")
    p.set_defaults(handler=run)


def choose_model(args: argparse.Namespace, table) -> tuple[str, list[str]]:  # noqa: ANN001
    """The model to plan with: ``--model`` when given, else ``bias`` when the table has both
    randomised and non-randomised studies, else ``re`` (with a note saying why)."""
    from synthesis.models.averaging import has_bias_dimension

    if args.model is not None:
        return args.model, []
    if has_bias_dimension(table):
        return "bias", []
    return "re", [
        "the data lack randomised or non-randomised studies, so the design-bias model does not apply: "
        "planning with random effects (re)"
    ]


def run(args: argparse.Namespace) -> int:
    from synthesis.cli.common import load_table, print_warnings
    from synthesis.cli.fit import build_spec
    from synthesis.models.preposterior import DEFAULT_EVENTS, RULE_THRESHOLD, plan_trial
    from synthesis.models.spec import ModelData

    if args.threshold and len(args.threshold) > 1:
        raise InputError("--threshold: plan analyses one decision rule; give --threshold once")
    threshold = args.threshold[0] if args.threshold else RULE_THRESHOLD
    if args.patients is not None and args.events is not None:
        raise InputError("give trial sizes as --events or as --patients with --event-prob, not both")
    if (args.patients is None) != (args.event_prob is None):
        raise InputError("--patients and --event-prob go together (events = patients x event probability)")
    if args.patients is not None:
        events = [n * args.event_prob for n in args.patients]
    else:
        events = list(args.events) if args.events is not None else list(DEFAULT_EVENTS)
    table = load_table(args, covariates=tuple(dict.fromkeys(args.covariate)))
    print_warnings(table, clustered=args.cluster is not None)
    model, notes = choose_model(args, table)
    args.model = model
    spec = build_spec(args)
    data = ModelData.from_table(table, spec)
    _refuse_missing_covariates(data, table.source)
    out = check_out(args.out, OUTPUT_COMMAND) if args.out is not None else None
    label = f"{spec.model} ({spec.bias_variant})" if spec.has_bias else spec.model
    try:
        result = plan_trial(
            data, spec, events=events, allocation=args.allocation, threshold=threshold, level=args.level,
            one_sided=args.one_sided, event_prob=args.event_prob, label=label,
        )
    except ModelError as exc:
        raise ModelError(f"synthesis plan refits with the exact engine: {exc}") from exc
    result.notes[:0] = notes
    return emit(result, as_json=args.json, out=out, write=_write)


def _refuse_missing_covariates(data: ModelData, source: object) -> None:
    """plan has only the exact engine, which cannot impute: name the covariates with missing
    values and what to do (rather than the fit commands' advice to use the PyMC engine)."""
    if not data.covariates:
        return
    missing = np.isnan(np.asarray(data.x, dtype=float)).sum(axis=0)
    named = [f"'{c}' ({int(n)} missing)" for c, n in zip(data.covariates, missing, strict=True) if n]
    if named:
        raise InputError(
            f"{source}: synthesis plan uses the exact engine, which cannot impute covariate values: "
            f"{', '.join(named)}; choose a complete covariate, leave --covariate out, or set include to "
            "false for the rows without a value"
        )


def _write(result, out: Path) -> list[str]:  # noqa: ANN001

    from synthesis.outputs import atomic_directory, write_json
    from synthesis.plots import save_figure
    from synthesis.plots.plan import plot_plan
    from synthesis.spreadsheets import write_csv

    names = ["plan.csv", "plan.json"]
    with atomic_directory(out, command=OUTPUT_COMMAND) as tmp:
        write_csv(result.to_frame(), tmp / "plan.csv")
        write_json(result.to_json(), tmp / "plan.json")
        names += [p.name for p in save_figure(plot_plan(result), tmp / FIGURE_STEM)]
    return names
