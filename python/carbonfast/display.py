"""How carbonfast's objects show in IPython and Jupyter: small HTML tables (every string from
outside escaped) and the plain text `print` gives, for `_repr_html_` and `_repr_pretty_`.

The classes keep one-line methods that import this module when asked to show themselves, so
that nothing here is loaded by `import carbonfast`.
"""

from __future__ import annotations

from html import escape

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

    from carbonfast._native import DomainInfo
    from carbonfast.decorator import CallStats
    from carbonfast.meter import Meter, SamplerStats
    from carbonfast.record import Record

# Inline styles only, and few: a notebook's own stylesheet is unknown, and a <style> block
# would leak into the rest of the page.
_TABLE = "<table>"
_NUM = ' style="text-align:right"'


def pretty(obj: object, p: Any, cycle: bool) -> None:
    """`_repr_pretty_`: IPython's text display is what `print` shows."""
    p.text("..." if cycle else str(obj))


def html_table(
    head: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool] = ()
) -> str:
    """A table of cells already made HTML (`text()` escapes strings), under `head` (none where
    empty); `numeric` aligns a column right."""

    def style(i: int) -> str:
        return _NUM if i < len(numeric) and numeric[i] else ""

    out = [_TABLE]
    if head:
        out += ["<tr>", *(f"<th{style(i)}>{escape(h)}</th>" for i, h in enumerate(head)), "</tr>"]
    for row in rows:
        out.append("<tr>")
        out += [f"<td{style(i)}>{c}</td>" for i, c in enumerate(row)]
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def text(value: object) -> str:
    """A value as escaped HTML text; None as an empty cell (unknown, never 0)."""
    return "" if value is None else escape(str(value))


def joules(value: float | None) -> str:
    from carbonfast.report.console import format_joules

    return "unknown" if value is None else format_joules(value)


def details(summary: str, lines: Sequence[str]) -> str:
    """Lines folded away under `summary` (notes: worth a click, not the first look)."""
    if not lines:
        return ""
    items = "".join(f"<li>{text(line)}</li>" for line in lines)
    return f"<details><summary>{text(summary)}</summary><ul>{items}</ul></details>"


# Records and measurements ------------------------------------------------------------------


def record_html(r: Record) -> str:
    """A record (a measurement, a run, a history entry): its figures, domains and notes."""
    from carbonfast.carbon.advice import fmt_mass

    energy = joules(r.energy_j)
    if r.estimated:
        energy += " (estimated)"
    if r.energy_range_j and r.energy_range_j[0] != r.energy_range_j[1]:
        energy += f", {joules(r.energy_range_j[0])} to {joules(r.energy_range_j[1])}"
    if r.partial:
        energy += ", PARTIAL (see notes)"
    figures = [
        ("energy", energy),
        ("duration", f"{r.duration_s:.4g} s"),
        ("power", "unknown" if r.power_w is None else f"{r.power_w:.4g} W"),
    ]
    if r.emissions_kg is not None:
        where = r.intensity_label or r.location or "world average"
        figures.append(
            (
                "emissions",
                f"{fmt_mass(r.emissions_kg)} CO2e ({where}: {r.intensity_g_per_kwh:g} g/kWh "
                f"x PUE {r.pue or 1:g})",
            )
        )
    if r.started_at:
        figures.append(("started (UTC)", r.started_at[:19].replace("T", " ")))
    title = f"{r.kind} <b>{text(r.title or '(no label)')}</b>"
    if r.id is not None:
        title += f" (history id {r.id})"
    domains = [
        [text(name), text(d.kind), joules(d.energy_j), text(_how(d.estimated, d.in_total))]
        for name, d in r.domains.items()
    ]
    return (
        f"<div>{title}"
        + html_table([], [[text(k), text(v)] for k, v in figures])
        + (
            html_table(["domain", "kind", "energy", "how"], domains, (False, False, True))
            if domains
            else ""
        )
        + details(f"{len(r.notes)} note(s)", r.notes)
        + "</div>"
    )


def _how(estimated: bool, in_total: bool) -> str:
    how = "estimated" if estimated else "measured"
    return how if in_total else f"{how}, inside the total"


def records_text(records: Sequence[Record]) -> str:
    """Records as `carbonfast history` lists them: one line each, newest first."""
    from carbonfast.report.history_table import table

    rows = [
        {
            "id": "" if r.id is None else r.id,
            "started_at": r.started_at,
            "kind": r.kind,
            "duration_s": r.duration_s,
            "energy_j": r.energy_j,
            "estimated": r.estimated,
            "emissions_kg": r.emissions_kg,
            "label": r.label,
            **(r.sums or {}),
            "world_size": r.world_size,
            "whole_job": r.hosts is not None,
            "rank": r.rank,
            "host": r.host,
            "job_id": r.job_id,
        }
        for r in records
    ]
    return "\n".join(table(rows, [] if records else ["(no records)"]))


def _label(r: Record) -> str:
    label = r.label or ""
    count = (r.sums or {}).get("count")
    return f"{label or '(no label)'} x{count}" if count is not None else label


def records_html(records: Sequence[Record]) -> str:
    rows = [
        [
            text(r.id),
            text(r.started_at[:19].replace("T", " ")),
            text(r.kind),
            f"{r.duration_s:.3f}",
            joules(r.energy_j) + ("~" if r.estimated else ""),
            "" if r.emissions_kg is None else f"{r.emissions_kg * 1e3:.4g}",
            text(_label(r)),
        ]
        for r in records
    ]
    head = ["id", "started (UTC)", "kind", "s", "energy", "g CO2e", "label"]
    note = "<div>~: estimated</div>" if any(r.estimated for r in records) else ""
    return html_table(head, rows, (True, False, False, True, True, True, False)) + note


# Meters and their statistics ---------------------------------------------------------------


def meter_text(meter: Meter) -> str:
    lines = [f"{'domain':<16} {'kind':<8} {'source':<10} how"]
    lines += [f"{d.name:<16} {d.kind:<8} {d.source:<10} {_domain_how(d)}" for d in meter.domains]
    if not meter.domains:
        lines.append("(no domain: nothing can be measured or estimated here)")
    if meter.job is not None:
        lines.append(f"job: {meter.job!r}")
    from carbonfast.report.console import printable_lines

    return printable_lines("\n".join(lines))


def _domain_how(d: DomainInfo) -> str:
    how = f"estimated ({d.method})" if d.estimated and d.method else _how(d.estimated, True)
    return how if d.counts_in_total else f"{how}, not added to the total"


def meter_html(meter: Meter) -> str:
    rows = [
        [text(d.name), text(d.kind), text(d.source), text(_domain_how(d))] for d in meter.domains
    ]
    return (
        "<div><b>Meter</b>"
        + html_table(["domain", "kind", "source", "how"], rows)
        + details(f"{len(meter.notes)} note(s)", meter.notes)
        + "</div>"
    )


def call_stats_html(stats: CallStats) -> str:
    energy = stats.energy_j
    per_call = None if energy is None or not stats.calls else energy / stats.calls
    rows = [
        ["calls", str(stats.calls)],
        ["duration", f"{stats.duration_s:.4g} s"],
        ["energy", joules(energy)],
        ["energy per call", joules(per_call)],
    ]
    return html_table([], rows, (False, True))


def sampler_stats_html(stats: SamplerStats) -> str:
    rows = [[escape(k), escape(str(v))] for k, v in stats.as_dict().items()]
    return html_table(["sampler", ""], rows, (False, True))
