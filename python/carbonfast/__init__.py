"""carbonfast: measure the energy and carbon footprint of code from hardware counters.

import carbonfast as cf
with cf.measure("step") as m:
    step()
print(m.energy_j, m.duration_s, m.domains)
"""

from __future__ import annotations

from carbonfast._native import SensorUnavailable
from carbonfast.bench import bench, compare
from carbonfast.info import info
from carbonfast.measure import CallStats, Measurement, Meter, measure, track

__version__ = "0.1.0"

TYPE_CHECKING = False
if TYPE_CHECKING:
    import os
    from datetime import datetime
    from typing import Any

    from carbonfast.carbon.advice import Advice
    from carbonfast.history_records import HistoryKind, HistoryRecords


def advise(
    m: Measurement, *, cpu_seconds: float | None = None, threads: int | None = None, top: int = 3
) -> list[Advice]:
    """Quantified suggestions for cutting the footprint of the work `m` measured: cleaner places
    to run it, the energy idle capacity cost (given the work's `cpu_seconds`), and everyday
    equivalents, each with its source."""
    from carbonfast.carbon.advice import advise as _advise

    return _advise(m, cpu_seconds=cpu_seconds, threads=threads, top=top)


def history(
    label: str | None = None,
    *,
    kind: HistoryKind | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int | None = None,
    path: str | os.PathLike[str] | None = None,
) -> HistoryRecords:
    """The records of the project's history, newest first, as `carbonfast history` lists them
    (typed Records, a table in a notebook, `.to_pandas()` for a DataFrame).

    `label` keeps those whose label contains it; `kind` those of one kind ("run", "bench",
    "task", "window": kept windows and the label sums, "windows": the sums alone); `since` and
    `until` those started in that span (a datetime or an ISO 8601 string; without a time zone
    it is UTC, as the history shows times); `limit` the newest that many. `path` is the history
    file (default: the project's, as CARBONFAST_HISTORY or the config file say). A history that
    does not exist yet gives no records.

        runs = cf.history(label="train", since="2025-06-01")
        runs.to_pandas()  # one row per record
    """
    from carbonfast.history_records import history as _history

    return _history(label, kind=kind, since=since, until=until, limit=limit, path=path)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext carbonfast`: the `%carbonfast` and `%%carbonfast` magics (see
    carbonfast.integrations.ipython)."""
    from carbonfast.integrations.ipython import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext carbonfast`: removes the magics."""
    from carbonfast.integrations.ipython import unload

    unload(ipython)


__all__ = [
    "CallStats",
    "Measurement",
    "Meter",
    "SensorUnavailable",
    "__version__",
    "advise",
    "bench",
    "compare",
    "history",
    "info",
    "measure",
    "track",
]
