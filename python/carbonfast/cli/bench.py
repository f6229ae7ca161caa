"""`carbonfast bench`: compares functions or statements by energy and time per call."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from carbonfast.cli.messages import write_atomically
from carbonfast.cli.options import meter_args


def add_parser(sub: Any, common: argparse.ArgumentParser, summary: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "bench",
        parents=[common],
        help=summary,
        usage="carbonfast bench [MOD:FUNC ...] [--stmt CODE ...] [--setup CODE] [--json FILE]",
    )
    p.add_argument("targets", nargs="*", metavar="MOD:FUNC", help="functions to compare")
    p.add_argument("--stmt", action="append", default=[], help="a statement to benchmark")
    p.add_argument("--setup", default="", help="code run once first (imports, data)")
    p.add_argument("--json", metavar="FILE", type=Path, help="write the result as JSON")
    p.add_argument("--min-time", type=float, default=2.0, help="seconds of sampling (default 2)")
    p.add_argument("--rounds", type=int, help="exactly this many rounds instead")
    p.add_argument("--baseline", action="store_true", help="also report energy above idle")
    p.add_argument("--isolate", action="store_true", help="each variant in its own process")
    p.set_defaults(handler=handle)
    return p


def handle(args: argparse.Namespace) -> int:
    from carbonfast.bench import bench
    from carbonfast.measure import Meter

    namespace: dict[str, Any] = {}
    sys.path.insert(0, os.getcwd())
    exec(_compiled(args.setup, "--setup", args.setup), namespace)
    variants: dict[str, Any] = {}
    for target in args.targets:
        variants[target] = _resolve_target(target)
    for i, stmt in enumerate(args.stmt, 1):
        source = "def _bench_stmt():\n" + "".join(f"    {line}\n" for line in stmt.splitlines())
        exec(_compiled(source, "--stmt", stmt), namespace)
        variants[stmt if len(stmt) <= 40 else f"stmt {i}"] = namespace.pop("_bench_stmt")
    if not variants:
        raise ValueError("bench needs MOD:FUNC targets or --stmt statements")
    meter = Meter(**meter_args(args), history="off")
    result = bench(
        variants,
        min_time=args.min_time,
        rounds=args.rounds,
        baseline=args.baseline,
        isolate=args.isolate,
        meter=meter,
    )
    from carbonfast.report.console import printable_lines

    print(printable_lines(result))
    if result.id is not None:
        print(f"saved as run {result.id} in the history")
    if args.json:
        write_atomically(args.json, result.to_json() + "\n")
    return 0


def _compiled(source: str, flag: str, given: str) -> Any:
    try:
        return compile(source, f"<{flag}>", "exec")
    except SyntaxError as e:
        raise ValueError(f"{flag} {given!r} is not valid Python: {e.msg}") from None


def _resolve_target(target: str) -> Any:
    import importlib

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{target!r} is not MOD:FUNC (e.g. mypkg.parsers:parse_fast)")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import {module_name!r} for {target!r}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{module_name!r} has no {attr!r} (in {target!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{target!r} is not callable")
    return obj
