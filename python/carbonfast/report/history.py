"""The SQLite history: one row per run, window, task or benchmark, with its domains, emissions
and trace summary.

Every write is one transaction in WAL mode: a process killed mid-run leaves every record it had
committed intact and readable. Windows are queued and written by a background thread in
batches, so that recording them costs a measurement window almost nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import sqlite3
import threading
from collections import deque
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast.measure import Measurement
    from carbonfast.report.record import Record

DEFAULT_PATH = Path(".carbonfast") / "history.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    label TEXT,
    command TEXT,
    exit_code INTEGER,
    started_at TEXT NOT NULL,
    duration_s REAL NOT NULL,
    energy_j REAL,
    energy_low_j REAL,
    energy_high_j REAL,
    estimated INTEGER NOT NULL,
    emissions_kg REAL,
    intensity_g_per_kwh REAL,
    intensity_source TEXT,
    location TEXT,
    pue REAL,
    host TEXT,
    pid INTEGER,
    carbonfast_version TEXT,
    trace_summary TEXT,
    report TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_label ON runs (label);
CREATE TABLE IF NOT EXISTS domains (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    energy_j REAL NOT NULL,
    estimated INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS traces (
    run_id INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    data TEXT NOT NULL
);
"""


class History:
    """One history database. Safe to use from several threads and processes."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Records hold command lines, which can hold secrets: the file is the owner's alone
        # (SQLite gives its -wal and -shm files the same mode).
        from carbonfast.report.files import check_target

        check_target(self.path)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL is durable against a killed process; only a power cut can lose
        # the last transactions.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._db:
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise ValueError(
                    f"{self.path} has history schema {row[0]}, newer than this carbonfast "
                    f"understands ({SCHEMA_VERSION}); upgrade carbonfast or use another file "
                    "(CARBONFAST_HISTORY)"
                )

    def check(self) -> None:
        """Raises unless records can be written (a read-only, locked or corrupt file)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ROLLBACK")

    def add(self, record: Record, trace: dict | None = None) -> int:
        """Stores one record and returns its id."""
        return self.add_many([(record, trace)])[0]

    def add_many(self, records: list[tuple[Record, dict | None]]) -> list[int]:
        """Stores records in one transaction: all of them, or none."""
        ids = []
        with self._lock, self._db:
            for record, trace in records:
                report = record.to_dict()
                kind = record.kind
                rng = report.get("energy_range_j") or [None, None]
                command = report.get("command")
                cur = self._db.execute(
                    "INSERT INTO runs (kind, label, command, exit_code, started_at, duration_s, "
                    "energy_j, energy_low_j, energy_high_j, estimated, emissions_kg, "
                    "intensity_g_per_kwh, intensity_source, location, pue, host, pid, "
                    "carbonfast_version, trace_summary, report) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        kind,
                        report.get("label") or (" ".join(command) if command else None),
                        json.dumps(command) if command else None,
                        report.get("exit_code"),
                        report["started_at"],
                        report["duration_s"],
                        report.get("energy_j"),
                        rng[0],
                        rng[1],
                        int(bool(report.get("estimated"))),
                        report.get("emissions_kg"),
                        report.get("intensity_g_per_kwh"),
                        report.get("intensity_source"),
                        report.get("location"),
                        report.get("pue"),
                        socket.gethostname(),
                        os.getpid(),
                        report.get("carbonfast_version") or _version(),
                        json.dumps(trace_summary(trace)) if trace else None,
                        json.dumps(report),
                    ),
                )
                run_id = int(cur.lastrowid)
                self._db.executemany(
                    "INSERT INTO domains VALUES (?, ?, ?, ?, ?)",
                    [
                        (run_id, name, d.kind, d.energy_j, int(d.estimated))
                        for name, d in record.domains.items()
                    ],
                )
                if trace:
                    self._db.execute(
                        "INSERT INTO traces VALUES (?, ?)", (run_id, json.dumps(trace))
                    )
                ids.append(run_id)
        return ids

    def list(self, label: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest records first; `label` filters by substring."""
        sql = (
            "SELECT id, kind, label, started_at, duration_s, energy_j, estimated, emissions_kg, "
            "location, exit_code FROM runs"
        )
        args: tuple = ()
        if label:
            sql += " WHERE label LIKE ?"
            args = (f"%{label}%",)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        keys = [
            "id",
            "kind",
            "label",
            "started_at",
            "duration_s",
            "energy_j",
            "estimated",
            "emissions_kg",
            "location",
            "exit_code",
        ]
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def get(self, run_id: int) -> tuple[Record, dict | None]:
        """A stored record and its trace (None if none was kept)."""
        from carbonfast.report.record import KINDS, Record

        with self._lock:
            row = self._db.execute(
                "SELECT report, kind FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            trace = self._db.execute(
                "SELECT data FROM traces WHERE run_id = ?", (run_id,)
            ).fetchone()
        if row is None:
            raise ValueError(f"no run {run_id} in {self.path}; `carbonfast history` lists them")
        record = Record.from_dict(json.loads(row[0]), kind=row[1] if row[1] in KINDS else None)
        record.id = run_id
        return record, json.loads(trace[0]) if trace else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def trace_summary(trace: dict) -> dict[str, Any]:
    """Samples, and mean and peak power per domain, of a trace stored with a record."""
    out: dict[str, Any] = {"samples": len(trace.get("t_s", []))}
    for name, power in trace.get("power_w", {}).items():
        values = [p for p in power if p is not None]
        if values:
            out[name] = {"mean_w": sum(values) / len(values), "peak_w": max(values)}
    return out


def window_record(m: Measurement, intensities: dict[int, Any]) -> Record:
    """The stored form of a closed window (less its notes), with the grid intensity looked up
    once per meter and batch."""
    from carbonfast.report.record import Record

    meter = m._meter
    it = intensities.get(id(meter))
    if it is None:
        it = intensities[id(meter)] = meter.carbon.intensity()
    m._intensity = it
    return Record.from_measurement(m, "window", notes=False)


def _version() -> str:
    from carbonfast import __version__

    return __version__


class WindowRecorder:
    """Queues closed windows and writes them in batches from a background thread.

    The hot path is one deque append; the thread wakes twice a second, and at exit whatever is
    queued is written. A loop that closes windows faster than the history can take them (tens
    of thousands a second) fills the queue; past MAX_PENDING records are dropped, counted, and
    a warning says so once, rather than memory growing without bound.
    """

    FLUSH_S = 0.5
    MAX_PENDING = 100_000

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._queue: deque[Measurement] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._history: History | None = None
        self._flush_lock = threading.Lock()
        self.dropped = 0
        self.failed = False
        atexit.register(self.flush)

    def record(self, m: Measurement) -> None:
        if len(self._queue) >= self.MAX_PENDING:
            self.dropped += 1
            if self.dropped == 1:
                import warnings

                warnings.warn(
                    f"carbonfast: windows close faster than the history ({self.path}) can record "
                    "them; further records are dropped and counted. Use history='off' "
                    "(CARBONFAST_HISTORY=off) for tight loops, or cf.bench.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return
        self._queue.append(m)
        if self._pid != os.getpid():  # first use, or a child after fork: threads are gone
            self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._history = None
        self._thread = threading.Thread(target=self._run, name="carbonfast-history", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.FLUSH_S)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Writes every queued window now, in one transaction."""
        with self._flush_lock:
            batch = []
            intensities: dict[int, Any] = {}
            while self._queue:
                m = self._queue.popleft()
                batch.append((window_record(m, intensities), None))
            if not batch or self.failed:
                return
            try:
                if self._history is None:
                    self._history = History(self.path)
                self._history.add_many(batch)
            except Exception as e:
                # The program goes on; its windows are not recorded, and it is told once.
                self.failed = True
                import warnings

                warnings.warn(
                    f"carbonfast: the history {self.path} cannot be written ({e}); windows are "
                    "not recorded from now on. Set CARBONFAST_HISTORY to another file, or off.",
                    RuntimeWarning,
                    stacklevel=2,
                )
