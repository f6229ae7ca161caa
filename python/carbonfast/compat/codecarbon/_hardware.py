"""The hardware a tracker reports, as CodeCarbon's get_detected_hardware() gives it, and the
setup lines it logs: what carbonfast measures, and the tracker's metadata."""

from __future__ import annotations

from carbonfast.compat.codecarbon import _system
from carbonfast.compat.codecarbon.external.logger import logger
from carbonfast.report import emissions_csv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast.measure import Meter


def _detected_hardware(meter: Meter, gpu_ids: Any) -> dict[str, Any]:
    """ram_total_size (GiB), cpu_count (threads), cpu_physical_count (sockets), cpu_model,
    gpu_count, gpu_model and gpu_ids; the GPUs are those the meter measures."""
    gpus = [d for d in meter.domains if d.kind == "gpu"]
    models: dict[str, int] = {}
    for d in gpus:
        model = d.label.split(",")[0].strip() or d.name
        models[model] = models.get(model, 0) + 1
    return {
        "ram_total_size": _system.ram_total_gib(),
        "cpu_count": _system.cpu_count(),
        "cpu_physical_count": _system.cpu_sockets(),
        "cpu_model": emissions_csv.cpu_model(),
        "gpu_count": len(gpus),
        "gpu_model": ", ".join(f"{n} x {m}" for m, n in models.items()),
        "gpu_ids": gpu_ids,
    }


def _log_tracker_metadata(
    meter: Meter, hw: dict[str, Any], conf: dict[str, Any], rapl_prefer_psys: bool
) -> None:
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
    for note in (*meter.problem_notes, *meter.estimate_notes):
        logger.warning(note)
    if rapl_prefer_psys and not any(d.kind == "psys" for d in meter.domains):
        logger.warning(
            "rapl_prefer_psys=True, but no psys RAPL counter is readable here: the CPU "
            "figures are the packages'"
        )
    logger.info(">>> Tracker's metadata:")
    logger.info(f"  Platform system: {conf['os']}")
    logger.info(f"  Python version: {conf['python_version']}")
    logger.info(f"  CodeCarbon version: {conf['codecarbon_version']}")
    logger.info(f"  Available RAM : {hw['ram_total_size']:.3f} GB")
    logger.info(
        f"  CPU count: {hw['cpu_count']} thread(s) in {hw['cpu_physical_count']} physical CPU(s)"
    )
    logger.info(f"  CPU model: {hw['cpu_model']}")
    logger.info(f"  GPU count: {hw['gpu_count']}")
    logger.info(f"  GPU model: {hw['gpu_model']}")
