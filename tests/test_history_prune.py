"""Runs and benchmarks are bounded in the history as windows are: past the bound of their kind
the oldest go, a distributed job's records together, and the other kinds stay."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from carbonfast.record import DomainRecord, Record
from carbonfast.report.history import History


def _record(kind: str, label: str, **tags: object) -> Record:
    return Record(
        kind=kind,  # type: ignore[arg-type]
        label=label,
        started_at="2025-06-01T10:00:00+00:00",
        duration_s=1.0,
        energy_j=5.0,
        domains={"package-0": DomainRecord(5.0, "package", False, part="cpu")},
        **tags,  # type: ignore[arg-type]
    )


def _rows(path: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(path)
    try:
        return [tuple(r) for r in db.execute("SELECT kind, label FROM runs ORDER BY id")]
    finally:
        db.close()


def _count(path: Path, table: str) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def test_past_their_bound_the_oldest_runs_and_benches_go(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    h = History(path, bounds={"run": 3, "bench": 2})
    trace = {"t_s": [0.0, 1.0], "power_w": {"package-0": [5.0, 5.0]}}
    h.add(_record("window", "kept"))
    for i in range(6):
        h.add(_record("run", f"run{i}"), trace)
        h.add(_record("bench", f"bench{i}"))
    h.close()
    rows = _rows(path)
    assert [label for kind, label in rows if kind == "run"] == ["run3", "run4", "run5"]
    assert [label for kind, label in rows if kind == "bench"] == ["bench4", "bench5"]
    assert ("window", "kept") in rows
    # The pruned records' domains and traces went with them.
    assert _count(path, "traces") == 3
    assert _count(path, "domains") == len(rows)


def test_one_batch_larger_than_the_bound_keeps_only_its_newest(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    h = History(path, bounds={"run": 2})
    h.add_many([(_record("run", f"run{i}"), None) for i in range(5)])
    h.close()
    assert _rows(path) == [("run", "run3"), ("run", "run4")]


def test_a_jobs_records_count_once_and_go_together(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    h = History(path, bounds={"run": 2})
    job = {"job_id": "j1", "world_size": 3}
    h.add_many([(_record("run", "train", host="a", rank=r, **job), None) for r in range(3)])
    h.add(_record("run", "alone"))
    # The job's three ranks and one run: two units, within the bound.
    assert len(h.job_records("j1")) == 3
    h.add(_record("run", "later"))
    assert h.job_records("j1") == []
    h.close()
    assert _rows(path) == [("run", "alone"), ("run", "later")]


def test_the_bounds_are_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CARBONFAST_HISTORY_MAX_RUNS", "2")
    monkeypatch.setenv("CARBONFAST_HISTORY_MAX_BENCHES", "1")
    path = tmp_path / "h.sqlite"
    h = History(path)
    for i in range(4):
        h.add(_record("run", f"run{i}"))
        h.add(_record("bench", f"bench{i}"))
    h.close()
    assert _rows(path) == [("run", "run2"), ("run", "run3"), ("bench", "bench3")]
    monkeypatch.setenv("CARBONFAST_HISTORY_MAX_RUNS", "none")
    with pytest.raises(ValueError, match="CARBONFAST_HISTORY_MAX_RUNS"):
        History(path)
    # Reading the history needs no bound.
    assert len(History(path, read_only=True).list()) == 3


def test_by_default_a_thousand_runs_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("CARBONFAST_HISTORY_MAX_RUNS", "CARBONFAST_HISTORY_MAX_BENCHES"):
        monkeypatch.delenv(name, raising=False)
    assert History(tmp_path / "h.sqlite").bounds == {"run": 1000, "bench": 1000}


def test_a_bad_bound_stops_a_run_before_its_command_starts(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    marker = tmp_path / "ran"
    env = {
        **os.environ,
        "CARBONFAST_HISTORY": str(tmp_path / "h.sqlite"),
        "CARBONFAST_HISTORY_MAX_RUNS": "lots",
        "CARBONFAST_POWERCAP_ROOT": str(tmp_path / "no-rapl"),
    }
    r = subprocess.run(
        [sys.executable, "-m", "carbonfast.cli", "run", "--", "touch", str(marker)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2, r.stderr
    assert "CARBONFAST_HISTORY_MAX_RUNS='lots' is not valid" in r.stderr
    assert not marker.exists()
