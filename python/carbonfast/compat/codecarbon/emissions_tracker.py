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
import logging
import os
import platform
import re
import threading
import time
import uuid
import warnings
from abc import ABC, abstractmethod
from datetime import datetime

from carbonfast.compat.codecarbon import _system
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

    from carbonfast.carbon import Carbon
    from carbonfast.carbon.intensity import Intensity
    from carbonfast.compat.codecarbon.output_methods.boamps import BoAmpsOutput
    from carbonfast.measure import Meter
    from carbonfast.report.record import Record

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
_J_PER_KWH = 3.6e6


class _NotGiven:
    """The default of every argument: "not given", so that the configuration fills it (None
    is a value an argument can be given)."""

    def __repr__(self) -> str:
        return "<not given>"


_sentinel: Any = _NotGiven()

# The warning that EmissionsTracker does not locate the machine by IP is given once a process.
_warned_no_geolocation = False


# -- parsing configuration values (strings from files and the environment) ----------------------


def _bool(raw: Any) -> bool:
    low = str(raw).strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off", ""):
        return False
    raise ValueError


# The shortest period of live updates (CodeCarbon measures no more often either).
_MIN_LIVE_PERIOD_S = 0.05


def _positive(raw: Any) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError
    return value


def _non_negative(raw: Any) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError
    return value


def _choice(*accepted: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        value = str(raw).strip()
        if value not in accepted:
            raise ValueError
        return value

    return parse


_EXPECTED = {
    _bool: "true or false",
    float: "a number",
    int: "a whole number",
    _positive: "a number above 0",
    _non_negative: "a number, 0 or more",
}


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


@dataclasses.dataclass(frozen=True)
class _Place:
    """Where the energy is drawn, as the CSV names it, and its carbon settings."""

    carbon: Carbon
    country_iso_code: str | None = None
    country_name: str | None = None
    region: str | None = None
    cloud_provider: str = ""
    cloud_region: str = ""

    @property
    def on_cloud(self) -> str:
        return "Y" if self.cloud_provider else "N"


class BaseEmissionsTracker(ABC):
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

    # The settings, each set by _setting() from its argument, the configuration or its default
    # (an argument as given, but for a number given as text).
    _log_level: Any
    _logger_preamble: str
    _force_carbon_intensity_g_co2e_kwh: float | None
    force_carbon_intensity_g_co2e_kwh: float | None
    _allow_multiple_runs: bool
    _api_call_interval: int
    _api_endpoint: str
    _api_key: str | None
    _electricitymaps_api_token: str | None
    _emissions_endpoint: str | None
    _experiment_name: str
    _gpu_ids: Any
    _measure_power_secs: float
    _output_dir: str
    _output_file: str
    _project_name: str
    _output_methods: list[OutputMethod]
    _save_to_file: bool
    _save_to_api: bool
    _save_to_logger: bool
    _save_to_prometheus: bool
    _save_to_logfire: bool
    _logging_logger: Any
    _prometheus_url: str
    _output_handlers: list[Any]
    _tracking_mode: str
    _on_csv_write: str
    _metadata: dict[str, Any] | str | None
    _force_cpu_power: float | None
    _force_ram_power: float | None
    _pue: float
    _wue: float
    _force_mode_cpu_load: bool
    _rapl_include_dram: bool
    _rapl_prefer_psys: bool
    _experiment_id: str

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
        :param tracking_mode: "machine" (default) or "process": what an estimate follows
            where no counter is readable.
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

        self._setting(
            force_carbon_intensity_g_co2e_kwh,
            "force_carbon_intensity_g_co2e_kwh",
            None,
            _non_negative,
        )
        intensity = self._force_carbon_intensity_g_co2e_kwh
        if intensity is not None and not (
            isinstance(intensity, (int, float))
            and not isinstance(intensity, bool)
            and 0 <= intensity < float("inf")
        ):
            logger.warning(
                f"Invalid value for force_carbon_intensity_g_co2e_kwh: {intensity!r}. It must "
                "be a number, 0 or more (g CO2e per kWh). Using the place's intensity."
            )
            self._force_carbon_intensity_g_co2e_kwh = None
        self.force_carbon_intensity_g_co2e_kwh = self._force_carbon_intensity_g_co2e_kwh
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
        self._place = self._resolve_place()
        self._initialize_runtime_state()
        self._init_output_methods(api_key=self._api_key)

    # -- settings --------------------------------------------------------------------------

    def _setting(
        self,
        var: Any,
        name: str,
        default: Any = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Sets self._<name>: the argument as given; else the configuration's value, parsed
        (a value that does not parse is logged and the default used); else the default."""
        if var is not _sentinel:
            value = var
        elif name in self._external_conf and parse is not None:
            raw = self._external_conf[name]
            try:
                value = parse(raw)
            except (ValueError, TypeError):
                what = _EXPECTED.get(parse, "one of the accepted values")
                logger.error(
                    f"CONFIG - Value for '{name}' must be {what}. Got '{raw}' instead. It will "
                    f"be ignored; using {default!r}."
                )
                value = default
        else:
            value = self._external_conf.get(name, default)
        self._conf[name] = value
        setattr(self, f"_{name}", value)
        return value

    def _check_argument(self, name: str, parse: Callable[[Any], Any]) -> None:
        """Raises ValueError, naming the argument and what it accepts, where a value given as
        an argument cannot be used."""
        value = getattr(self, f"_{name}")
        try:
            parsed = None if isinstance(value, bool) else parse(value)
        except (ValueError, TypeError):
            parsed = None
        if parsed is not None and isinstance(value, str):
            # A number given as text ("1.5"), taken as the number.
            setattr(self, f"_{name}", parsed)
            self._conf[name] = parsed
        if parsed is None:
            accepted = {
                "api_call_interval": "a whole number of periods (-1: only at flush and stop)",
                "measure_power_secs": "seconds, 0 or more",
                "tracking_mode": "'machine' or 'process'",
                "on_csv_write": "'append' or 'update'",
                "pue": "a number above 0 (1.0: no overhead)",
                "wue": "litres per kWh, 0 or more",
                "force_cpu_power": "watts above 0",
                "force_ram_power": "watts above 0",
            }[name]
            raise ValueError(f"{name}={value!r} is not valid; expected {accepted}")

    def _electricitymaps_token(self, token: Any, old_token: Any) -> None:
        if old_token is not _sentinel:
            logger.warning(
                "Parameter 'co2_signal_api_token' is deprecated and will be removed in a future "
                "version. Please use 'electricitymaps_api_token' instead."
            )
            if token is _sentinel:
                token = old_token
        self._setting(token, "electricitymaps_api_token")
        if self._electricitymaps_api_token is None and self._external_conf.get(
            "co2_signal_api_token"
        ):
            logger.warning(
                "Configuration parameter 'co2_signal_api_token' is deprecated. Please update "
                "your config to use 'electricitymaps_api_token' instead."
            )
            self._electricitymaps_api_token = self._external_conf["co2_signal_api_token"]

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
        methods = set(self._output_methods)
        if OutputMethod.CSV in methods:
            from carbonfast.compat.codecarbon.output_methods.file import FileOutput

            self._output_handlers.append(
                FileOutput(self._output_file, self._output_dir, self._on_csv_write)
            )
        if OutputMethod.LOGGER in methods:
            output = self._logging_logger
            if isinstance(output, logging.Logger):
                from carbonfast.compat.codecarbon.output_methods.logger import LoggerOutput

                output = LoggerOutput(output)
            if output is None or isinstance(output, str):
                logger.error(
                    "The logger output needs logging_logger=LoggerOutput(your_logger) (or a "
                    "logging.Logger); nothing is logged to a logger of yours"
                )
            else:
                self._output_handlers.append(output)
        if self._emissions_endpoint:
            from carbonfast.compat.codecarbon.output_methods.http import HTTPOutput

            self._output_handlers.append(HTTPOutput(self._emissions_endpoint))
        if OutputMethod.API in methods:
            from carbonfast.compat.codecarbon.output_methods.http import CodeCarbonAPIOutput

            self._output_handlers.append(
                CodeCarbonAPIOutput(
                    endpoint_url=self._api_endpoint,
                    experiment_id=self._experiment_id,
                    api_key=api_key,
                    conf=self._conf,
                )
            )
        if OutputMethod.PROMETHEUS in methods:
            from carbonfast.compat.codecarbon.output_methods.metrics.prometheus import (
                PrometheusOutput,
            )

            job = re.sub(r"[^a-zA-Z0-9_-]", "_", f"{self._project_name}_{self._experiment_name}")
            self._output_handlers.append(PrometheusOutput(self._prometheus_url, job_name=job))
        if OutputMethod.LOGFIRE in methods:
            from carbonfast.compat.codecarbon.output_methods.metrics.logfire import LogfireOutput

            self._output_handlers.append(LogfireOutput())
        if OutputMethod.BOAMPS in methods:
            self._output_handlers.append(self._build_boamps_output())

    def _build_boamps_output(self) -> BoAmpsOutput:
        """The BoAmps output, with what `metadata` (a dict, or a JSON file of one) holds under
        "boamps" (or the whole dict, as older CodeCarbon read it)."""
        import json

        from carbonfast.compat.codecarbon.output_methods.boamps import BoAmpsOutput

        metadata = self._metadata
        if isinstance(metadata, str) and metadata:
            try:
                with open(metadata, encoding="utf-8") as f:
                    metadata = json.load(f)
            except FileNotFoundError:
                logger.error(f"Metadata file not found: {metadata}")
                metadata = None
            except (OSError, ValueError) as e:
                logger.error(f"Invalid JSON in metadata file '{metadata}': {e}")
                metadata = None
        if isinstance(metadata, dict):
            context = metadata.get("boamps", metadata)
            if isinstance(context, dict) and context:
                return BoAmpsOutput.from_dict(context, output_dir=self._output_dir)
        return BoAmpsOutput(output_dir=self._output_dir)

    # -- what is measured, and where ---------------------------------------------------------

    def _make_meter(self) -> Meter:
        return _shared_meter(
            scope="machine" if self._tracking_mode == "machine" else "process",
            cpu_tdp_w=self._force_cpu_power,
            ram_power_w=self._force_ram_power,
            gpus=self._gpu_indices(),
        )

    def _gpu_indices(self) -> tuple[int, ...] | None:
        """gpu_ids as CUDA indices; None: every GPU. Ids that are not indices (UUIDs) are
        logged and every GPU is measured."""
        ids = self._gpu_ids
        if ids is None or ids == []:
            return None
        items = ids.split(",") if isinstance(ids, str) else list(ids)
        try:
            indices = tuple(int(str(i).strip()) for i in items if str(i).strip())
        except ValueError:
            logger.warning(
                f'gpu_ids={ids!r}: carbonfast selects GPUs by index (e.g. [0, 2] or "0,2"); '
                "measuring every GPU"
            )
            return None
        return indices or None

    @abstractmethod
    def _location(self) -> dict[str, Any]:
        """The place settings: country_iso_code, region, cloud_provider, cloud_region."""

    def _resolve_place(self) -> _Place:
        """The place and its intensity: the forced intensity, else the cloud region, else the
        country given; with none of them, carbonfast's own settings (CARBONFAST_COUNTRY, a
        carbonfast.toml), else the world average."""
        from carbonfast.carbon import Carbon
        from carbonfast.carbon.intensity import by_cloud, by_country
        from carbonfast.carbon.tables import countries

        where = self._location()
        settings: dict[str, Any] = {
            "electricitymaps_token": self._electricitymaps_api_token or None,
            "electricitymaps_url": "https://api.electricitymap.org/v3",
        }
        if self.force_carbon_intensity_g_co2e_kwh is not None:
            settings["intensity"] = float(self.force_carbon_intensity_g_co2e_kwh)
        fields: dict[str, Any] = {"region": where.get("region")}
        provider, cloud_region = where.get("cloud_provider"), where.get("cloud_region")
        if provider and not cloud_region:
            logger.error(
                "Cloud Region must be provided if cloud provider is set: give cloud_region "
                f"(e.g. cloud_provider={provider!r}, cloud_region='europe-west1')"
            )
        elif provider:
            spec = f"{provider}:{cloud_region}"
            try:
                cloud = by_cloud(spec)
            except ValueError as e:
                logger.error(
                    f"Cloud Provider/Region {provider} {cloud_region} not found in cloud "
                    f"emissions data: {e}"
                )
            else:
                settings["cloud"] = spec
                fields.update(cloud_provider=str(provider), cloud_region=str(cloud_region))
                fields.update(_country_fields(cloud.country, countries()))
        code = where.get("country_iso_code")
        if code and "cloud" not in settings:
            try:
                country = by_country(str(code))
            except ValueError as e:
                logger.error(f"Does not support country with ISO code {code}: {e}")
                logger.warning(f"We do not have data for {code}, using world average.")
                fields.update(country_iso_code=str(code), country_name=_WORLD)
            else:
                settings["country"] = str(code)
                fields.update(_country_fields(country.country, countries()))
        place_given = any(k in settings for k in ("intensity", "cloud", "country")) or bool(code)
        # The most specific place alone (as CodeCarbon: a forced intensity, else the cloud
        # region, else the country), so that the others are not noted as overridden.
        for weaker in ("country", "cloud"):
            if sum(k in settings for k in ("intensity", "cloud", "country")) > 1:
                settings.pop(weaker, None)
        carbon = Carbon(settings) if place_given else self._meter.carbon
        if not place_given:
            table = carbon.table
            fields.update(_country_fields(table.country, countries()))
            self._no_place_given(table)
        return _Place(carbon=carbon, **fields)

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
        self._run_tasks: list[dict[str, Any]] = []
        self._previous_emissions: EmissionsData | None = None
        self._intensity: Intensity | None = None
        self._hardware: dict[str, Any] | None = None
        self._lock = threading.RLock()
        self._live_stop: threading.Event | None = None
        self._live_thread: threading.Thread | None = None
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
        gpus = [d for d in self._meter.domains if d.kind == "gpu"]
        models: dict[str, int] = {}
        for d in gpus:
            model = d.label.split(",")[0].strip() or d.name
            models[model] = models.get(model, 0) + 1
        self._hardware = {
            "ram_total_size": _system.ram_total_gib(),
            "cpu_count": _system.cpu_count(),
            "cpu_physical_count": _system.cpu_sockets(),
            "cpu_model": _cpu_model(),
            "gpu_count": len(gpus),
            "gpu_model": ", ".join(f"{n} x {m}" for m, n in models.items()),
            "gpu_ids": self._gpu_ids,
        }
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
        self._log_tracker_metadata()

    def _log_tracker_metadata(self) -> None:
        hw = self._hardware
        assert hw is not None
        meter = self._meter
        logger.info(
            "[setup] carbonfast measures: "
            + (
                ", ".join(
                    f"{d.name} ({d.kind}, {d.source}{', estimated' if d.estimated else ''})"
                    for d in meter.domains
                )
                or "nothing (no readable counter, estimates off)"
            )
        )
        for note in (*meter._problem_notes, *meter._estimate_notes):
            logger.warning(note)
        if self._rapl_prefer_psys and not any(d.kind == "psys" for d in meter.domains):
            logger.warning(
                "rapl_prefer_psys=True, but no psys RAPL counter is readable here: the CPU "
                "figures are the packages'"
            )
        logger.info(">>> Tracker's metadata:")
        logger.info(f"  Platform system: {self._conf['os']}")
        logger.info(f"  Python version: {self._conf['python_version']}")
        logger.info(f"  CodeCarbon version: {self._conf['codecarbon_version']}")
        logger.info(f"  Available RAM : {hw['ram_total_size']:.3f} GB")
        logger.info(
            f"  CPU count: {hw['cpu_count']} thread(s) in {hw['cpu_physical_count']} "
            "physical CPU(s)"
        )
        logger.info(f"  CPU model: {hw['cpu_model']}")
        logger.info(f"  GPU count: {hw['gpu_count']}")
        logger.info(f"  GPU model: {hw['gpu_model']}")

    def _usage(self) -> _system.Usage:
        assert self._hardware is not None
        return _system.Usage(self._gpu_indices(), gpus=bool(self._hardware["gpu_count"]))

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
        if self._start_time is not None:
            logger.warning("Already started tracking")
            return
        self._ensure_hardware_ready()
        with self._lock:
            self._start_time = time.perf_counter()
            self._run_usage = self._usage()
            self._run_tasks = []
            self._previous_emissions = None
            self._window = self._meter.measure(self._project_name)
            self._measurement = self._window.__enter__()
        self._start_live_updates()

    def start_task(self, task_name: str | None = None) -> None:
        """Starts the task `task_name` (a new id where none is given). One task runs at a
        time: another start_task() meanwhile is logged and ignored. A name used before gets
        a suffix, `name_<uuid>`, and a row of its own."""
        self._ensure_hardware_ready()
        if self._active_task:
            logger.warning("A task is already under measure")
            return
        if not task_name:
            task_name = str(uuid.uuid4())
        if task_name in self._tasks:
            task_name += "_" + str(uuid.uuid4())
        with self._lock:
            if self._start_time is None:  # a run made of its tasks alone begins
                self._start_time = time.perf_counter()
                self._run_usage = self._usage()
                self._run_tasks = []
                self._previous_emissions = None
            task = Task(task_name)
            task._usage = self._usage()
            task._window = self._meter.measure(task_name)
            task._measurement = task._window.__enter__()
            self._tasks[task_name] = task
            self._active_task = task_name

    def stop_task(self, task_name: str | None = None) -> EmissionsData | None:
        """Stops the running task (or the one named, if it is the one running) and returns its
        EmissionsData; with no task running, logs a warning and returns None."""
        name = task_name or self._active_task
        task = self._tasks.get(name) if name else None
        if task is None or not task.is_active:
            logger.warning("stop_task : No active task to stop.")
            return None
        with self._lock:
            task._window.__exit__(None, None, None)
            report = task._measurement.to_dict()
            data = self._data(report, task._usage)
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
        if self._start_time is None:
            logger.error("You first need to start the tracker.")
            return None
        with self._lock:
            total = self._run_data()
            if total is None:
                logger.warning("Nothing measured yet: no task of this run has stopped.")
                return None
            delta = self._delta(total)
        self._log_energy(total)
        self._persist_data(total, delta, self._experiment_name)
        return total.emissions

    @_suppress
    def stop(self) -> float | None:
        """Stops the run (and the task still running), writes it to the outputs and returns
        its emissions in kg CO2e: the whole run after start(), the tasks alone for a tracker
        used only through tasks. Called again, logs a warning and returns them again."""
        if self._start_time is None:
            logger.warning("Tracker already stopped or never started.")
            return self.final_emissions
        self._stop_live_updates()
        if self._active_task:
            self.stop_task(self._active_task)
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
        self._log_energy(total)
        self._log_emissions(total)
        self._persist_data(total, delta, self._experiment_name)
        for handler in self._output_handlers:
            _call(handler, "exit")
        if report is not None:
            self._remember(report)
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
        if self._live_thread is not None or self._api_call_interval == -1:
            return
        if not any(_takes_live_updates(h) for h in self._output_handlers):
            return
        self._live_stop = threading.Event()
        self._live_thread = threading.Thread(
            target=self._live_loop,
            # CodeCarbon takes 0 (as often as it can): no less than its own 50 ms between
            # measurements, rather than a loop that spins.
            args=(self._live_stop, max(_MIN_LIVE_PERIOD_S, float(self._measure_power_secs))),
            name="codecarbon-live",
            daemon=True,
        )
        self._live_thread.start()

    def _stop_live_updates(self) -> None:
        thread, stop = self._live_thread, self._live_stop
        self._live_thread = self._live_stop = None
        if thread is not None and stop is not None:
            stop.set()
            if thread is not threading.current_thread():
                # An output's live_out() in progress is given time to finish (theirs are
                # bounded by their own timeouts); one that hangs does not hold up stop().
                thread.join(timeout=60)
                if thread.is_alive():
                    logger.warning("a live update is still running after 60 s; stopping without it")

    def _live_loop(self, stop: threading.Event, period_s: float) -> None:
        every = max(1, int(self._api_call_interval))
        ticks = 0
        deadline = time.monotonic() + period_s
        while not stop.wait(max(0.0, deadline - time.monotonic())):
            deadline += period_s
            now = time.monotonic()
            if deadline < now:  # held up longer than a period: on from now
                deadline = now + period_s
            ticks += 1
            try:
                self._live_tick(ticks % every == 0)
            except Exception as e:
                logger.error(f"live update failed: {e!r}; the run goes on", exc_info=True)

    def _live_tick(self, send: bool) -> None:
        with self._lock:
            if self._run_usage is not None:
                self._run_usage.sample()
            total = self._run_data()
            if total is None:
                return
            delta = self._delta(total) if send else None
        self._log_energy(total)
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

    def _run_report(self) -> dict[str, Any] | None:
        """The run so far: the window opened by start() or, for a tracker used only through
        tasks, those stopped since the run began (CodeCarbon measures nothing between them)."""
        if self._measurement is not None:
            report: dict[str, Any] = self._measurement.to_dict()
            return report
        if self._run_tasks:
            return _tasks_as_run(self._run_tasks, self._project_name)
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

    def _split(self, record: Record) -> tuple[float, float, float, float | None]:
        """(CPU, GPU, RAM, total) joules, as the rapl_* options ask."""
        parts = record.energy_by_kind()
        cpu, gpu, ram = parts["cpu"], parts["gpu"], parts["ram"]
        total = record.energy_j
        psys = [d.energy_j for d in record.domains.values() if d.kind == "psys"]
        if self._rapl_prefer_psys and psys:
            # The platform counter covers the CPU packages and DRAM: it is the CPU figure.
            cpu, ram = sum(psys), 0.0
            total = cpu + gpu
        elif self._rapl_include_dram:
            cpu, ram = cpu + ram, 0.0
        return cpu, gpu, ram, total

    def _data(self, report: dict[str, Any], usage: _system.Usage | None) -> EmissionsData:
        """The EmissionsData of a run or task report, written now."""
        from carbonfast.report.record import Record

        assert self._hardware is not None
        record = Record.from_dict(report)
        cpu, gpu, ram, total = self._split(record)
        duration = record.duration_s
        pue = self._pue

        def kwh(j: float) -> float:
            return j / _J_PER_KWH * pue

        def watts(j: float) -> float:
            return j / duration * pue if duration > 0 else 0.0

        energy = None if total is None else kwh(total)
        g_per_kwh = self._carbon_intensity().g_per_kwh
        emissions = None if energy is None else energy * g_per_kwh / 1000.0
        rate = None if emissions is None else emissions / duration if duration > 0 else 0.0
        hw = self._hardware
        place = self._place
        return EmissionsData(
            timestamp=datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
            project_name=self._project_name,
            run_id=str(self.run_id),
            experiment_id=str(self._experiment_id),
            duration=duration,
            emissions=emissions,
            emissions_rate=rate,
            cpu_power=watts(cpu),
            gpu_power=watts(gpu),
            ram_power=watts(ram),
            cpu_energy=kwh(cpu),
            gpu_energy=kwh(gpu),
            ram_energy=kwh(ram),
            energy_consumed=energy,
            water_consumed=None if energy is None else self._wue * energy,
            country_name=place.country_name,
            country_iso_code=place.country_iso_code,
            region=place.region,
            cloud_provider=place.cloud_provider,
            cloud_region=place.cloud_region,
            os=self._conf["os"],
            python_version=self._conf["python_version"],
            codecarbon_version=self._conf["codecarbon_version"],
            cpu_count=hw["cpu_count"],
            cpu_model=hw["cpu_model"],
            gpu_count=hw["gpu_count"],
            gpu_model=hw["gpu_model"],
            longitude=None,
            latitude=None,
            ram_total_size=hw["ram_total_size"],
            tracking_mode=self._tracking_mode,
            **(usage.figures() if usage is not None else {}),
            on_cloud=place.on_cloud,
            pue=self._pue,
            wue=self._wue,
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

    def _log_energy(self, total: EmissionsData) -> None:
        logger.info(
            f"Energy consumed for RAM : {total.ram_energy:.6f} kWh. RAM Power : {total.ram_power} W"
        )
        logger.info(
            f"Energy consumed for All CPU : {total.cpu_energy:.6f} kWh. CPU Power : "
            f"{total.cpu_power} W"
        )
        if total.gpu_count:
            logger.info(
                f"Energy consumed for all GPUs : {total.gpu_energy:.6f} kWh. Total GPU Power : "
                f"{total.gpu_power} W"
            )
        if total.energy_consumed is None:
            logger.warning(
                "The energy is unknown (not zero): no counter is readable and estimates are "
                "off; run `carbonfast info` for each missing counter and its fix"
            )
            return
        logger.info(
            f"{total.energy_consumed:.6f} kWh of electricity and {total.water_consumed or 0:.6f} "
            "L of water were used since the beginning."
        )

    def _log_emissions(self, total: EmissionsData) -> None:
        if total.emissions is None:
            return
        intensity = self._carbon_intensity()
        logger.info(
            f"Emissions : {total.emissions * 1000:.6f} g CO2eq over {total.duration:.3f} s, at "
            f"{intensity.g_per_kwh:.0f} g CO2eq/kWh ({intensity.label})"
        )

    def _remember(self, report: dict[str, Any]) -> None:
        """Records the run in carbonfast's history too, where the user asked for one
        (CARBONFAST_HISTORY, or `history` in a carbonfast config file); never by default."""
        from carbonfast.config import resolve

        try:
            settings = resolve(("history",), {})
            path = settings["history"]
            if path is None or "history" not in settings.origins:
                return
            from carbonfast.report.history import History
            from carbonfast.report.record import Record

            History(path).add(Record.from_dict({**report, "label": self._project_name}, "run"))
        except Exception as e:
            logger.warning(f"carbonfast's history was not written: {e}")


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


_meters: dict[tuple[Any, ...], Meter] = {}
_meters_lock = threading.Lock()
_MAX_METERS = 4


def _shared_meter(**options: Any) -> Meter:
    """A meter for these options, shared by the trackers that ask for the same (a meter is
    thread-safe and its windows may overlap): a tracker made per call, as track_emissions
    makes them, costs no discovery of the counters. The environment and working directory
    are part of the key, since the meter's settings come from them too; the few most recent
    meters are kept."""
    from carbonfast.config import working_directory
    from carbonfast.measure import Meter

    environment = tuple(
        sorted((k, v) for k, v in os.environ.items() if k.startswith("CARBONFAST_"))
    )
    key = (tuple(sorted(options.items())), environment, working_directory())
    with _meters_lock:
        meter = _meters.pop(key, None)
        if meter is None:
            meter = Meter(
                **options,
                # The drop-in writes CodeCarbon's files only; carbonfast's history where asked
                # (see _remember).
                history="off",
                # As CodeCarbon's, a tracker measures what its machine has: it is often made on
                # one rank alone, where a job's meter would wait for the others to join.
                distributed=False,
            )
        _meters[key] = meter  # the most recent last
        while len(_meters) > _MAX_METERS:
            del _meters[next(iter(_meters))]
        return meter


def _version() -> str:
    from carbonfast import __version__

    return f"carbonfast {__version__}"


def _output_methods(methods: Any) -> list[OutputMethod]:
    """OutputMethod values from a list of them (or of their names) or a comma-separated
    string; an unknown name is logged and left out."""
    items = methods.split(",") if isinstance(methods, str) else list(methods)
    out: list[OutputMethod] = []
    for item in items:
        name = item.value if isinstance(item, OutputMethod) else str(item).strip().lower()
        if not name:
            continue
        try:
            out.append(OutputMethod(name))
        except ValueError:
            logger.error(
                f"Unknown output method {item!r}; accepted: "
                + ", ".join(m.value for m in OutputMethod)
                + ". It is ignored."
            )
    return out


def _caller_level() -> int:
    """The stacklevel of the first frame outside this module: the user's call."""
    import sys

    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
        level += 1
    return level


def _takes_live_updates(handler: object) -> bool:
    """Whether an output overrides BaseOutput.live_out (CodeCarbon's BaseOutput included)."""
    for klass in type(handler).__mro__:
        if "live_out" in vars(klass):
            return klass.__name__ != "BaseOutput"
    return False


def _call(handler: object, method: str, *args: Any) -> None:
    """handler.method(*args); a failure is logged, never raised into the measured code."""
    try:
        getattr(handler, method)(*args)
    except Exception as e:
        logger.error(
            f"{type(handler).__name__}.{method}() failed: {e}; the other outputs and the run go on"
        )
        logger.debug("the failure", exc_info=True)


# The country_name of a tracker on the world average (no place given, or one without data):
# empty, as CodeCarbon's offline tracker leaves it, and a str as its online one always gives.
_WORLD = ""


def _country_fields(alpha3: str | None, table: dict[str, Any]) -> dict[str, Any]:
    row = table["countries"].get(alpha3) if alpha3 else None
    if row is None:
        return {"country_iso_code": None, "country_name": _WORLD}
    return {"country_iso_code": alpha3, "country_name": row["name"]}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _tasks_as_run(tasks: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """One report for a run measured only inside its tasks: their durations, energy and
    emissions added up; where, how and since when from the first."""
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
