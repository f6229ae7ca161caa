"""`carbonfast.history()`: the records of the project's history as typed Records, filtered by
label, kind and time, for a notebook or a script; `.to_pandas()` turns them into a DataFrame."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import overload

from carbonfast.record import KINDS, Kind

TYPE_CHECKING = False
if TYPE_CHECKING:
    import os
    from collections.abc import Iterator
    from typing import Any

    import pandas

    from carbonfast.record import Record

# "windows" are one label's windows added up; "window" asks for them too, as the command does.
HistoryKind = Kind


def history(
    label: str | None = None,
    *,
    kind: HistoryKind | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int | None = None,
    path: str | os.PathLike[str] | None = None,
) -> HistoryRecords:
    """carbonfast.history: the records of the history, newest first, filtered."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not valid; expected one of {', '.join(KINDS)}")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit={limit!r} is not valid; expected a whole number >= 0")
    start, end = _instant(since, "since"), _instant(until, "until")
    from pathlib import Path

    from carbonfast.config import resolve

    file = resolve(("history",), {"history": path})["history"]
    if file is None:
        return HistoryRecords([], file)
    from carbonfast.meter import flush_history

    # The windows this process closed are written now and then: those so far are wanted too.
    flush_history(file)
    if not Path(file).exists():
        return HistoryRecords([], file)
    from carbonfast.report.history import History

    db = History(file, read_only=True, say=_warn)
    try:
        timed = start is not None or end is not None
        # SQLite reads a negative LIMIT as none.
        rows = db.list(label=label, limit=-1 if timed or limit is None else limit, kind=kind)
        ids = [r["id"] for r in rows if not timed or _within(r["started_at"], start, end)]
        records = []
        for run_id in ids[:limit]:
            try:
                records.append(db.get(run_id)[0])
            except ValueError as e:
                _warn(str(e))
    finally:
        db.close()
    return HistoryRecords(records, file)


def _warn(message: str) -> None:
    warnings.warn(f"carbonfast: {message}", RuntimeWarning, stacklevel=3)


def _instant(value: datetime | str | None, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = _parse(value)
        except ValueError:
            raise ValueError(
                f"{name}={value!r} is not valid; expected a datetime or an ISO 8601 time such "
                "as 2025-06-01 or 2025-06-01T12:00:00+02:00"
            ) from None
    if not isinstance(value, datetime):
        raise ValueError(f"{name}={value!r} is not valid; expected a datetime or an ISO string")
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _parse(text: str) -> datetime:
    # Python 3.10's fromisoformat knows no "Z".
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


def _within(started_at: object, start: datetime | None, end: datetime | None) -> bool:
    try:
        t = _instant(str(started_at), "started_at")
    except ValueError:
        return False  # an edited row without a time: in no span
    assert t is not None
    return (start is None or t >= start) and (end is None or t <= end)


class HistoryRecords(Sequence["Record"]):
    """Records from the history, newest first: a list of carbonfast Records (see
    carbonfast.record.Record) that shows as a table in a notebook and becomes a pandas
    DataFrame with `to_pandas()`."""

    def __init__(self, records: list[Record], path: str | None) -> None:
        self._records = records
        self.path = path
        """The history file read (None where the history is off)."""

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> HistoryRecords: ...
    def __getitem__(self, index: int | slice) -> Record | HistoryRecords:
        if isinstance(index, slice):
            return HistoryRecords(self._records[index], self.path)
        return self._records[index]

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self._records)

    def __repr__(self) -> str:
        return f"<HistoryRecords: {len(self)} record(s) from {self.path or 'no history'}>"

    def __str__(self) -> str:
        from carbonfast.display import records_text

        return records_text(self._records)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from carbonfast.display import pretty

        pretty(self, p, cycle)

    def _repr_html_(self) -> str:
        from carbonfast.display import records_html

        return records_html(self._records)

    def to_pandas(self) -> pandas.DataFrame:
        """One row per record: its figures, the energy of each part (cpu_j, gpu_j, ram_j:
        empty where unknown) and its job tags. `started_at` is a UTC timestamp."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "HistoryRecords.to_pandas() needs pandas, which is not installed: "
                "pip install pandas"
            ) from None
        frame = pd.DataFrame([_row(r) for r in self._records], columns=list(_COLUMNS))
        frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True, errors="coerce")
        return frame


_COLUMNS = (
    "id",
    "kind",
    "label",
    "started_at",
    "duration_s",
    "energy_j",
    "energy_low_j",
    "energy_high_j",
    "power_w",
    "estimated",
    "partial",
    "emissions_kg",
    "intensity_g_per_kwh",
    "location",
    "pue",
    "cpu_j",
    "gpu_j",
    "ram_j",
    "count",
    "command",
    "exit_code",
    "job_id",
    "host",
    "rank",
    "world_size",
)


def _row(r: Record) -> dict[str, Any]:
    low, high = r.energy_range_j or (None, None)
    parts = r.energy_by_kind()
    return {
        "id": r.id,
        "kind": r.kind,
        "label": r.label,
        "started_at": r.started_at,
        "duration_s": r.duration_s,
        "energy_j": r.energy_j,
        "energy_low_j": low,
        "energy_high_j": high,
        "power_w": r.power_w,
        "estimated": r.estimated,
        "partial": r.partial,
        "emissions_kg": r.emissions_kg,
        "intensity_g_per_kwh": r.intensity_g_per_kwh,
        "location": r.location,
        "pue": r.pue,
        "cpu_j": parts.get("cpu"),
        "gpu_j": parts.get("gpu"),
        "ram_j": parts.get("ram"),
        "count": (r.sums or {}).get("count"),
        "command": None if r.command is None else r.title,
        "exit_code": r.exit_code,
        "job_id": r.job_id,
        "host": r.host,
        "rank": r.rank,
        "world_size": r.world_size,
    }
