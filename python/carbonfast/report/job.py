"""One distributed job across its hosts: the records its ranks made, wherever they were
written, merged by job id.

On a cluster each rank's report lands where the rank runs: in the history of its host (a
node-local file), and, where a shared job directory is set (the job_dir setting,
CARBONFAST_JOB_DIR), in `<job_dir>/<job id>/<host>.rank<N>.json`, one file per rank, written
once, so that no lock is ever needed on a shared file system. `carbonfast history --merge
PATH...` imports records from job directories, JSON reports and other histories into this
history (a record already there is not added twice), and `carbonfast history --job ID`
shows the job, its hosts and its ranks, added up.

Each rank's record holds its own part (the host's CPU and DRAM on the elected rank of each
host, and its own GPUs), so the parts add up to the job without counting anything twice.
A record of a whole job (rank 0's record of a gathered window) is listed, never added to
the parts.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from carbonfast.report.record import Record


def part_path(job_dir: str | Path, job_id: str | None, host: str, rank: int) -> Path:
    """Where a rank writes its report in a shared job directory."""
    return Path(job_dir) / _safe(job_id or "no-job-id") / f"{_safe(host)}.rank{rank}.json"


def _safe(name: str) -> str:
    # A job id or host name becomes one path component, whatever it holds.
    cleaned = re.sub(r"[^A-Za-z0-9._@+-]", "_", name).lstrip(".")
    return cleaned or "_"


def read_sources(paths: Iterable[str | Path], job: str | None = None) -> list[Record]:
    """The records of jobs in `paths` (only those of `job` if given): a directory (a job
    directory, or any directory of JSON reports, read recursively), a JSON report, or a
    history file (opened read-only). A file that is none of those fails, naming it."""
    out: list[Record] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(path.rglob("*.json")):
                out += _from_json(file)
        elif path.suffix == ".json":
            out += _from_json(path)
        elif path.is_file():
            out += _from_history(path, job)
        else:
            raise ValueError(f"--merge {raw}: no such file or directory")
    return [r for r in out if r.job_id is not None and (job is None or r.job_id == job)]


def _from_json(path: Path) -> list[Record]:
    from carbonfast.report.record import Record

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--merge {path}: not a JSON report ({e})") from None
    items = data if isinstance(data, list) else [data]
    if not all(isinstance(d, dict) for d in items):
        raise ValueError(f"--merge {path}: not a JSON report (expected an object)")
    return [Record.from_dict(d) for d in items]


def _from_history(path: Path, job: str | None) -> list[Record]:
    from carbonfast.report.history import job_records

    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            records = job_records(db, job)
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        raise ValueError(
            f"--merge {path}: not a history, a JSON report or a directory ({e})"
        ) from None
    for r in records:
        r.id = None
    return records


@dataclass
class Group:
    """The parts of one job's runs (or windows) of one label, added up."""

    kind: str
    label: str | None
    world_size: int | None
    energy_j: float | None = None
    estimated: bool = False
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    ranks: list[int] = field(default_factory=list)
    missing_ranks: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "energy_j": self.energy_j,
            "estimated": self.estimated,
            "world_size": self.world_size,
            "hosts": self.hosts,
            "ranks": self.ranks,
            "missing_ranks": self.missing_ranks,
        }


def summarize(records: list[Record]) -> list[Group]:
    """The job's parts, grouped by kind and label, each added up by host; the ranks of the
    job that left no record are named."""
    groups: dict[tuple[str, str | None], list[Record]] = {}
    for r in records:
        if r.hosts is None:  # a rank's part, not a whole job's record
            groups.setdefault((r.kind, r.label), []).append(r)
    out = []
    for (kind, label), parts in groups.items():
        world = max((p.world_size for p in parts if p.world_size is not None), default=None)
        g = Group(kind=kind, label=label, world_size=world)
        for p in parts:
            host = g.hosts.setdefault(
                p.host or "?", {"energy_j": None, "ranks": [], "measured_by": None}
            )
            if p.rank is not None:
                host["ranks"] = sorted({*host["ranks"], p.rank})
            if p.energy_j is not None:
                host["energy_j"] = (host["energy_j"] or 0.0) + p.energy_j
                g.energy_j = (g.energy_j or 0.0) + p.energy_j
            if any(d.kind in ("package", "dram", "psys") for d in p.domains.values()):
                host["measured_by"] = p.rank
            g.estimated = g.estimated or p.estimated
        g.ranks = sorted({p.rank for p in parts if p.rank is not None})
        if world is not None:
            g.missing_ranks = [r for r in range(world) if r not in g.ranks]
        out.append(g)
    return out


def format_job(job: str, records: list[Record], groups: list[Group]) -> str:
    hosts = sorted({r.host or "?" for r in records})
    world = max((r.world_size for r in records if r.world_size is not None), default=None)
    lines = [
        f"job {job}: {len(records)} record(s) from {len(hosts)} host(s)"
        + (f", {world} rank(s)" if world is not None else "")
    ]
    for g in groups:
        energy = "unknown" if g.energy_j is None else f"{g.energy_j:.4f} J"
        if g.estimated:
            energy += " (partly estimated)"
        lines.append(f"  {g.kind} {g.label or '(no label)'}: {energy} over the job")
        for host, h in sorted(g.hosts.items()):
            e = "unknown" if h["energy_j"] is None else f"{h['energy_j']:.4f} J"
            by = "" if h["measured_by"] is None else f", CPU and memory by rank {h['measured_by']}"
            ranks = ", ".join(map(str, h["ranks"]))
            lines.append(f"    host {host}: {e}, ranks {ranks}{by}")
        if g.missing_ranks:
            lines.append(
                f"    MISSING: rank(s) {', '.join(map(str, g.missing_ranks))} left no record "
                "here: the total leaves out what they measured (merge their histories or job "
                "directory with --merge)"
            )
    whole = [r for r in records if r.hosts is not None]
    for r in whole:
        energy = "unknown" if r.energy_j is None else f"{r.energy_j:.4f} J"
        missing = f", missing ranks {r.missing_ranks}" if r.missing_ranks else ""
        lines.append(
            f"  {r.kind} {r.label or '(no label)'} gathered on rank 0: {energy} over "
            f"{len(r.hosts or {})} host(s){missing}"
        )
    return "\n".join(lines)
