"""`carbonfast history`: the runs and windows recorded so far (their emissions repriced at
another place on request), and distributed jobs added up across their hosts and ranks."""

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
        "history",
        parents=[common],
        usage="carbonfast history [--label TEXT] [--kind KIND] [--limit N] [--job ID] "
        "[--json | --html FILE]",
        description="The records of the history, newest first. A place (--country, --zone, "
        "--cloud, --intensity) or --pue given here reprices their emissions at it.",
        help=summary,
    )
    p.add_argument("--label", metavar="TEXT", help="only those whose label contains this")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (default 20)")
    from carbonfast.record import KINDS

    p.add_argument(
        "--kind",
        metavar="KIND",
        choices=KINDS,
        help=f"only records of this kind: {', '.join(KINDS)} (windows: the label sums)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--html",
        metavar="FILE",
        type=Path,
        help="write the whole history as one page, with charts and filters",
    )
    p.add_argument(
        "--job",
        metavar="ID",
        help="one distributed job, added up across its hosts and ranks",
    )
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="PATH",
        default=[],
        help="first import the job records of these job directories, JSON reports or other "
        "histories (a record already here is not added twice)",
    )
    p.set_defaults(handler=handle)
    add_history_option(p)
    return p


def handle(args: argparse.Namespace) -> int:
    if args.html is not None:
        from carbonfast.cli.history_html import write

        return write(args)
    from carbonfast.cli.history_reprice import repricing
    from carbonfast.report.history import History

    reprice = repricing(args)
    if reprice is not None and args.job:
        raise ValueError(
            "--job adds up a job as it was recorded; a place (--country, --zone, --cloud, "
            "--intensity) or --pue reprices the listing without --job"
        )
    path = history_path(args.history)
    if args.merge or args.job:
        _merge_job_records(args, path)
    if not path or not Path(path).exists():
        print(f"carbonfast: no history yet at {path}", file=sys.stderr)
        if args.json:
            print("[]")
        return 0
    history = History(path, read_only=True, say=warn)
    if args.job:
        return _show_job(args, history)
    rows = history.list(label=args.label, limit=args.limit, kind=args.kind)
    notes = []
    if reprice is not None:
        reprice.apply(rows)
        notes.append(reprice.line)
    if args.json:
        for note in notes:  # stdout is the JSON's alone
            print(f"carbonfast: {note}", file=sys.stderr)
        print(json.dumps(rows, indent=2))
        return 0
    from carbonfast.report.history_table import table

    print("\n".join(table(rows, notes)))
    return 0


def _merge_job_records(args: argparse.Namespace, path: str | None) -> None:
    """Imports the records of --merge PATH... and, for --job ID, of the job's directory in
    job_dir, into the history."""
    from carbonfast.config import resolve
    from carbonfast.report.job import part_path, read_sources

    sources = list(args.merge)
    job_dir = resolve(("job_dir",), {"job_dir": getattr(args, "job_dir", None)})["job_dir"]
    if args.job and job_dir:
        directory = part_path(job_dir, args.job, "_", 0).parent
        if directory.is_dir():
            sources.append(str(directory))
    if not sources:
        return
    if not path:
        raise ValueError("--merge needs a history to merge into: set --history FILE")
    from carbonfast.report.history import History

    records = read_sources(sources, args.job, say=warn)
    added = History(path, say=warn).import_records(records)
    print(f"carbonfast: {added} record(s) merged into {path}", file=sys.stderr)


def _show_job(args: argparse.Namespace, history: Any) -> int:
    from carbonfast.report.history_table import ESTIMATED_MARK
    from carbonfast.report.job import format_job, summarize

    records = history.job_records(args.job)
    groups = summarize(records)
    if args.json:
        out = {
            "job_id": args.job,
            "groups": [g.to_dict() for g in groups],
            "records": [r.to_dict() for r in records],
        }
        print(json.dumps(out, indent=2))
        return 0
    if not records:
        print(f"carbonfast: no record of job {args.job} in {history.path}", file=sys.stderr)
        return 0
    from carbonfast.report.console import printable

    print(format_job(args.job, records, groups))
    print(
        f"{'id':>5}  {'started (UTC)':<19}  {'kind':<7} {'host':<12} {'rank':>4} {'J':>11}  label"
    )
    for r in records:
        energy = "unknown" if r.energy_j is None else f"{r.energy_j:.4g}"
        if r.estimated:
            energy += ESTIMATED_MARK
        whole = " (whole job)" if r.hosts is not None else ""
        print(
            printable(
                f"{r.id:>5}  {r.started_at[:19]:<19}  {r.kind:<7} {r.host or '?':<12} "
                f"{'' if r.rank is None else r.rank:>4} {energy:>11}  {r.label or ''}{whole}"
            )
        )
    if any(r.estimated for r in records):
        from carbonfast.report.history_table import LEGEND

        print(LEGEND)
    return 0
