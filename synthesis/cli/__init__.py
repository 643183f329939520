"""The ``synthesis`` command line.

Each command lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``.
Exit status: 0 success, 2 bad input (message on stderr naming file, line and column, nothing
written), 3 sampling failed its diagnostics under ``--strict``, 130 interrupted (Ctrl-C: one
line on stderr, no traceback; output folders are written atomically, so nothing half-written
is left).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from synthesis.errors import ConvergenceError, InputError, ModelError

EXIT_INPUT = 2
EXIT_CONVERGENCE = 3
#: 128 + SIGINT, what a shell reports for a command stopped with Ctrl-C.
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from synthesis.cli import (
        average,
        compare,
        fit,
        frequentist,
        multiverse,
        plan,
        psense,
        reconcile,
        report,
        simulate,
        sweep,
        timeline,
        tipping,
        validate,
    )

    parser = argparse.ArgumentParser(
        prog="synthesis",
        description="Bayesian and frequentist meta-analysis of hazard ratios, for when randomised "
        "trials and observational studies disagree. Without FILE, commands use the bundled "
        "dnMBC dataset (locoregional treatment in de novo stage IV breast cancer).",
        epilog="example: synthesis run   (everything, on the bundled dataset, into reports/dnmbc_lrt)",
    )
    from synthesis import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    validate.add_parser(sub)
    frequentist.add_parsers(sub)
    fit.add_parser(sub)
    sweep.add_parser(sub)
    report.add_parsers(sub)
    average.add_parser(sub)
    compare.add_parser(sub)
    tipping.add_parser(sub)
    psense.add_parser(sub)
    plan.add_parser(sub)
    timeline.add_parser(sub)
    simulate.add_parser(sub)
    reconcile.add_parser(sub)
    multiverse.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` names (default ``sys.argv[1:]``) and return its exit status."""
    headless_matplotlib()
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print("synthesis: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def headless_matplotlib() -> None:
    """Have matplotlib draw with ``Agg`` (no display needed) when the command line runs as a
    program: unless the user chose a backend (``MPLBACKEND``), the session is interactive, or
    matplotlib is already loaded (its user chose). Sets ``MPLBACKEND``, read when matplotlib is
    first imported, so commands that draw nothing do not load it; importing
    :mod:`synthesis.plots` itself never changes the backend."""
    interactive = hasattr(sys, "ps1") or sys.flags.interactive
    if "MPLBACKEND" in os.environ or interactive or "matplotlib" in sys.modules:
        return
    os.environ["MPLBACKEND"] = "Agg"


#: Python parameter -> the command-line flag that sets it (model-layer errors name parameters).
PARAMETER_FLAGS: dict[str, str] = {
    "adaptation": "--adaptation",
    "alpha": "--alpha",
    "at": "--at",
    "chains": "--chains",
    "covariates": "--covariate",
    "draws": "--draws",
    "engine": "--engine",
    "model": "--model",
    "seed": "--seed",
    "target_accept": "--target-accept",
    "thresholds": "--threshold",
    "tune": "--tune",
}
_NAMES = "|".join(sorted(PARAMETER_FLAGS, key=len, reverse=True))
_ASSIGNED = re.compile(rf"""(?<![\w-])({_NAMES})=(['"])([^'"]*)\2""")


def as_flags(message: str, parameter: str | None = None) -> str:
    """A model-layer message as the command line says it: ``engine='pymc'`` -> ``--engine pymc``,
    and the ``parameter`` the error names (:attr:`InputError.parameter`), where the message
    starts with it, becomes its flag.

    Examples
    --------
    >>> as_flags("chains must be >= 1, got 0", "chains")
    '--chains must be >= 1, got 0'
    >>> as_flags("engine='exact': the model has a random bias; use engine='pymc'", "engine")
    '--engine exact: the model has a random bias; use --engine pymc'
    """
    message = _ASSIGNED.sub(lambda m: f"{PARAMETER_FLAGS[m.group(1)]} {m.group(3)}", message)
    flag = PARAMETER_FLAGS.get(parameter or "")
    if flag and message.startswith(f"{parameter} "):
        message = flag + message[len(parameter):]
    return message


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (InputError, ModelError) as exc:
        print(f"error: {as_flags(str(exc), exc.parameter)}", file=sys.stderr)
        return EXIT_INPUT
    except ConvergenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONVERGENCE
    except BrokenPipeError:
        return 0
