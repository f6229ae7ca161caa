#!/usr/bin/env python3
"""Builds carbonfast's compact data tables from the reference data in ../shared/data.

    python scripts/build_tables.py [--data DIR]

Writes
  rust/carbonfast-core/data/cpu_tdp.tsv          CPU model -> TDP (W), matched by the core
  python/carbonfast/carbon/data/countries.json   Ember yearly intensity per country
  python/carbonfast/carbon/data/zones.json       Electricity Maps yearly intensity per zone
  python/carbonfast/carbon/data/cloud.json       cloud regions -> grid zone and country
each with its source, attribution and licence inside. Needs pycountry (pip install pycountry)
for the ISO 3166 alpha-2/alpha-3 pairs.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"
CPU_TDP_OUT = REPO / "rust" / "carbonfast-core" / "data" / "cpu_tdp.tsv"
CARBON_OUT = REPO / "python" / "carbonfast" / "carbon" / "data"

EMBER = {
    "source": "Ember, Yearly Electricity Data, as republished by the Green Web Foundation's "
    "CO2.js (data/output/average-intensities.json)",
    "url": "https://ember-energy.org/data/yearly-electricity-data/",
    "licence": "CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/)",
    "attribution": "Ember",
    "unit": "g CO2e per kWh, life-cycle, yearly average",
}
ELECTRICITY_MAPS = {
    "source": "Electricity Maps, yearly carbon intensity per zone, as republished by CO2.js",
    "url": "https://www.electricitymaps.com/data-portal",
    "licence": "ODbL 1.0 (https://opendatacommons.org/licenses/odbl/1-0/)",
    "attribution": "Electricity Maps",
    "unit": "g CO2e per kWh, life-cycle, yearly average",
}
CLOUD = {
    "source": "CodeCarbon, data/cloud/impact.csv (https://github.com/mlco2/codecarbon), MIT "
    "licence: Google Cloud regions from the current version, AWS and Azure regions from an "
    "earlier one. provider_g_per_kwh is the figure the provider publishes (Google's); the "
    "AWS and Azure rows' figures date from 2018-2019 and are not kept. The region -> grid zone "
    "mapping is carbonfast's, from each region's location.",
    "licence": "MIT",
}

# Regions in countries that Electricity Maps splits into several grid zones: the zone of the
# region's city. Regions elsewhere map to their country's zone.
CLOUD_ZONES = {
    ("gcp", "us-central1"): "US-MIDW-MISO",  # Council Bluffs, Iowa
    ("gcp", "us-east1"): "US-CAR-SCEG",  # Moncks Corner, South Carolina
    ("gcp", "us-east4"): "US-MIDA-PJM",  # Ashburn, Virginia
    ("gcp", "us-east5"): "US-MIDA-PJM",  # Columbus, Ohio
    ("gcp", "us-south1"): "US-TEX-ERCO",  # Dallas, Texas
    ("gcp", "us-west1"): "US-NW-BPAT",  # The Dalles, Oregon
    ("gcp", "us-west2"): "US-CAL-LDWP",  # Los Angeles
    ("gcp", "us-west3"): "US-NW-PACE",  # Salt Lake City
    ("gcp", "us-west4"): "US-NW-NEVP",  # Las Vegas
    ("gcp", "northamerica-northeast1"): "CA-QC",  # Montreal
    ("gcp", "northamerica-northeast2"): "CA-ON",  # Toronto
    ("gcp", "australia-southeast1"): "AU-NSW",  # Sydney
    ("gcp", "australia-southeast2"): "AU-VIC",  # Melbourne
    ("gcp", "asia-northeast1"): "JP-TK",  # Tokyo
    ("gcp", "asia-northeast2"): "JP-KN",  # Osaka
    ("gcp", "asia-south1"): "IN-WE",  # Mumbai
    ("gcp", "asia-south2"): "IN-NO",  # Delhi
    ("gcp", "asia-east2"): "HK",  # Hong Kong
    ("gcp", "europe-west8"): "IT-NO",  # Milan
    ("gcp", "europe-west12"): "IT-NO",  # Turin
    ("gcp", "southamerica-west1"): "CL-SEN",  # Santiago
    ("gcp", "southamerica-east1"): "BR-CS",  # Sao Paulo, in the south-east/centre-west grid
    # AWS. In the US, a region maps to a balancing authority only where its location leaves
    # no doubt; otherwise to the whole country (zone US).
    ("aws", "us-east-1"): "US-MIDA-PJM",  # Ashburn, Virginia
    ("aws", "us-east-2"): "US-MIDA-PJM",  # Columbus, Ohio
    ("aws", "us-west-1"): "US-CAL-CISO",  # San Francisco bay, PG&E's area in CAISO
    # The Oregon region's data centres are at Boardman and Umatilla on the Columbia river, in
    # Bonneville's area (the CSV gives Portland, the region's nominal city), as GCP's us-west1.
    ("aws", "us-west-2"): "US-NW-BPAT",
    ("aws", "us-gov-east-1"): "US-MIDA-PJM",  # Dublin, Ohio
    # us-gov-west-1: "Seattle" in the CSV; Washington state has several balancing areas, and
    # the region's sites are not published: the country.
    ("aws", "ca-central-1"): "CA-QC",  # Montreal
    ("aws", "ap-east-1"): "HK",  # Hong Kong
    ("aws", "ap-south-1"): "IN-WE",  # Mumbai
    ("aws", "ap-northeast-1"): "JP-TK",  # Tokyo
    ("aws", "ap-northeast-3"): "JP-KN",  # Osaka
    ("aws", "ap-southeast-2"): "AU-NSW",  # Sydney
    ("aws", "eu-north-1"): "SE-SE3",  # Stockholm
    ("aws", "sa-east-1"): "BR-CS",  # Sao Paulo
    # Azure.
    ("azure", "centralus"): "US-MIDW-MISO",  # Des Moines, Iowa
    ("azure", "eastus"): "US-MIDA-PJM",  # Virginia
    ("azure", "eastus2"): "US-MIDA-PJM",  # Boydton, Virginia
    ("azure", "westus"): "US-CAL-CISO",  # San Francisco bay
    ("azure", "northcentralus"): "US-MIDA-PJM",  # Chicago, ComEd's area in PJM
    ("azure", "southcentralus"): "US-TEX-ERCO",  # San Antonio, Texas
    ("azure", "westus2"): "US-NW-GCPD",  # Quincy, Washington: Grant County PUD
    # westcentralus: Wyoming, with a city the CSV itself doubts: the country.
    ("azure", "japaneast"): "JP-TK",  # Tokyo
    ("azure", "japanwest"): "JP-KN",  # Osaka
    ("azure", "brazilsouth"): "BR-CS",  # Sao Paulo state
    ("azure", "australiaeast"): "AU-NSW",  # Sydney
    ("azure", "australiasoutheast"): "AU-VIC",  # Melbourne
    # Canberra: the Australian Capital Territory is part of the NSW region of the grid.
    ("azure", "australiacentral"): "AU-NSW",
    ("azure", "australiacentral2"): "AU-NSW",
    ("azure", "southindia"): "IN-SO",  # Tamil Nadu
    ("azure", "centralindia"): "IN-WE",  # Maharashtra
    ("azure", "westindia"): "IN-WE",  # Mumbai
    ("azure", "canadacentral"): "CA-ON",  # Toronto
    ("azure", "canadaeast"): "CA-QC",  # Quebec
}
# ISO 3166 user-assigned codes pycountry does not carry.
EXTRA_ALPHA2 = {"XKX": "XK"}

CPU_TDP_HEADER = """\
# CPU model -> thermal design power (W), per socket.
# Source: CodeCarbon, data/hardware/cpu_power.csv (scraped from Intel and AMD specification
# pages), https://github.com/mlco2/codecarbon. Licence: MIT, Copyright (c) 2020 CodeCarbon
# contributors. Built by scripts/build_tables.py; do not edit by hand.
"""


def build_cpu_tdp(src: Path, out: Path) -> int:
    rows: dict[str, float] = {}
    with src.open(newline="", encoding="utf-8") as f:
        for record in csv.DictReader(f):
            name = " ".join((record.get("Name") or "").split())
            try:
                tdp = float(record.get("TDP") or "")
            except ValueError:
                continue
            if not name or not 1 <= tdp <= 1000 or "\t" in name:
                continue
            # A name listed twice keeps its higher TDP: an estimate should not understate.
            rows[name] = max(tdp, rows.get(name, 0.0))
    lines = [f"{name}\t{tdp:g}" for name, tdp in sorted(rows.items())]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(CPU_TDP_HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def _alpha2(alpha3: str) -> str | None:
    import pycountry

    c = pycountry.countries.get(alpha_3=alpha3)
    return c.alpha_2 if c else EXTRA_ALPHA2.get(alpha3)


def build_countries(src: Path, out: Path) -> int:
    raw = json.loads(src.read_text(encoding="utf-8"))
    countries, regions = {}, {}
    for key, row in raw.items():
        entry = {
            "name": row["country_or_region"],
            "g_per_kwh": round(float(row["emissions_intensity_gco2_per_kwh"]), 2),
            "year": int(row["year"]),
        }
        code = row["country_code"]
        if code:
            entry["alpha2"] = _alpha2(code)
            countries[code] = entry
        else:
            regions[key] = entry
    doc = {**EMBER, "countries": dict(sorted(countries.items())), "regions": regions}
    _write_json(out, doc)
    return len(countries)


def build_zones(data: Path, out: Path) -> int:
    zones = {}
    files = sorted(data.glob("electricitymaps_zones_yearly_*.json"))
    for f in files:  # oldest first: a later year replaces an earlier one
        year = int(re.search(r"(\d{4})", f.name).group(1))
        for zone, row in json.loads(f.read_text(encoding="utf-8")).items():
            value = (row.get("carbonIntensity") or {}).get("value")
            if value is None:
                continue
            zones[zone] = {
                "name": row["zone"]["zoneName"],
                "g_per_kwh": float(value),
                "year": year,
                "renewable_pct": (row.get("renewableEnergy") or {}).get("value"),
            }
    _write_json(out, {**ELECTRICITY_MAPS, "zones": dict(sorted(zones.items()))})
    return len(zones)


def build_cloud(sources: list[tuple[Path, bool]], zones_file: Path, out: Path) -> int:
    """Regions of every provider in `sources` (a CSV, and whether its impact column is the
    provider's own current figure, worth keeping), each with its grid zone and country."""
    zones = json.loads(zones_file.read_text(encoding="utf-8"))["zones"]
    providers: dict[str, dict] = {}
    for src, provider_figures in sources:
        with src.open(newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                provider, region = row["provider"].strip(), row["region"].strip()
                if region in providers.get(provider, {}):
                    raise SystemExit(f"{src}: {provider}:{region} is listed twice")
                zone = CLOUD_ZONES.get((provider, region))
                alpha3 = _zone_country(zone) if zone else _region_country(row)
                zone = zone or _alpha2(alpha3)
                if zone not in zones:
                    zone = None
                entry = {"country": alpha3, "city": row["city"].strip(), "zone": zone}
                if row.get("regionName", "").strip():
                    entry["name"] = row["regionName"].strip()
                impact = row["impact"].strip() if provider_figures else ""
                entry["provider_g_per_kwh"] = float(impact) if impact else None
                providers.setdefault(provider, {})[region] = entry
    listed = {(p, r) for p, regions in providers.items() for r in regions}
    unused = sorted(set(CLOUD_ZONES) - listed)
    if unused:
        raise SystemExit(f"CLOUD_ZONES names regions no CSV lists: {unused}")
    _write_json(out, {**CLOUD, "providers": providers})
    return sum(len(r) for r in providers.values())


def _zone_country(zone: str) -> str:
    """The ISO alpha-3 code of a grid zone's country ("JP-TK" -> "JPN", "HK" -> "HKG")."""
    import pycountry

    return pycountry.countries.get(alpha_2=zone.split("-")[0]).alpha_3


def _region_country(row: dict[str, str]) -> str:
    """A region's ISO alpha-3 country. The earlier CodeCarbon file gives USA as the code of
    every AWS region; where the code and the country's name disagree, the name is right."""
    import pycountry

    code = row["countryIsoCode"].strip()
    name = row["country_name"].strip()
    try:
        named = pycountry.countries.lookup(name).alpha_3
    except LookupError:
        return code
    return code if code == named or name == code else named


def _write_json(out: Path, doc: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="reference data directory")
    args = ap.parse_args()
    n = build_cpu_tdp(args.data / "cpu_tdp_watts.csv", CPU_TDP_OUT)
    print(f"{CPU_TDP_OUT.relative_to(REPO)}: {n} CPU models")
    n = build_countries(args.data / "ember_country_intensity.json", CARBON_OUT / "countries.json")
    print(f"countries.json: {n} countries")
    n = build_zones(args.data, CARBON_OUT / "zones.json")
    print(f"zones.json: {n} zones")
    cloud_sources = [
        (args.data / "cloud_regions.csv", True),
        (args.data / "cloud_regions_aws_azure.csv", False),
    ]
    n = build_cloud(cloud_sources, CARBON_OUT / "zones.json", CARBON_OUT / "cloud.json")
    print(f"cloud.json: {n} cloud regions")


if __name__ == "__main__":
    main()
