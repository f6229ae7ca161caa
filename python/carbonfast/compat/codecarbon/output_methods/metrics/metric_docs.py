"""The names and help texts of the codecarbon_* metrics (Prometheus, Logfire): one place for
them, as in CodeCarbon."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MetricDocumentation:
    name: str
    description: str
    unit: str | None = None


duration_doc = MetricDocumentation("codecarbon_duration", "Duration from last measure (s)")
emissions_doc = MetricDocumentation(
    "codecarbon_emissions", "Emissions as CO₂-equivalents [CO₂eq] (kg)"
)
emissions_rate_doc = MetricDocumentation(
    "codecarbon_emissions_rate", "Emissions divided per duration (Kg/s)"
)
cpu_power_doc = MetricDocumentation("codecarbon_cpu_power", "CPU power (W)")
gpu_power_doc = MetricDocumentation("codecarbon_gpu_power", "GPU power (W)")
ram_power_doc = MetricDocumentation("codecarbon_ram_power", "RAM power (W)")
cpu_energy_doc = MetricDocumentation(
    "codecarbon_cpu_energy", "Energy used per CPU since last reading (kWh)"
)
gpu_energy_doc = MetricDocumentation(
    "codecarbon_gpu_energy", "Energy used per GPU since last reading (kWh)"
)
ram_energy_doc = MetricDocumentation(
    "codecarbon_ram_energy", "Energy used per RAM since last reading (kWh)"
)
energy_consumed_doc = MetricDocumentation(
    "codecarbon_energy_consumed", "Sum of cpu_energy, gpu_energy and ram_energy (kWh)"
)
energy_consumed_total_doc = MetricDocumentation(
    "codecarbon_energy_total",
    "Accumulated cpu_energy, gpu_energy and ram_energy (kWh) since the start of the run",
)
