"""A BoAmps report from a run's EmissionsData: what a measurement knows (energy, duration,
hardware, place) filled in, and what only you know (the task, the publisher, the quality)
taken from the context you give."""

from __future__ import annotations

import warnings
from dataclasses import fields, replace

from carbonfast.compat.codecarbon.output_methods.boamps.models import (
    BoAmpsEnvironment,
    BoAmpsHardware,
    BoAmpsHeader,
    BoAmpsInfrastructure,
    BoAmpsMeasure,
    BoAmpsReport,
    BoAmpsSoftware,
    BoAmpsSystem,
    BoAmpsTask,
)
from carbonfast.compat.codecarbon.output_methods.emissions_data import EmissionsData

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

BOAMPS_FORMAT_VERSION = "0.1"
BOAMPS_FORMAT_SPEC_URI = "https://github.com/Boavizta/BoAmps/tree/main/model"
_INFRA_OVERRIDES = ("cloud_instance", "cloud_service", "infra_type")
_ENVIRONMENT_OVERRIDES = (
    "location",
    "power_supplier_type",
    "power_source",
    "power_source_carbon_intensity",
)


def _boamps_time(timestamp: str) -> str:
    """BoAmps writes times as `YYYY-MM-DD HH:MM:SS`."""
    return timestamp.replace("T", " ") if timestamp else timestamp


def map_emissions_to_boamps(
    emissions: EmissionsData,
    task: BoAmpsTask | None = None,
    header: BoAmpsHeader | None = None,
    quality: str | None = None,
    infra_overrides: dict[str, Any] | None = None,
    environment_overrides: dict[str, Any] | None = None,
) -> BoAmpsReport:
    """The report of a run; values you give win over those measured. Without `task` the
    report lacks fields the schema requires (a UserWarning says so)."""
    if task is None:
        warnings.warn(
            "No BoAmps task context provided. The output will be missing required fields "
            "(taskStage, taskFamily, algorithms, dataset) and will not validate against the "
            "BoAmps schema; pass metadata={'boamps': {'task': {...}}} or a BoAmpsOutput with "
            "task=BoAmpsTask(...)",
            UserWarning,
            stacklevel=2,
        )
    return BoAmpsReport(
        header=_header(emissions, header),
        task=task,
        measures=[_measure(emissions)],
        system=BoAmpsSystem(os=emissions.os),
        software=BoAmpsSoftware(language="python", version=emissions.python_version),
        infrastructure=_infrastructure(emissions, infra_overrides),
        environment=_environment(emissions, environment_overrides),
        quality=quality,
    )


def _header(emissions: EmissionsData, given: BoAmpsHeader | None) -> BoAmpsHeader:
    measured = BoAmpsHeader(
        format_version=BOAMPS_FORMAT_VERSION,
        format_version_specification_uri=BOAMPS_FORMAT_SPEC_URI,
        report_id=emissions.run_id,
        report_datetime=_boamps_time(emissions.timestamp),
    )
    if given is None:
        return measured
    return _filled(given, measured)


def _filled(given: Any, measured: Any, *, none_only: bool = False) -> Any:
    """`given` with its empty fields (None; or also "" and 0 unless `none_only`) taken from
    `measured`."""
    fill = {
        f.name: getattr(measured, f.name)
        for f in fields(given)
        if (getattr(given, f.name) is None if none_only else not getattr(given, f.name))
    }
    return replace(given, **fill)


def _measure(emissions: EmissionsData) -> BoAmpsMeasure:
    from carbonfast import __version__

    measure = BoAmpsMeasure(
        measurement_method="carbonfast",
        version=__version__,
        power_consumption=emissions.energy_consumed,  # kWh, as BoAmps' powerConsumption
        measurement_duration=emissions.duration,
        measurement_date_time=_boamps_time(emissions.timestamp),
    )
    if emissions.cpu_utilization_percent > 0:
        measure.average_utilization_cpu = round(emissions.cpu_utilization_percent / 100.0, 4)
    if emissions.gpu_count and emissions.gpu_utilization_percent > 0:
        measure.average_utilization_gpu = round(emissions.gpu_utilization_percent / 100.0, 4)
    return measure


def _infrastructure(
    emissions: EmissionsData, overrides: dict[str, Any] | None
) -> BoAmpsInfrastructure:
    # cpu_count counts threads; BoAmps counts cores (two threads a core, as usual with SMT).
    cores = max(1, int(emissions.cpu_count) // 2) if emissions.cpu_count else 1
    components = [
        BoAmpsHardware(component_type="cpu", component_name=emissions.cpu_model, nb_component=cores)
    ]
    if emissions.gpu_count:
        components.append(
            BoAmpsHardware(
                component_type="gpu",
                component_name=emissions.gpu_model or None,
                nb_component=int(emissions.gpu_count),
            )
        )
    components.append(
        BoAmpsHardware(component_type="ram", nb_component=1, memory_size=emissions.ram_total_size)
    )
    on_cloud = emissions.on_cloud == "Y" or bool(emissions.cloud_provider)
    infra = BoAmpsInfrastructure(
        infra_type="publicCloud" if on_cloud else "onPremise",
        cloud_provider=emissions.cloud_provider if on_cloud and emissions.cloud_provider else None,
        components=components,
    )
    for name in _INFRA_OVERRIDES:
        if overrides and name in overrides:
            setattr(infra, name, overrides[name])
    given: list[BoAmpsHardware] = (overrides or {}).get("components") or []
    if given:
        # Your components enrich the measured ones of the same type; the others are kept.
        measured = {c.component_type: c for c in components}
        merged = [
            _filled(c, measured[c.component_type], none_only=True)
            if c.component_type in measured
            else c
            for c in given
        ]
        types = {c.component_type for c in given}
        infra.components = merged + [c for c in components if c.component_type not in types]
    return infra


def _environment(emissions: EmissionsData, overrides: dict[str, Any] | None) -> BoAmpsEnvironment:
    env = BoAmpsEnvironment(
        country=emissions.country_name,
        latitude=emissions.latitude,
        longitude=emissions.longitude,
    )
    for name in _ENVIRONMENT_OVERRIDES:
        if overrides and name in overrides:
            setattr(env, name, overrides[name])
    return env
