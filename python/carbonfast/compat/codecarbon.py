"""A drop-in for CodeCarbon: change one import, keep your emissions.csv tooling.

    from carbonfast.compat.codecarbon import EmissionsTracker   # was: from codecarbon import ...

    tracker = EmissionsTracker(project_name="train")
    tracker.start()
    ...
    emissions_kg = tracker.stop()

EmissionsTracker, OfflineEmissionsTracker and track_emissions take CodeCarbon 3.x's arguments
and return its values (kg CO2e from stop(), task data from stop_task()), and write the same
emissions.csv and, for a tracker with tasks, emissions_<experiment_name>_<run_id>.csv. A tracker
used only through start_task()/stop_task() and then stop() measures its tasks alone, as
CodeCarbon's does. With save_to_file=False nothing at all is written, carbonfast's history
included. The energy comes from carbonfast's counters. Arguments that only steer
CodeCarbon's own sampling or its online services (measure_power_secs, api_*, save_to_api,
prometheus, logfire, ...) are accepted and have no effect.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from carbonfast.measure import Meter
from carbonfast.report import emissions_csv

# CodeCarbon's TaskEmissionsData, the columns of emissions_<experiment_name>_<run_id>.csv: the
# run's columns less those that describe only a run, after the task's name.
_RUN_ONLY_COLUMNS = ("experiment_id", "pue", "wue")
TASK_COLUMNS = ("task_name", *(c for c in emissions_csv.COLUMNS if c not in _RUN_ONLY_COLUMNS))
# CodeCarbon leaves these None where it does not know them (offline it has no coordinates, and a
# region only when given one), and pandas then drops the column from the task file; carbonfast
# never knows the coordinates.
_TASK_COLUMNS_DROPPED_WHEN_UNKNOWN = ("region", "longitude", "latitude")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from carbonfast.measure import Measurement, Window


@dataclass
class EmissionsData:
    """CodeCarbon's record of a run or task, with its emissions.csv fields as attributes."""

    values: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            value = self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None
        # An empty cell is an unknown quantity (no readable counter, estimates off): None.
        return None if value == "" else value


class EmissionsTracker:
    """Tracks the emissions of everything between start() and stop()."""

    def __init__(
        self,
        project_name: str = "codecarbon",
        measure_power_secs: float = 15,
        api_call_interval: int = 8,
        api_endpoint: str | None = None,
        api_key: str | None = None,
        output_dir: str = ".",
        output_file: str = "emissions.csv",
        save_to_file: bool = True,
        save_to_api: bool = False,
        save_to_logger: bool = False,
        logging_logger: Any = None,
        save_to_prometheus: bool = False,
        save_to_logfire: bool = False,
        prometheus_url: str | None = None,
        output_handlers: list | None = None,
        gpu_ids: list | str | None = None,
        emissions_endpoint: str | None = None,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        co2_signal_api_token: str | None = None,
        electricitymaps_api_token: str | None = None,
        tracking_mode: str = "machine",
        log_level: int | str | None = None,
        on_csv_write: str = "append",
        logger_preamble: str = "",
        force_cpu_power: float | None = None,
        force_ram_power: float | None = None,
        pue: float = 1.0,
        wue: float = 0.0,
        force_mode_cpu_load: bool = False,
        allow_multiple_runs: bool = True,
        country_iso_code: str | None = None,
        region: str | None = None,
        cloud_provider: str | None = None,
        cloud_region: str | None = None,
        country_2letter_iso_code: str | None = None,
        **_ignored: Any,
    ) -> None:
        if tracking_mode not in ("machine", "process"):
            raise ValueError(
                f"tracking_mode={tracking_mode!r} is not valid; expected 'machine' or 'process'"
            )
        if on_csv_write not in ("append", "update"):
            raise ValueError(
                f"on_csv_write={on_csv_write!r} is not valid; expected 'append' or 'update'"
            )
        self._project_name = project_name
        self._output_dir = Path(output_dir)
        self._output_file = self._output_dir / output_file
        self._experiment_name = experiment_name or "base"
        self._save_to_file = save_to_file
        self._experiment_id = experiment_id or ""
        self._tracking_mode = tracking_mode
        self._run_id = str(uuid.uuid4())
        if gpu_ids is not None and "CUDA_VISIBLE_DEVICES" not in os.environ:
            ids = gpu_ids if isinstance(gpu_ids, str) else ",".join(str(g) for g in gpu_ids)
            os.environ["CUDA_VISIBLE_DEVICES"] = ids
        cloud = f"{cloud_provider}:{cloud_region}" if cloud_provider and cloud_region else None
        self._meter = Meter(
            scope="machine" if tracking_mode == "machine" else "process",
            cpu_tdp_w=force_cpu_power,
            ram_power_w=force_ram_power,
            country=None if cloud else (country_iso_code or country_2letter_iso_code),
            cloud=cloud,
            pue=pue,
            history="off",
            # As CodeCarbon's, a tracker measures what its machine has: it is often made on
            # one rank alone, where a job's meter would wait for the others to join.
            distributed=False,
        )
        self._window: Window | None = None
        self._measurement: Measurement | None = None
        # Every task stopped on this tracker, in order: the rows of its task file.
        self._tasks: dict[str, EmissionsData] = {}
        # The tasks stopped since this run began: a run without start() is made of them.
        self._run_tasks: list[Measurement] = []
        self._task_windows: dict[str, Any] = {}
        self.final_emissions_data: EmissionsData | None = None
        self.final_emissions: float | None = None

    # -- the run -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._window is not None:
            return  # CodeCarbon warns and ignores a second start
        self._window = self._meter.measure(self._project_name)
        self._measurement = self._window.__enter__()

    def flush(self) -> float | None:
        """Writes the emissions so far without stopping; returns them in kg."""
        report = self._run_report()
        if report is None:
            return None
        return self._save_run(report).emissions

    def stop(self) -> float | None:
        """Stops tracking (and any task still running), writes emissions.csv and the task file,
        and returns the emissions in kg CO2e: of the whole run after start(), of the tasks
        alone for a tracker used only through tasks."""
        self._stop_running_tasks()
        if self._window is not None:
            self._window.__exit__(None, None, None)
            self._window = None
        report = self._run_report()
        if report is None:
            return None  # neither started nor given a task
        self._measurement = None
        self._run_tasks = []
        self.final_emissions_data = self._save_run(report)
        self.final_emissions = self.final_emissions_data.emissions
        if self._save_to_file:
            self._remember(report)
        return self.final_emissions

    # -- tasks ---------------------------------------------------------------------------------

    def start_task(self, task_name: str | None = None) -> None:
        name = task_name or str(uuid.uuid4())
        if name in self._task_windows:
            raise ValueError(f"task {name!r} is already running; stop it first")
        if name in self._tasks:
            # CodeCarbon keeps every task of a run as a row: a name used before gets a suffix.
            name += "_" + str(uuid.uuid4())
        window = self._meter.measure(name)
        self._task_windows[name] = (window, window.__enter__())

    def stop_task(self, task_name: str | None = None) -> EmissionsData:
        """Stops a task (the last started when unnamed) and returns its emissions data."""
        if not self._task_windows:
            raise ValueError("no task is running; call start_task() first")
        name = task_name or list(self._task_windows)[-1]
        window, m = self._task_windows.pop(name)
        window.__exit__(None, None, None)
        data = EmissionsData(values={"task_name": name, **self._row(m.to_dict())})
        self._tasks[name] = data
        self._run_tasks.append(m)
        return data

    def _stop_running_tasks(self) -> None:
        """Stops every task still running, as CodeCarbon's stop() does, so each gets its row."""
        for name in list(self._task_windows):
            self.stop_task(name)

    # -- plumbing ------------------------------------------------------------------------------

    def _run_report(self) -> dict[str, Any] | None:
        """The run so far: the window opened by start() or, for a tracker used only through
        tasks, those stopped since the run began (CodeCarbon measures nothing between them)."""
        if self._measurement is not None:
            return self._measurement.to_dict()
        if self._run_tasks:
            return _tasks_as_run([m.to_dict() for m in self._run_tasks], self._project_name)
        return None

    def _row(self, report: dict[str, Any]) -> dict[str, Any]:
        from carbonfast.report.record import Record

        return emissions_csv.row(
            Record.from_dict(report),
            project_name=self._project_name,
            run_id=self._run_id,
            experiment_id=self._experiment_id,
            tracking_mode=self._tracking_mode,
        )

    def _save_run(self, report: dict[str, Any]) -> EmissionsData:
        """The run's emissions data, written to emissions.csv and, with tasks, to the task file
        unless save_to_file is off."""
        data = EmissionsData(values=self._row(report))
        if self._save_to_file:
            emissions_csv.append(self._output_file, data.values)
            if self._tasks:
                self._write_task_file()
        return data

    def _write_task_file(self) -> None:
        """Rewrites emissions_<experiment_name>_<run_id>.csv with a row per task stopped so
        far, as CodeCarbon does at each flush() and stop()."""
        from carbonfast.report.files import write_atomically

        rows = [data.values for data in self._tasks.values()]
        columns = [c for c in TASK_COLUMNS if not _unknown_in_every_row(c, rows)]
        text = io.StringIO()
        writer = csv.DictWriter(
            text, fieldnames=columns, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
        name = f"emissions_{self._experiment_name}_{self._run_id}.csv"
        write_atomically(self._output_dir / name, text.getvalue())

    def _remember(self, report: dict[str, Any]) -> None:
        """Records the run in carbonfast's history too, unless the history is off."""
        from carbonfast.config import resolve

        path = resolve(("history",), {})["history"]
        if path:
            from carbonfast.report.history import History
            from carbonfast.report.record import Record

            History(path).add(Record.from_dict({**report, "label": self._project_name}, "run"))

    def __enter__(self) -> EmissionsTracker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _unknown_in_every_row(column: str, rows: list[dict[str, Any]]) -> bool:
    return column in _TASK_COLUMNS_DROPPED_WHEN_UNKNOWN and all(r[column] == "" for r in rows)


def _tasks_as_run(tasks: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """One report for a run measured only inside its tasks: their durations, energy and
    emissions added up; where, how and since when from the first. (CodeCarbon runs one task at
    a time; tasks started to overlap here count their common time twice.)"""
    duration = sum(t["duration_s"] for t in tasks)
    energy = _sum_or_none([t["energy_j"] for t in tasks])
    return {
        **tasks[0],
        "label": label,
        "duration_s": duration,
        "energy_j": energy,
        "energy_range_j": _sum_of_ranges(tasks, "energy_j", "energy_range_j"),
        "total_domains": list(dict.fromkeys(d for t in tasks for d in t["total_domains"])),
        "power_w": energy / duration if energy is not None and duration > 0 else None,
        "estimated": any(t["estimated"] for t in tasks),
        "partial": any(t["partial"] for t in tasks),
        "emissions_kg": _sum_or_none([t["emissions_kg"] for t in tasks]),
        "emissions_range_kg": _sum_of_ranges(tasks, "emissions_kg", "emissions_range_kg"),
        "domains": {
            name: _sum_of_domain([t["domains"][name] for t in tasks])
            for name in tasks[0]["domains"]
        },
        "notes": list(dict.fromkeys(n for t in tasks for n in t["notes"])),
    }


def _sum_or_none(values: list[float | None]) -> float | None:
    """The sum, or None (unknown, never 0) where any part is unknown."""
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _sum_of_ranges(items: list[dict[str, Any]], value: str, bounds: str) -> list[float] | None:
    """Low and high bounds of a sum: each part's own, or its value where it has none; None
    where no part has bounds or a value is unknown."""
    if all(i.get(bounds) is None for i in items) or any(i[value] is None for i in items):
        return None
    ranges = [i.get(bounds) or (i[value], i[value]) for i in items]
    return [sum(lo for lo, _ in ranges), sum(hi for _, hi in ranges)]


def _sum_of_domain(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out = {**parts[0], "energy_j": sum(p["energy_j"] for p in parts)}
    if any("energy_range_j" in p for p in parts):
        out["energy_range_j"] = _sum_of_ranges(parts, "energy_j", "energy_range_j")
    if any(p.get("interpolated") for p in parts):
        out["interpolated"] = True
    out["estimated"] = any(p["estimated"] for p in parts)
    return out


class OfflineEmissionsTracker(EmissionsTracker):
    """CodeCarbon's tracker for machines without network: the country must be given."""

    def __init__(self, *args: Any, country_iso_code: str | None = None, **kwargs: Any) -> None:
        if not country_iso_code and not kwargs.get("cloud_provider"):
            raise ValueError(
                "OfflineEmissionsTracker needs country_iso_code (ISO 3166 alpha-3, e.g. 'FRA'), "
                "as CodeCarbon's does"
            )
        kwargs["country_iso_code"] = country_iso_code
        super().__init__(*args, **kwargs)


def track_emissions(
    fn: Callable | None = None,
    *,
    offline: bool = False,
    country_iso_code: str | None = None,
    **tracker_kwargs: Any,
) -> Any:
    """Decorator: track each call of the function with a tracker made from these arguments,
    as CodeCarbon's track_emissions does."""

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            cls = OfflineEmissionsTracker if offline else EmissionsTracker
            tracker = cls(country_iso_code=country_iso_code, **tracker_kwargs)
            tracker.start()
            try:
                return func(*args, **kwargs)
            finally:
                tracker.stop()

        return wrapper

    return decorate(fn) if fn is not None else decorate
