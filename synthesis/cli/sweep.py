"""``synthesis sweep``: prior-sensitivity sweeps over tau and bias priors."""

from __future__ import annotations

import argparse

from synthesis.cli.common import add_input_arguments
from synthesis.cli.fit import add_model_arguments


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
    p.add_argument("--engine", choices=("auto", "pymc", "exact"), default="auto", help="auto: exact wherever the model allows it")
    p.add_argument("--workers", type=int, default=None, help="parallel fits (default: all cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None, help="send fits to an existing Dask cluster")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--out", metavar="DIR", default=None, help="write sweep.csv and the sensitivity plots here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("sweep")
