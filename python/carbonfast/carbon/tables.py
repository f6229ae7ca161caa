"""The shipped intensity tables (built by scripts/build_tables.py), loaded on first use."""

from __future__ import annotations

import functools
import json
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_DATA = Path(__file__).resolve().parent / "data"


@functools.cache
def _load(name: str) -> dict[str, Any]:
    return json.loads((_DATA / name).read_text(encoding="utf-8"))


def countries() -> dict[str, Any]:
    """Ember: {"countries": {alpha3: {name, alpha2, g_per_kwh, year}}, "regions": {...}, ...}."""
    return _load("countries.json")


def zones() -> dict[str, Any]:
    """Electricity Maps: {"zones": {zone: {name, g_per_kwh, year, renewable_pct}}, ...}."""
    return _load("zones.json")


def cloud() -> dict[str, Any]:
    """{"providers": {provider: {region: {country, city, zone, provider_g_per_kwh}}}, ...}."""
    return _load("cloud.json")
