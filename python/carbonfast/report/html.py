"""A self-contained HTML report: power trace per domain, energy split, emissions, advice.
matplotlib is imported only here, only when a report is asked for."""

from __future__ import annotations

import base64
import html
import io
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from carbonfast.record import Record


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figures(record: Record, trace: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "HTML reports draw their plots with matplotlib: pip install matplotlib"
        ) from None
    out = []
    if trace and len(trace.get("t_s", [])) > 1:
        fig, ax = plt.subplots(figsize=(9, 3.6))
        t0 = trace["t_s"][0]
        for name, power in trace["power_w"].items():
            ax.plot([t - t0 for t in trace["t_s"]], power, label=name, linewidth=1.2)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("power (W)")
        ax.set_title("Power per domain")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
        out.append(("power trace", _png(fig)))
        plt.close(fig)
    domains = record.domains
    if domains:
        fig, ax = plt.subplots(figsize=(9, 0.5 + 0.45 * len(domains)))
        known = {n: d.energy_j for n, d in domains.items() if d.energy_j is not None}
        names = list(known)
        values = list(known.values())
        colors = ["#999999" if domains[n].estimated else "#2a7d4f" for n in names]
        ax.barh(names, values, color=colors)
        ax.set_xlabel("energy (J)  -  grey: estimated")
        ax.set_title("Energy per domain")
        ax.invert_yaxis()
        out.append(("energy split", _png(fig)))
        plt.close(fig)
    return out


def render(record: Record, trace: Mapping[str, Any] | None = None) -> str:
    """The HTML text of a record."""
    from carbonfast.carbon.advice import fmt_mass

    esc = html.escape
    title = record.title or "measurement"
    energy = record.energy_j
    rows = [
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
    for variant in (record.bench or {}).get("variants", []):
        rows.append(
            (
                f"variant {variant.get('name', '?')}",
                f"{variant.get('joules_per_call', 0):.4g} J/call, "
                f"{variant.get('seconds_per_call', 0):.4g} s/call",
            )
        )
    figures = _figures(record, trace)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>carbonfast: {esc(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;"
        "color:#222}td{padding:.2em .8em;vertical-align:top}img{max-width:100%}"
        "h1{font-size:1.4em}</style></head><body>",
        f"<h1>{esc(title)}</h1><table>",
        *(f"<tr><td><b>{esc(k)}</b></td><td>{esc(v)}</td></tr>" for k, v in rows),
        "</table>",
    ]
    for alt, data in figures:
        # The onload hook lets a headless browser confirm the plot decoded and drew.
        parts.append(
            f"<figure><img alt='{esc(alt)}' src='data:image/png;base64,{data}' "
            'onload="document.body.dataset.plotsDrawn = '
            '(+(document.body.dataset.plotsDrawn || 0) + 1)"></figure>'
        )
    if record.advice:
        parts.append("<h2>Advice</h2><ul>")
        parts += [f"<li>{esc(a['message'])}</li>" for a in record.advice]
        parts.append("</ul>")
    if record.notes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li>{esc(n)}</li>" for n in record.notes]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(
    path: str | os.PathLike[str], record: Record, trace: Mapping[str, Any] | None = None
) -> None:
    from carbonfast.report.files import write_atomically

    write_atomically(path, render(record, trace))
