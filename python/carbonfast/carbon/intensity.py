"""Grid carbon intensity for a place: by country, grid zone, cloud region, or given outright.

Two datasets: Ember's yearly averages per country, and Electricity Maps' yearly averages per
grid zone (countries and sub-national grids). A cloud region draws from the grid zone of its
location, or from its country where no zone fits. Every result says which dataset and year it
comes from and, when given, which setting chose it.

`lookup` takes the most specific place: an explicit g/kWh, then a zone, then a cloud region,
then a country; with none of them, the world average, and the result says so.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from carbonfast.carbon import tables

EMBER = "Ember"
ELECTRICITY_MAPS = "Electricity Maps"

#: The place settings, most specific first (the order `lookup` tries them in).
PLACE_SETTINGS = ("intensity", "zone", "cloud", "country")


@dataclass(frozen=True)
class Intensity:
    """Grams CO2e per kWh at a place, and where the figure comes from."""

    g_per_kwh: float
    #: "explicit", "zone", "cloud", "country", "world" or "live".
    kind: str
    #: What the user named: "FR", "US-CAL-CISO", "gcp:europe-west1"; None for the world average
    #: and for an intensity set outright.
    location: str | None
    #: Human-readable origin: the setting that chose it, the dataset, year and licence.
    source: str
    #: The Electricity Maps zone of the place, where it has one (for live data and advice).
    zone: str | None = None
    #: The ISO 3166 alpha-3 code of the place, where known (for advice).
    country: str | None = None
    #: Anything the user should know about this figure.
    note: str | None = None
    #: EMBER or ELECTRICITY_MAPS; None for an intensity set by the user.
    dataset: str | None = None
    #: The year the figure is the average of; None for live and user-set figures.
    year: int | None = None
    #: The setting that chose this figure ("--country FR", "CARBONFAST_ZONE=FR"), if known.
    setting: str | None = None

    @property
    def label(self) -> str:
        """A short name for the figure: the place, the dataset and the year."""
        if self.kind == "explicit":
            return "set by user"
        if self.kind == "live":
            return f"zone {self.zone}, {ELECTRICITY_MAPS} live"
        dated = f"{self.dataset} {self.year}"
        if self.kind == "world":
            return f"world average, {dated}"
        if self.kind == "zone":
            return f"zone {self.location}, {dated}"
        if self.kind == "cloud":
            via = f"zone {self.zone}" if self.dataset == ELECTRICITY_MAPS else self.country
            return f"{self.location} via {via}, {dated}"
        return f"{self.location}, {dated}"


def _chosen_by(setting: str | None, detail: str) -> str:
    return f"{setting}: {detail}" if setting else detail


def _unknown(what: str, name: str, candidates: dict[str, str], accepted: str) -> ValueError:
    """A ValueError that lists the nearest known names, by spelling or by label."""
    by_lower = {c.lower(): c for c in candidates}
    query = name.strip().lower()
    near = [c for low, c in by_lower.items() if low.startswith(query) and low != query]
    near += [
        by_lower[m]
        for m in difflib.get_close_matches(query, list(by_lower), n=5, cutoff=0.5)
        if by_lower[m] not in near
    ]
    if len(query) > 2:
        near += [c for c, label in candidates.items() if query in label.lower() and c not in near]
    hint = ", ".join(f"{c} ({candidates[c]})" for c in near[:5]) if near else "none close"
    return ValueError(f"unknown {what} {name!r}; nearest: {hint}. Accepted: {accepted}")


def by_country(code: str, *, setting: str | None = None) -> Intensity:
    """Ember's yearly average for a country, by ISO 3166 alpha-2 ("FR") or alpha-3 ("FRA")."""
    data = tables.countries()
    rows = data["countries"]
    key = code.strip().upper()
    if len(key) == 2:
        key = next((a3 for a3, r in rows.items() if r.get("alpha2") == key), key)
    row = rows.get(key)
    if row is None:
        candidates = {a3: r["name"] for a3, r in rows.items()}
        candidates.update({r["alpha2"]: r["name"] for r in rows.values() if r.get("alpha2")})
        raise _unknown("country", code, candidates, "ISO 3166 alpha-2 or alpha-3 codes, e.g. FR")
    detail = f"{data['attribution']} {row['year']}, {row['name']} ({key}), {data['licence']}"
    return Intensity(
        g_per_kwh=row["g_per_kwh"],
        kind="country",
        location=code.strip().upper(),
        source=_chosen_by(setting, detail),
        zone=row.get("alpha2") if row.get("alpha2") in tables.zones()["zones"] else None,
        country=key,
        dataset=EMBER,
        year=row["year"],
        setting=setting,
    )


def by_zone(name: str, *, setting: str | None = None) -> Intensity:
    """Electricity Maps' yearly average for a grid zone ("FR", "US-CAL-CISO", "AU-NSW")."""
    data = tables.zones()
    zones = data["zones"]
    key = name.strip().upper()
    row = zones.get(key)
    if row is None:
        candidates = {z: r["name"] for z, r in zones.items()}
        raise _unknown("zone", name, candidates, "Electricity Maps zone names, e.g. US-CAL-CISO")
    detail = (
        f"{data['attribution']} {row['year']} yearly, zone {key} ({row['name']}), {data['licence']}"
    )
    return Intensity(
        g_per_kwh=row["g_per_kwh"],
        kind="zone",
        location=key,
        source=_chosen_by(setting, detail),
        zone=key,
        country=_country_of_zone(key),
        dataset=ELECTRICITY_MAPS,
        year=row["year"],
        setting=setting,
    )


def by_cloud(spec: str, *, setting: str | None = None, dataset: str | None = None) -> Intensity:
    """A cloud region ("gcp:europe-west1", "aws:us-east-1", "azure:westeurope"), through the
    grid zone of its location, or its country where no zone fits.

    `dataset` asks for the figure from one dataset: ELECTRICITY_MAPS (the region's zone; a
    ValueError if it has none) or EMBER (the region's country), so that places can be compared
    like with like.
    """
    provider, region, row = _cloud_region(spec)
    name = f"{provider}:{region}"
    use_zone = row["zone"] and dataset != EMBER
    if dataset == ELECTRICITY_MAPS and not use_zone:
        raise ValueError(f"{name} has no {ELECTRICITY_MAPS} zone; only a country figure")
    base = by_zone(row["zone"]) if use_zone else by_country(row["country"])
    detail = f"{name} ({row['city']}) draws from {'zone ' if use_zone else ''}{base.location}"
    return Intensity(
        g_per_kwh=base.g_per_kwh,
        kind="cloud",
        location=name,
        source=_chosen_by(setting, f"{detail}: {base.source}"),
        zone=base.zone,
        country=row["country"],
        dataset=base.dataset,
        year=base.year,
        setting=setting,
    )


def cloud_regions(provider: str) -> list[str]:
    """The regions of a provider, as "provider:region"."""
    return [f"{provider}:{r}" for r in tables.cloud()["providers"][provider]]


def _cloud_region(spec: str) -> tuple[str, str, dict]:
    """(provider, region, table row) for "provider:region"; a ValueError with the nearest
    names (of that provider) where the spec matches none."""
    provider, sep, region = spec.strip().lower().partition(":")
    providers = tables.cloud()["providers"]
    if not sep:
        same_name = [f"{p}:{provider}" for p, regions in providers.items() if provider in regions]
        hint = f"; did you mean {' or '.join(same_name)}?" if same_name else ""
        raise ValueError(
            f"cloud region {spec!r} needs its provider: provider:region with a provider from "
            f"{', '.join(providers)}, e.g. aws:us-east-1{hint}"
        )
    if provider not in providers:
        names = {p: f"{len(r)} regions" for p, r in providers.items()}
        accepted = f"provider:region with a provider from {', '.join(providers)}"
        raise _unknown("cloud provider", provider, names, accepted)
    regions = providers[provider]
    if region not in regions:
        candidates = {
            f"{provider}:{r}": ", ".join(filter(None, (v.get("name"), v["city"])))
            for r, v in regions.items()
        }
        raise _unknown("cloud region", spec, candidates, f"{provider}:REGION")
    return provider, region, regions[region]


def explicit(g_per_kwh: float, *, setting: str | None = None) -> Intensity:
    """An intensity the user set outright."""
    return Intensity(
        g_per_kwh, "explicit", None, _chosen_by(setting, "set by user"), setting=setting
    )


def world() -> Intensity:
    data = tables.countries()
    row = data["regions"]["World"]
    return Intensity(
        g_per_kwh=row["g_per_kwh"],
        kind="world",
        location=None,
        source=f"world average, {data['attribution']} {row['year']}, {data['licence']}",
        note="no location configured: the world average is used; set a country, zone or "
        "cloud region (e.g. --country FR, CARBONFAST_COUNTRY) for a figure that fits",
        dataset=EMBER,
        year=row["year"],
    )


def for_setting(name: str, value: str | float, setting: str | None = None) -> Intensity:
    """The intensity that the place setting `name` ("intensity", "zone", "cloud" or
    "country") with `value` stands for; `setting` names it in the source."""
    if name == "intensity":
        return explicit(float(value), setting=setting)
    if name == "zone":
        return by_zone(str(value), setting=setting)
    if name == "cloud":
        return by_cloud(str(value), setting=setting)
    if name == "country":
        return by_country(str(value), setting=setting)
    raise ValueError(f"{name!r} is not a place setting; expected one of {PLACE_SETTINGS}")


def lookup(
    *,
    country: str | None = None,
    zone: str | None = None,
    cloud: str | None = None,
    g_per_kwh: float | None = None,
) -> Intensity:
    """The intensity for the most specific place given; the world average if none is."""
    given = {"intensity": g_per_kwh, "zone": zone, "cloud": cloud, "country": country}
    for name in PLACE_SETTINGS:
        value = given[name]
        if value is not None and value != "":
            return for_setting(name, value)
    return world()


def _country_of_zone(zone: str) -> str | None:
    alpha2 = zone.split("-")[0]
    rows = tables.countries()["countries"]
    return next((a3 for a3, r in rows.items() if r.get("alpha2") == alpha2), None)
