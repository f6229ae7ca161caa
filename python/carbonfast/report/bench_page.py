"""A benchmark record as an HTML page: the comparison table (energy and time per call with their
95% confidence intervals, the ratio to the best with its interval, whether the difference is
significant, grams CO2e per million calls) and bar charts with the intervals as whiskers.

It reads only the stored result, `record.bench` (BenchResult.to_dict()), which a history may
hold from any version or damaged: a missing or odd field is shown as unknown, never guessed.
The charts are inline SVG: the page needs no script at all.
"""

from __future__ import annotations

import html
import math

from carbonfast.report.page import document, finite

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast.record import Record

_PREFIXES = (("", 1.0), ("m", 1e-3), ("µ", 1e-6), ("n", 1e-9), ("p", 1e-12))


def si(x: float | None, unit: str) -> str:
    """A quantity with an SI prefix: 3.2e-5 J is "32 µJ"; None is "unknown"."""
    if x is None:
        return "unknown"
    if x == 0 or not math.isfinite(x):
        return f"{x:.3g} {unit}".strip()
    for prefix, scale in _PREFIXES:
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}".strip()
    return f"{x / 1e-15:.3g} f{unit}".strip()


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


def _ci(pair: tuple[float, float] | None, unit: str) -> str:
    return "unknown" if pair is None else f"{si(pair[0], unit)} to {si(pair[1], unit)}"


def _relation(v: dict[str, Any], best: bool) -> str:
    if best:
        return "best (the baseline)"
    ratio = "unknown" if v["ratio"] is None else f"{v['ratio']:.3g}x"
    ci = v["ratio_ci"]
    span = "" if ci is None else f" ({ci[0]:.3g} to {ci[1]:.3g})"
    return ratio + span


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        "<tr><th>variant</th><th class=n>J/call</th><th class=n>95% CI</th>"
        "<th class=n>s/call</th><th class=n>95% CI</th>"
        "<th class=n>ratio to the best (95% CI)</th><th>difference</th>"
        "<th class=n>g CO2e / 1M calls</th></tr>"
    )
    body = []
    for i, v in enumerate(rows):
        cells = [
            v["name"],
            si(v["j"], "J"),
            _ci(v["j_ci"], "J"),
            si(v["s"], "s"),
            _ci(v["s_ci"], "s"),
            _relation(v, i == 0),
            "" if i == 0 else ("significant" if v["significant"] else "not significant"),
            "unknown" if v["g_per_m"] is None else f"{v['g_per_m']:.4g}",
        ]
        numeric = (False, True, True, True, True, True, False, True)
        body.append(
            "<tr>"
            + "".join(
                f"<td{' class=n' if n else ''}>{html.escape(c)}</td>"
                for c, n in zip(cells, numeric, strict=True)
            )
            + "</tr>"
        )
    return f'<table class="data" id="comparison">{head}{"".join(body)}</table>'


def _chart(rows: list[dict[str, Any]], key: str, unit: str, title: str) -> str:
    from carbonfast.bench.display import bar_chart

    bars = [
        (v["name"], v[key], v[f"{key}_ci"] or (v[key], v[key])) for v in rows if v[key] is not None
    ]
    if not bars:
        return ""
    return f'<figure class="chart"><figcaption>{title}</figcaption>{bar_chart(bars, unit)}</figure>'


def render(record: Record) -> str:
    """The page of a benchmark record."""
    from carbonfast.carbon.advice import fmt_mass

    bench = record.bench if isinstance(record.bench, dict) else {}
    rows = variants(bench)
    title = record.label or "benchmark"
    how = "ESTIMATED from a model" if bench.get("estimated") else "from energy counters"
    intensity = finite(bench.get("intensity_g_per_kwh"))
    pue = finite(bench.get("pue"))
    facts = [
        ("started", str(bench.get("started_at") or record.started_at)),
        ("energy", how),
        (
            "intensity",
            "unknown"
            if intensity is None
            else f"{intensity:g} g/kWh x PUE {pue or 1:g}: {bench.get('intensity_source') or ''}",
        ),
    ]
    if record.emissions_kg is not None:
        facts.append(("emissions of all calls", f"{fmt_mass(record.emissions_kg)} CO2e"))
    body = [
        f"<h1>{html.escape(title)}</h1><table>",
        *(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts),
        "</table><h2>Comparison</h2>",
        _table(rows) if rows else '<p class="note">This record holds no variant.</p>',
        '<p class="note">Whiskers are 95% confidence intervals. A difference is significant '
        "where the ratio's whole interval lies above 1.</p>",
        _chart(rows, "j", "J", "energy per call"),
        _chart(rows, "s", "s", "time per call"),
        _chart(rows, "ratio", "x", "ratio to the best"),
    ]
    warnings = [str(w) for w in bench.get("warnings") or []]
    if warnings:
        body.append(
            "<h2>Warnings</h2><ul>"
            + "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
            + "</ul>"
        )
    if record.notes:
        body.append(
            "<h2>Notes</h2><ul>"
            + "".join(f"<li>{html.escape(n)}</li>" for n in record.notes)
            + "</ul>"
        )
    return document(title, "\n".join(body))
