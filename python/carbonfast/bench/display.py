"""A benchmark result in a notebook: an HTML table of time and energy per call with their 95%
confidence intervals and the ratios to the best, and a small inline SVG chart of the same (no
script, nothing fetched: it shows wherever the notebook is opened)."""

from __future__ import annotations

from html import escape

from carbonfast.bench.result import _si, versus
from carbonfast.display import html_table, text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from carbonfast.bench.result import BenchResult, Comparison

# The chart's geometry in pixels: a name column, then the bars.
_NAME_W = 130
_BAR_W = 220
_ROW_H = 18


def _ci(lo: float, hi: float, unit: str) -> str:
    return f"{_si(lo, unit)} to {_si(hi, unit)}"


def bar_chart(bars: Sequence[tuple[str, float, tuple[float, float]]], unit: str) -> str:
    """Horizontal bars (name, value, (low, high)), the interval drawn as a whisker, on one
    scale from 0 to the largest high bound."""
    top = max((max(v, hi) for _, v, (_, hi) in bars), default=0.0)
    scale = _BAR_W / top if top > 0 else 0.0
    height = _ROW_H * len(bars) + 4
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_NAME_W + _BAR_W + 90}" '
        f'height="{height}" font-size="11" font-family="sans-serif" role="img">'
    ]
    for i, (name, value, (lo, hi)) in enumerate(bars):
        y = i * _ROW_H + 2
        mid = y + _ROW_H / 2
        out.append(
            f'<text x="{_NAME_W - 4}" y="{mid + 4:.1f}" text-anchor="end">'
            f"{escape(name[:20])}</text>"
            f'<rect x="{_NAME_W}" y="{y + 3}" width="{max(value, 0) * scale:.1f}" '
            f'height="{_ROW_H - 6}" fill="#4c8c4a"/>'
            f'<line x1="{_NAME_W + max(lo, 0) * scale:.1f}" x2="{_NAME_W + hi * scale:.1f}" '
            f'y1="{mid:.1f}" y2="{mid:.1f}" stroke="#222"/>'
            f'<text x="{_NAME_W + _BAR_W + 6}" y="{mid + 4:.1f}">{escape(_si(value, unit))}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def bench_html(result: BenchResult) -> str:
    ranked = sorted(result.variants, key=lambda v: v.joules_per_call)
    best = ranked[0] if ranked else None
    rows = []
    for v in ranked:
        rel = "best" if v is best else versus(v.ratio, v.ratio_ci, v.significant, ".2f")
        rows.append(
            [
                text(v.name),
                text(_si(v.seconds_per_call, "s")),
                text(_ci(*v.seconds_per_call_ci, "s")),
                text(_si(v.joules_per_call, "J")),
                text(_ci(*v.joules_per_call_ci, "J")),
                f"{v.g_co2e_per_million_calls:.4g}",
                text(rel),
            ]
        )
    head = [
        "variant",
        "s/call",
        "95% CI",
        "J/call",
        "95% CI",
        "g CO2e / 1M calls",
        "x best (95% CI)",
    ]
    how = "ESTIMATED from a model" if result.estimated else "from counters"
    footer = (
        f"energy {how}; {result.intensity_g_per_kwh:g} g/kWh x PUE {result.pue:g} "
        f"({result.intensity_source})"
    )
    chart = bar_chart([(v.name, v.joules_per_call, v.joules_per_call_ci) for v in ranked], "J")
    warnings = "".join(f"<div>warning: {text(w)}</div>" for w in result.warnings)
    return (
        "<div>"
        + html_table(head, rows, (False, True, True, True, True, True, False))
        + chart
        + f"<div>{text(footer)}</div>{warnings}</div>"
    )


def comparison_html(comparison: Comparison) -> str:
    rows = []
    for r in comparison.rows:
        mark = "significant" if r["significant"] else "not significant"
        lo, hi = r["ratio_ci"]
        rows.append(
            [
                text(r["name"]),
                text(_si(r["a"], "J")),
                text(_si(r["b"], "J")),
                f"{r['ratio']:.3f}",
                f"{lo:.3f} to {hi:.3f}",
                mark,
            ]
        )
    head = ["variant", "J/call (a)", "J/call (b)", "b / a", "95% CI", ""]
    chart = bar_chart([(r["name"], r["ratio"], tuple(r["ratio_ci"])) for r in comparison.rows], "")
    return (
        "<div>" + html_table(head, rows, (False, True, True, True, True, False)) + chart + "</div>"
    )
