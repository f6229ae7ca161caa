"""A drop-in for CodeCarbon: change one import, keep your emissions.csv tooling.

    from carbonfast.compat.codecarbon import EmissionsTracker   # was: from codecarbon import ...

    tracker = EmissionsTracker(project_name="train")
    tracker.start()
    ...
    emissions_kg = tracker.stop()

EmissionsTracker, OfflineEmissionsTracker and track_emissions take CodeCarbon 3.x's arguments
and return its values (kg CO2e from stop(), task data from stop_task()), and write the same
emissions.csv. The energy comes from carbonfast's counters. Arguments that only steer
CodeCarbon's own sampling or its online services (measure_power_secs, api_*, save_to_api,
prometheus, logfire, ...) are accepted and have no effect.
"""

from __future__ import annotations

import functools
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from carbonfast.measure import Meter
from carbonfast.report import emissions_csv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from carbonfast.measure import Measurement


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
        self._output_file = Path(output_dir) / output_file
        self._save_to_file = save_to_file
        self._experiment_id = experiment_id or ""
        self._tracking_mode = tracking_mode
        self._run_id = str(uuid.uuid4())
        if gpu_ids is not None and "CUDA_VISIBLE_DEVICES" not in os.environ:
            ids = gpu_ids if isinstance(gpu_ids, str) else ",".join(str(g) for g in gpu_ids)
            os.environ["CUDA_VISIBLE_DEVICES"] = ids
        cloud = f"{cloud_provider}:{cloud_region}" if cloud_provider and cloud_region else None
        self._meter = Meter(
            scope=tracking_mode,
            cpu_tdp_w=force_cpu_power,
            ram_power_w=force_ram_power,
            country=None if cloud else (country_iso_code or country_2letter_iso_code),
            cloud=cloud,
            pue=pue,
            history="off",
        )
        self._window = None
        self._measurement: Measurement | None = None
        self._tasks: dict[str, Any] = {}
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
        if self._measurement is None:
            return None
        data = self._record(self._measurement, write=True)
        return data.emissions

    def stop(self) -> float | None:
        """Stops tracking, writes emissions.csv, and returns the emissions in kg CO2e."""
        if self._window is None or self._measurement is None:
            return None
        self._window.__exit__(None, None, None)
        self._window = None
        self.final_emissions_data = self._record(self._measurement, write=self._save_to_file)
        self.final_emissions = self.final_emissions_data.emissions
        self._remember(self._measurement)
        return self.final_emissions

    # -- tasks ---------------------------------------------------------------------------------

    def start_task(self, task_name: str | None = None) -> None:
        name = task_name or str(uuid.uuid4())
        if name in self._task_windows:
            raise ValueError(f"task {name!r} is already running; stop it first")
        window = self._meter.measure(name)
        self._task_windows[name] = (window, window.__enter__())

    def stop_task(self, task_name: str | None = None) -> EmissionsData:
        """Stops a task (the last started when unnamed) and returns its emissions data."""
        if not self._task_windows:
            raise ValueError("no task is running; call start_task() first")
        name = task_name or list(self._task_windows)[-1]
        window, m = self._task_windows.pop(name)
        window.__exit__(None, None, None)
        data = self._record(m, write=False)
        data.values["task_name"] = name
        self._tasks[name] = data
        return data

    # -- plumbing ------------------------------------------------------------------------------

    def _record(self, m: Measurement, *, write: bool) -> EmissionsData:
        row = emissions_csv.row(
            m.record(),
            project_name=self._project_name,
            run_id=self._run_id,
            experiment_id=self._experiment_id,
            tracking_mode=self._tracking_mode,
        )
        if write:
            emissions_csv.append(self._output_file, row)
        return EmissionsData(values=row)

    def _remember(self, m: Measurement) -> None:
        """Records the run in carbonfast's history too, unless the history is off."""
        from carbonfast.config import resolve

        path = resolve(("history",), {})["history"]
        if path:
            from carbonfast.report.history import History

            record = m.record()
            record.label = self._project_name
            History(path).add(record)

    def __enter__(self) -> EmissionsTracker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class OfflineEmissionsTracker(EmissionsTracker):
    """CodeCarbon's tracker for machines without network: the country must be given."""

    def __init__(self, *args: Any, country_iso_code: str | None = None, **kwargs: Any) -> None:
        if not country_iso_code and not kwargs.get("cloud_provider"):
            raise ValueError(
                "OfflineEmissionsTracker needs country_iso_code (ISO 3166 alpha-3, e.g. 'FRA'), "
                "as CodeCarbon's does"
            )
        super().__init__(*args, country_iso_code=country_iso_code, **kwargs)


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
