"""What this machine can measure: every source, its domains, and what is missing and why."""

from __future__ import annotations

import os

from carbonfast import kinds
from carbonfast.measure import Meter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def info(powercap_root: str | os.PathLike[str] | None = None, **estimate: Any) -> dict[str, Any]:
    """Sources, domains (measured or estimated, with method and inputs), problems (with reason
    and fix) and what the total sums. Takes the same estimate settings as `Meter`.

    The result is plain data, ready for `json.dumps`.
    """
    from carbonfast import __version__

    # Everything the machine has, whichever rank of a job asks: no election, nothing gathered.
    estimate["distributed"] = False
    meter = Meter(powercap_root, **estimate)
    native = meter.native
    domains = {d.name: d for d in meter.all_domains}
    total = [d.name for d in meter.domains if d.counts_in_total]
    intensity = meter.carbon.intensity()
    return {
        "version": __version__,
        "can_measure": bool(total),
        "measured": meter.readable,
        "estimated": meter.estimated,
        "total_sums": total,
        "carbon": {
            "intensity_g_per_kwh": intensity.g_per_kwh,
            "source": intensity.source,
            "location": intensity.location,
            "label": intensity.label,
            "pue": meter.carbon.pue,
            "note": intensity.note,
        },
        "sources": [
            {
                "name": s.name,
                "root": s.root,
                "domains": [
                    {
                        "name": n,
                        "kind": domains[n].kind,
                        "label": domains[n].label,
                        "path": domains[n].path,
                        # "energy" (a counter) or "power" (integrated by the meter).
                        "reading": domains[n].reading,
                        # None where the counter never wraps (a model, a 64-bit counter).
                        "range_j": domains[n].range_j,
                        "counts_in_total": n in total,
                        "estimated": domains[n].estimated,
                        # Counted only in a window where every RAPL counter of the total
                        # stood still (a frozen RAPL), in their place.
                        "standby": domains[n].standby,
                        "method": domains[n].method,
                        "inputs": dict(domains[n].inputs),
                    }
                    for n in s.domains
                ],
                "notes": s.notes,
            }
            for s in native.sources
        ],
        "problems": [_problem(p) for p in native.problems] + _frozen_rapl(meter),
        "paths": [
            {
                "name": p.name,
                "root": p.root,
                "chosen": p.chosen,
                "domains": p.domains,
                "read_ns": p.read_ns,
                "problems": [_problem(q) for q in p.problems],
            }
            for p in native.paths
        ],
    }


# How long `info` watches RAPL counters that start-up saw stand still: 50 of their refreshes.
FROZEN_WATCH_S = 0.05


def _frozen_rapl(meter: Meter) -> list[dict[str, Any]]:
    """A problem where the RAPL counters of the total are frozen: start-up learned no refresh
    for any of them, and none moves while `info` watches them (RAPL refreshes every
    millisecond, and an idle package draws watts). Measurements then leave them out as
    unknown, never a measured 0 J."""
    import time

    rapl = [
        i
        for i, d in enumerate(meter.domains)
        if d.counts_in_total and kinds.is_rapl(d.kind) and not d.estimated
    ]
    if not rapl or any(meter.domains[i].update_period_s for i in rapl):
        return []
    first = meter.native.read().totals
    time.sleep(FROZEN_WATCH_S)
    last = meter.native.read().totals
    if any(first[i] != last[i] for i in rapl):
        return []
    names = ", ".join(meter.domains[i].name for i in rapl)
    estimating = any(d.standby for d in meter.all_domains)
    then = (
        "Measurements estimate the total from CPU time and installed memory in their place "
        "(the standby estimate below)"
        if estimating
        else "Measurements leave these counters out as unknown, never 0 J"
    )
    return [
        {
            "source": "rapl",
            "kind": "frozen",
            "path": meter.domains[rapl[0]].path,
            "reason": (
                f"RAPL is present but frozen{': estimating' if estimating else ''}: {names} "
                f"did not move over {FROZEN_WATCH_S * 1000:.0f} ms, where RAPL refreshes "
                "every millisecond and an idle package draws watts (an emulated RAPL "
                f"returning constants, or a static copy of sysfs). {then}"
            ),
            "fix": (
                "on a virtual machine, ask for the host's RAPL to be passed through; "
                "`--source msr` or `--source perf` may read working counters"
            ),
        }
    ]


def _problem(p: Any) -> dict[str, Any]:
    return {"source": p.source, "kind": p.kind, "path": p.path, "reason": p.reason, "fix": p.fix}


def _role(domain: dict[str, Any], total: list[str]) -> str:
    """How a domain stands to the total, in words."""
    if domain.get("standby"):
        return "standing by: counted in place of RAPL counters that stand still"
    if domain["counts_in_total"]:
        return "in total"
    role = kinds.role(domain["kind"])
    if role == "inside":
        return "inside another domain, not added"
    if role == "covers" or not total:
        return "reported, not added"
    return f"covered by {', '.join(total)}, not added"


def format_info(data: dict[str, Any]) -> str:
    """Human-readable form of `info()`, safe to print: names, paths and reasons from the
    machine are shown with their control characters escaped."""
    from carbonfast.report.console import printable

    lines = _info_lines(data)
    # Each line may start with the blank lines that set a section apart.
    return "\n".join(
        "\n" * (len(line) - len(line.lstrip("\n"))) + printable(line.lstrip("\n")) for line in lines
    )


def _info_lines(data: dict[str, Any]) -> list[str]:
    lines = [f"carbonfast {data['version']}"]
    # One column for every name: hwmon's GPUs are named by PCI address ("gpu-0000:03:00.0").
    width = max([12, *(len(d["name"]) for s in data["sources"] for d in s["domains"])])
    for s in data["sources"]:
        lines.append(f"\nsource {s['name']}: {s['root']}")
        if not s["domains"]:
            lines.append("  no readable domains")
        for d in s["domains"]:
            role = _role(d, data["total_sums"])
            if d["estimated"]:
                lines.append(f"  {d['name']:<{width}} {d['kind']:<8} ESTIMATED  ({role})")
                lines.append(f"    method: {d['method']}")
                lines.extend(f"    {k}: {v}" for k, v in d["inputs"].items())
                continue
            if d["reading"] == "power":
                wraps = "integrated from power"
            elif d["range_j"] is None:
                wraps = "never wraps"
            else:
                wraps = f"wraps every {d['range_j']:.0f} J"
            lines.append(
                f"  {d['name']:<{width}} {d['kind']:<8} readable  {d['path']}  ({wraps}; {role})"
            )
            if d["label"]:
                lines.append(f"    {d['label']}")
        lines.extend(f"  note: {n}" for n in s["notes"])
    if data["paths"]:
        lines.append(
            "\nRAPL paths (one is read; auto takes the one with most domains, then the cheapest):"
        )
        for p in data["paths"]:
            if p["chosen"]:
                state = f"IN USE, {len(p['domains'])} domains, {p['read_ns'] / 1e3:.1f} us per read"
            elif p["read_ns"] is not None:
                state = f"usable, {len(p['domains'])} domains, {p['read_ns'] / 1e3:.1f} us per read"
            else:
                state = "not usable"
            lines.append(f"  {p['name']:<9} {p['root']}: {state}")
            if not p["chosen"]:
                for q in p["problems"]:
                    lines.append(f"    - {q['reason']}")
                    if q["fix"]:
                        lines.append(f"      fix: {q['fix']}")
    # With no usable path, the paths above already list the RAPL problems; the others (a GPU
    # refused, a library that does not load) are listed whatever RAPL can do.
    rapl = {p["name"] for p in data["paths"]}
    problems = (
        data["problems"]
        if any(p["chosen"] for p in data["paths"])
        else [p for p in data["problems"] if p["source"] not in rapl]
    )
    if problems:
        lines.append("\nnot readable:")
        for p in problems:
            lines.append(f"  - {p['reason']}")
            if p["fix"]:
                lines.append(f"    fix: {p['fix']}")
    c = data["carbon"]
    lines.append(
        f"\ncarbon: {c['intensity_g_per_kwh']:g} g CO2e/kWh x PUE {c['pue']:g} "
        f"({c.get('label') or c['location'] or 'world average'}), from {c['source']}"
    )
    if c["note"]:
        lines.append(f"  note: {c['note']}")
    lines.append("")
    if data["can_measure"]:
        lines.append("total energy = " + " + ".join(data["total_sums"]))
        if data["estimated"]:
            lines.append(
                "some of it is ESTIMATED from a model, with a low-high range; grant access to "
                "the counters above to measure it instead"
                if data["problems"]
                else "some of it is ESTIMATED from a model, with a low-high range"
            )
    else:
        lines.append(
            "carbonfast cannot measure energy here: no energy counter is readable "
            "(measurements report energy as unknown, never as zero)."
        )
    return lines
