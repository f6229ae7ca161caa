"""What the history dashboard shows, added up in SQL before it is embedded: a history of 100,000
records becomes a few thousand numbers, never one point per row.

- Energy and emissions over time: records bucketed in time per kind and label (the labels with
  the most energy by name, the rest as one group), at most MAX_CELLS cells in all, so that the
  page can still filter by kind, label and time.
- Energy per label: the history's window sums (one row per label, at most ~1000).
- The newest records, benchmarks (their stored comparison) and distributed jobs, each capped.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone

from carbonfast.report.bench_page import variants
from carbonfast.report.page import finite, text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Labels named in the time series; the others are added up as one group.
MAX_LABELS = 20
# Cells (kind x label group x time bucket) in the time series, and the buckets' bounds.
MAX_CELLS = 4000
MIN_BUCKETS, MAX_BUCKETS = 20, 1000
MAX_RECORDS = 300
MAX_BENCHES = 30
MAX_JOBS = 20
# The label sums that the page lists; the history keeps at most ~1000.
MAX_WINDOW_LABELS = 1000

# started_at (ISO 8601, with its offset) as Unix seconds, in SQLite.
_T = "((julianday(started_at) - 2440587.5) * 86400.0)"
# The kind of the rows that hold one label's window sums; they have no single time.
_SUMS = "windows"


def collect(db: sqlite3.Connection) -> dict[str, Any]:
    """Everything the dashboard embeds, from a history's database."""
    kinds = {str(k): n for k, n in db.execute("SELECT kind, count(*) FROM runs GROUP BY kind")}
    return {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "kinds": kinds,
        "series": _series(db),
        "labels": _window_labels(db),
        "records": _records(db),
        "benches": _benches(db),
        "jobs": _jobs(db),
    }


def _series(db: sqlite3.Connection) -> dict[str, Any]:
    """Energy, emissions and counts per (kind, label group, time bucket), in columns."""
    top = [
        row[0]
        for row in db.execute(
            # `+label`: one pass over the table, where the label index would read it row by row.
            f"SELECT +label FROM runs WHERE kind != ? AND label IS NOT NULL GROUP BY +label "
            f"ORDER BY sum(coalesce(energy_j, 0)) DESC, count(*) DESC LIMIT {MAX_LABELS}",
            (_SUMS,),
        )
    ]
    marks = ", ".join("?" * len(top)) or "NULL"
    # A label outside the top ones is the one group `other`; no label stays NULL.
    group = f"CASE WHEN label IN ({marks}) THEN label WHEN label IS NULL THEN NULL ELSE 1 END"
    # The span from the first and last start as text (carbonfast writes them all in UTC, so
    # they sort as times) rather than from every row's parsed time; a row with another offset
    # lands in the first or last bucket.
    first, last = db.execute(
        "SELECT min(started_at), max(started_at) FROM runs WHERE kind != ?", (_SUMS,)
    ).fetchone()
    t0, t1 = (
        db.execute(
            "SELECT (julianday(?) - 2440587.5) * 86400.0, (julianday(?) - 2440587.5) * 86400.0",
            (first, last),
        ).fetchone()
        if first is not None
        else (None, None)
    )
    empty: dict[str, Any] = {"t0": None, "width_s": None, "buckets": 0, "groups": [], "cells": {}}
    if t0 is None or t1 is None:
        return empty
    (groups,) = db.execute(
        f"SELECT count(*) FROM (SELECT DISTINCT kind, {group} FROM runs WHERE kind != ?)",
        (*top, _SUMS),
    ).fetchone()
    buckets = max(MIN_BUCKETS, min(MAX_BUCKETS, MAX_CELLS // max(1, groups)))
    width = max((t1 - t0) / buckets, 1e-3)
    rows = db.execute(
        f"SELECT kind, g, max(0, min({buckets - 1}, CAST((t - ?) / ? AS INTEGER))) AS b, "
        "count(*), count(energy_j), sum(energy_j), sum(emissions_kg), max(estimated) "
        f"FROM (SELECT kind, {group} AS g, {_T} AS t, energy_j, emissions_kg, estimated "
        "FROM runs WHERE kind != ?) WHERE t IS NOT NULL GROUP BY kind, g, b ORDER BY b",
        (t0, width, *top, _SUMS),
    ).fetchall()
    keys: dict[tuple[str, Any], int] = {}
    cells: dict[str, list[Any]] = {k: [] for k in ("g", "b", "n", "known", "j", "kg", "est")}
    for kind, g, b, n, known, j, kg, est in rows:
        key = (str(kind), g)
        if key not in keys:
            keys[key] = len(keys)
        for name, value in zip(
            cells, (keys[key], b, n, known, finite(j), finite(kg), int(bool(est))), strict=True
        ):
            cells[name].append(value)
    listed = [
        {"kind": kind, "label": None if g in (None, 1) else text(g), "other": g == 1}
        for (kind, g) in keys
    ]
    return {"t0": t0, "width_s": width, "buckets": buckets, "groups": listed, "cells": cells}


def _window_labels(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each label's window sums, the most energy first."""
    out = []
    for label, energy, kg, report in db.execute(
        "SELECT label, energy_j, emissions_kg, report FROM runs WHERE kind = ? "
        f"ORDER BY coalesce(energy_j, 0) DESC LIMIT {MAX_WINDOW_LABELS}",
        (_SUMS,),
    ):
        try:
            sums = json.loads(report)
        except (TypeError, ValueError, RecursionError):
            sums = None
        sums = sums if isinstance(sums, dict) else {}
        out.append(
            {
                "label": text(label),
                "count": finite(sums.get("count")),
                "j": finite(energy),
                "mean_j": finite(sums.get("mean_j")),
                "min_j": finite(sums.get("min_j")),
                "max_j": finite(sums.get("max_j")),
                "kg": finite(kg),
                "first_at": text(sums.get("first_at"), 40),
                "last_at": text(sums.get("last_at"), 40),
                "estimated": bool(sums.get("estimated")),
            }
        )
    return out


def _records(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """The newest records, as `carbonfast history` lists them."""
    return [
        {
            "id": rid,
            "kind": text(kind),
            "label": text(label),
            "started_at": text(started, 40),
            "s": finite(seconds),
            "j": finite(energy),
            "estimated": bool(estimated),
            "kg": finite(kg),
            "host": text(host),
            "job": text(job),
        }
        for rid, kind, label, started, seconds, energy, estimated, kg, host, job in db.execute(
            "SELECT id, kind, label, started_at, duration_s, energy_j, estimated, emissions_kg, "
            f"host, job_id FROM runs ORDER BY id DESC LIMIT {MAX_RECORDS}"
        )
    ]


def _benches(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """The newest benchmarks with their stored comparison (unreadable ones left out)."""
    out = []
    for rid, label, started, report in db.execute(
        f"SELECT id, label, started_at, report FROM runs WHERE kind = 'bench' "
        f"ORDER BY id DESC LIMIT {MAX_BENCHES}"
    ):
        try:
            bench = json.loads(report).get("bench")
        except (TypeError, ValueError, AttributeError, RecursionError):
            continue
        if not isinstance(bench, dict):
            continue
        rows = variants(bench)
        for v in rows:
            v["name"] = text(v["name"], 120)
        out.append(
            {
                "id": rid,
                "label": text(label),
                "started_at": text(started, 40),
                "estimated": bool(bench.get("estimated")),
                "variants": rows,
            }
        )
    return out


def _jobs(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """The newest distributed jobs, each added up per kind and label, and per host."""
    from carbonfast.report.history import job_records
    from carbonfast.report.job import summarize

    out = []
    for job_id, started in db.execute(
        "SELECT job_id, min(started_at) FROM runs WHERE job_id IS NOT NULL "
        f"GROUP BY job_id ORDER BY max(id) DESC LIMIT {MAX_JOBS}"
    ):
        groups = summarize(job_records(db, str(job_id), say=lambda _: None))
        out.append(
            {
                "job": text(job_id),
                "started_at": text(started, 40),
                "groups": [
                    {
                        "kind": text(g.kind),
                        "label": text(g.label),
                        "j": finite(g.energy_j),
                        "estimated": g.estimated,
                        "world_size": g.world_size,
                        "missing": len(g.missing_ranks),
                        "hosts": [
                            {
                                "host": text(host),
                                "j": finite(h.get("energy_j")),
                                "ranks": len(h.get("ranks") or []),
                            }
                            for host, h in sorted(g.hosts.items())
                        ],
                    }
                    for g in groups
                ],
            }
        )
    return out
