"""``synthesis multiverse``: placeholder, being built (replaced by its module)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("multiverse", help="(being built)").set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:  # pragma: no cover - placeholder
    raise SystemExit("synthesis multiverse: not built yet")
