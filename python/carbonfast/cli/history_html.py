"""`carbonfast history --html FILE`: the history as one self-contained dashboard page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from carbonfast.cli.options import history_path


def write(args: argparse.Namespace) -> int:
    from carbonfast.report import dashboard
    from carbonfast.report.files import check_writable

    path = history_path(args.history)
    if not path or not Path(path).exists():
        raise ValueError(f"no history at {path}; run `carbonfast run` first")
    check_writable(args.html, "--html")
    # --label and --kind are where the page's filters start; the page holds the whole history.
    selected = {"label": args.label or "", "kind": args.kind or ""}
    size = dashboard.write(args.html, path, selected)
    print(f"carbonfast: wrote {args.html} ({size / 1024:.0f} KiB)", file=sys.stderr)
    return 0
