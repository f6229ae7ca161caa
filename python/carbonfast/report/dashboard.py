"""The history dashboard: one self-contained page of a project's whole history (energy and
emissions over time, energy per label, benchmarks with their intervals, jobs across hosts),
with filters by label, kind and time that run in the page. `carbonfast history --html FILE`."""

from __future__ import annotations

import html
import os
import sqlite3

from carbonfast.report.page import document

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The page's skeleton: only fixed text; everything from the history is filled in by pages.js,
# as text, from the embedded JSON.
_BODY = """
<h1>carbonfast history</h1>
<p class="note" id="summary"></p>
<div class="controls">
<label>label contains <input id="f-label" type="search" size="24"></label>
<label>kind <select id="f-kind"><option value="">all</option></select></label>
<label>from <input id="f-from" type="date"></label>
<label>to <input id="f-to" type="date"></label>
</div>
<p class="note" id="selection"></p>
<h2>Energy over time</h2>
<p class="note">Records added up per time bucket; drag across a chart to zoom, double-click to
zoom out.</p>
<div id="chart-energy" class="chart"></div>
<h2>Emissions over time</h2>
<div id="chart-emissions" class="chart"></div>
<h2>Energy per label (windows)</h2>
<p class="note">Each label's windows as the history adds them up.</p>
<div id="chart-labels" class="chart"></div>
<table class="data" id="labels"></table>
<h2>Benchmarks</h2>
<p class="note">Energy per call with its 95% confidence interval (the whisker); the ratio is to
the variant that uses the least energy.</p>
<div id="benches"></div>
<h2>Jobs across hosts</h2>
<div id="jobs"></div>
<h2>Newest records</h2>
<table class="data" id="records"></table>
"""


def render(data: dict[str, Any], source: str) -> str:
    """The page of the history data `data` (dashboard_data.collect), read from `source`."""
    body = _BODY + f'<p class="note">From {html.escape(source)}.</p>'
    return document("history", body, data=data, start="dashboard")


def write(
    path: str | os.PathLike[str],
    history: str | os.PathLike[str],
    selected: dict[str, str] | None = None,
) -> int:
    """Writes the dashboard of the history file `history` to `path`; returns its size in
    bytes. `selected` ({"label": ..., "kind": ...}) is where the page's filters start. The
    history is opened as `carbonfast history` opens it: a file that is not one is named, and
    nothing is changed."""
    from carbonfast.report.dashboard_data import collect
    from carbonfast.report.files import write_atomically
    from carbonfast.report.history import History

    History(history, read_only=True).close()
    db = sqlite3.connect(history)
    try:
        data = collect(db)
        data["selected"] = selected or {}
        page = render(data, str(history))
    finally:
        db.close()
    write_atomically(path, page)
    return len(page.encode("utf-8"))
