"""Concrete, quantified ways to cut a measurement's footprint, each with its numbers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from carbonfast.carbon import emissions_kg, tables
from carbonfast.carbon.intensity import (
    ELECTRICITY_MAPS,
    Intensity,
    by_cloud,
    by_zone,
    cloud_regions,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast.measure import Measurement

EPA = (
    "https://www.epa.gov/energy/greenhouse-gas-equivalencies-calculator-calculations-and-references"
)
# US EPA Greenhouse Gas Equivalencies: 3.93e-4 t CO2e per mile driven by an average
# gasoline passenger vehicle; 8.22e-6 t CO2 per smartphone charge.
CAR_G_PER_KM = 3.93e-4 * 1e6 / 1.609344
PHONE_G_PER_CHARGE = 8.22e-6 * 1e6

# Idle draw as a share of full-load draw for a measured CPU, whose curve no counter gives: a
# typical one, the Teads/Boavizta curve's end points (12% of TDP at idle, 102% at full load).
IDLE_SHARE_OF_FULL = 0.12 / 1.02


@dataclass(frozen=True)
class Advice:
    #: "location", "idle" or "equivalent".
    kind: str
    message: str
    figures: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def fmt_mass(kg: float) -> str:
    for unit, scale in (("t", 1e3), ("kg", 1.0), ("g", 1e-3), ("mg", 1e-6)):
        if kg >= scale:
            return f"{kg / scale:.3g} {unit}"
    return f"{kg / 1e-9:.3g} µg"


def fmt_distance(km: float) -> str:
    if km >= 1:
        return f"{km:.3g} km"
    if km >= 1e-3:
        return f"{km * 1e3:.3g} m"
    return f"{km * 1e6:.3g} mm"


def fmt_count(n: float, what: str) -> str:
    if n >= 1:
        return f"{n:.3g} {what}s"
    return f"{n * 100:.3g}% of one {what}"


def advise(
    m: Measurement,
    *,
    cpu_seconds: float | None = None,
    threads: int | None = None,
    top: int = 3,
) -> list[Advice]:
    """Suggestions for the work measured by `m`: cleaner places to run it, the energy that went
    to idle capacity (when `cpu_seconds` of the work is known), and everyday equivalents.

    Every figure follows from the measurement and the named factors; nothing is invented where
    the energy is unknown.
    """
    energy = m.energy_j
    if energy is None:
        return []
    here = m.intensity
    out = _places(energy, here, m.pue, top)
    if cpu_seconds is not None:
        idle = _idle(m, energy, cpu_seconds, threads or os.cpu_count() or 1)
        if idle:
            out.append(idle)
    out.append(_equivalents(emissions_kg(energy, here.g_per_kwh, m.pue)))
    return out


def _candidates(here: Intensity) -> list[tuple[str, Intensity]]:
    """Places the same work could plausibly run: the other regions of the same cloud provider;
    else the other grid zones of the same country and the cloud regions on offer.

    Like is compared with like: every figure comes from the dataset of `here` (Ember countries
    or Electricity Maps zones, whose yearly figures for one country differ), so that a saving
    is a difference of place, not of dataset.
    """
    dataset = here.dataset
    if here.location and (here.kind == "cloud" or ":" in here.location):
        provider = here.location.split(":")[0]
        return _regions_in(dataset, cloud_regions(provider))
    out: list[tuple[str, Intensity]] = []
    if dataset == ELECTRICITY_MAPS and here.zone:
        prefix = here.zone.split("-")[0]
        for zone in tables.zones()["zones"]:
            if zone.split("-")[0] == prefix and zone != here.zone:
                out.append((zone, by_zone(zone)))
    for provider in tables.cloud()["providers"]:
        out.extend(_regions_in(dataset, cloud_regions(provider)))
    return out


def _regions_in(dataset: str | None, regions: list[str]) -> list[tuple[str, Intensity]]:
    """The regions that have a figure in `dataset`, with it (in Electricity Maps, those
    with a grid zone; in Ember, all of them, through their countries)."""
    out = []
    for name in regions:
        try:
            out.append((name, by_cloud(name, dataset=dataset)))
        except ValueError:
            continue  # no figure in this dataset: not comparable
    return out


def _places(energy_j: float, here: Intensity, pue: float, top: int) -> list[Advice]:
    if here.kind == "explicit":
        return []
    kg_here = emissions_kg(energy_j, here.g_per_kwh, pue)
    seen: set[str] = set()
    better = []
    for name, it in sorted(_candidates(here), key=lambda c: c[1].g_per_kwh):
        if it.g_per_kwh >= here.g_per_kwh or name in seen:
            continue
        seen.add(name)
        better.append((name, it))
        if len(better) == top:
            break
    out = []
    for name, it in better:
        kg = emissions_kg(energy_j, it.g_per_kwh, pue)
        saved = kg_here - kg
        share = saved / kg_here if kg_here else 0.0
        out.append(
            Advice(
                kind="location",
                message=(
                    f"the same work in {name} ({it.g_per_kwh:g} g/kWh, {it.dataset} {it.year}) "
                    f"would emit {fmt_mass(kg)} instead of {fmt_mass(kg_here)} CO2e (-{share:.0%})"
                ),
                figures={
                    "place": name,
                    "g_per_kwh": it.g_per_kwh,
                    "dataset": it.dataset,
                    "year": it.year,
                    "emissions_kg": kg,
                    "saved_kg": saved,
                    "saved_share": share,
                    "source": it.source,
                },
            )
        )
    return out


def _idle(m: Measurement, energy_j: float, cpu_seconds: float, threads: int) -> Advice | None:
    duration = m.duration_s
    if duration <= 0:
        return None
    utilisation = min(cpu_seconds / (duration * threads), 1.0)
    kinds = m.domain_kinds
    in_total = m.total_domains
    info = {d.name: d for d in m.meter.domains}
    # Domains in the total are known (a failed one is left out of it).
    known = {n: j for n, j in m.domains.items() if n in in_total and j is not None}
    idle_j = sum(j for n, j in known.items() if kinds[n] == "dram")
    # The CPU domains under each idle model, in order: one line per model, not per socket.
    models: dict[str, list[str]] = {}
    for n, j in known.items():
        if kinds[n] != "package":
            continue
        r, model = _idle_model(info[n])
        if r is not None:
            idle_j += j * r / (r + (1 - r) * utilisation)
        models.setdefault(model, []).append(n)
    share = idle_j / energy_j if energy_j else 0.0
    kg = emissions_kg(idle_j, m.intensity.g_per_kwh, m.pue)
    method = "; ".join(
        [*(f"{', '.join(names)}: {model}" for model, names in models.items()), "memory always on"]
    )
    return Advice(
        kind="idle",
        message=(
            f"the CPUs were busy {utilisation:.0%} of the time ({cpu_seconds:.3g} CPU-s in "
            f"{duration:.3g} s on {threads} threads): about {share:.0%} of the energy "
            f"({idle_j:.3g} J, {fmt_mass(kg)} CO2e) kept idle capacity and memory powered "
            f"({method}); fewer or smaller machines, or more work per run, would cut it"
        ),
        figures={
            "utilisation": utilisation,
            "idle_energy_j": idle_j,
            "idle_share": share,
            "idle_emissions_kg": kg,
            "method": method,
        },
    )


def _idle_model(domain: Any) -> tuple[float | None, str]:
    """A CPU domain's idle draw as a share of its full-load draw, and where the share comes
    from: the estimate's own curve where the domain is estimated, else a typical CPU's. None
    where the estimate is a fixed power, which says nothing of idle draw."""
    if not domain.estimated:
        return (
            IDLE_SHARE_OF_FULL,
            "measured, idle taken as a typical CPU's 12% of TDP against 102% at full load "
            "(Teads/Boavizta)",
        )
    inputs = dict(domain.inputs)
    if "idle_w" not in inputs or "full_load_w" not in inputs:
        return (
            None,
            "a fixed power set by the user, the same idle or busy, not counted",
        )
    # The inputs read "12.000 (range 5.000-30.000)": the central value comes first.
    idle_w = float(inputs["idle_w"].split()[0])
    full_w = float(inputs["full_load_w"].split()[0])
    curve = domain.method.split(" power curve")[0]
    # Where the curve's watts come from: a TDP (the user's or the table's), or why not.
    basis = f"TDP {inputs['tdp_w']}" if "tdp_w" in inputs else inputs.get("fallback")
    return (
        idle_w / full_w if full_w > 0 else None,
        f"the estimate's {curve} curve, {idle_w:g} W idle to {full_w:g} W at full load"
        + (f", {basis}" if basis else ""),
    )


def _equivalents(kg: float) -> Advice:
    km = kg * 1000 / CAR_G_PER_KM
    charges = kg * 1000 / PHONE_G_PER_CHARGE
    return Advice(
        kind="equivalent",
        message=(
            f"{fmt_mass(kg)} CO2e is about {fmt_distance(km)} driven by an average petrol car, "
            f"or {fmt_count(charges, 'smartphone charge')} (US EPA equivalencies)"
        ),
        figures={
            "emissions_kg": kg,
            "car_km": km,
            "car_g_per_km": CAR_G_PER_KM,
            "smartphone_charges": charges,
            "smartphone_g_per_charge": PHONE_G_PER_CHARGE,
            "source": EPA,
        },
    )
