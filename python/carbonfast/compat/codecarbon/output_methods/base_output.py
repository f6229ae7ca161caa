"""Where a tracker's data goes: OutputMethod names the built-in outputs, BaseOutput is the
contract every output (built-in or your own) follows."""

from __future__ import annotations

from enum import Enum

from carbonfast.compat.codecarbon.output_methods.emissions_data import (
    EmissionsData,
    TaskEmissionsData,
)


class OutputMethod(str, Enum):
    """The built-in outputs, for `output_methods=[OutputMethod.CSV, ...]` (or their values as
    strings, "csv,logger" in a config file). HTTP output is set by `emissions_endpoint`."""

    CSV = "csv"
    API = "api"
    LOGGER = "logger"
    PROMETHEUS = "prometheus"
    LOGFIRE = "logfire"
    BOAMPS = "boamps"


class BaseOutput:
    """An output. The tracker calls, on each one:

    - `out(total, delta)` at flush() and stop(): the run so far, and the part since the last
      call to out() or live_out();
    - `task_out(tasks, experiment_name)` right after, when the run has stopped tasks;
    - `live_out(total, delta)` while the run goes on, every `measure_power_secs` x
      `api_call_interval` seconds (a background thread runs only when some output overrides
      live_out);
    - `exit()` once, at stop().

    Override what you need; the others do nothing.
    """

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        pass

    def live_out(self, total: EmissionsData, delta: EmissionsData) -> None:
        pass

    def task_out(self, data: list[TaskEmissionsData], experiment_name: str) -> None:
        pass

    def exit(self) -> None:
        pass
