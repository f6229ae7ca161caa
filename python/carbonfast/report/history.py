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
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

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


# The columns a history's runs table has had from the start: a table without them is another
# program's.
_CORE_COLUMNS = frozenset(
    {"id", "kind", "label", "started_at", "duration_s", "energy_j", "estimated", "report"}
)
_HEADER = b"SQLite format 3\x00"

# A distributed job's tags, as columns (see Record).
_JOB_COLUMNS = (
    ("job_id", "TEXT"),
    ("rank", "INTEGER"),
    ("world_size", "INTEGER"),
    ("whole_job", "INTEGER"),
)


class History:
    """One history database. Safe to use from several threads and processes.

    `read_only` histories (listing, reports) never change a file that is not a history: they
    say what it is and how to set it aside. Others move such a file (not a database, a damaged
    one, another program's) aside, under a new name no one can have planted, say so through
    `say`, and start a new history. `timeout` bounds each wait for another process's lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        read_only: bool = False,
        timeout: float = 30.0,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.timeout = timeout
        self._say = say or _warn
        # Where a file that was not a history went (None: nothing was moved).
        self.moved_aside: Path | None = None
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                try:
                    self._open()
                except _NotAHistory as e:
                    self._not_a_history(e)
                    self._open()
                return
            except sqlite3.OperationalError as e:
                # Another writer moved a damaged file aside and started a new history between
                # this one's look at the file and SQLite's use of it: the connection then holds
                # the old file under the new one's -wal and -shm ("disk I/O error"). Opened
                # again, it finds the new history.
                if "disk I/O error" not in str(e) or attempt == _OPEN_ATTEMPTS - 1:
                    raise
                import time

                time.sleep(0.01 * (attempt + 1))

    def _open(self) -> None:
        # Records hold command lines, which can hold secrets: the file is the owner's alone
        # (SQLite gives its -wal and -shm files the same mode).
        from carbonfast.report.files import check_target

        check_target(self.path)
        if not self.read_only:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        # What the file is, from its first bytes, before SQLite is let near it.
        self._inode, what = _sniff(self.path)
        if what is not None:
            raise _NotAHistory(what)
        self._db = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False)
        try:
            self._set_up()
        except BaseException:
            self._db.close()
            raise

    def _set_up(self) -> None:
        try:
            tables = dict(
                self._db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
            )
        except sqlite3.DatabaseError as e:
            if _corrupt(e):
                raise _NotAHistory(f"a damaged SQLite database ({e})") from None
            raise
        foreign = _foreign(self._db, tables)
        if foreign is not None:
            raise _NotAHistory(foreign)
        _use_wal(self._db, wait_s=self.timeout)
        # In WAL mode NORMAL is durable against a killed process; only a power cut can lose
        # the last transactions.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # Several processes or threads may open a new file at once (trackers in threads, the
        # ranks of a job): the schema, the checks and their writes below are one transaction
        # that holds the write lock from the start, so that two never both find a column or
        # the schema version missing and both add it.
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
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
            elif _newer(row[0]):
                raise ValueError(
                    f"{self.path} has history schema {row[0]}, newer than this carbonfast "
                    f"understands ({SCHEMA_VERSION}); upgrade carbonfast or use another file "
                    "(CARBONFAST_HISTORY)"
                )

    def _not_a_history(self, e: _NotAHistory) -> None:
        """A file that is not a history: read-only, a ValueError saying what it is and how to
        go on; else the file is moved aside, which is said, and a new history started."""
        if self.read_only:
            raise ValueError(
                f"{self.path} is not a carbonfast history: it is {e.what}. Nothing was "
                f"changed; move it aside (mv {self.path} {self.path}.bak) or name another "
                "history (--history FILE, CARBONFAST_HISTORY); the next recorded run moves it "
                "aside itself"
            ) from None
        backup = _move_aside(self.path, self._inode)
        self.moved_aside = backup
        if backup is None:
            return  # another process moved it (or replaced it) first
        self._say(
            f"the history {self.path} was {e.what}, not a carbonfast history; moved it aside "
            f"to {backup} and started a new history"
        )

    def _guarded(self, step: Callable[[], T]) -> T:
        """Runs `step` on the database; a damaged file found on the way is a clean
        ValueError (read-only), or is moved aside and `step` run once more on a new
        history."""
        try:
            return step()
        except sqlite3.DatabaseError as e:
            if not _corrupt(e):
                raise
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._not_a_history(_NotAHistory(f"a damaged SQLite database ({e})"))
            self._open()
            return step()

    def check(self) -> None:
        """Raises unless records can be written (a read-only, locked or corrupt file)."""

        def step() -> None:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ROLLBACK")

        with self._lock:
            self._guarded(step)

    def add(self, record: Record, trace: dict | None = None) -> int:
        """Stores one record and returns its id."""
        return self.add_many([(record, trace)])[0]

    def add_many(self, records: list[tuple[Record, dict | None]]) -> list[int]:
        """Stores records in one transaction: all of them, or none."""
        with self._lock:
            return self._guarded(lambda: self._add_many(records))

    def _add_many(self, records: list[tuple[Record, dict | None]]) -> list[int]:
        ids = []
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
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
        """Adds windows to their labels' sums, each label one row, in one transaction.

        The sums are read and written back inside one write transaction, which holds the
        write lock from its start: writers in other processes wait for it, and no one's
        windows are lost between another's read and write."""
        with self._lock:
            self._guarded(lambda: self._add_sums(sums))

    def _add_sums(self, sums: list[WindowSums]) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for new in sums:
                row = self._db.execute(
                    "SELECT id, report FROM runs WHERE kind = ? AND label IS ? "
                    "ORDER BY id DESC LIMIT 1",
                    (SUMS, new.label),
                ).fetchone()
                merged = new
                if row is not None:
                    try:
                        merged = WindowSums.from_json(row[1]).merge(new)
                    except (TypeError, ValueError, RecursionError):
                        # A row someone damaged: its sums are unknown; these start again.
                        self._say(
                            f"the history {self.path}: the sums of label {new.label!r} (run "
                            f"{row[0]}) were unreadable; they start again from these windows"
                        )
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

        def step() -> int:
            with self._db:
                cur = self._db.execute(
                    "DELETE FROM runs WHERE id IN (SELECT id FROM runs ORDER BY id DESC "
                    "LIMIT -1 OFFSET ?)",
                    (max_rows,),
                )
                return cur.rowcount

        with self._lock:
            return self._guarded(step)

    def import_records(self, records: list[Record]) -> int:
        """Adds the records not already here (the same job, host, rank, kind, label and start
        time); returns how many were added. Merging the same source twice adds nothing."""
        new: list[tuple[Record, dict | None]] = []
        with self._lock:
            self._guarded(lambda: None)  # a damaged file is set aside before it is read
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
            return self._guarded(lambda: job_records(self._db, job, self._say))

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

        def step() -> tuple[list[Any], dict[Any, Any]]:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
            counts = dict(
                self._db.execute(
                    "SELECT id, CASE WHEN json_valid(report) THEN json_extract(report, '$.count') "
                    "END FROM runs WHERE kind = ?",
                    (SUMS,),
                ).fetchall()
            )
            return rows, counts

        with self._lock:
            rows, counts = self._guarded(step)
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

        def step() -> tuple[Any, Any]:
            row = self._db.execute(
                "SELECT report, kind FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            trace = self._db.execute(
                "SELECT data FROM traces WHERE run_id = ?", (run_id,)
            ).fetchone()
            return row, trace

        with self._lock:
            row, trace = self._guarded(step)
        if row is None:
            raise ValueError(f"no run {run_id} in {self.path}; `carbonfast history` lists them")
        try:
            if row[1] == SUMS:
                record = WindowSums.from_json(row[0]).record()
            else:
                record = _record(row[0], row[1])
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError):
            raise ValueError(
                f"run {run_id} in {self.path} has no readable report (it is "
                f"{_what_report(row[0])}); the other runs are unaffected"
            ) from None
        record.id = run_id
        data = None
        if trace:
            try:
                data = json.loads(trace[0])
            except (TypeError, ValueError, RecursionError):
                self._say(f"run {run_id} in {self.path}: its stored trace is unreadable; left out")
            if not isinstance(data, dict):
                data = None
        return record, data

    def close(self) -> None:
        with self._lock:
            self._db.close()


def job_records(
    db: sqlite3.Connection, job: str | None, say: Callable[[str], None] | None = None
) -> list[Record]:
    """The records of one job (None: of every job) in the history `db`, oldest first. A row
    whose report cannot be read (NULL, not JSON, not a report) is skipped, and `say` told."""
    if job is None:
        sql = "SELECT id, report, kind FROM runs WHERE job_id IS NOT NULL"
        args: tuple[str, ...] = ()
    else:
        sql = "SELECT id, report, kind FROM runs WHERE job_id = ?"
        args = (job,)
    out = []
    for run_id, report, kind in db.execute(sql + " ORDER BY id", args).fetchall():
        try:
            record = _record(report, kind, part=True)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError):
            (say or _warn)(f"run {run_id} has no readable report ({_what(report)}); skipped")
            continue
        record.id = run_id
        out.append(record)
    return out


def _record(report: Any, kind: Any, *, part: bool = False) -> Record:
    """The Record of a stored report; TypeError or ValueError where there is none (`part`:
    or where it is no sane part of a job)."""
    from carbonfast.report.record import KINDS, Record

    d = json.loads(report)
    if not isinstance(d, dict):
        raise TypeError("not a JSON object")
    if part:
        from carbonfast.report.job import part_problem

        problem = part_problem(d)
        if problem is not None:
            raise ValueError(problem)
    return Record.from_dict(d, kind=kind if kind in KINDS else None)


def _what_report(report: Any) -> str:
    if report is None:
        return "NULL"
    if not isinstance(report, str):
        return f"a {type(report).__name__}, not text"
    return "not a JSON report"


def _what(report: Any) -> str:
    """Why a stored report is no job's record."""
    what = _what_report(report)
    if what != "not a JSON report":
        return what
    try:
        from carbonfast.report.job import part_problem

        return part_problem(json.loads(report)) or what
    except (ValueError, RecursionError):
        return what


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


# Opens of a history that another process replaced meanwhile are tried again this many times.
_OPEN_ATTEMPTS = 5


class _NotAHistory(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _warn(message: str) -> None:
    import warnings

    warnings.warn(f"carbonfast: {message}", RuntimeWarning, stacklevel=3)


def _corrupt(e: sqlite3.Error) -> bool:
    """Whether SQLite found the file damaged or not a database (rather than busy, locked or
    unwritable)."""
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
    return type(e) is sqlite3.DatabaseError


def _sniff(path: Path) -> tuple[int | None, str | None]:
    """The file's inode, and what it is where that is plainly not an SQLite database (None:
    empty, or an SQLite database). Read without blocking: a FIFO planted there is no file.
    A database that looks cut short may be one another process is creating this instant: it
    is judged truncated only if it stays so for a while."""
    import time

    for _ in range(10):
        ino, what = _sniff_once(path)
        if what is None or not what.startswith("a truncated"):
            break
        time.sleep(0.05)
    return ino, what


def _sniff_once(path: Path) -> tuple[int | None, str | None]:
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is not a regular file; carbonfast writes only regular files")
        head = os.read(fd, 512)
        st = os.fstat(fd)  # after the read: its size covers what was read
    finally:
        os.close(fd)
    if not head:
        return st.st_ino, None
    if head.startswith(_HEADER):
        if st.st_size < 100:
            return st.st_ino, f"a truncated SQLite database ({st.st_size} bytes)"
        return st.st_ino, None
    if _HEADER.startswith(head):
        return st.st_ino, f"a truncated SQLite database ({st.st_size} bytes)"
    text: str | None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        text = head[: e.start].decode("utf-8") if e.start > len(head) - 4 else None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        return st.st_ino, f"a text file ({st.st_size} bytes)"
    return st.st_ino, f"not a database: {st.st_size} bytes of unrecognised data"


def _foreign(db: sqlite3.Connection, tables: dict[str, str]) -> str | None:
    """What the database is where it holds tables but not a history's (None: a history, or
    empty)."""
    if not tables:
        return None
    names = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
    if "runs" not in tables:
        return f"an SQLite database of another program (tables {names})"
    columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    if not columns >= _CORE_COLUMNS:
        return f"an SQLite database of another program (tables {names}; its runs table differs)"
    return None


def _newer(version: object) -> bool:
    try:
        return int(str(version)) > SCHEMA_VERSION
    except ValueError:
        return True  # not a version this carbonfast wrote


def _move_aside(path: Path, inode: int | None) -> Path | None:
    """Moves the file at `path` (the one with `inode`) to `path.bak-<time>-<random>`, a name
    first created exclusively, so that nothing anyone else made there is replaced; its WAL
    goes with it. Returns the new name, or None where the file is not the one judged any more
    (another process moved it first and started a new history). Those that find one damaged
    file at once take turns under a lock beside it, so that it alone is moved, once."""
    import fcntl
    import secrets
    import time

    lock_path = path.with_name(f"{path.name}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + 10.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ValueError(
                        f"{lock_path} stayed locked for 10 s by another process repairing the "
                        "history; try again, or name another history (CARBONFAST_HISTORY)"
                    ) from None
                time.sleep(0.01)
        try:
            if os.lstat(path).st_ino != inode:
                return None
        except FileNotFoundError:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%S")
        while True:
            backup = path.with_name(f"{path.name}.bak-{stamp}-{secrets.token_hex(4)}")
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                os.close(os.open(backup, flags, 0o600))
                break
            except FileExistsError:
                continue
        os.rename(path, backup)  # replaces only the placeholder made above
        _move_wal(path, backup)
        return backup
    finally:
        os.close(fd)


def _move_wal(path: Path, backup: Path) -> None:
    wal = Path(f"{path}-wal")
    if wal.is_file() and not wal.is_symlink():
        with contextlib.suppress(OSError):
            os.close(os.open(f"{backup}-wal", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.rename(wal, f"{backup}-wal")
    with contextlib.suppress(OSError):
        os.unlink(f"{path}-shm")
