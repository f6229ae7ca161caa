"""Emissions sent to Logfire (pydantic's observability platform) as codecarbon_* metrics.

Needs logfire (`pip install logfire`), imported and configured when the output is made;
without it an error is logged and the run goes on without this output.
"""

from __future__ import annotations

import importlib

from carbonfast.compat.codecarbon.external.logger import logger
from carbonfast.compat.codecarbon.output_methods.base_output import BaseOutput
from carbonfast.compat.codecarbon.output_methods.emissions_data import EmissionsData

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# (attribute, metric, unit, description, kind): counters add each part, gauges show the last.
_METRICS = (
    ("duration", "codecarbon_duration", "(s)", "Duration from last measure", "counter"),
    ("emissions", "codecarbon_emissions", "(kg)", "Emissions as CO₂-equivalents CO₂eq", "counter"),
    (
        "energy_consumed",
        "codecarbon_energy_consumed",
        "(kW)",
        "Sum of cpu_energy, gpu_energy and ram_energy",
        "counter",
    ),
    (
        "emissions_rate",
        "codecarbon_emissions_rate",
        "(Kg/s)",
        "Emissions divided per duration",
        "gauge",
    ),
    ("cpu_power", "codecarbon_cpu_power", "(W)", "CPU power", "gauge"),
    ("gpu_power", "codecarbon_gpu_power", "(W)", "GPU power", "gauge"),
    ("ram_power", "codecarbon_ram_power", "(W)", "RAM power", "gauge"),
    ("cpu_energy", "codecarbon_cpu_energy", "(kWh)", "Energy used per CPU", "gauge"),
    ("gpu_energy", "codecarbon_gpu_energy", "(kWh)", "Energy used per GPU", "gauge"),
    ("ram_energy", "codecarbon_ram_energy", "(kWh)", "Energy used per RAM", "gauge"),
)


class LogfireOutput(BaseOutput):
    """Adds each flush, stop and live update's part of the run to Logfire's metrics."""

    def __init__(self) -> None:
        self._metrics: dict[str, tuple[str, Any]] = {}
        try:
            logfire = importlib.import_module("logfire")
            logfire.configure()
        except ImportError:
            logger.error(
                "Logfire is not installed. Please install it using `pip install logfire`; "
                "nothing is sent to Logfire, the run goes on"
            )
            return
        except Exception as e:
            logger.error(f"Logfire could not be configured: {e}; nothing is sent to Logfire")
            return
        for attribute, name, unit, description, kind in _METRICS:
            make = logfire.metric_counter if kind == "counter" else logfire.metric_gauge
            self._metrics[attribute] = (kind, make(name, unit=unit, description=description))

    def out(self, total: EmissionsData | None, delta: EmissionsData) -> None:
        if not self._metrics:
            return
        try:
            for attribute, (kind, metric) in self._metrics.items():
                value = getattr(delta, attribute) or 0.0
                if kind == "counter":
                    metric.add(value)
                else:
                    metric.set(value)
            logger.debug("Data sent to logfire")
        except Exception as e:
            logger.error(f"Logfire could not take the emissions: {e}")

    def live_out(self, total: EmissionsData | None, delta: EmissionsData) -> None:
        self.out(None, delta)
