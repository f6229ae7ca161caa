"""A carbonfast report in CodeCarbon's terms: the CPU, GPU and RAM split the rapl_* options ask
for, the EmissionsData with PUE, water and the place's intensity applied, and the lines that
log its energy."""

from __future__ import annotations

from datetime import datetime

from carbonfast.compat.codecarbon.external.logger import logger
from carbonfast.compat.codecarbon.output_methods.emissions_data import EmissionsData

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast.compat.codecarbon import _system
    from carbonfast.compat.codecarbon._place import _Place
    from carbonfast.record import Record

_J_PER_KWH = 3.6e6


def _split(
    record: Record, *, rapl_prefer_psys: bool, rapl_include_dram: bool, own: bool = False
) -> tuple[float, float, float, float | None]:
    """(CPU, GPU, RAM, total) joules, as the rapl_* options ask; `own` (tracking_mode
    "process"): this process's share of them, where it is known."""
    if own and record.attributed is not None and record.attributed.energy_j is not None:
        parts = _known(record.energy_by_kind(attributed=True))
        cpu, gpu, ram = parts["cpu"], parts["gpu"], parts["ram"]
        if rapl_include_dram:
            cpu, ram = cpu + ram, 0.0
        return cpu, gpu, ram, record.attributed.energy_j
    parts = _known(record.energy_by_kind())
    cpu, gpu, ram = parts["cpu"], parts["gpu"], parts["ram"]
    total = record.energy_j
    psys = [
        d.energy_j for d in record.domains.values() if d.kind == "psys" and d.energy_j is not None
    ]
    if rapl_prefer_psys and psys:
        # The platform counter covers the CPU packages and DRAM: it is the CPU figure.
        cpu, ram = sum(psys), 0.0
        total = cpu + gpu
    elif rapl_include_dram:
        cpu, ram = cpu + ram, 0.0
    return cpu, gpu, ram, total


def _known(parts: dict[str, float | None]) -> dict[str, float]:
    # CodeCarbon's EmissionsData holds a number for each part.
    return {k: 0.0 if v is None else v for k, v in parts.items()}


def _emissions_data(
    record: Record,
    joules: tuple[float, float, float, float | None],
    usage: _system.Usage | None,
    *,
    g_per_kwh: float,
    pue: float,
    wue: float,
    project_name: str,
    run_id: str,
    experiment_id: str,
    tracking_mode: str,
    place: _Place,
    hw: dict[str, Any],
    conf: dict[str, Any],
) -> EmissionsData:
    """The EmissionsData of a run or task record, written now; `joules` is its _split()."""
    cpu, gpu, ram, total = joules
    duration = record.duration_s

    def kwh(j: float) -> float:
        return j / _J_PER_KWH * pue

    def watts(j: float) -> float:
        return j / duration * pue if duration > 0 else 0.0

    energy = None if total is None else kwh(total)
    emissions = None if energy is None else energy * g_per_kwh / 1000.0
    rate = None if emissions is None else emissions / duration if duration > 0 else 0.0
    return EmissionsData(
        timestamp=datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
        project_name=project_name,
        run_id=run_id,
        experiment_id=experiment_id,
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
        water_consumed=None if energy is None else wue * energy,
        country_name=place.country_name,
        country_iso_code=place.country_iso_code,
        region=place.region,
        cloud_provider=place.cloud_provider,
        cloud_region=place.cloud_region,
        os=conf["os"],
        python_version=conf["python_version"],
        codecarbon_version=conf["codecarbon_version"],
        cpu_count=hw["cpu_count"],
        cpu_model=hw["cpu_model"],
        gpu_count=hw["gpu_count"],
        gpu_model=hw["gpu_model"],
        longitude=None,
        latitude=None,
        ram_total_size=hw["ram_total_size"],
        tracking_mode=tracking_mode,
        **(usage.figures() if usage is not None else {}),
        on_cloud=place.on_cloud,
        pue=pue,
        wue=wue,
    )


def _log_energy(total: EmissionsData) -> None:
    logger.info(
        f"Energy consumed for RAM : {total.ram_energy:.6f} kWh. RAM Power : {total.ram_power} W"
    )
    logger.info(
        f"Energy consumed for All CPU : {total.cpu_energy:.6f} kWh. CPU Power : {total.cpu_power} W"
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
