"""``synthesis simulate``: placeholder, being built (replaced by its module)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("simulate", help="(being built)").set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:  # pragma: no cover - placeholder
    raise SystemExit("synthesis simulate: not built yet")
