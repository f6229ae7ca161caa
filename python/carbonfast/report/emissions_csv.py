"""emissions.csv in CodeCarbon's format: its 38 columns, in its order and units (kWh, kg, W,
GiB), LF line endings as pandas writes them, appended with the header written once, so that
tools built for CodeCarbon read it."""

from __future__ import annotations

import contextlib
import csv
import os
import platform
import sys
import uuid
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from carbonfast.record import Record

# CodeCarbon 3.x's emissions.csv header.
COLUMNS = (
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
)

J_PER_KWH = 3.6e6


def row(
    record: Record,
    *,
    project_name: str = "carbonfast",
    run_id: str | None = None,
    experiment_id: str = "",
    cpu_seconds: float | None = None,
) -> dict[str, Any]:
    """One CSV row from a record. CPU, GPU and RAM energy are what measured each part (the
    core's rule of which part a domain is), empty where nothing did; energy_consumed is the
    record's total, which under a meter of the whole machine is the meter's, so the parts need
    not add up to it. Where the record holds the share of its scope (`attributed`,
    known), the row holds that share's figures, and its tracking_mode is "process"; else the
    machine's, "machine"."""
    from carbonfast import __version__
    from carbonfast.carbon import tables

    duration = record.duration_s
    own = record.attributed is not None and record.attributed.energy_j is not None
    by_kind = record.energy_by_kind(attributed=own)
    gpus = [name for name, d in record.domains.items() if d.kind == "gpu"]
    location = record.location or ""
    cloud_provider, _, cloud_region = location.partition(":") if ":" in location else ("", "", "")
    country = _country(record, tables)
    threads = os.cpu_count() or 1
    # Unknown energy (nothing readable, estimates off) stays an empty cell, never 0.
    energy = record.energy_j
    emissions = record.emissions_kg
    if own and record.attributed is not None and record.attributed.energy_j is not None:
        share = record.attributed.energy_j / energy if energy else 0.0
        energy = record.attributed.energy_j
        emissions = None if emissions is None else emissions * share
    tracking_mode = "process" if own else "machine"

    def power(j: float) -> float:
        return j / duration if duration > 0 else 0.0

    # A part that nothing measured, or that holds an unknown domain, is an empty cell, never 0.
    def part_power(part: str) -> float | str:
        j = by_kind[part]
        return "" if j is None else power(j)

    def part_energy(part: str) -> float | str:
        j = by_kind[part]
        return "" if j is None else j / J_PER_KWH

    return {
        "timestamp": record.started_at[:19],
        "project_name": project_name,
        "run_id": run_id or str(uuid.uuid4()),
        "experiment_id": experiment_id,
        "duration": duration,
        "emissions": "" if emissions is None else emissions,
        "emissions_rate": "" if emissions is None else power(emissions),
        "cpu_power": part_power("cpu"),
        "gpu_power": part_power("gpu"),
        "ram_power": part_power("ram"),
        "cpu_energy": part_energy("cpu"),
        "gpu_energy": part_energy("gpu"),
        "ram_energy": part_energy("ram"),
        "energy_consumed": "" if energy is None else energy / J_PER_KWH,
        "water_consumed": 0.0,
        "country_name": country[1],
        "country_iso_code": country[0],
        "region": location if location and ":" not in location and len(location) > 3 else "",
        "cloud_provider": cloud_provider,
        "cloud_region": cloud_region,
        "os": platform.platform(),
        "python_version": platform.python_version(),
        "codecarbon_version": f"carbonfast {__version__}",
        "cpu_count": threads,
        "cpu_model": cpu_model(),
        "gpu_count": len(gpus),
        "gpu_model": ", ".join(gpus),
        "longitude": "",
        "latitude": "",
        "ram_total_size": _ram_gib(),
        "tracking_mode": tracking_mode,
        "cpu_utilization_percent": (
            100.0 * cpu_seconds / (duration * threads) if cpu_seconds and duration > 0 else 0.0
        ),
        "gpu_utilization_percent": 0.0,
        "ram_utilization_percent": 0.0,
        "ram_used_gb": 0.0,
        "on_cloud": "Y" if cloud_provider else "N",
        "pue": record.pue or 1.0,
        "wue": 0.0,
    }


def append(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Appends one row; writes the header when the file is new. A file with another header (an
    older CodeCarbon's) is kept as a backup, as CodeCarbon does, and a new one started; a
    backup is never overwritten (FILE.bak, else FILE.1.bak, ...).

    Writers in several processes take turns: the file is locked from reading its header to
    writing the row, so the header is written once and no row is lost."""
    with _locked(path) as f:
        # pandas' to_csv, which CodeCarbon writes with, ends lines with LF, not csv's CRLF.
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        if os.fstat(f.fileno()).st_size == 0:
            writer.writeheader()
        writer.writerow(record)
        f.flush()
        os.fsync(f.fileno())


def replace_run(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Writes `record` in place of the row of the same run_id (CodeCarbon's
    on_csv_write="update"), at the end of the file; appends it where the run has no row yet.
    Where the run has several rows already, which one to replace is unclear: the row is
    appended, as CodeCarbon does. The file is rewritten whole, atomically, under the same lock
    as append()."""
    import io

    from carbonfast.report.files import write_atomically

    with _locked(path, whole=True), open(path, newline="", encoding="utf-8") as r:
        rows = list(csv.DictReader(r))
        run_id = str(record["run_id"])
        same = [row for row in rows if row.get("run_id") == run_id]
        if len(same) > 1:
            print(
                f"carbonfast: {path} has {len(same)} rows of run {run_id}; appending instead "
                "of updating",
                file=sys.stderr,
            )
        else:
            rows = [row for row in rows if row.get("run_id") != run_id]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow(record)
        # Under the lock of the file it replaces: writers waiting on that lock then find
        # that the file at `path` is another, and open it.
        write_atomically(path, text.getvalue())


@contextlib.contextmanager
def _locked(path: str | os.PathLike[str], whole: bool = False) -> Iterator[Any]:
    """The file opened for appending and locked, once it is the file at `path` and has
    CodeCarbon's header (or is empty): a file with another header, or not UTF-8 (`whole`: in
    any of its rows), is moved aside first."""
    import fcntl

    from carbonfast.report.files import open_for_append

    path = Path(path)
    while True:
        fd = open_for_append(path)
        with os.fdopen(fd, "a", newline="", encoding="utf-8") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                same = os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                continue  # another writer moved or replaced the file meanwhile: open the new one
            if os.fstat(f.fileno()).st_size > 0:
                # Read through a descriptor of its own (this one only appends), of the same file.
                rfd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    if os.fstat(rfd).st_ino != os.fstat(f.fileno()).st_ino:
                        continue
                    why = _not_ours(rfd, whole)
                    if why is None and not _ends_with_newline(rfd):
                        # A last row cut short, or a file saved without a final newline: the
                        # next row gets a line of its own.
                        f.write("\n")
                finally:
                    os.close(rfd)
                if why is not None:
                    backup = _move_aside(path)
                    print(
                        f"carbonfast: {path} {why}; kept as {backup}, starting a new file",
                        file=sys.stderr,
                    )
                    continue
            yield f
            return


# The header is looked for in the file's first bytes: a "header" longer than this is none.
_HEADER_BYTES = 64 << 10


def _not_ours(fd: int, whole: bool) -> str | None:
    """Why the open file is not an emissions.csv to append to (None: it is one)."""
    import codecs

    head = os.pread(fd, _HEADER_BYTES, 0)
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header = next(csv.reader([line.decode("utf-8")]), [])
        if whole:  # every row, a piece at a time
            decoder = codecs.getincrementaldecoder("utf-8")()
            offset = 0
            while chunk := os.pread(fd, 1 << 20, offset):
                decoder.decode(chunk)
                offset += len(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "is not UTF-8 text"
    except csv.Error:
        return "is not CSV"
    if tuple(header) != COLUMNS:
        return "had other columns"
    return None


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"


def _move_aside(path: Path) -> Path:
    """Moves `path` to FILE.bak (else FILE.1.bak, ...): the name is first created
    exclusively, so that no file, and no link planted there, is ever replaced."""
    n = 0
    while True:
        backup = path.with_name(f"{path.name}.bak" if n == 0 else f"{path.name}.{n}.bak")
        try:
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            n += 1
            continue
        os.close(fd)
        try:
            os.rename(path, backup)  # replaces only the placeholder just made
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(backup)
            raise
        return backup


def _country(record: Record, tables: Any) -> tuple[str, str]:
    """(ISO alpha-3, name) of the place the intensity is for; empty where none is known."""
    a3 = record.country or ""
    row = tables.countries()["countries"].get(a3)
    return (a3, row["name"]) if row else ("", "")


def cpu_model() -> str:
    """The CPU's model name, as CodeCarbon writes cpu_model."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _ram_gib() -> float:
    """Installed memory in GiB, as CodeCarbon gives ram_total_size (psutil's total / 2^30)."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024 / 2**30
    except (OSError, ValueError):
        pass
    return 0.0
