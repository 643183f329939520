"""``synthesis timeline``: how the evidence moved as each study arrived — refits after each
publication year, with "if the next trial shows HR = x with n events" scenarios (issue #14)."""

from __future__ import annotations

import argparse

from synthesis.cli.common import Once, add_input_arguments, check_out, emit, threshold_arg

#: The command recorded in the marker of the folders ``timeline --out`` writes.
OUTPUT_COMMAND = "timeline"
#: Figure written by ``--out`` (file stem; PNG and SVG).
FIGURE_STEM = "timeline"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from synthesis.models.preposterior import RULE_THRESHOLD
    from synthesis.models.priors import prior_help

    p = sub.add_parser(
        "timeline",
        help="cumulative evidence: refit after each publication year (year column), with next-trial scenarios",
        description=(
            "Refit after each publication year (the 'year' column) with every study published up to "
            "then: random effects on the randomised studies, the design-bias model and the model "
            "average (over all models with the no-effect spike at HR = 1, and given an effect). "
            "Reports the HR with its 95% credible interval and P(HR < T); a model the studies so far "
            "cannot identify (e.g. no randomised study yet) is shown as not estimable with the reason. "
            "--scenario HR:EVENTS adds a hypothetical 1:1 trial (SE = 2 / sqrt(events)) a year after "
            "the last study.\n"
            "example: synthesis timeline --scenario 0.8:500 --scenario 1:1000 --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(p)
    p.add_argument("--threshold", type=threshold_arg, action=Once, default=RULE_THRESHOLD, metavar="T",
                   help="report P(HR < T) (default %(default)s)")
    p.add_argument("--scenario", action="append", default=[], metavar="HR:EVENTS",
                   help="a hypothetical next trial with this HR and number of events (repeatable)")
    p.add_argument("--mu-prior", metavar="SPEC", default=None, help="prior of mu (default normal(0, 1))")
    p.add_argument("--tau-prior", metavar="SPEC", default=None, help="prior of tau (default halfnormal(0.5)). " + prior_help("tau"))
    p.add_argument("--bias-prior", metavar="SPEC", default=None, help="prior of delta (default normal(0, 0.5))")
    p.add_argument("--prior-prob", metavar="SPEC", default=None,
                   help="prior inclusion probabilities of the model average, e.g. effect=0.5,bias=0.5 (as synthesis average)")
    p.add_argument("--out", metavar="DIR", default=None, help="write timeline.csv, timeline.json and the figure (PNG and SVG) here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthesis.cli.common import load_table, print_warnings
    from synthesis.cumulative import parse_scenario, run_timeline, study_years
    from synthesis.models.priors import resolve_priors
    from synthesis.models.spec import ModelSpec

    priors = resolve_priors({"mu": args.mu_prior, "tau": args.tau_prior, "delta": args.bias_prior})
    scenarios = [parse_scenario(s) for s in args.scenario]
    table = load_table(args, min_studies=1)
    print_warnings(table)
    study_years(table)  # refuse a missing year column or year before any fit
    out = check_out(args.out, OUTPUT_COMMAND) if args.out is not None else None
    result = run_timeline(table, ModelSpec("bias", priors=priors), threshold=args.threshold, scenarios=scenarios,
                          prior_prob=args.prior_prob)
    return emit(result, as_json=args.json, out=out, write=_write)


def _write(result, out) -> list[str]:  # noqa: ANN001

    from synthesis.outputs import atomic_directory, write_json
    from synthesis.plots import save_figure
    from synthesis.plots.timeline import plot_timeline
    from synthesis.spreadsheets import write_csv

    names = ["timeline.csv", "timeline.json"]
    with atomic_directory(out, command=OUTPUT_COMMAND) as tmp:
        write_csv(result.to_frame(), tmp / "timeline.csv")
        write_json(result.to_json(), tmp / "timeline.json")
        names += [p.name for p in save_figure(plot_timeline(result), tmp / FIGURE_STEM)]
    return names
