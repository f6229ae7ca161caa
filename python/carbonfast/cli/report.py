"""`carbonfast report`: shows a recorded run, and writes it as HTML."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from carbonfast.cli.messages import warn
from carbonfast.cli.options import add_history_option, history_path


def add_parser(sub: Any, common: argparse.ArgumentParser, summary: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "report",
        parents=[common],
        usage="carbonfast report RUN_ID [--html FILE] [--json] [-v]",
        help=summary,
    )
    p.add_argument("run_id", type=int, metavar="RUN_ID", help="from `carbonfast history`")
    p.add_argument("--html", metavar="FILE", type=Path, help="write an HTML report")
    p.add_argument("--json", action="store_true", help="print the stored report as JSON")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="every advice and note in the summary"
    )
    p.set_defaults(handler=handle)
    add_history_option(p)
    return p


def handle(args: argparse.Namespace) -> int:
    from carbonfast.cli.history_reprice import place_given

    if place_given(args):
        # A report shows a record as it was measured and counted; the listing reprices.
        raise ValueError(
            "carbonfast report shows a record as recorded, at the intensity it was counted "
            "at; to see its emissions at another place, give the place (--country, --zone, "
            "--cloud, --intensity) or --pue to `carbonfast history`"
        )
    from carbonfast.report.console import format_summary
    from carbonfast.report.history import History

    path = history_path(args.history)
    if not path or not Path(path).exists():
        raise ValueError(f"no history at {path}; run `carbonfast run` first")
    if not 1 <= args.run_id < 2**63:
        raise ValueError(f"no record {args.run_id} in {path}; `carbonfast history` lists them")
    if args.html:
        from carbonfast.report.files import check_writable

        check_writable(args.html, "--html")
    record, trace = History(path, read_only=True, say=warn).get(args.run_id)
    if args.json:
        print(json.dumps(record.to_dict(), indent=2))
    else:
        print(format_summary(record, verbose=args.verbose))
    if args.html:
        from carbonfast.report import html

        html.write(args.html, record, trace)
        print(f"carbonfast: wrote {args.html}", file=sys.stderr)
    return 0
