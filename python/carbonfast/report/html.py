"""A record as one self-contained HTML page: for a run, window or task its power trace per domain
and in total (drawn in the browser by uPlot, zoomable), the energy split, emissions, advice and
notes; for a benchmark its comparison (see bench_page).

Nothing heavy is imported: the page is a few string joins and one JSON dump, so `--html` costs
a run milliseconds, not the second a plotting library's import took.
"""

from __future__ import annotations

import html
import os

from carbonfast.report.page import document, finite, text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from carbonfast.record import Record

_SPLIT_NAME_W = 150
_SPLIT_BAR_W = 360
_SPLIT_ROW_H = 20


def _rows(record: Record) -> list[tuple[str, str]]:
    """The summary table: what ran, when, how long, its energy and emissions."""
    from carbonfast.carbon.advice import fmt_mass

    energy = record.energy_j
    rows = [("label", record.label)] if record.label and record.label != record.title else []
    rows += [
        ("kind", record.kind),
        ("started", record.started_at),
        ("duration", f"{record.duration_s:.3f} s"),
        ("energy", "unknown" if energy is None else f"{energy:.4g} J"),
    ]
    if record.estimated and record.energy_range_j:
        lo, hi = record.energy_range_j
        rows.append(("estimated range", f"{lo:.4g} J to {hi:.4g} J"))
    if record.attributed is not None:
        from carbonfast.attribution import summary_line

        a = record.attributed
        rows.append((a.scope, summary_line(a, "it").removeprefix("of which it: ")))
        rows.append(("how it is shared", a.method))
    if record.emissions_kg is not None:
        rows.append(("emissions", f"{fmt_mass(record.emissions_kg)} CO2e"))
        rows.append(
            (
                "intensity",
                f"{record.intensity_g_per_kwh:g} g/kWh x PUE {record.pue or 1:g}: "
                f"{record.intensity_source}",
            )
        )
    if record.exit_code is not None:
        rows.append(("exit code", str(record.exit_code)))
    return rows


def trace_data(record: Record, trace: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The trace as the page's chart reads it: seconds from the start, watts per domain (each
    marked estimated or measured) and the total of the domains that count in it; None where
    there are fewer than two points, too few for a line."""
    if not trace:
        return None
    times = [finite(t) for t in trace.get("t_s") or []]
    if len(times) < 2 or None in times:
        return None
    t0 = times[0] or 0.0
    t = [(x or 0.0) - t0 for x in times]
    domains, counted = [], []
    power = trace.get("power_w")
    for name, values in power.items() if isinstance(power, dict) else []:
        w = [finite(v) for v in values][: len(t)] if isinstance(values, list) else []
        w += [None] * (len(t) - len(w))
        d = record.domains.get(name)
        domains.append({"name": text(name), "estimated": bool(d and d.estimated), "w": w})
        if d is None or d.in_total:
            counted.append(w)
    total: list[float | None] = []
    for k in range(len(t)):
        column = [w[k] for w in counted]
        total.append(None if not column or None in column else sum(c or 0.0 for c in column))
    estimated = any(
        d.estimated and d.in_total for n, d in record.domains.items() if n in (power or {})
    )
    return {"t": t, "domains": domains, "total": total, "total_estimated": estimated}


def _split_svg(record: Record) -> str:
    """Each domain's energy as a horizontal bar from 0, estimated ones grey and named so."""
    known = [(n, d) for n, d in record.domains.items() if d.energy_j is not None]
    if not known:
        return '<p class="note">No domain\'s energy is known.</p>'
    top = max((d.energy_j or 0.0) for _, d in known)
    scale = _SPLIT_BAR_W / top if top > 0 else 0.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_SPLIT_NAME_W + _SPLIT_BAR_W + 150}" '
        f'height="{_SPLIT_ROW_H * len(known) + 4}" font-size="12" font-family="sans-serif" '
        'role="img" aria-label="energy per domain">'
    ]
    for i, (name, d) in enumerate(known):
        y = i * _SPLIT_ROW_H + 2
        mid = y + _SPLIT_ROW_H / 2 + 4
        energy = d.energy_j or 0.0
        tag = " (estimated)" if d.estimated else ""
        out.append(
            f'<text x="{_SPLIT_NAME_W - 6}" y="{mid:.1f}" text-anchor="end">'
            f"{html.escape(name[:24])}</text>"
            f'<rect x="{_SPLIT_NAME_W}" y="{y + 3}" width="{max(energy, 0) * scale:.1f}" '
            f'height="{_SPLIT_ROW_H - 6}" fill="{"#aaaaaa" if d.estimated else "#2a7d4f"}"/>'
            f'<text x="{_SPLIT_NAME_W + _SPLIT_BAR_W + 6}" y="{mid:.1f}">'
            f"{energy:.4g} J{tag}{'' if d.in_total else ', not in the total'}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _no_plot(record: Record, trace: Mapping[str, Any] | None) -> str:
    points = len(trace.get("t_s") or []) if trace else 0
    return (
        f'<p class="note" id="no-plot">No power plot: this {html.escape(record.kind)} lasted '
        f"{record.duration_s:.3g} s and its trace has {points} point{'s' * (points != 1)}; a "
        "plot needs at least 2 (a run is sampled at --sample-hz, 10 per second by default, "
        "and a window or task keeps no trace).</p>"
    )


def _list(heading: str, items: list[str]) -> str:
    if not items:
        return ""
    listed = "".join(f"<li>{html.escape(i)}</li>" for i in items)
    return f"<h2>{heading}</h2><ul>{listed}</ul>"


def render(record: Record, trace: Mapping[str, Any] | None = None) -> str:
    """The HTML text of a record."""
    if record.kind == "bench" and record.bench:
        from carbonfast.report import bench_page

        return bench_page.render(record)
    esc = html.escape
    title = record.title or "measurement"
    chart = trace_data(record, trace)
    body = [
        f"<h1>{esc(title)}</h1><table>",
        *(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in _rows(record)),
        "</table><h2>Power</h2>",
        '<div id="power" class="chart"></div>' if chart else _no_plot(record, trace),
    ]
    if chart and any(d["estimated"] for d in chart["domains"]):
        body.append('<p class="note">Dashed lines are estimated domains, not counters.</p>')
    body += [
        "<h2>Energy per domain</h2>",
        _split_svg(record),
        _list("Advice", [a["message"] for a in record.advice]),
        _list("Notes", list(record.notes)),
    ]
    # Without a chart the page needs no script: it is then a few kilobytes.
    return document(title, "\n".join(body), data={"trace": chart}, start="run" if chart else None)


def write(
    path: str | os.PathLike[str], record: Record, trace: Mapping[str, Any] | None = None
) -> None:
    from carbonfast.report.files import write_atomically

    write_atomically(path, render(record, trace))
