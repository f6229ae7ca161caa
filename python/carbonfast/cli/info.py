"""`carbonfast info`: which energy counters exist, which are readable, and why not."""

from __future__ import annotations

import argparse
from typing import Any

from carbonfast.cli.options import meter_args


def add_parser(sub: Any, common: argparse.ArgumentParser, summary: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "info",
        parents=[common],
        help=summary,
        usage="carbonfast info [--json] [OPTIONS]",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace) -> int:
    import json

    from carbonfast.info import format_info, info

    data = info(**meter_args(args))
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(format_info(data))
    return 0
