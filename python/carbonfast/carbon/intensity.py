"""Grid carbon intensity for a place: by country, grid zone, cloud region, or given outright.

The most specific wins: an explicit g/kWh, then a zone, then a cloud region, then a country;
with none of them, the world average, and the result says so.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from carbonfast.carbon import tables


@dataclass(frozen=True)
class Intensity:
    """Grams CO2e per kWh at a place, and where the figure comes from."""

    g_per_kwh: float
    #: "explicit", "zone", "cloud", "country", "world" or "live".
    kind: str
    #: What the user named: "FR", "US-CAL-CISO", "gcp:europe-west1"; None for the world average.
    location: str | None
    #: Human-readable origin, with year and licence where it applies.
    source: str
    #: The Electricity Maps zone of the place, where it has one (for live data and advice).
    zone: str | None = None
    #: The ISO 3166 alpha-3 code of the place, where known (for advice).
    country: str | None = None
    #: Anything the user should know about this figure.
    note: str | None = None


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


def by_country(code: str) -> Intensity:
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
    return Intensity(
        g_per_kwh=row["g_per_kwh"],
        kind="country",
        location=code.strip().upper(),
        source=f"{data['attribution']} {row['year']}, {row['name']} ({key}), {data['licence']}",
        zone=row.get("alpha2") if row.get("alpha2") in tables.zones()["zones"] else None,
        country=key,
    )


def by_zone(name: str) -> Intensity:
    """Electricity Maps' yearly average for a grid zone ("FR", "US-CAL-CISO", "AU-NSW")."""
    data = tables.zones()
    zones = data["zones"]
    key = name.strip().upper()
    row = zones.get(key)
    if row is None:
        candidates = {z: r["name"] for z, r in zones.items()}
        raise _unknown("zone", name, candidates, "Electricity Maps zone names, e.g. US-CAL-CISO")
    return Intensity(
        g_per_kwh=row["g_per_kwh"],
        kind="zone",
        location=key,
        source=f"{data['attribution']} {row['year']} yearly, zone {key} ({row['name']}), "
        f"{data['licence']}",
        zone=key,
        country=_country_of_zone(key),
    )


def by_cloud(spec: str) -> Intensity:
    """A cloud region ("gcp:europe-west1"), through the grid zone (or country) it draws from."""
    provider, _, region = spec.strip().lower().partition(":")
    providers = tables.cloud()["providers"]
    if provider not in providers:
        names = {p: f"{len(r)} regions" for p, r in providers.items()}
        accepted = f"provider:region with a provider from {', '.join(providers)}"
        raise _unknown("cloud provider", provider, names, accepted)
    regions = providers[provider]
    if region not in regions:
        candidates = {f"{provider}:{r}": v["city"] for r, v in regions.items()}
        raise _unknown("cloud region", spec, candidates, f"{provider}:REGION")
    row = regions[region]
    base = by_zone(row["zone"]) if row["zone"] else by_country(row["country"])
    return Intensity(
        g_per_kwh=base.g_per_kwh,
        kind="cloud",
        location=f"{provider}:{region}",
        source=f"{provider}:{region} ({row['city']}) draws from {base.location}: {base.source}",
        zone=base.zone,
        country=row["country"],
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
    )


def lookup(
    *,
    country: str | None = None,
    zone: str | None = None,
    cloud: str | None = None,
    g_per_kwh: float | None = None,
) -> Intensity:
    """The intensity for the most specific place given; the world average if none is."""
    if g_per_kwh is not None:
        return Intensity(g_per_kwh, "explicit", None, "set by the user")
    if zone:
        return by_zone(zone)
    if cloud:
        return by_cloud(cloud)
    if country:
        return by_country(country)
    return world()


def _country_of_zone(zone: str) -> str | None:
    alpha2 = zone.split("-")[0]
    rows = tables.countries()["countries"]
    return next((a3 for a3, r in rows.items() if r.get("alpha2") == alpha2), None)
