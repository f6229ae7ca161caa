"""The SQLite history: one row per run, benchmark, task or kept window, with its domains,
emissions and trace summary, and one row per window label with the sums of its windows.

Every write is one transaction in WAL mode: a process killed mid-run leaves every record it had
committed intact and readable. Windows are added up per label natively as they close (a few
additions), and a background thread writes the sums now and then, so that a loop of a million
windows neither slows down nor grows the file. Past MAX_ROWS records the oldest are pruned,
and runs and benchmarks are bounded on their own (carbonfast.report.history_prune).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
from pathlib import Path

from carbonfast.report.history_file import (
    OPEN_ATTEMPTS,
    NotAHistory,
    is_corrupt,
    move_aside,
    sniff,
    use_wal,
    warn,
)
from carbonfast.report.history_prune import bounds as prune_bounds
from carbonfast.report.history_prune import prune_kinds
from carbonfast.report.window_sums import WindowSums as WindowSums

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypeVar

    T = TypeVar("T")

    from carbonfast.record import Record, Trace

SCHEMA_VERSION = 1
# Records past this many are pruned, oldest first, so that the file stays bounded.
MAX_ROWS = 100_000
# The kind of the rows that hold a label's window sums.
SUMS = "windows"
# What a listing shows of a label's sums (WindowSums.to_dict's keys).
_SUMS_FIELDS = ("count", "min_j", "mean_j", "max_j")

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
CREATE INDEX IF NOT EXISTS runs_kind ON runs (kind);
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
    `bounds`: the most records of each bounded kind kept (default: as the settings say).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        read_only: bool = False,
        timeout: float = 30.0,
        say: Callable[[str], None] | None = None,
        bounds: Mapping[str, int] | None = None,
    ) -> None:
        self.path = Path(path)
        # Resolved now, so that a bad setting fails before anything is written.
        self.bounds = dict(bounds) if bounds is not None else {} if read_only else prune_bounds()
        self.read_only = read_only
        self.timeout = timeout
        self._say = say or warn
        # Where a file that was not a history went (None: nothing was moved).
        self.moved_aside: Path | None = None
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        for attempt in range(OPEN_ATTEMPTS):
            try:
                try:
                    self._open()
                except NotAHistory as e:
                    self._not_a_history(e)
                    self._open()
                return
            except sqlite3.OperationalError as e:
                # Another writer moved a damaged file aside and started a new history between
                # this one's look at the file and SQLite's use of it: the connection then holds
                # the old file under the new one's -wal and -shm ("disk I/O error"). Opened
                # again, it finds the new history.
                if "disk I/O error" not in str(e) or attempt == OPEN_ATTEMPTS - 1:
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
        self._inode, what = sniff(self.path)
        if what is not None:
            raise NotAHistory(what)
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
            if is_corrupt(e):
                raise NotAHistory(f"a damaged SQLite database ({e})") from None
            raise
        foreign = _foreign(self._db, tables)
        if foreign is not None:
            raise NotAHistory(foreign)
        use_wal(self._db, wait_s=self.timeout)
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

    def _not_a_history(self, e: NotAHistory) -> None:
        """A file that is not a history: read-only, a ValueError saying what it is and how to
        go on; else the file is moved aside, which is said, and a new history started."""
        if self.read_only:
            raise ValueError(
                f"{self.path} is not a carbonfast history: it is {e.what}. Nothing was "
                f"changed; move it aside (mv {self.path} {self.path}.bak) or name another "
                "history (--history FILE, CARBONFAST_HISTORY); the next recorded run moves it "
                "aside itself"
            ) from None
        backup = move_aside(self.path, self._inode)
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
            if not is_corrupt(e):
                raise
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._not_a_history(NotAHistory(f"a damaged SQLite database ({e})"))
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
            prune_kinds(self._db, {r.kind for r, _ in records}, self.bounds)
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
        and world size; a label's sums, its count and the min, mean and max of its windows."""
        sql = (
            "SELECT id, kind, label, started_at, duration_s, energy_j, estimated, emissions_kg, "
            "intensity_g_per_kwh, location, pue, exit_code, job_id, host, rank, world_size, "
            "whole_job FROM runs"
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
            fields = ", ".join(f"json_extract(report, '$.{k}')" for k in _SUMS_FIELDS)
            sums = {
                r[0]: r[1:]
                for r in self._db.execute(
                    f"SELECT id, {fields} FROM runs WHERE kind = ? AND json_valid(report)",
                    (SUMS,),
                ).fetchall()
            }
            return rows, sums

        with self._lock:
            rows, sums = self._guarded(step)
        keys = [
            "id",
            "kind",
            "label",
            "started_at",
            "duration_s",
            "energy_j",
            "estimated",
            "emissions_kg",
            "intensity_g_per_kwh",
            "location",
            "pue",
            "exit_code",
            "job_id",
            "host",
            "rank",
            "world_size",
            "whole_job",
        ]
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for r in out:
            # SQLite keeps booleans as 0 and 1; JSON readers expect true and false.
            r["estimated"] = bool(r["estimated"])
            if r["kind"] == SUMS:
                r.update(zip(_SUMS_FIELDS, sums.get(r["id"], ()), strict=False))
                r.setdefault("count", None)
            whole = r.pop("whole_job")
            if r["world_size"] is None:
                for k in ("job_id", "rank", "world_size"):
                    del r[k]
            else:
                r["whole_job"] = bool(whole)
        return out

    def get(self, run_id: int) -> tuple[Record, Trace | None]:
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


def _version() -> str:
    from carbonfast import __version__

    return __version__


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
            (say or warn)(f"run {run_id} has no readable report ({_what(report)}); skipped")
            continue
        record.id = run_id
        out.append(record)
    return out


def _record(report: Any, kind: Any, *, part: bool = False) -> Record:
    """The Record of a stored report; TypeError or ValueError where there is none (`part`:
    or where it is no sane part of a job)."""
    from carbonfast.record import KINDS, Record

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


# The window-to-history link moved to carbonfast.recording, which builds on this module: it is
# still found here, looked up when asked for rather than imported (that would be a cycle).
_MOVED_TO_RECORDING = ("WindowRecorder", "sums_of", "window_record")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_RECORDING:
        from carbonfast import recording

        return getattr(recording, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
