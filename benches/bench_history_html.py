"""What the history dashboard costs at the history's cap: a history of 100,000 records (runs,
tasks, kept windows and benchmarks over a year, 200 labels, 1000 window sums, distributed
jobs), the time `carbonfast history --html` takes to build the page, and the page's size; with
Chromium installed, the time headless Chromium takes to open it and run its script.

The page adds the history up in SQL before it embeds anything (a few thousand numbers, never
one point per row); the budget is well under a few seconds to build and under 2 s to open.

    python benches/bench_history_html.py
    python benches/bench_history_html.py --records 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from carbonfast.report import dashboard
from carbonfast.report.history import History, WindowSums

KINDS = ("run", "run", "task", "window", "bench")


def _bench_report(rng: random.Random) -> dict:
    def variant(name: str, j: float) -> dict:
        return {
            "name": name,
            "joules_per_call": j,
            "joules_per_call_ci": [j * 0.97, j * 1.03],
            "seconds_per_call": j / 20,
            "seconds_per_call_ci": [j / 21, j / 19],
            "ratio": j / 1e-4,
            "ratio_ci": [j / 1e-4 * 0.95, j / 1e-4 * 1.05],
            "significant": j > 1e-4,
            "g_co2e_per_million_calls": j * 1e6 / 3.6e6 * 400,
        }

    return {"variants": [variant("numpy", 1e-4), variant("loop", rng.uniform(1e-4, 5e-4))]}


def build(path: Path, records: int) -> None:
    """A history of `records` rows written straight into a History's tables (fast)."""
    rng = random.Random(26)
    history = History(path)
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rows = []
    for i in range(records):
        kind = KINDS[i % len(KINDS)]
        at = (start + timedelta(seconds=i * 315.0)).isoformat()
        energy = rng.uniform(1, 5000)
        report = {"kind": kind, "started_at": at, "duration_s": 10.0, "energy_j": energy}
        if kind == "bench":
            report["bench"] = _bench_report(rng)
        job = f"job-{i // 8}" if i % 50 < 8 else None
        rows.append(
            (kind, f"label-{i % 200}", at, 10.0, energy, 0, energy / 3.6e6 * 0.4,
             f"host-{i % 4}", json.dumps(report), job, (i % 8) if job else None,
             8 if job else None, 0 if job else None)
        )  # fmt: skip
    db = history._db
    with db:
        db.executemany(
            "INSERT INTO runs (kind, label, started_at, duration_s, energy_j, estimated, "
            "emissions_kg, host, report, job_id, rank, world_size, whole_job) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    history.add_sums(
        [
            WindowSums(f"step-{k}", 500, 500, 50.0 * k, 0.01, 1.0, 5.0, "2025-01-01", "2025-12-31")
            for k in range(1000)
        ]
    )
    history.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.sqlite"
        t0 = time.perf_counter()
        build(path, args.records)
        print(f"history of {args.records:,} records built in {time.perf_counter() - t0:.1f} s")
        page = Path(tmp) / "dash.html"
        times, size = [], 0
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            size = dashboard.write(page, path)
            times.append(time.perf_counter() - t0)
        print(
            f"dashboard: built in {statistics.median(times):.3f} s (median of {args.rounds}, "
            f"min {min(times):.3f} s), {size:,} bytes ({size / 1024:.0f} KiB)"
        )
        chromium = shutil.which("chromium")
        if chromium:
            t0 = time.perf_counter()
            dom = subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                 page.as_uri()],
                capture_output=True, text=True, timeout=120, check=True,
            ).stdout  # fmt: skip
            took = time.perf_counter() - t0
            ok = 'data-ready="1"' in dom and "data-errors" not in dom[:300]
            print(
                f"headless Chromium opened it and ran its script in {took:.2f} s "
                f"(browser start included){'' if ok else ' WITH ERRORS'}"
            )


if __name__ == "__main__":
    main()
