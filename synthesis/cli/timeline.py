"""``synthesis timeline``: placeholder, being built (replaced by its module)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("timeline", help="(being built)").set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:  # pragma: no cover - placeholder
    raise SystemExit("synthesis timeline: not built yet")
