"""CodeCarbon's trackers over carbonfast's meter: EmissionsTracker, OfflineEmissionsTracker,
the track_emissions decorator and the task helpers, with CodeCarbon 3.3's arguments,
configuration, life cycle and outputs.

The energy comes from carbonfast's counters (RAPL, NVML, ...; a flagged estimate where none
is readable), integrated natively between the edges of the run and of each task, not sampled
every `measure_power_secs`. Emissions are that energy x PUE x the grid intensity of the place.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import threading
import time
import uuid
import warnings
from abc import ABC, abstractmethod

from carbonfast.compat.codecarbon import _system
from carbonfast.compat.codecarbon._arguments import (
    _bool,
    _choice,
    _non_negative,
    _positive,
    _sentinel,
)
from carbonfast.compat.codecarbon._figures import _emissions_data, _log_energy, _split
from carbonfast.compat.codecarbon._hardware import _detected_hardware, _log_tracker_metadata
from carbonfast.compat.codecarbon._history import _remember
from carbonfast.compat.codecarbon._live import _LiveUpdates
from carbonfast.compat.codecarbon._meter import _gpu_indices, _shared_meter
from carbonfast.compat.codecarbon._outputs import (
    _built_in_outputs,
    _call,
    _output_methods,
    _takes_live_updates,
)
from carbonfast.compat.codecarbon._place import _resolve_place
from carbonfast.compat.codecarbon._settings import _Settings
from carbonfast.compat.codecarbon.core.config import (
    get_hierarchical_config_with_sources,
    log_config_sources,
)
from carbonfast.compat.codecarbon.external.logger import (
    logger,
    set_logger_format,
    set_logger_level,
)
from carbonfast.compat.codecarbon.external.task import Task
from carbonfast.compat.codecarbon.output_methods.base_output import BaseOutput, OutputMethod
from carbonfast.compat.codecarbon.output_methods.emissions_data import (
    EmissionsData,
    TaskEmissionsData,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from carbonfast.carbon.intensity import Intensity
    from carbonfast.measure import Meter
    from carbonfast.record import Record

    F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "BaseEmissionsTracker",
    "EmissionsTracker",
    "OfflineEmissionsTracker",
    "TaskEmissionsTracker",
    "track_emissions",
    "track_task_emissions",
]

DEFAULT_EXPERIMENT_ID = "5b0fa12a-3dd7-45bb-9766-cc326314d9f1"

# The warning that EmissionsTracker does not locate the machine by IP is given once a process.
_warned_no_geolocation = False


def _suppress(method: F) -> F:
    """CodeCarbon's start(), flush() and stop() never raise into the code they measure: a
    failure is logged (with the traceback at debug level) and the call returns None."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except Exception as e:
            logger.error(f"{method.__name__}() failed: {e!r}; the run goes on", exc_info=True)
            return None

    return wrapper  # type: ignore[return-value]


class BaseEmissionsTracker(_Settings, ABC):
    """Tracks the energy and emissions of code, as CodeCarbon's tracker does.

    Every argument may be left out: it is then taken from the environment (CODECARBON_<NAME>),
    else from `.codecarbon.config` in the working directory, else from `~/.codecarbon.config`
    (INI, `[codecarbon]` section), else CodeCarbon's default. A value from a file or the
    environment that cannot be used is logged as an error and the default used instead.

    Where carbonfast differs: energy comes from hardware counters at the run's and each task's
    edges (`measure_power_secs` only paces the live updates of outputs that take them);
    `pue` multiplies power and energy in these reports, as in CodeCarbon (carbonfast's own
    API applies it to emissions only); `rapl_include_dram=True` reports DRAM inside the CPU
    figures, `rapl_prefer_psys=True` reports the psys (platform) counter as the CPU and drops
    the RAM figure it covers.
    """

    _offline = False

    def __init__(
        self,
        project_name: str | None = _sentinel,
        measure_power_secs: float | None = _sentinel,
        api_call_interval: int | None = _sentinel,
        api_endpoint: str | None = _sentinel,
        api_key: str | None = _sentinel,
        output_dir: str | None = _sentinel,
        output_file: str | None = _sentinel,
        output_methods: list[OutputMethod | str] | None = _sentinel,
        save_to_file: bool | None = _sentinel,
        save_to_api: bool | None = _sentinel,
        save_to_logger: bool | None = _sentinel,
        logging_logger: Any = _sentinel,
        save_to_prometheus: bool | None = _sentinel,
        save_to_logfire: bool | None = _sentinel,
        prometheus_url: str | None = _sentinel,
        output_handlers: list[BaseOutput] | None = _sentinel,
        gpu_ids: list[int | str] | str | None = _sentinel,
        emissions_endpoint: str | None = _sentinel,
        experiment_id: str | None = _sentinel,
        experiment_name: str | None = _sentinel,
        electricitymaps_api_token: str | None = _sentinel,
        co2_signal_api_token: str | None = _sentinel,
        tracking_mode: str | None = _sentinel,
        log_level: int | str | None = _sentinel,
        on_csv_write: str | None = _sentinel,
        logger_preamble: str | None = _sentinel,
        force_cpu_power: float | None = _sentinel,
        force_ram_power: float | None = _sentinel,
        pue: float | None = _sentinel,
        wue: float | None = _sentinel,
        force_carbon_intensity_g_co2e_kwh: float | None = _sentinel,
        force_mode_cpu_load: bool | None = _sentinel,
        allow_multiple_runs: bool | None = _sentinel,
        rapl_include_dram: bool | None = _sentinel,
        rapl_prefer_psys: bool | None = _sentinel,
        metadata: dict[str, Any] | str | None = _sentinel,
    ) -> None:
        """
        :param project_name: the run's name in the reports (default "codecarbon").
        :param measure_power_secs: the period, in seconds, of the live updates to outputs
            that take them (logger, Prometheus, Logfire, the API, your own with live_out):
            every `measure_power_secs` x `api_call_interval` seconds (default 15 and 8).
            Energy is measured from counters and is exact whatever this period.
        :param api_call_interval: periods between live updates; -1: none, only at flush()
            and stop().
        :param output_dir: where emissions.csv and the task file go (default "."); it must
            exist (OSError otherwise).
        :param output_file: the run file's name (default "emissions.csv").
        :param output_methods: [OutputMethod.CSV, ...] or their names; given, the save_to_*
            flags are ignored. Default: CSV.
        :param save_to_file, save_to_api, save_to_logger, save_to_prometheus,
            save_to_logfire: deprecated (a DeprecationWarning), as in CodeCarbon: use
            output_methods.
        :param logging_logger: the LoggerOutput (or logging.Logger) for OutputMethod.LOGGER.
        :param prometheus_url: the Pushgateway (default localhost:9091).
        :param output_handlers: your own outputs (BaseOutput subclasses), called first.
        :param gpu_ids: the GPUs to measure, by index ([0, 2] or "0,2"; default all).
        :param emissions_endpoint: a URL each flush and stop POSTs the run to, as JSON.
        :param experiment_id: the run's experiment (default CodeCarbon's).
        :param experiment_name: names the task file emissions_<experiment_name>_<run_id>.csv
            (default "base").
        :param tracking_mode: "machine" (default) or "process": this process's measured share
            of the machine's energy (its CPU time over the machine's, its GPU processes' SM
            use), where CodeCarbon only scales its estimate; an estimate then follows this
            process's CPU time too.
        :param log_level: the "codecarbon" logger's level (default "info").
        :param on_csv_write: "append" a row at each flush and stop (default), or "update" the
            run's row in place.
        :param logger_preamble: text put in every log line.
        :param force_cpu_power, force_ram_power: watts for estimates where no counter reads
            the CPU or the RAM.
        :param pue: the data centre's power usage effectiveness: multiplies power, energy and
            emissions in these reports (default 1.0).
        :param wue: litres of water per kWh: water_consumed = energy (kWh) x wue (default 0).
        :param force_carbon_intensity_g_co2e_kwh: the grid intensity to use, g CO2e per kWh.
        :param rapl_include_dram: report DRAM energy inside cpu_energy and cpu_power.
        :param rapl_prefer_psys: report the psys (platform) RAPL counter as the CPU.
        :param metadata: a dict, or the path of a JSON file of one; its "boamps" key (or the
            whole dict) fills what a BoAmps report cannot measure.
        :param api_endpoint, api_key, electricitymaps_api_token, co2_signal_api_token,
            force_mode_cpu_load, allow_multiple_runs: as in CodeCarbon; see the README for
            what carbonfast does with each.
        """
        conf, sources = get_hierarchical_config_with_sources()
        self._external_conf: dict[str, str] = conf
        self._conf: dict[str, Any] = {"codecarbon_version": _version()}
        # The logger first, so that what follows logs at the level asked for.
        self._setting(log_level, "log_level", "info")
        self._setting(logger_preamble, "logger_preamble", "")
        set_logger_level(self._log_level)
        set_logger_format(self._logger_preamble)
        log_config_sources(sources)
        if self._offline:
            logger.info("offline tracker init")

        self._forced_intensity(force_carbon_intensity_g_co2e_kwh)
        self._setting(allow_multiple_runs, "allow_multiple_runs", True, _bool)
        self._setting(api_call_interval, "api_call_interval", 8, int)
        self._check_argument("api_call_interval", int)
        self._setting(api_endpoint, "api_endpoint", "https://api.codecarbon.io")
        self._setting(api_key, "api_key", "api_key")
        self._electricitymaps_token(electricitymaps_api_token, co2_signal_api_token)
        self._setting(emissions_endpoint, "emissions_endpoint")
        self._setting(experiment_name, "experiment_name", "base")
        self._setting(gpu_ids, "gpu_ids")
        self._setting(measure_power_secs, "measure_power_secs", 15.0, _non_negative)
        self._check_argument("measure_power_secs", _non_negative)
        self._setting(output_dir, "output_dir", ".")
        if not os.path.exists(self._output_dir):
            raise OSError(
                f"Folder '{self._output_dir}' doesn't exist ! Create it, or give an existing "
                "output_dir"
            )
        self._setting(output_file, "output_file", "emissions.csv")
        self._setting(project_name, "project_name", "codecarbon")
        self._resolve_output_methods(
            output_methods,
            save_to_file,
            save_to_api,
            save_to_logger,
            save_to_prometheus,
            save_to_logfire,
        )
        self._setting(logging_logger, "logging_logger")
        self._setting(prometheus_url, "prometheus_url", "localhost:9091")
        self._setting(output_handlers, "output_handlers", [])
        self._setting(tracking_mode, "tracking_mode", "machine", _choice("machine", "process"))
        self._check_argument("tracking_mode", _choice("machine", "process"))
        self._setting(on_csv_write, "on_csv_write", "append", _choice("append", "update"))
        self._check_argument("on_csv_write", _choice("append", "update"))
        self._setting(metadata, "metadata")
        for name, value in (
            ("force_cpu_power", force_cpu_power),
            ("force_ram_power", force_ram_power),
        ):
            if self._setting(value, name, None, _positive) is not None:
                self._check_argument(name, _positive)
        self._setting(pue, "pue", 1.0, _positive)
        self._check_argument("pue", _positive)
        self._setting(wue, "wue", 0.0, _non_negative)
        self._check_argument("wue", _non_negative)
        self._setting(force_mode_cpu_load, "force_mode_cpu_load", False, _bool)
        self._setting(rapl_include_dram, "rapl_include_dram", False, _bool)
        self._setting(rapl_prefer_psys, "rapl_prefer_psys", False, _bool)
        self._setting(experiment_id, "experiment_id", DEFAULT_EXPERIMENT_ID)
        if self.force_carbon_intensity_g_co2e_kwh is not None:
            # As CodeCarbon logs it: the value as a float ("100.0").
            logger.info(
                f"Using forced carbon intensity: {float(self.force_carbon_intensity_g_co2e_kwh)} "
                "gCO2e/kWh."
            )

        self._meter = self._make_meter()
        self._place = _resolve_place(
            self._location(),
            electricitymaps_token=self._electricitymaps_api_token,
            forced_intensity=self.force_carbon_intensity_g_co2e_kwh,
            meter_carbon=self._meter.carbon,
            no_place_given=self._no_place_given,
        )
        self._initialize_runtime_state()
        self._init_output_methods(api_key=self._api_key)

    # -- outputs -----------------------------------------------------------------------------

    def _resolve_output_methods(
        self,
        output_methods: Any,
        save_to_file: Any,
        save_to_api: Any,
        save_to_logger: Any,
        save_to_prometheus: Any,
        save_to_logfire: Any,
    ) -> None:
        flags = {
            "save_to_file": (save_to_file, True, OutputMethod.CSV),
            "save_to_api": (save_to_api, False, OutputMethod.API),
            "save_to_logger": (save_to_logger, False, OutputMethod.LOGGER),
            "save_to_prometheus": (save_to_prometheus, False, OutputMethod.PROMETHEUS),
            "save_to_logfire": (save_to_logfire, False, OutputMethod.LOGFIRE),
        }
        if any(given is not _sentinel for given, _, _ in flags.values()):
            warnings.warn(
                "The save_to_* parameters are deprecated and will be removed in a future "
                "version. Use output_methods=[OutputMethod.CSV, ...] instead.",
                DeprecationWarning,
                stacklevel=_caller_level(),
            )
        methods = self._setting(output_methods, "output_methods")
        if methods is not None:
            self._output_methods = _output_methods(methods)
            for name, (_, _, method) in flags.items():
                self._conf[name] = method in self._output_methods
                setattr(self, f"_{name}", self._conf[name])
            return
        self._output_methods = []
        for name, (given, default, method) in flags.items():
            if self._setting(given, name, default, _bool):
                self._output_methods.append(method)

    def _init_output_methods(self, *, api_key: str | None = None) -> None:
        """The outputs: yours (output_handlers) first, then the built-in ones asked for."""
        handlers: object = self._output_handlers
        self._output_handlers = list(handlers) if isinstance(handlers, (list, tuple)) else []
        if handlers is not None and not isinstance(handlers, (list, tuple)):
            logger.error(
                f"output_handlers must be a list of outputs (BaseOutput subclasses), not "
                f"{type(handlers).__name__}; it is ignored"
            )
        self.run_id: uuid.UUID = uuid.uuid4()
        self._output_handlers += _built_in_outputs(
            set(self._output_methods),
            output_file=self._output_file,
            output_dir=self._output_dir,
            on_csv_write=self._on_csv_write,
            logging_logger=self._logging_logger,
            emissions_endpoint=self._emissions_endpoint,
            api_endpoint=self._api_endpoint,
            experiment_id=self._experiment_id,
            api_key=api_key,
            conf=self._conf,
            project_name=self._project_name,
            experiment_name=self._experiment_name,
            prometheus_url=self._prometheus_url,
            metadata=self._metadata,
        )

    # -- what is measured, and where ---------------------------------------------------------

    @property
    def _attribute(self) -> str | None:
        """tracking_mode "process": the figures are this process's measured share of the
        machine's (carbonfast.attribution), not the machine's."""
        return "process" if self._tracking_mode == "process" else None

    def _make_meter(self) -> Meter:
        return _shared_meter(
            scope="machine" if self._tracking_mode == "machine" else "process",
            cpu_tdp_w=self._force_cpu_power,
            ram_power_w=self._force_ram_power,
            gpus=_gpu_indices(self._gpu_ids),
        )

    @abstractmethod
    def _location(self) -> dict[str, Any]:
        """The place settings: country_iso_code, region, cloud_provider, cloud_region."""

    def _no_place_given(self, table: Intensity) -> None:
        """What to say where no place was given: the tracker uses carbonfast's own settings,
        else the world average."""
        if table.kind != "world":
            logger.info(f"Carbon intensity of {table.label}, from carbonfast's settings")

    # -- state -------------------------------------------------------------------------------

    def _initialize_runtime_state(self) -> None:
        self._start_time: float | None = None
        self._window: Any = None
        self._measurement: Any = None
        self._run_usage: _system.Usage | None = None
        self._tasks: dict[str, Task] = {}
        self._active_task: str | None = None
        # The reports of the tasks stopped since the run began: a run without start() is them.
        self._run_tasks: list[Record] = []
        self._previous_emissions: EmissionsData | None = None
        self._intensity: Intensity | None = None
        self._hardware: dict[str, Any] | None = None
        # The run's state. Taken after _outputs_lock where both are.
        self._lock = threading.RLock()
        # Held from computing what is sent to the outputs to the end of sending it, so that
        # the outputs get the run's figures in the order they were measured (an update of the
        # run's row never ends with an older figure than the last).
        self._outputs_lock = threading.RLock()
        # One stop() at a time; those that waited for one return what it returned.
        self._stop_lock = threading.Lock()
        self._stops_done = 0
        self._stopping: int | None = None
        self._live = _LiveUpdates()
        self.final_emissions_data: EmissionsData | None = None
        self.final_emissions: float | None = None

    def get_detected_hardware(self) -> dict[str, Any]:
        """ram_total_size (GiB), cpu_count (threads), cpu_physical_count (sockets), cpu_model,
        gpu_count, gpu_model and gpu_ids, as CodeCarbon gives them."""
        self._ensure_hardware_ready()
        assert self._hardware is not None
        return dict(self._hardware)

    def _ensure_hardware_ready(self) -> None:
        if self._hardware is not None:
            return
        with self._lock:
            if self._hardware is None:
                self._detect_hardware()

    def _detect_hardware(self) -> None:
        self._hardware = _detected_hardware(self._meter, self._gpu_ids)
        self._conf.update(
            {
                "os": platform.platform(),
                "python_version": platform.python_version(),
                **{k: v for k, v in self._hardware.items() if k != "gpu_ids"},
                "tracking_mode": self._tracking_mode,
                "region": self._place.region,
                "provider": self._place.cloud_provider or None,
                "longitude": None,
                "latitude": None,
            }
        )
        _log_tracker_metadata(self._meter, self._hardware, self._conf, self._rapl_prefer_psys)

    def _usage(self) -> _system.Usage:
        assert self._hardware is not None
        return _system.Usage(_gpu_indices(self._gpu_ids), gpus=bool(self._hardware["gpu_count"]))

    # -- the run -----------------------------------------------------------------------------

    def service_shutdown(self, signum: int, frame: Any) -> None:
        """A signal handler that stops the tracker:
        `signal.signal(signal.SIGTERM, tracker.service_shutdown)`."""
        logger.warning(f"service_shutdown - Caught signal {signum}")
        self.stop()

    @_suppress
    def start(self) -> None:
        """Starts the run. A second start() while it runs (or while a run of tasks alone
        goes on) is logged and ignored, as in CodeCarbon."""
        self._ensure_hardware_ready()
        with self._lock:
            if self._start_time is not None:
                logger.warning("Already started tracking")
                return
            self._start_time = time.perf_counter()
            self._run_usage = self._usage()
            self._run_tasks = []
            self._previous_emissions = None
            self._window = self._meter.measure(self._project_name, attribute=self._attribute)
            self._measurement = self._window.__enter__()
        self._start_live_updates()

    def start_task(self, task_name: str | None = None) -> None:
        """Starts the task `task_name` (a new id where none is given). One task runs at a
        time: another start_task() meanwhile is logged and ignored. A name used before gets
        a suffix, `name_<uuid>`, and a row of its own."""
        self._ensure_hardware_ready()
        with self._lock:
            if self._active_task:
                logger.warning("A task is already under measure")
                return
            if not task_name:
                task_name = str(uuid.uuid4())
            if task_name in self._tasks:
                task_name += "_" + str(uuid.uuid4())
            if self._start_time is None:  # a run made of its tasks alone begins
                self._start_time = time.perf_counter()
                self._run_usage = self._usage()
                self._run_tasks = []
                self._previous_emissions = None
            task = Task(task_name)
            task.begin(self._meter.measure(task_name, attribute=self._attribute), self._usage())
            self._tasks[task_name] = task
            self._active_task = task_name

    def stop_task(self, task_name: str | None = None) -> EmissionsData | None:
        """Stops the running task (or the one named, if it is the one running) and returns its
        EmissionsData; with no task running, logs a warning and returns None."""
        with self._lock:
            name = task_name or self._active_task
            task = self._tasks.get(name) if name else None
            if task is None or not task.is_active:
                logger.warning("stop_task : No active task to stop.")
                return None
            report = task.end()
            data = self._data(report, task.usage)
            task.emissions_data = data
            task.is_active = False
            if self._active_task == name:
                self._active_task = None
            self._run_tasks.append(report)
        return data

    @_suppress
    def flush(self) -> float | None:
        """Writes the run so far to the outputs without stopping it; returns its emissions in
        kg CO2e."""
        with self._outputs_lock:
            with self._lock:
                if self._start_time is None:
                    logger.error("You first need to start the tracker.")
                    return None
                total = self._run_data()
                if total is None:
                    logger.warning("Nothing measured yet: no task of this run has stopped.")
                    return None
                delta = self._delta(total)
            _log_energy(total)
            self._persist_data(total, delta, self._experiment_name)
        return total.emissions

    @_suppress
    def stop(self) -> float | None:
        """Stops the run (and the task still running), writes it to the outputs and returns
        its emissions in kg CO2e: the whole run after start(), the tasks alone for a tracker
        used only through tasks. Called again, logs a warning and returns them again.
        Called from several threads at once, the first stops the run and the others wait for
        it and return the same."""
        if self._stopping == threading.get_ident():
            # From within the stop() under way in this thread (a signal handler calling
            # service_shutdown, an output calling stop()): that one finishes the run.
            return self.final_emissions
        done = self._stops_done
        with self._stop_lock:
            if self._stops_done != done and self._start_time is None:
                return self.final_emissions  # stopped while this call waited
            self._stopping = threading.get_ident()
            try:
                return self._stop()
            finally:
                self._stopping = None
                self._stops_done += 1

    def _stop(self) -> float | None:
        if self._start_time is None:
            logger.warning("Tracker already stopped or never started.")
            return self.final_emissions
        self._live.stop()
        if self._active_task:
            self.stop_task(self._active_task)
        with self._outputs_lock:
            with self._lock:
                if self._window is not None:
                    self._window.__exit__(None, None, None)
                total = self._run_data()
                report = self._run_report()
                self._start_time = None
                self._window = None
                self._measurement = None
                self._run_tasks = []
                if total is None:
                    return None
                delta = self._delta(total)
                self.final_emissions_data = total
                self.final_emissions = total.emissions
            _log_energy(total)
            self._log_emissions(total)
            self._persist_data(total, delta, self._experiment_name)
            for handler in self._output_handlers:
                _call(handler, "exit")
        if report is not None:
            _remember(report, self._project_name)
        return total.emissions

    def __enter__(self) -> BaseEmissionsTracker:
        self.start()
        return self

    def __exit__(self, exc_type: object, exc_value: object, tb: object) -> None:
        self.stop()

    # -- live updates --------------------------------------------------------------------------

    def _start_live_updates(self) -> None:
        """The background thread of live updates, where an output takes them (one that
        overrides live_out) and api_call_interval is not -1."""
        if self._live.running or self._api_call_interval == -1:
            return
        if not any(_takes_live_updates(h) for h in self._output_handlers):
            return
        self._live.start(self._live_tick, self._measure_power_secs, self._api_call_interval)

    def _live_tick(self, send: bool) -> None:
        with self._outputs_lock:
            with self._lock:
                if self._run_usage is not None:
                    self._run_usage.sample()
                total = self._run_data()
                if total is None:
                    return
                delta = self._delta(total) if send else None
            _log_energy(total)
            if delta is None:
                return
            if delta.emissions_rate is not None:
                logger.info(
                    f"{delta.emissions_rate * 1000:.6f} g.CO2eq/s mean an estimation of "
                    f"{delta.emissions_rate * 3600 * 24 * 365:,} kg.CO2eq/year"
                )
            for handler in self._output_handlers:
                if _takes_live_updates(handler):
                    _call(handler, "live_out", total, delta)

    # -- data ----------------------------------------------------------------------------------

    def _run_report(self) -> Record | None:
        """The run so far: the window opened by start() or, for a tracker used only through
        tasks, those stopped since the run began (CodeCarbon measures nothing between them),
        added up: a part unknown in any task is unknown in the run, never smaller."""
        from carbonfast.record import Record

        if self._measurement is not None:
            return self._measurement.record()
        if self._run_tasks:
            return Record.sum(self._run_tasks, label=self._project_name)
        return None

    def _run_data(self) -> EmissionsData | None:
        report = self._run_report()
        if report is None or self._run_usage is None:
            return None
        return self._data(report, self._run_usage)

    def _delta(self, total: EmissionsData) -> EmissionsData:
        """The part of the run since the last call (the whole run at the first)."""
        previous, self._previous_emissions = self._previous_emissions, total
        if previous is None:
            return total
        delta = dataclasses.replace(total)
        delta.compute_delta_emission(previous)
        return delta

    def _carbon_intensity(self) -> Intensity:
        if self._intensity is None:
            self._intensity = self._place.carbon.intensity()
            if self._intensity.note and self._intensity.kind != "world":
                logger.warning(self._intensity.note)
        return self._intensity

    def _data(self, record: Record, usage: _system.Usage | None) -> EmissionsData:
        """The EmissionsData of a run or task record, written now."""
        assert self._hardware is not None
        return _emissions_data(
            record,
            _split(
                record,
                rapl_prefer_psys=self._rapl_prefer_psys,
                rapl_include_dram=self._rapl_include_dram,
                own=self._tracking_mode == "process",
            ),
            usage,
            g_per_kwh=self._carbon_intensity().g_per_kwh,
            pue=self._pue,
            wue=self._wue,
            project_name=self._project_name,
            run_id=str(self.run_id),
            experiment_id=str(self._experiment_id),
            tracking_mode=self._tracking_mode,
            place=self._place,
            hw=self._hardware,
            conf=self._conf,
        )

    def _persist_data(
        self, total: EmissionsData, delta: EmissionsData, experiment_name: str
    ) -> None:
        """Each output's out(), then its task_out() where the run has stopped tasks; an output
        that fails is logged and the others still run."""
        tasks: list[TaskEmissionsData] = [
            t.out()
            for t in self._tasks.values()
            if not t.is_active and hasattr(t, "emissions_data")
        ]
        for handler in self._output_handlers:
            _call(handler, "out", total, delta)
            if tasks:
                _call(handler, "task_out", tasks, experiment_name)

    def _log_emissions(self, total: EmissionsData) -> None:
        if total.emissions is None:
            return
        intensity = self._carbon_intensity()
        logger.info(
            f"Emissions : {total.emissions * 1000:.6f} g CO2eq over {total.duration:.3f} s, at "
            f"{intensity.g_per_kwh:.0f} g CO2eq/kWh ({intensity.label})"
        )


class OfflineEmissionsTracker(BaseEmissionsTracker):
    """A tracker for a place you name: `country_iso_code` (ISO 3166 alpha-3, e.g. "FRA"), or
    `cloud_provider` and `cloud_region`. Without either it uses the world average, as
    CodeCarbon does (logged as a warning)."""

    _offline = True

    def __init__(
        self,
        *args: Any,
        country_iso_code: str | None = _sentinel,
        region: str | None = _sentinel,
        cloud_provider: str | None = _sentinel,
        cloud_region: str | None = _sentinel,
        country_2letter_iso_code: str | None = _sentinel,
        **kwargs: Any,
    ) -> None:
        """
        :param country_iso_code: 3-letter ISO code of the country the machine draws power in.
        :param region: the province or state (written to the reports; the intensity is the
            country's).
        :param cloud_provider: gcp, aws or azure, with cloud_region.
        :param cloud_region: the provider's region, e.g. "europe-west1".
        :param country_2letter_iso_code: for CodeCarbon's Electricity Maps lookups; kept.
        """
        self._location_arguments = {
            "country_iso_code": country_iso_code,
            "region": region,
            "cloud_provider": cloud_provider,
            "cloud_region": cloud_region,
            "country_2letter_iso_code": country_2letter_iso_code,
        }
        super().__init__(*args, **kwargs)

    def _location(self) -> dict[str, Any]:
        where = {name: self._setting(v, name) for name, v in self._location_arguments.items()}
        if isinstance(where["region"], str):
            where["region"] = self._region = where["region"].lower()
        if isinstance(where["country_2letter_iso_code"], str):
            code = where["country_2letter_iso_code"].upper()
            where["country_2letter_iso_code"] = self._country_2letter_iso_code = code
        return where

    def _no_place_given(self, table: Intensity) -> None:
        if table.kind == "world":
            logger.warning(
                "We do not have data for None, using world average. Give country_iso_code "
                "(e.g. 'FRA') or cloud_provider and cloud_region for the figure of your place."
            )
        else:
            super()._no_place_given(table)


class EmissionsTracker(BaseEmissionsTracker):
    """CodeCarbon's online tracker. Unlike CodeCarbon's, it does not locate the machine by its
    IP address (no network call): it uses the place configured (country_iso_code,
    cloud_provider and cloud_region in `.codecarbon.config` or CODECARBON_* variables, else
    carbonfast's CARBONFAST_COUNTRY or carbonfast.toml), else the world average, and says so
    once in a warning."""

    def _location(self) -> dict[str, Any]:
        conf = self._external_conf
        where = {
            name: conf.get(name)
            for name in ("country_iso_code", "region", "cloud_provider", "cloud_region")
        }
        if isinstance(where["region"], str):
            where["region"] = where["region"].lower()
        if any(where.values()):
            logger.info(
                "EmissionsTracker does not locate this machine by its IP address; using the "
                "place configured: " + ", ".join(f"{k}={v}" for k, v in where.items() if v)
            )
        return where

    def _no_place_given(self, table: Intensity) -> None:
        global _warned_no_geolocation
        if table.kind != "world":
            logger.info(
                "EmissionsTracker does not locate this machine by its IP address; using "
                f"{table.label}, from carbonfast's settings"
            )
        elif not _warned_no_geolocation:
            _warned_no_geolocation = True
            logger.warning(
                "EmissionsTracker does not locate this machine by its IP address (carbonfast "
                "makes no network call for it): the world average carbon intensity is used. "
                "Set your country: OfflineEmissionsTracker(country_iso_code='FRA'), "
                "CODECARBON_COUNTRY_ISO_CODE=FRA or country_iso_code in .codecarbon.config, "
                "or CARBONFAST_COUNTRY=FR."
            )


class TaskEmissionsTracker:
    """A task as a context manager:

        with TaskEmissionsTracker("grid search", tracker=tracker):
            search()

    Without a tracker, one is made for the task and stopped after it."""

    def __init__(self, task_name: str, tracker: BaseEmissionsTracker | None = None) -> None:
        self.is_default_tracker = tracker is None
        self.tracker: BaseEmissionsTracker = tracker if tracker is not None else EmissionsTracker()
        self.task_name = task_name

    def __enter__(self) -> TaskEmissionsTracker:
        self.tracker.start_task(self.task_name)
        return self

    def __exit__(self, exc_type: object, exc_value: object, tb: object) -> None:
        self.tracker.stop_task()
        if self.is_default_tracker:
            self.tracker.stop()


def track_emissions(
    fn: Callable[..., Any] | None = None,
    project_name: str | None = _sentinel,
    measure_power_secs: float | None = _sentinel,
    api_call_interval: int | None = _sentinel,
    api_endpoint: str | None = _sentinel,
    api_key: str | None = _sentinel,
    output_dir: str | None = _sentinel,
    output_file: str | None = _sentinel,
    output_methods: list[OutputMethod | str] | None = _sentinel,
    save_to_file: bool | None = _sentinel,
    save_to_api: bool | None = _sentinel,
    save_to_logger: bool | None = _sentinel,
    logging_logger: Any = _sentinel,
    save_to_prometheus: bool | None = _sentinel,
    save_to_logfire: bool | None = _sentinel,
    prometheus_url: str | None = _sentinel,
    output_handlers: list[BaseOutput] | None = _sentinel,
    gpu_ids: list[int | str] | str | None = _sentinel,
    emissions_endpoint: str | None = _sentinel,
    experiment_id: str | None = _sentinel,
    experiment_name: str | None = _sentinel,
    electricitymaps_api_token: str | None = _sentinel,
    co2_signal_api_token: str | None = _sentinel,
    tracking_mode: str | None = _sentinel,
    log_level: int | str | None = _sentinel,
    on_csv_write: str | None = _sentinel,
    logger_preamble: str | None = _sentinel,
    offline: bool | None = _sentinel,
    country_iso_code: str | None = _sentinel,
    region: str | None = _sentinel,
    cloud_provider: str | None = _sentinel,
    cloud_region: str | None = _sentinel,
    country_2letter_iso_code: str | None = _sentinel,
    force_cpu_power: float | None = _sentinel,
    force_ram_power: float | None = _sentinel,
    pue: float | None = _sentinel,
    wue: float | None = _sentinel,
    force_carbon_intensity_g_co2e_kwh: float | None = _sentinel,
    allow_multiple_runs: bool | None = _sentinel,
    rapl_include_dram: bool | None = _sentinel,
    rapl_prefer_psys: bool | None = _sentinel,
) -> Any:
    """Tracks each call of the decorated function with a tracker of its own, made from these
    arguments (an OfflineEmissionsTracker with `offline=True`, which then needs
    country_iso_code or cloud_provider), as CodeCarbon's decorator does."""
    shared = {
        "project_name": project_name,
        "measure_power_secs": measure_power_secs,
        "output_dir": output_dir,
        "output_file": output_file,
        "output_methods": output_methods,
        "save_to_file": save_to_file,
        "save_to_logger": save_to_logger,
        "logging_logger": logging_logger,
        "save_to_prometheus": save_to_prometheus,
        "save_to_logfire": save_to_logfire,
        "prometheus_url": prometheus_url,
        "output_handlers": output_handlers,
        "gpu_ids": gpu_ids,
        "tracking_mode": tracking_mode,
        "log_level": log_level,
        "on_csv_write": on_csv_write,
        "logger_preamble": logger_preamble,
        "force_cpu_power": force_cpu_power,
        "force_ram_power": force_ram_power,
        "pue": pue,
        "wue": wue,
        "force_carbon_intensity_g_co2e_kwh": force_carbon_intensity_g_co2e_kwh,
        "allow_multiple_runs": allow_multiple_runs,
        "rapl_include_dram": rapl_include_dram,
        "rapl_prefer_psys": rapl_prefer_psys,
    }

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            token = electricitymaps_api_token
            if co2_signal_api_token is not _sentinel:
                logger.warning(
                    "Parameter 'co2_signal_api_token' is deprecated and will be removed in a "
                    "future version. Please use 'electricitymaps_api_token' instead."
                )
                if token is _sentinel:
                    token = co2_signal_api_token
            tracker: BaseEmissionsTracker
            if offline and offline is not _sentinel:
                if country_iso_code in (None, _sentinel) and cloud_provider in (None, _sentinel):
                    raise ValueError(
                        "Needs ISO Code of the Country for Offline mode: give "
                        "track_emissions(offline=True, country_iso_code='FRA') (ISO 3166 "
                        "alpha-3), or cloud_provider and cloud_region"
                    )
                tracker = OfflineEmissionsTracker(
                    **shared,
                    electricitymaps_api_token=token,
                    country_iso_code=country_iso_code,
                    region=region,
                    cloud_provider=cloud_provider,
                    cloud_region=cloud_region,
                    country_2letter_iso_code=country_2letter_iso_code,
                )
            else:
                tracker = EmissionsTracker(
                    **shared,
                    api_call_interval=api_call_interval,
                    api_endpoint=api_endpoint,
                    api_key=api_key,
                    save_to_api=save_to_api,
                    emissions_endpoint=emissions_endpoint,
                    experiment_id=experiment_id,
                    experiment_name=experiment_name,
                    electricitymaps_api_token=token,
                )
            tracker.start()
            try:
                return func(*args, **kwargs)
            finally:
                tracker.stop()

        return wrapped

    return decorate(fn) if fn is not None else decorate


def track_task_emissions(
    fn: Callable[..., Any] | None = None,
    tracker: BaseEmissionsTracker | None = None,
    task_name: str = "",
) -> Any:
    """Tracks each call of the decorated function as a task of `tracker`; without one, a
    tracker is made now and stopped after each call."""
    own = tracker is None
    chosen: BaseEmissionsTracker = tracker if tracker is not None else EmissionsTracker()

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            chosen.start_task(task_name=task_name)
            try:
                return func(*args, **kwargs)
            finally:
                chosen.stop_task()
                if own:
                    chosen.stop()

        return wrapped

    return decorate(fn) if fn is not None else decorate


# -- helpers ------------------------------------------------------------------------------------


def _version() -> str:
    from carbonfast import __version__

    return f"carbonfast {__version__}"


def _caller_level() -> int:
    """The stacklevel of the first frame outside this module: the user's call."""
    import sys

    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
        level += 1
    return level
