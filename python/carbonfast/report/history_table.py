"""The table `carbonfast history` prints: one line per record, whatever its label holds, and
the lines under it that say what its marks mean."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# What the mark after an energy means.
ESTIMATED_MARK = "~"
LEGEND = f"{ESTIMATED_MARK} estimated: the energy is from a model, not from counters"

HEADER = f"{'id':>5}  {'started (UTC)':<19}  {'kind':<7} {'s':>9} {'J':>11} {'g CO2e':>10}  label"


def table(rows: list[dict[str, Any]], notes: list[str] | None = None) -> list[str]:
    """The listing's lines: the header, a line per row, then the legend and `notes`. Every
    line goes through printable(), so that a label or command holding a newline or an escape
    sequence shows escaped, on its own line."""
    from carbonfast.report.console import printable

    lines = [HEADER]
    for r in rows:
        energy = _number(r.get("energy_j"), ".4g", "unknown")
        if r.get("estimated"):
            energy += ESTIMATED_MARK
        grams = _number(r.get("emissions_kg"), ".4g", scale=1e3)
        lines.append(
            f"{r.get('id'):>5}  {_text(r.get('started_at'))[:19]:<19}  "
            f"{_text(r.get('kind')):<7} {_number(r.get('duration_s'), '.3f'):>9} "
            f"{energy:>11} {grams:>10}  {_label(r)}"
        )
    if any(r.get("estimated") for r in rows):
        lines.append(LEGEND)
    lines += notes or []
    return [printable(line) for line in lines]


def _label(r: dict[str, Any]) -> str:
    """The label, with a label's sums (count, and min, mean and max per window) or the job
    and part a record belongs to."""
    label = _text(r.get("label"))
    if r.get("count") is not None:
        label = f"{label or '(no label)'} x{r['count']}"
        spread = [r.get(k) for k in ("min_j", "mean_j", "max_j")]
        if any(v is not None for v in spread):
            low, mean, high = (_number(v, ".4g", "?") for v in spread)
            label += f" (per window: min {low}, mean {mean}, max {high} J)"
    if r.get("world_size") is not None:
        part = "whole job" if r.get("whole_job") else f"rank {r.get('rank')} on {r.get('host')}"
        label = f"{label}  [job {r.get('job_id')}: {part}]"
    return label


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any, spec: str, absent: str = "", scale: float = 1.0) -> str:
    """A stored number in a table cell; what is not a number (an edited file) shown as is."""
    if value is None:
        return absent
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value * scale, spec)
    return str(value)
