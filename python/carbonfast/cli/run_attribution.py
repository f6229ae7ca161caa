"""The command's share of the machine's energy, for `run`: the scope it is attributed to, the
readings around the command, and the command's processes on the GPUs."""

from __future__ import annotations

import argparse
from typing import Any

from carbonfast.cli.messages import warn


def attribution_scope(args: argparse.Namespace) -> tuple[Any, bool]:
    """The scope whose share of the energy the run reports (None: off), and whether it is the
    command's: by default the command and all it starts (the children this process reaps), or
    a cgroup. One that cannot be opened is a warning, and the run goes on without it."""
    from carbonfast.attribution import open_scope
    from carbonfast.config import resolve

    given = f"cgroup:{args.cgroup}" if args.cgroup else args.attribute
    s = resolve(("attribute", "proc_root", "cgroup_root"), {"attribute": given})
    chosen = s["attribute"] or "command"
    if chosen == "off":
        return None, False
    try:
        scope = open_scope(
            "children" if chosen == "command" else chosen, s["proc_root"], s["cgroup_root"]
        )
    except (OSError, ValueError) as e:
        warn(f"the command's share of the energy cannot be attributed ({e})")
        return None, False
    if chosen == "command":
        scope.label = "the command's process tree"
    return scope, chosen == "command"


def read_scope(scope: Any) -> tuple[int, int] | None:
    if scope is None:
        return None
    try:
        start, busy = scope.read()
        return start, busy
    except OSError as e:
        warn(f"the command's share of the energy cannot be attributed ({e})")
        return None


def attribute_to_scope(
    args: argparse.Namespace, scope: Any, m: Any, readings: list[Any], gpus: Any
) -> Any:
    from carbonfast.attribution import attribute
    from carbonfast.config import resolve

    # The CPU estimate (no counter) already follows the process tree's own CPU time.
    follows = resolve(("scope",), {"scope": args.scope})["scope"] == "process"
    return attribute(m, scope, readings[0], readings[1], gpus, estimate_follows_scope=follows)


class CommandWatch:
    """The command's pid, and its processes for its share of each GPU: its process tree is
    looked at while it runs (twice a second), and the GPUs' processes since the window
    opened are matched against every pid it had."""

    PERIOD_S = 0.5

    def __init__(self, meter: Any, since_ns: int) -> None:
        self.meter = meter
        self.since_ns = since_ns
        self.gpus = any(d.kind == "gpu" for d in meter.domains)
        self.pid: int | None = None
        self.pids: set[int] = set()
        self.shares: dict[str, tuple[float, float, float, str]] = {}
        if self.gpus:
            meter.native.gpu_shares([], since_ns)  # a first look, for drivers that need two

    def tick(self, pid: int) -> None:
        self.pid = pid
        if self.gpus:
            from carbonfast.attribution import process_tree

            self.pids |= process_tree(pid)

    def close(self) -> None:
        if self.gpus:
            from carbonfast.attribution import gpu_shares

            found = self.meter.native.gpu_shares(sorted(self.pids), self.since_ns)
            self.shares = gpu_shares(self.meter.all_domains, found)
