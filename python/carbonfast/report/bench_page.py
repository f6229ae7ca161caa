"""A benchmark record as an HTML page: the comparison a bench result shows everywhere
(bench.display.bench_html: energy and time per call with their 95% confidence intervals, the
ratio to the best and whether the difference is significant, grams CO2e per million calls, an
energy chart), and charts of the time per call and the ratios with their intervals as whiskers.

It reads only the stored result, `record.bench` (BenchResult.to_dict()), which a history may
hold from any version or damaged: a comparison that cannot be read is said to be so, and a
missing or odd field of a variant is left out of the charts, never guessed. The charts are
inline SVG: the page needs no script at all.
"""

from __future__ import annotations

import html
import math

from carbonfast.report.page import document, finite

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast.record import Record


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = finite(value[0]), finite(value[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


def variants(bench: dict[str, Any]) -> list[dict[str, Any]]:
    """The stored variants, each field checked, the lowest energy per call first."""
    out = []
    for v in bench.get("variants") or []:
        if not isinstance(v, dict):
            continue
        out.append(
            {
                "name": str(v.get("name", "?")),
                "j": finite(v.get("joules_per_call")),
                "j_ci": _pair(v.get("joules_per_call_ci")),
                "s": finite(v.get("seconds_per_call")),
                "s_ci": _pair(v.get("seconds_per_call_ci")),
                "ratio": finite(v.get("ratio")),
                "ratio_ci": _pair(v.get("ratio_ci")),
                "significant": v.get("significant") is True,
                "g_per_m": finite(v.get("g_co2e_per_million_calls")),
                "samples": v.get("samples"),
            }
        )
    out.sort(key=lambda v: math.inf if v["j"] is None else v["j"])
    return out


def _chart(rows: list[dict[str, Any]], key: str, unit: str, title: str) -> str:
    from carbonfast.bench.display import bar_chart

    bars = [
        (v["name"], v[key], v[f"{key}_ci"] or (v[key], v[key])) for v in rows if v[key] is not None
    ]
    if not bars:
        return ""
    return f'<figure class="chart"><figcaption>{title}</figcaption>{bar_chart(bars, unit)}</figure>'


def _comparison(bench: dict[str, Any]) -> str:
    from carbonfast.bench.display import bench_html
    from carbonfast.bench.result import BenchResult

    try:
        result = BenchResult.from_dict(bench)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ZeroDivisionError):
        return '<p class="note">Its stored comparison cannot be read (see --json).</p>'
    if not result.variants:
        return '<p class="note">This record holds no variant.</p>'
    return bench_html(result)


def render(record: Record) -> str:
    """The page of a benchmark record."""
    from carbonfast.carbon.advice import fmt_mass

    bench = record.bench if isinstance(record.bench, dict) else {}
    rows = variants(bench)
    title = record.label or "benchmark"
    facts = [("started", str(bench.get("started_at") or record.started_at))]
    if record.emissions_kg is not None:
        facts.append(("emissions of all calls", f"{fmt_mass(record.emissions_kg)} CO2e"))
    body = [
        f"<h1>{html.escape(title)}</h1><table>",
        *(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts),
        "</table><h2>Comparison</h2>",
        f'<div id="comparison">{_comparison(bench)}</div>',
        '<p class="note">Whiskers are 95% confidence intervals. A difference is significant '
        "where the ratio's whole interval lies above 1.</p>",
        _chart(rows, "s", "s", "time per call"),
        _chart(rows, "ratio", "x", "ratio to the best"),
    ]
    if record.notes:
        body.append(
            "<h2>Notes</h2><ul>"
            + "".join(f"<li>{html.escape(n)}</li>" for n in record.notes)
            + "</ul>"
        )
    return document(title, "\n".join(body))
