"""Pieces every command shares: the input arguments, loading the table, printing JSON."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np

from synthesis.datasets import DEFAULT_DATASET, load_dataset
from synthesis.studies import SUBSETS, StudyTable, load_studies


def add_input_arguments(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    """FILE (optional: the bundled dnMBC dataset when omitted), --subset, --include-all, --json."""
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
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON on stdout")


def load_table(args: argparse.Namespace, *, covariates: tuple[str, ...] = (), min_studies: int = 2) -> StudyTable:
    """The validated study table the arguments name."""
    kwargs = dict(
        covariates=covariates,
        subset=args.subset,
        include_all=args.include_all,
        min_studies=min_studies,
    )
    if args.file is None:
        return load_dataset(DEFAULT_DATASET, **kwargs)
    return load_studies(args.file, **kwargs)


def jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats (to null) for strict JSON."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def print_warnings(table: StudyTable) -> None:
    """Validation warnings go to stderr so that stdout stays machine-readable."""
    for w in table.warnings:
        print(f"warning: {table.source}: {w}", file=sys.stderr)


def model_spec_from_args(args: argparse.Namespace):
    """The :class:`models.spec.ModelSpec` that ``fit``/``sweep`` arguments describe (priors
    parsed here, before any data is read)."""
    from models.priors import resolve_priors
    from models.spec import ModelSpec

    priors = resolve_priors(
        {
            "mu": args.mu_prior,
            "tau": args.tau_prior,
            "delta": args.bias_prior,
            "beta": args.beta_prior,
            "kappa": args.kappa_prior,
        }
    )
    return ModelSpec(
        args.model,
        bias_variant=args.bias_variant,
        alpha=args.alpha,
        covariates=tuple(args.covariate),
        priors=priors,
    )
