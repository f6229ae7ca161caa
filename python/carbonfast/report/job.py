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
import math
import os
import re
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from carbonfast.record import Record


# A merged part is read whole: past this size it is no report (one is a few kB).
MAX_PART_BYTES = 16 << 20
# No job has more ranks than this: a part naming more is garbage, and would make every listing
# of its missing ranks endless.
MAX_WORLD_SIZE = 1 << 20
# No run, window or benchmark lasts longer than this (a century): past it, a duration is garbage.
MAX_DURATION_S = 100 * 365.25 * 86_400.0
# A reading may be a refresh late at each edge (GPU counters refresh every ~100 ms): the
# energy a domain's joules may hold beyond its most power x the duration.
_EDGE_S = 1.0


def part_path(job_dir: str | Path, job_id: str | None, host: str, rank: int) -> Path:
    """Where a rank writes its report in a shared job directory."""
    return Path(job_dir) / _safe(job_id or "no-job-id") / f"{_safe(host)}.rank{rank}.json"


def _safe(name: str) -> str:
    # A job id or host name becomes one path component, whatever it holds.
    cleaned = re.sub(r"[^A-Za-z0-9._@+-]", "_", name).lstrip(".")
    return cleaned or "_"


def read_sources(
    paths: Iterable[str | Path],
    job: str | None = None,
    say: Callable[[str], None] | None = None,
) -> list[Record]:
    """The records of jobs in `paths` (only those of `job` if given): a directory (a job
    directory, or any directory of JSON reports, read recursively), a JSON report, or a
    history file (opened read-only). A file named that is none of those, or not a regular
    file (a FIFO, a device), or a report that is not a sane job part, fails, naming it; in a
    directory such a file is skipped, and `say` told."""
    out: list[Record] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(path.rglob("*.json")):
                try:
                    out += _from_json(file)
                except ValueError as e:
                    if say is None:
                        raise
                    say(f"{e}; skipped")
        elif path.suffix == ".json":
            out += _from_json(path)
        elif path.is_file():
            out += _from_history(path, job)
        elif os.path.lexists(path):
            raise ValueError(f"--merge {raw}: not a regular file, a directory or a history")
        else:
            raise ValueError(f"--merge {raw}: no such file or directory")
    return [r for r in out if r.job_id is not None and (job is None or r.job_id == job)]


def _read_part(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_PART_BYTES; a FIFO, a device or a link to one
    is refused at once, without waiting for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ValueError(f"--merge {path}: cannot open it ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"--merge {path}: not a regular file (a FIFO, a device or a socket)")
        chunks, size = [], 0
        while size <= MAX_PART_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_PART_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise ValueError(f"--merge {path}: cannot read it ({e.strerror})") from None
    finally:
        os.close(fd)
    if size > MAX_PART_BYTES:
        raise ValueError(
            f"--merge {path}: larger than {MAX_PART_BYTES >> 20} MiB; not a job's report"
        )
    return b"".join(chunks)


def _from_json(path: Path) -> list[Record]:
    try:
        data = json.loads(_read_part(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--merge {path}: not a JSON report ({e})") from None
    except RecursionError:
        raise ValueError(f"--merge {path}: not a JSON report (nested too deeply)") from None
    items = data if isinstance(data, list) else [data]
    out = []
    for d in items:
        problem = part_problem(d)
        if problem is not None:
            raise ValueError(f"--merge {path}: not a job's report ({problem})")
        out.append(_part_record(d))
    return out


def _part_record(d: dict[str, Any]) -> Record:
    from carbonfast.record import Record

    return Record.from_dict(d)


# The types each field of a stored report may have (None: absent, or null).
_NUMBER = (int, float)
_FIELDS: dict[str, tuple[type, ...]] = {
    "kind": (str,),
    "label": (str,),
    "started_at": (str,),
    "duration_s": _NUMBER,
    "energy_j": _NUMBER,
    "energy_range_j": (list,),
    "emissions_range_kg": (list,),
    "estimated": (bool,),
    "partial": (bool,),
    "emissions_kg": _NUMBER,
    "intensity_g_per_kwh": _NUMBER,
    "intensity_source": (str,),
    "intensity_label": (str,),
    "location": (str,),
    "country": (str,),
    "pue": _NUMBER,
    "domains": (dict,),
    "notes": (list,),
    "command": (list,),
    "exit_code": (int,),
    "cpu_seconds": _NUMBER,
    "advice": (list,),
    "bench": (dict,),
    "sums": (dict,),
    "job_id": (str,),
    "host": (str,),
    "rank": (int,),
    "world_size": (int,),
    "hosts": (dict,),
    "ranks": (list,),
    "missing_ranks": (list,),
    "carbonfast_version": (str,),
}


def part_problem(d: object) -> str | None:
    """What makes `d` no sane report of a rank (None: nothing): a field of the wrong type, a
    number that is not finite, a rank or world size out of bounds."""
    from carbonfast.record import KINDS

    if not isinstance(d, dict):
        return "expected an object"
    for key, types in _FIELDS.items():
        value = d.get(key)
        if value is None:
            continue
        if isinstance(value, bool) and bool not in types:
            return f"{key} is {value!r}, not a {types[0].__name__}"
        if not isinstance(value, types):
            return f"{key} is a {type(value).__name__}, not a {types[0].__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{key} is {value!r}"
    if d.get("kind") is not None and d["kind"] not in KINDS:
        return f"kind {d['kind']!r} is not one of {', '.join(KINDS)}"
    for key in ("started_at", "duration_s"):
        if d.get(key) is None:
            return f"{key} is missing"
    if not 0 <= d["duration_s"] <= MAX_DURATION_S:
        return f"duration_s {d['duration_s']!r} is not 0 to {MAX_DURATION_S:.0f} s"
    world, rank = d.get("world_size"), d.get("rank")
    if world is not None and not 1 <= world <= MAX_WORLD_SIZE:
        return f"world_size {world} is not 1 to {MAX_WORLD_SIZE}"
    if rank is not None and not 0 <= rank < (world or MAX_WORLD_SIZE):
        return f"rank {rank} is not 0 to {(world or MAX_WORLD_SIZE) - 1}"
    for pair in ("energy_range_j", "emissions_range_kg"):
        rng = d.get(pair)
        if rng is not None and not (len(rng) == 2 and all(_finite(x) for x in rng)):
            return f"{pair} is not two numbers"
    for name, x in (d.get("domains") or {}).items():
        if not isinstance(x, dict):
            return f"domain {name!r} is not an object"
        rng = x.get("energy_range_j")
        if not _finite(x.get("energy_j") or 0.0) or not isinstance(x.get("kind", ""), str):
            return f"domain {name!r} has no energy_j number or kind"
        if rng is not None and not (
            isinstance(rng, list) and len(rng) == 2 and all(_finite(v) for v in rng)
        ):
            return f"domain {name!r}: energy_range_j is not two numbers"
        if x.get("method") is not None and not isinstance(x["method"], str):
            return f"domain {name!r}: method is not text"
    if not all(isinstance(n, str) for n in d.get("notes") or []):
        return "notes are not text"
    if not all(isinstance(c, str) for c in d.get("command") or []):
        return "command is not a list of text"
    if not all(
        isinstance(r, int) and not isinstance(r, bool) and 0 <= r < MAX_WORLD_SIZE
        for r in d.get("missing_ranks") or []
    ):
        return "missing_ranks are not ranks"
    problem = _ranges_problem(d)
    if problem is not None:
        return problem
    domains = d.get("domains") or {}
    most = _most_j(d) * max(1, len(domains)) if domains else math.inf
    for host, h in (d.get("hosts") or {}).items():
        if not isinstance(h, dict):
            return f"host {host!r} is not an object"
        if h.get("energy_j") is not None and not _finite(h["energy_j"]):
            return f"host {host!r}: energy_j is not a number"
        if h.get("energy_j") is not None and not 0 <= h["energy_j"] <= most:  # its domains
            return f"host {host!r}: energy_j {h['energy_j']!r} is not 0 to {most:.6g} J"
        for key in ("ranks", "missing_ranks"):
            if not isinstance(h.get(key) or [], list) or not all(
                isinstance(r, int) and not isinstance(r, bool) for r in h.get(key) or []
            ):
                return f"host {host!r}: {key} are not ranks"
    if not all(isinstance(a, dict) for a in d.get("advice") or []):
        return "advice is not a list of objects"
    return None


def _most_j(d: dict[str, Any]) -> float:
    """The most energy a domain of `d` can hold: its hardware's most power (the core's
    MAX_POWER_W, which bounds live readings too) over its duration, a refresh either side."""
    from carbonfast._native import MAX_POWER_W

    return MAX_POWER_W * (float(d["duration_s"]) + 2 * _EDGE_S)


def _ranges_problem(d: dict[str, Any]) -> str | None:
    """What puts a number of `d` (its types already checked) outside its range: an energy
    below 0 or above what its domains can draw in its duration, a range the wrong way round
    or that its value lies outside, negative emissions or intensity."""
    domains = d.get("domains") or {}
    most = _most_j(d)
    whole = d.get("hosts") is not None
    # A total adds its domains; one of a whole job (or of parts with no domains listed) adds
    # up to a world of ranks: bounded by the domains it lists where it lists them.
    total_most = most * max(1, len(domains)) if domains or not whole else math.inf

    def check(what: str, value: Any, rng: Any, bound: float) -> str | None:
        if value is not None and _finite(value) and not 0 <= value <= bound:
            return f"{what} {value!r} is not 0 to {bound:.6g} J"
        if isinstance(rng, list) and len(rng) == 2 and all(_finite(v) for v in rng):
            low, high = rng
            if not 0 <= low <= high <= bound:
                return f"{what} range {rng!r} is not 0 <= low <= high <= {bound:.6g} J"
            slack = 1e-6 * max(1.0, abs(high))
            if value is not None and _finite(value) and not low - slack <= value <= high + slack:
                return f"{what} {value!r} lies outside its range {rng!r}"
        return None

    problem = check("energy_j", d.get("energy_j"), d.get("energy_range_j"), total_most)
    if problem is not None:
        return problem
    for name, x in domains.items():
        if isinstance(x, dict):
            problem = check(
                f"domain {name!r}: energy_j", x.get("energy_j"), x.get("energy_range_j"), most
            )
            if problem is not None:
                return problem
    for key in ("emissions_kg", "intensity_g_per_kwh", "pue", "cpu_seconds"):
        if d.get(key) is not None and d[key] < 0:
            return f"{key} {d[key]!r} is negative"
    rng = d.get("emissions_range_kg")
    if rng is not None and not 0 <= rng[0] <= rng[1]:
        return f"emissions_range_kg {rng!r} is not 0 <= low <= high"
    return None


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


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
    # Ranks whose part is here but whose energy is unknown: left out of the total, and named.
    unknown_ranks: list[int] = field(default_factory=list)

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
            "unknown_ranks": self.unknown_ranks,
        }


def summarize(records: list[Record]) -> list[Group]:
    """The job's parts, grouped by kind and label, each added up by host; the ranks of the
    job that left no record are named."""
    from carbonfast import kinds
    from carbonfast.record import Record

    groups: dict[tuple[str, str | None], list[Record]] = {}
    for r in records:
        if r.hosts is None:  # a rank's part, not a whole job's record
            groups.setdefault((r.kind, r.label), []).append(r)
    out = []
    for (kind, label), parts in groups.items():
        world = max((p.world_size for p in parts if p.world_size is not None), default=None)
        g = Group(kind=kind, label=label, world_size=world)
        # A part whose energy is unknown is set apart and named (`unknown_ranks`), and the
        # total is Record.sum's over the parts that measured: Record.sum's rule would make
        # the whole job unknown for one rank's failed counter, where what the others measured
        # is worth having; set apart and named, an unknown part is still never silently
        # dropped.
        measured = [p for p in parts if p.energy_j is not None]
        g.unknown_ranks = sorted(
            {p.rank for p in parts if p.energy_j is None and p.rank is not None}
        )
        if measured:
            g.energy_j = Record.sum(measured).energy_j
        by_host: dict[str, list[Record]] = {}
        for p in parts:
            host = g.hosts.setdefault(
                p.host or "?", {"energy_j": None, "ranks": [], "measured_by": None}
            )
            if p.rank is not None:
                host["ranks"] = sorted({*host["ranks"], p.rank})
            if p.energy_j is not None:
                by_host.setdefault(p.host or "?", []).append(p)
            if any(kinds.is_rapl(d.kind) for d in p.domains.values()):
                host["measured_by"] = p.rank
        for name, known in by_host.items():
            g.hosts[name]["energy_j"] = Record.sum(known).energy_j
        g.estimated = any(p.estimated for p in parts)
        g.ranks = sorted({p.rank for p in parts if p.rank is not None})
        if world is not None and world <= MAX_WORLD_SIZE:
            seen = set(g.ranks)
            g.missing_ranks = [r for r in range(world) if r not in seen]
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
        if g.unknown_ranks:
            lines.append(
                f"    UNKNOWN: rank(s) {_spans(g.unknown_ranks)} could not measure their "
                "energy: the total leaves out their part"
            )
        if g.missing_ranks:
            lines.append(
                f"    MISSING: rank(s) {_spans(g.missing_ranks)} left no record "
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
    from carbonfast.report.console import printable

    return "\n".join(printable(line) for line in lines)


def _spans(ranks: list[int]) -> str:
    """Ranks as runs: "0-3, 7, 9-1023"."""
    out: list[list[int]] = []
    for r in sorted(ranks):
        if out and out[-1][1] == r - 1:
            out[-1][1] = r
        else:
            out.append([r, r])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in out)
