"""The SQLite history: one row per run, benchmark, task or kept window, with its domains,
emissions and trace summary, and one row per window label with the sums of its windows.

Every write is one transaction in WAL mode: a process killed mid-run leaves every record it had
committed intact and readable. Windows are added up per label natively as they close (a few
additions), and a background thread writes the sums now and then, so that a loop of a million
windows neither slows down nor grows the file. Past MAX_ROWS records the oldest are pruned.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import socket
import sqlite3
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast.measure import Measurement
    from carbonfast.report.record import Record

SCHEMA_VERSION = 1
# Records past this many are pruned, oldest first, so that the file stays bounded.
MAX_ROWS = 100_000
# The kind of the rows that hold a label's window sums.
SUMS = "windows"

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
    report TEXT NOT NULL,
    job_id TEXT,
    rank INTEGER,
    world_size INTEGER,
    whole_job INTEGER
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


# A distributed job's tags, as columns (see Record).
_JOB_COLUMNS = (
    ("job_id", "TEXT"),
    ("rank", "INTEGER"),
    ("world_size", "INTEGER"),
    ("whole_job", "INTEGER"),
)


class History:
    """One history database. Safe to use from several threads and processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
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
        _use_wal(self._db)
        # In WAL mode NORMAL is durable against a killed process; only a power cut can lose
        # the last transactions.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        # Several processes or threads may open a new file at once (trackers in threads, the
        # ranks of a job): the checks and their writes below are one transaction that holds
        # the write lock from the start, so that two never both find a column or the schema
        # version missing and both add it.
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            # Histories made before distributed jobs gain their columns: added, nullable, so
            # that an older carbonfast still reads and writes the file.
            have = {r[1] for r in self._db.execute("PRAGMA table_info(runs)")}
            for column, kind in _JOB_COLUMNS:
                if column not in have:
                    self._db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
            self._db.execute("CREATE INDEX IF NOT EXISTS runs_job ON runs (job_id)")
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
                    "carbonfast_version, trace_summary, report, job_id, rank, world_size, "
                    f"whole_job) VALUES ({', '.join('?' * 24)})",
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
                        record.host or socket.gethostname(),
                        os.getpid(),
                        report.get("carbonfast_version") or _version(),
                        json.dumps(trace_summary(trace)) if trace else None,
                        json.dumps(report),
                        record.job_id,
                        record.rank,
                        record.world_size,
                        None if record.world_size is None else int(record.hosts is not None),
                    ),
                )
                assert cur.lastrowid is not None  # set by the INSERT
                run_id = int(cur.lastrowid)
                self._db.executemany(
                    "INSERT INTO domains VALUES (?, ?, ?, ?, ?)",
                    [
                        (run_id, name, d.kind, d.energy_j, int(d.estimated))
                        for name, d in record.domains.items()
                        if d.energy_j is not None
                    ],
                )
                if trace:
                    self._db.execute(
                        "INSERT INTO traces VALUES (?, ?)", (run_id, json.dumps(trace))
                    )
                ids.append(run_id)
        return ids

    def add_sums(self, sums: list[WindowSums]) -> None:
        """Adds windows to their labels' sums, each label one row, in one transaction."""
        with self._lock, self._db:
            for new in sums:
                row = self._db.execute(
                    "SELECT id, report FROM runs WHERE kind = ? AND label IS ? "
                    "ORDER BY id DESC LIMIT 1",
                    (SUMS, new.label),
                ).fetchone()
                merged = new if row is None else WindowSums.from_json(row[1]).merge(new)
                values = (
                    merged.first_at,
                    merged.duration_s,
                    merged.energy_j,
                    int(merged.estimated),
                    merged.emissions_kg,
                    merged.intensity_g_per_kwh,
                    merged.intensity_source,
                    merged.location,
                    merged.pue,
                    json.dumps(merged.to_dict()),
                )
                if row is None:
                    self._db.execute(
                        "INSERT INTO runs (kind, label, started_at, duration_s, energy_j, "
                        "estimated, emissions_kg, intensity_g_per_kwh, intensity_source, "
                        "location, pue, report, host, pid, carbonfast_version) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (SUMS, new.label, *values, socket.gethostname(), os.getpid(), _version()),
                    )
                else:
                    self._db.execute(
                        "UPDATE runs SET started_at = ?, duration_s = ?, energy_j = ?, "
                        "estimated = ?, emissions_kg = ?, intensity_g_per_kwh = ?, "
                        "intensity_source = ?, location = ?, pue = ?, report = ? WHERE id = ?",
                        (*values, row[0]),
                    )

    def prune(self, max_rows: int = MAX_ROWS) -> int:
        """Deletes the oldest records past `max_rows`; returns how many went."""
        with self._lock, self._db:
            cur = self._db.execute(
                "DELETE FROM runs WHERE id IN (SELECT id FROM runs ORDER BY id DESC "
                "LIMIT -1 OFFSET ?)",
                (max_rows,),
            )
            return cur.rowcount

    def import_records(self, records: list[Record]) -> int:
        """Adds the records not already here (the same job, host, rank, kind, label and start
        time); returns how many were added. Merging the same source twice adds nothing."""
        new: list[tuple[Record, dict | None]] = []
        with self._lock:
            for record in records:
                seen = self._db.execute(
                    "SELECT 1 FROM runs WHERE kind = ? AND label IS ? AND started_at = ? "
                    "AND job_id IS ? AND rank IS ? AND host IS ?",
                    (
                        record.kind,
                        record.label,
                        record.started_at,
                        record.job_id,
                        record.rank,
                        record.host,
                    ),
                ).fetchone()
                if seen is None:
                    new.append((record, None))
        if new:
            self.add_many(new)
        return len(new)

    def job_records(self, job: str | None = None) -> list[Record]:
        """Every record of the job `job` (None: of any job), oldest first."""
        with self._lock:
            return job_records(self._db, job)

    def list(
        self,
        label: str | None = None,
        limit: int = 50,
        kind: str | None = None,
        job: str | None = None,
    ) -> list[dict[str, Any]]:
        """The newest records first; `label` filters by substring, `kind` by kind ("window"
        takes the label sums too), `job` by job id. Records of a job carry its id, host, rank
        and world size."""
        sql = (
            "SELECT id, kind, label, started_at, duration_s, energy_j, estimated, emissions_kg, "
            "location, exit_code, job_id, host, rank, world_size, whole_job FROM runs"
        )
        where, args = [], []
        if job is not None:
            where.append("job_id = ?")
            args.append(job)
        if label:
            where.append("label LIKE ?")
            args.append(f"%{label}%")
        if kind:
            kinds = [kind, SUMS] if kind == "window" else [kind]
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args += kinds
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
            counts = dict(
                self._db.execute(
                    "SELECT id, json_extract(report, '$.count') FROM runs WHERE kind = ?",
                    (SUMS,),
                ).fetchall()
            )
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
            "job_id",
            "host",
            "rank",
            "world_size",
            "whole_job",
        ]
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for r in out:
            if r["kind"] == SUMS:
                r["count"] = counts.get(r["id"])
            whole = r.pop("whole_job")
            if r["world_size"] is None:
                for k in ("job_id", "rank", "world_size"):
                    del r[k]
            else:
                r["whole_job"] = bool(whole)
        return out

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
        if row[1] == SUMS:
            record = WindowSums.from_json(row[0]).record()
        else:
            record = Record.from_dict(json.loads(row[0]), kind=row[1] if row[1] in KINDS else None)
        record.id = run_id
        return record, json.loads(trace[0]) if trace else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def job_records(db: sqlite3.Connection, job: str | None) -> list[Record]:
    """The records of one job (None: of every job) in the history `db`, oldest first."""
    from carbonfast.report.record import KINDS, Record

    if job is None:
        sql = "SELECT id, report, kind FROM runs WHERE job_id IS NOT NULL"
        args: tuple[str, ...] = ()
    else:
        sql = "SELECT id, report, kind FROM runs WHERE job_id = ?"
        args = (job,)
    out = []
    for run_id, report, kind in db.execute(sql + " ORDER BY id", args).fetchall():
        record = Record.from_dict(json.loads(report), kind=kind if kind in KINDS else None)
        record.id = run_id
        out.append(record)
    return out


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

    meter = m.meter
    it = intensities.get(id(meter))
    if it is None:
        it = intensities[id(meter)] = meter.carbon.intensity()
    m._intensity = it
    return Record.from_measurement(m, "window", notes=False)


@dataclass
class WindowSums:
    """One label's windows added up: what the history keeps of windows not kept one by one."""

    label: str
    count: int
    known: int  # windows whose energy is known
    energy_j: float | None
    min_j: float | None
    max_j: float | None
    duration_s: float
    first_at: str
    last_at: str
    estimated: bool = False
    intensity_g_per_kwh: float | None = None
    intensity_source: str = ""
    location: str | None = None
    pue: float | None = None

    @property
    def emissions_kg(self) -> float | None:
        if self.energy_j is None or self.intensity_g_per_kwh is None:
            return None
        from carbonfast.carbon import emissions_kg

        return emissions_kg(self.energy_j, self.intensity_g_per_kwh, self.pue or 1.0)

    def merge(self, new: WindowSums) -> WindowSums:
        """These sums and `new`'s, the intensity being the newest."""

        def add(a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else a + b

        def pick(f: Any, a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else f(a, b)

        return dataclasses.replace(
            new,
            count=self.count + new.count,
            known=self.known + new.known,
            energy_j=add(self.energy_j, new.energy_j),
            min_j=pick(min, self.min_j, new.min_j),
            max_j=pick(max, self.max_j, new.max_j),
            duration_s=self.duration_s + new.duration_s,
            first_at=min(self.first_at, new.first_at),
            last_at=max(self.last_at, new.last_at),
            estimated=self.estimated or new.estimated,
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["mean_j"] = self.energy_j / self.known if self.energy_j and self.known else None
        return out

    @classmethod
    def from_json(cls, text: str) -> WindowSums:
        d = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def record(self) -> Record:
        from carbonfast.report.record import Record

        return Record(
            kind="windows",
            label=self.label,
            started_at=self.first_at,
            duration_s=self.duration_s,
            energy_j=self.energy_j,
            estimated=self.estimated,
            emissions_kg=self.emissions_kg,
            intensity_g_per_kwh=self.intensity_g_per_kwh,
            intensity_source=self.intensity_source,
            location=self.location,
            pue=self.pue,
            sums=self.to_dict(),
            notes=[
                f"{self.count} windows labelled {self.label!r} added up, from {self.first_at} "
                f"to {self.last_at}; cf.measure(..., keep=True) records each on its own"
            ],
        )


def sums_of(meter: Any, rows: list[tuple]) -> list[WindowSums]:
    """A meter's drained tally as WindowSums, stamped with wall-clock times."""
    from datetime import datetime, timezone

    it = meter.carbon.intensity()

    def wall(t_ns: int) -> str:
        t = meter._wall_minus_monotonic + t_ns * 1e-9
        return datetime.fromtimestamp(t, timezone.utc).isoformat()

    out = []
    for label, count, known, energy, lo, hi, seconds, first_ns, last_ns in rows:
        out.append(
            WindowSums(
                label=label,
                count=count,
                known=known,
                energy_j=energy if known else None,
                min_j=lo if known else None,
                max_j=hi if known else None,
                duration_s=seconds,
                first_at=wall(first_ns),
                last_at=wall(last_ns),
                estimated=meter.estimated,
                intensity_g_per_kwh=it.g_per_kwh,
                intensity_source=it.source,
                location=it.location,
                pue=meter.carbon.pue,
            )
        )
    return out


def _version() -> str:
    from carbonfast import __version__

    return __version__


class WindowRecorder:
    """Writes windows to the history from a background thread: each watched meter's label
    sums (its native tally), and the windows asked to be kept, queued one by one.

    The thread wakes twice a second, and at exit whatever is pending is written. Kept windows
    closing faster than the history can take them (tens of thousands a second) fill the queue;
    past MAX_PENDING they are dropped, counted, and a warning says so once, rather than memory
    growing without bound. Sums never are: they take a few bytes per label.
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
        self._meters: weakref.WeakSet[Any] = weakref.WeakSet()
        self._flushes = 0
        self.dropped = 0
        self.failed = False
        atexit.register(self.flush)

    def watch(self, meter: Any) -> None:
        """Writes `meter`'s label sums (meter._tally) from now on."""
        self._meters.add(meter)
        if self._pid != os.getpid():
            self._start()

    def record(self, m: Measurement) -> None:
        if len(self._queue) >= self.MAX_PENDING:
            self.dropped += 1
            if self.dropped == 1:
                import warnings

                warnings.warn(
                    f"carbonfast: kept windows close faster than the history ({self.path}) can "
                    "record them; further ones are dropped and counted. Leave keep=False for "
                    "windows in loops (they are added up per label), or use cf.bench.",
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
        """Writes every queued window and the label sums now."""
        with self._flush_lock:
            batch: list[tuple[Record, dict | None]] = []
            intensities: dict[int, Any] = {}
            while self._queue:
                m = self._queue.popleft()
                batch.append((window_record(m, intensities), None))
            sums = []
            for meter in list(self._meters):
                if meter._tally is not None and len(meter._tally):
                    sums += sums_of(meter, meter._tally.drain())
            if not (batch or sums) or self.failed:
                return
            try:
                if self._history is None:
                    self._history = History(self.path)
                if batch:
                    self._history.add_many(batch)
                if sums:
                    self._history.add_sums(sums)
                self._flushes += 1
                if batch and self._flushes % 20 == 1:
                    self._history.prune()
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


def _use_wal(db: sqlite3.Connection, wait_s: float = 30.0) -> None:
    """Puts the file in WAL mode. Switching needs the file to itself and, unlike other
    statements, answers "database is locked" at once rather than waiting while another
    connection opens it too: retried, for as long as the connection's own timeout."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
