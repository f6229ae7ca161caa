"""A run measured only inside its tasks, as one report: the tasks' reports added up, where a
part that is unknown makes the sum unknown rather than smaller."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _tasks_as_run(tasks: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """One report for a run measured only inside its tasks: their durations, energy and
    emissions added up; where, how and since when from the first."""
    duration = sum(t["duration_s"] for t in tasks)
    energy = _sum_or_none([t["energy_j"] for t in tasks])
    return {
        **tasks[0],
        "label": label,
        "duration_s": duration,
        "energy_j": energy,
        "energy_range_j": _sum_of_ranges(tasks, "energy_j", "energy_range_j"),
        "total_domains": list(dict.fromkeys(d for t in tasks for d in t["total_domains"])),
        "power_w": energy / duration if energy is not None and duration > 0 else None,
        "estimated": any(t["estimated"] for t in tasks),
        "partial": any(t["partial"] for t in tasks),
        "emissions_kg": _sum_or_none([t["emissions_kg"] for t in tasks]),
        "emissions_range_kg": _sum_of_ranges(tasks, "emissions_kg", "emissions_range_kg"),
        "domains": {
            name: _sum_of_domain([t["domains"][name] for t in tasks])
            for name in tasks[0]["domains"]
        },
        "notes": list(dict.fromkeys(n for t in tasks for n in t["notes"])),
    }


def _sum_or_none(values: list[float | None]) -> float | None:
    """The sum, or None (unknown, never 0) where any part is unknown."""
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _sum_of_ranges(items: list[dict[str, Any]], value: str, bounds: str) -> list[float] | None:
    if all(i.get(bounds) is None for i in items) or any(i[value] is None for i in items):
        return None
    ranges = [i.get(bounds) or (i[value], i[value]) for i in items]
    return [sum(lo for lo, _ in ranges), sum(hi for _, hi in ranges)]


def _sum_of_domain(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out = {**parts[0], "energy_j": sum(p["energy_j"] for p in parts)}
    if any("energy_range_j" in p for p in parts):
        out["energy_range_j"] = _sum_of_ranges(parts, "energy_j", "energy_range_j")
    if any(p.get("interpolated") for p in parts):
        out["interpolated"] = True
    out["estimated"] = any(p["estimated"] for p in parts)
    return out
