"""Whose energy: the share of a measurement that belongs to its scope.

A package's counter holds everything that ran on it. The scope (a command's process tree, this
process, a thread, a cgroup) is given the share of the machine's CPU time it used in the window,
of every CPU-side domain in the total (packages, DRAM, platform meters): idle power included,
as Scaphandre and the Software Carbon Intensity spec count it, so that the scopes of a machine
add up to its energy. GPUs are shared by their own processes where the driver tells which ran
on them (see `gpu_shares`), else their share is unknown, from 0 to all of it.

The CPU times come from the core (carbonfast._native.Attribution), read at the kernel's real
resolution; this module only combines them with the measurement's domains.
"""

from __future__ import annotations

from carbonfast import _native
from carbonfast.record import Attributed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from carbonfast.measure import Measurement

    Reading = tuple[int, int]
    # Per GPU domain name: (share, low, high, method) from its processes.
    GpuShares = Mapping[str, tuple[float, float, float, str]]

# Accepted scopes, in the core's words (carbonfast._native.Attribution parses them).
SCOPES = ("process", "tree", "thread", "cgroup", "cgroup:PATH")


def open_scope(
    scope: str, proc_root: str = "/proc", cgroup_root: str = "/sys/fs/cgroup"
) -> _native.Attribution:
    """The scope's CPU clock beside the machine's (ValueError naming what is accepted)."""
    return _native.Attribution(scope, proc_root, cgroup_root)


def attribute(
    m: Measurement,
    scope: _native.Attribution,
    start: Reading,
    end: Reading,
    gpus: GpuShares | None = None,
    *,
    estimate_follows_scope: bool = False,
) -> Attributed:
    """The share of `m`'s energy that is `scope`'s, between the readings `start` and `end`.

    `estimate_follows_scope`: the CPU estimate (where no counter exists) already follows the
    scope's own CPU time, so it is the scope's whole, not shared again."""
    share, low, high, cpu_s, busy_s = scope.share(start, end)
    w = m.window()
    domains: dict[str, float | None] = {}
    shares: dict[str, float | None] = {}
    lo_sum = hi_sum = 0.0
    known = True
    gpus = gpus or {}
    methods: list[str] = []
    for d, j, j_lo, j_hi, failed in zip(
        m.meter.all_domains, w.joules, w.joules_low, w.joules_high, w.failed, strict=True
    ):
        if d.name not in m.total_domains:
            continue
        if failed:
            domains[d.name] = shares[d.name] = None
            known = False
            continue
        if d.kind == "gpu":
            s, s_lo, s_hi, how = gpus.get(
                d.name, (None, 0.0, 1.0, "which processes ran on it is not known")
            )
            methods.append(f"{d.name}: {how}")
        elif d.estimated and d.kind == "package" and estimate_follows_scope:
            s, s_lo, s_hi = 1.0, 1.0, 1.0
        else:
            s, s_lo, s_hi = share, low, high
        shares[d.name] = s
        domains[d.name] = None if s is None else s * j
        if s is None:
            known = False
        lo_sum += s_lo * j_lo
        hi_sum += s_hi * j_hi
    energy = sum(v for v in domains.values() if v is not None) if known and domains else None
    if share is None:
        methods.insert(0, "no CPU time was used in the window: the CPU side's share is unknown")
    return Attributed(
        energy_j=energy,
        share=share,
        scope=scope.label,
        method="; ".join([scope.method, *methods]),
        range_j=(lo_sum, hi_sum) if domains else None,
        cpu_s=cpu_s,
        machine_cpu_s=busy_s,
        domains=domains,
        shares=shares,
    )


# The baseline is the lowest mean power over a stretch at least this long: shorter ones catch
# the dips between a counter's refreshes, not idle.
BASELINE_SPAN_S = 0.5


def with_dynamic(a: Attributed, trace: Mapping[str, object], duration_s: float) -> None:
    """Adds `dynamic_j` to `a`: its domains' energy above each one's idle baseline, the lowest
    mean power seen over BASELINE_SPAN_S in the trace (what Kepler attributes: idle power to
    no one). Nothing where the trace is too short to tell."""
    t = trace.get("t_s")
    powers = trace.get("power_w")
    if not isinstance(t, list) or not isinstance(powers, dict) or duration_s <= 0:
        return
    dynamic = 0.0
    floors = []
    for name, attributed in a.domains.items():
        share = a.shares.get(name)
        series = powers.get(name)
        if attributed is None or share is None or not isinstance(series, list):
            return
        floor = lowest_mean_power(t, series, BASELINE_SPAN_S)
        if floor is None:
            return
        floors.append(f"{name} {floor:.3g} W")
        machine = attributed / share if share > 0 else 0.0
        dynamic += share * max(0.0, machine - floor * duration_s)
    a.dynamic_j = dynamic
    a.baseline = (
        f"the lowest mean power over {BASELINE_SPAN_S:g} s seen in the run's trace "
        f"({', '.join(floors)}): idle only if the machine idled at some point"
    )


def lowest_mean_power(t: list[float], power: list[float | None], span_s: float) -> float | None:
    """The lowest mean of `power` (each over the interval ending at its time) over any stretch
    of at least `span_s`; None where the trace is shorter or has gaps."""
    best: float | None = None
    start = 1
    energy = 0.0
    for end in range(1, len(t)):
        p = power[end]
        if p is None:
            return None
        energy += p * (t[end] - t[end - 1])
        while start < end and t[end] - t[start] >= span_s:
            energy -= (power[start] or 0.0) * (t[start] - t[start - 1])
            start += 1
        span = t[end] - t[start - 1]
        if span >= span_s:
            mean = energy / span
            best = mean if best is None else min(best, mean)
    return best


def gpu_shares(
    domains: list[_native.DomainInfo],
    found: list[tuple[int, float, float, float, str] | None],
) -> dict[str, tuple[float, float, float, str]]:
    """The GPU shares the core found (Meter.gpu_shares), by domain name."""
    return {domains[i].name: (s, lo, hi, how) for i, s, lo, hi, how in filter(None, found)}


def process_tree(root: int, proc: str = "/proc") -> set[int]:
    """`root` and its descendants now, from the kernel's children lists (the pids a GPU's
    driver names are matched against). Processes that go meanwhile are left out."""
    import os

    found: set[int] = set()
    stack = [root]
    while stack and len(found) < 65536:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        try:
            tids = os.listdir(f"{proc}/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"{proc}/{pid}/task/{tid}/children", encoding="ascii") as f:
                    stack.extend(int(c) for c in f.read().split() if c.isdigit())
            except (OSError, ValueError):
                continue
    return found


def summary_line(a: Attributed, whose: str = "this command") -> str:
    """ "of which this command: 89 J (49% of the CPU time)" for the console."""
    from carbonfast.report.console import format_joules

    energy = "unknown" if a.energy_j is None else format_joules(a.energy_j)
    share = "share unknown" if a.share is None else f"{a.share:.0%} of the CPU time"
    return f"of which {whose}: {energy} ({share})"
