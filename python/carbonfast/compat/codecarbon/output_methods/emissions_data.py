"""CodeCarbon's records of a run and of a task: the rows of emissions.csv and of
emissions_<experiment_name>_<run_id>.csv, field for field and in CodeCarbon's order.

A quantity carbonfast could not measure (no readable counter with estimates off) is None, never
0: it is an empty cell in the CSV. Places CodeCarbon leaves unknown (offline it has no
coordinates) are None too, as in CodeCarbon.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


@dataclass
class EmissionsData:
    """A run's figures: emissions in kg CO2e, energy in kWh, power in W, water in litres."""

    timestamp: str
    project_name: str
    run_id: str
    experiment_id: str
    duration: float
    emissions: float | None
    emissions_rate: float | None
    cpu_power: float
    gpu_power: float
    ram_power: float
    cpu_energy: float
    gpu_energy: float
    ram_energy: float
    energy_consumed: float | None
    water_consumed: float | None
    country_name: str | None
    country_iso_code: str | None
    region: str | None
    cloud_provider: str
    cloud_region: str
    os: str
    python_version: str
    codecarbon_version: str
    cpu_count: float
    cpu_model: str
    gpu_count: float
    gpu_model: str
    longitude: float | None
    latitude: float | None
    ram_total_size: float
    tracking_mode: str
    cpu_utilization_percent: float = 0.0
    gpu_utilization_percent: float = 0.0
    ram_utilization_percent: float = 0.0
    ram_used_gb: float = 0.0
    on_cloud: str = "N"
    pue: float = 1
    wue: float = 0

    @property
    def values(self) -> OrderedDict[str, object]:
        """The fields by name, in order: one CSV row."""
        return OrderedDict(self.__dict__.items())

    def compute_delta_emission(self, previous_emission: EmissionsData) -> None:
        """Turns these totals into the part since `previous_emission` (a total taken earlier
        in the same run): duration, emissions, energy and water; the rate over that part."""
        delta_duration = self.duration - previous_emission.duration
        self.duration = delta_duration
        delta_emissions = _minus(self.emissions, previous_emission.emissions)
        self.emissions = delta_emissions
        self.cpu_energy -= previous_emission.cpu_energy
        self.gpu_energy -= previous_emission.gpu_energy
        self.ram_energy -= previous_emission.ram_energy
        self.energy_consumed = _minus(self.energy_consumed, previous_emission.energy_consumed)
        self.water_consumed = _minus(self.water_consumed, previous_emission.water_consumed)
        if delta_emissions is None:
            self.emissions_rate = None
        elif delta_duration > 0:
            self.emissions_rate = delta_emissions / delta_duration  # kg/s
        else:
            self.emissions_rate = 0

    def toJSON(self) -> str:  # CodeCarbon's name
        return json.dumps(self, default=lambda o: o.__dict__, sort_keys=True, indent=4)


@dataclass
class TaskEmissionsData:
    """A task's figures: a row of emissions_<experiment_name>_<run_id>.csv (no experiment_id,
    pue or wue: those describe the run)."""

    task_name: str
    timestamp: str
    project_name: str
    run_id: str
    duration: float
    emissions: float | None
    emissions_rate: float | None
    cpu_power: float
    gpu_power: float
    ram_power: float
    cpu_energy: float
    gpu_energy: float
    ram_energy: float
    energy_consumed: float | None
    water_consumed: float | None
    country_name: str | None
    country_iso_code: str | None
    region: str | None
    cloud_provider: str
    cloud_region: str
    os: str
    python_version: str
    codecarbon_version: str
    cpu_count: float
    cpu_model: str
    gpu_count: float
    gpu_model: str
    longitude: float | None
    latitude: float | None
    ram_total_size: float
    tracking_mode: str
    cpu_utilization_percent: float = 0.0
    gpu_utilization_percent: float = 0.0
    ram_utilization_percent: float = 0.0
    ram_used_gb: float = 0.0
    on_cloud: str = "N"

    @property
    def values(self) -> OrderedDict[str, object]:
        return OrderedDict(self.__dict__.items())
