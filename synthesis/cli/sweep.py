"""``synthesis sweep``: prior-sensitivity sweeps over tau and bias priors."""

from __future__ import annotations

import argparse
import sys

from synthesis.base import DEFAULT_SEED, DEFAULT_THRESHOLDS
from synthesis.cli.common import SEED_HELP, add_input_arguments, seed_arg, workers_arg
from synthesis.cli.fit import add_model_arguments
from synthesis.sweeps import SWEEP_ENGINES

#: The command recorded in the marker of the folders ``sweep --out`` writes.
OUTPUT_COMMAND = "sweep"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="prior-sensitivity sweep: how P(HR < T) and the HR move with the priors",
        description="Refit a model over a grid of tau priors (and bias priors for the bias models).\n"
        "example: synthesis sweep --model bias --tau-priors 'halfnormal(0.1);halfnormal(0.5);halfcauchy(1)' --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_input_arguments(p)
    add_model_arguments(p)
    p.add_argument("--tau-priors", metavar="SPEC;SPEC;...", default=None, help="tau priors to sweep, ';'-separated (default: the standard grid)")
    p.add_argument("--bias-priors", metavar="SPEC;SPEC;...", default=None, help="bias priors to sweep for bias models (default: the standard grid)")
    p.add_argument("--engine", choices=SWEEP_ENGINES, default="auto", help="auto: exact wherever the model allows it")
    p.add_argument("--workers", type=workers_arg, default=None, help="parallel fits, >= 1 (default: all cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None, help="send fits to an existing Dask cluster")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=seed_arg, default=DEFAULT_SEED, help=SEED_HELP)
    p.add_argument("--out", metavar="DIR", default=None, help="write sweep.csv and the sensitivity plots here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthesis.cli.common import load_table, print_json, print_warnings
    from synthesis.cli.fit import build_spec
    from synthesis.models.spec import ModelData
    from synthesis.sweeps import run_sweep, split_specs, standard_bias_priors, standard_tau_priors

    spec = build_spec(args)
    # Parse every prior before touching the data or writing anything.
    tau_priors = split_specs(args.tau_priors, standard_tau_priors(), "tau")
    bias_priors = split_specs(args.bias_priors, standard_bias_priors(), "delta") if "delta" in spec.parameters else []
    table = load_table(args, covariates=spec.covariates)
    print_warnings(table, clustered=spec.multilevel)
    data = ModelData.from_table(table, spec)
    if args.out:
        from synthesis.outputs import check_output_target

        check_output_target(args.out, OUTPUT_COMMAND)  # refuse before the fits, not after
    result = run_sweep(
        data, spec, tau_priors=tau_priors, bias_priors=bias_priors,
        thresholds=tuple(args.threshold or DEFAULT_THRESHOLDS), engine=args.engine,
        workers=args.workers, scheduler=args.scheduler, chains=args.chains, draws=args.draws,
        tune=args.tune, seed=args.seed, progress=False if args.quiet else None,
    )
    if args.scheduler and "pymc" not in result.engines:
        print(f"note: --scheduler {args.scheduler} was not used: every fit used the exact engine", file=sys.stderr)
    if args.out:
        _write(result, args.out)
    if args.json:
        out = result.to_json()
        if spec.multilevel:
            from synthesis.cli.average import multilevel_record

            out["multilevel"] = multilevel_record(spec)
        print_json(out)
    else:
        print(result)
        if spec.multilevel:
            print(
                f"Multilevel: rows clustered by {spec.cluster!r}; the swept tau priors are on the SD "
                f"between clusters; tau_within ~ {spec.tau_within.label} throughout"
            )
    return 0


def _write(result, out: str) -> None:

    from synthesis.outputs import atomic_directory, write_json
    from synthesis.plots import plot_sensitivity, save_figure
    from synthesis.spreadsheets import write_csv

    with atomic_directory(out, command=OUTPUT_COMMAND) as tmp:
        write_csv(result.to_frame(), tmp / "sweep.csv")
        write_json(result.to_json(), tmp / "sweep.json")
        save_figure(plot_sensitivity(result), tmp / "sensitivity")
