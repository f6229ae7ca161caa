"""What this machine can measure: every source, its domains, and what is missing and why."""

from __future__ import annotations

import os

from carbonfast.measure import Meter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def info(powercap_root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Sources, readable domains, problems (with reason and fix) and what the total sums.

    The result is plain data, ready for `json.dumps`.
    """
    from carbonfast import __version__

    meter = Meter(powercap_root)
    native = meter._native
    domains = {d.name: d for d in meter.domains}
    total = [d.name for d in meter.domains if d.counts_in_total]
    if not total:
        total = [d.name for d in meter.domains if d.kind == "psys"]
    return {
        "version": __version__,
        "can_measure": bool(total),
        "estimated": False,
        "total_sums": total,
        "sources": [
            {
                "name": s.name,
                "root": s.root,
                "domains": [
                    {
                        "name": n,
                        "kind": domains[n].kind,
                        "path": domains[n].path,
                        "range_j": domains[n].range_j,
                        "counts_in_total": n in total,
                    }
                    for n in s.domains
                ],
                "notes": s.notes,
            }
            for s in native.sources
        ],
        "problems": [
            {"source": p.source, "kind": p.kind, "path": p.path, "reason": p.reason, "fix": p.fix}
            for p in native.problems
        ],
    }


def format_info(data: dict[str, Any]) -> str:
    """Human-readable form of `info()`."""
    lines = [f"carbonfast {data['version']}"]
    for s in data["sources"]:
        lines.append(f"\nsource {s['name']}: {s['root']}")
        if not s["domains"]:
            lines.append("  no readable domains")
        for d in s["domains"]:
            role = "in total" if d["counts_in_total"] else "reported, inside the total"
            lines.append(
                f"  {d['name']:<12} {d['kind']:<8} readable  {d['path']}  "
                f"(wraps every {d['range_j']:.0f} J; {role})"
            )
        lines.extend(f"  note: {n}" for n in s["notes"])
    if data["problems"]:
        lines.append("\nnot readable:")
        for p in data["problems"]:
            lines.append(f"  - {p['reason']}")
            if p["fix"]:
                lines.append(f"    fix: {p['fix']}")
    lines.append("")
    if data["can_measure"]:
        lines.append("total energy = " + " + ".join(data["total_sums"]))
    else:
        lines.append(
            "carbonfast cannot measure energy here: no energy counter is readable "
            "(measurements report energy as unknown, never as zero)."
        )
    return "\n".join(lines)
