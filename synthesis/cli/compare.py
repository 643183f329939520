"""``synthesis compare``: placeholder registered while issue #11 is built (being implemented in this session)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="(in development)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    print("synthesis compare: not available yet", file=sys.stderr)
    return 2
