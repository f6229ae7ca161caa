"""`carbonfast history --html FILE`: the history as one self-contained dashboard page.

The option is added to the `history` command's parser here, and its handler wrapped, so that
the listing's own module stays as it is."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from carbonfast.cli.options import history_path


def extend(p: argparse.ArgumentParser) -> None:
    """Adds --html FILE to the `history` parser `p`."""
    p.add_argument(
        "--html",
        metavar="FILE",
        type=Path,
        help="write the whole history as one self-contained page (charts, filters) instead",
    )
    if p.usage:
        p.usage = p.usage.replace("[--json]", "[--json] [--html FILE]")
    listing = p.get_default("handler")

    def handle(args: argparse.Namespace) -> int:
        if args.html is None:
            return int(listing(args))
        return write(args)

    p.set_defaults(handler=handle)


def write(args: argparse.Namespace) -> int:
    from carbonfast.report import dashboard
    from carbonfast.report.files import check_target

    path = history_path(args.history)
    if not path or not Path(path).exists():
        raise ValueError(f"no history at {path}; run `carbonfast run` first")
    check_target(args.html)
    size = dashboard.write(args.html, path)
    print(f"carbonfast: wrote {args.html} ({size / 1024:.0f} KiB)", file=sys.stderr)
    return 0
