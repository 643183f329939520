"""Pieces every command shares: the input arguments, loading the table, printing JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthesis.base import SEED_MAX
from synthesis.datasets import DEFAULT_DATASET, load_dataset
from synthesis.errors import InputError
from synthesis.models.spec import check_seed, check_thresholds
from synthesis.outputs import check_output_target, jsonable
from synthesis.studies import DEFAULT_SE_METHOD, SE_METHODS, SUBSETS, StudyTable, load_studies

# --------------------------------------------------------------------------------------------
# argparse ``type=`` functions: one per kind of value, used by every command (a bad value is an
# argparse error: usage, "argument --seed: ..." and exit status 2)
# --------------------------------------------------------------------------------------------
SEED_HELP = f"random seed of the sampler, 0 to {SEED_MAX} (default %(default)s)"


def seed_arg(text: str) -> int:
    """``--seed``: an integer from 0 to 2**32 - 1 (the range nutpie and PyMC both accept)."""
    try:
        return check_seed(int(text))
    except (ValueError, InputError):
        raise argparse.ArgumentTypeError(
            f"must be an integer from 0 to {SEED_MAX} (2**32 - 1), got {text!r}"
        ) from None


def threshold_arg(text: str) -> float:
    """``--threshold``: a finite hazard ratio > 0."""
    try:
        return check_thresholds([float(text)])[0]
    except (ValueError, InputError):
        raise argparse.ArgumentTypeError(f"must be a finite hazard ratio > 0, got {text!r}") from None


class Once(argparse.Action):
    """An option that may be given once: a second occurrence is an argparse error (exit 2)
    instead of silently replacing the first (commands that analyse one threshold, one level).

    Examples
    --------
    >>> p = argparse.ArgumentParser(prog="x", exit_on_error=False)
    >>> _ = p.add_argument("--threshold", type=float, action=Once)
    >>> p.parse_args(["--threshold", "0.8"]).threshold
    0.8
    >>> p.parse_args(["--threshold", "0.8", "--threshold", "0.7"])
    Traceback (most recent call last):
    argparse.ArgumentError: argument --threshold: given twice (0.8, then 0.7): this command takes one value
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        seen = f"_{self.dest}_given"
        if getattr(namespace, seen, False):
            raise argparse.ArgumentError(
                self, f"given twice ({getattr(namespace, self.dest)}, then {values}): this command takes one value"
            )
        setattr(namespace, seen, True)
        setattr(namespace, self.dest, values)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type=`` for integers >= ``minimum`` (one message for every such option).

    Examples
    --------
    >>> int_at_least(2)("5")
    5
    >>> int_at_least(2)("1")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be an integer >= 2, got '1'
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    return parse


#: ``--workers``: an integer >= 1.
workers_arg = int_at_least(1)


def rho_arg(text: str) -> float:
    """``--rho``: a within-cluster sampling correlation in [0, 1).

    Examples
    --------
    >>> rho_arg("0.5")
    0.5
    >>> rho_arg("1")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a number in [0, 1), got '1'
    """
    from synthesis.models.multilevel import check_rho

    try:
        return check_rho(float(text))
    except (ValueError, InputError):
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None


def add_cluster_arguments(parser: argparse.ArgumentParser, *, tau_within_prior: bool = False) -> None:
    """``--cluster COLUMN`` and ``--rho R`` (multilevel models, issue #13); with
    ``tau_within_prior``, ``--tau-within-prior SPEC`` (the Bayesian commands)."""
    parser.add_argument(
        "--cluster", metavar="COLUMN", default=None,
        help="multilevel model: rows sharing a value of COLUMN (e.g. cohort) form a cluster, with a "
        "between-cluster and a within-cluster variance (rma.mv(random = ~ 1 | cluster/row))",
    )
    parser.add_argument(
        "--rho", type=rho_arg, default=0.0, metavar="R",
        help="with --cluster: correlation of the sampling errors of rows in one cluster, in [0, 1) "
        "(as metafor's vcalc; default 0)",
    )
    if tau_within_prior:
        from synthesis.models.priors import prior_help

        parser.add_argument(
            "--tau-within-prior", metavar="SPEC", default=None,
            help="with --cluster: prior of tau_within, the SD of rows within a cluster (default "
            "halfnormal(0.5), the tau prior's default). " + prior_help("tau"),
        )


def check_cluster_arguments(args: argparse.Namespace) -> None:
    """Refuse --rho and --tau-within-prior without --cluster (they would be silently ignored)."""
    if getattr(args, "cluster", None) is None:
        if getattr(args, "rho", 0.0):
            raise InputError("--rho is a within-cluster sampling correlation: it needs --cluster COLUMN")
        if getattr(args, "tau_within_prior", None) is not None:
            raise InputError("--tau-within-prior is the prior of the within-cluster SD: it needs --cluster COLUMN")


def add_input_arguments(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    """FILE (optional: the bundled dnMBC dataset when omitted), --subset, --include-all,
    --se-method, --json."""
    parser.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        default=None,
        help=f"CSV of studies (default: the bundled {DEFAULT_DATASET} dataset)",
    )
    parser.add_argument(
        "--subset",
        choices=SUBSETS,
        default="all",
        help="analyse all studies, randomised only (rct) or non-randomised only (observational)",
    )
    parser.add_argument(
        "--include-all",
        action="store_true",
        help="keep rows whose 'include' column is false (default: the curated analysis set)",
    )
    parser.add_argument(
        "--se-method",
        type=str.lower,
        choices=SE_METHODS,
        default=DEFAULT_SE_METHOD,
        help="SE of a log HR from its CI: the whole CI (symmetric, the default) or its lower or "
        "upper half, for rows whose 'se_method' column is blank or absent (rows given as "
        "log_hr/se ignore it)",
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON on stdout")


def load_table(args: argparse.Namespace, *, covariates: tuple[str, ...] = (), min_studies: int = 2) -> StudyTable:
    """The validated study table the arguments name."""
    kwargs = dict(
        covariates=covariates,
        subset=args.subset,
        include_all=args.include_all,
        min_studies=min_studies,
        se_method=getattr(args, "se_method", DEFAULT_SE_METHOD),
    )
    if args.file is None:
        return load_dataset(DEFAULT_DATASET, **kwargs)
    return load_studies(args.file, **kwargs)


#: A JSON document longer than this (compact, in characters) is printed compact: indenting a
#: 100,000-study fit (22 MB compact, 32 MB indented) costs seconds in the pure-Python encoder.
COMPACT_JSON_CHARS = 1_000_000


def print_json(obj: Any) -> None:
    """Print ``obj`` as strict JSON (non-finite numbers as null): indented by 2, or compact (no
    whitespace) when longer than :data:`COMPACT_JSON_CHARS`; either parses to the same value."""
    doc = jsonable(obj)
    text = json.dumps(doc, allow_nan=False, separators=(",", ":"))
    if len(text) <= COMPACT_JSON_CHARS:
        text = json.dumps(doc, indent=2, allow_nan=False)
    sys.stdout.write(text + "\n")


def print_warnings(table: StudyTable, *, clustered: bool = False) -> None:
    """Validation warnings go to stderr so that stdout stays machine-readable. ``clustered``
    (a multilevel model, ``--cluster``): the warnings about rows sharing a cohort are left out,
    since modelling such rows is what the multilevel model is for."""
    for w in table.warnings:
        if clustered and w.startswith("cohort "):
            continue
        print(f"warning: {table.source}: {w}", file=sys.stderr)



def check_out(path: str, command: str) -> Path:
    """Refuse, before anything is computed, an ``--out`` folder that ``command`` may not write
    (:func:`synthesis.outputs.check_output_target`): an empty name, a file where a folder of the
    path must be, a missing parent folder, or a folder that is not an earlier output of
    ``command``.

    Examples
    --------
    >>> check_out("  ", "tipping")
    Traceback (most recent call last):
    ...
    synthesis.errors.InputError: --out: the folder name is empty (give a folder to write)
    """
    if not path.strip():
        raise InputError("--out: the folder name is empty (give a folder to write)")
    out = Path(path)
    for parent in out.absolute().parents:  # a file where a folder of the path must be
        if parent.exists() and not parent.is_dir():
            raise InputError(f"--out {path}: {parent} is a file, not a folder")
    check_output_target(out, command)
    if not out.resolve().parent.is_dir():
        raise InputError(f"--out {path}: the parent directory {out.resolve().parent} does not exist")
    return out


def probability_arg(text: str) -> float:
    """A probability strictly between 0 and 1 (``--level``, ``--one-sided``, ``--event-prob``).

    Examples
    --------
    >>> probability_arg("0.9")
    0.9
    """
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability strictly between 0 and 1, got {text!r}")
    return value


def emit(result: Any, *, as_json: bool, out: Path | None, write: Callable[[Any, Path], list[str]]) -> int:
    """Finish a command that may write an ``--out`` folder: write it first (a failed write is
    exit 2 with no results shown), then print the result (``--json``: its ``to_json()``), then
    say on stderr what was written. Returns the exit status 0."""
    written = write(result, out) if out is not None else []
    if as_json:
        print_json(result.to_json())
    else:
        print(result)
    if out is not None:
        print(f"wrote {', '.join(written)} to {out}", file=sys.stderr)
    return 0
