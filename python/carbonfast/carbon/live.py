"""Live grid intensity from the Electricity Maps API, only when a token is configured.

Short timeout, cached in memory and on disk (so that consecutive `carbonfast run`s do not each
ask), and any failure is reported to the caller, which falls back to the yearly tables.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

TIMEOUT_S = 2.0
TTL_S = 600.0
# No grid is dirtier than coal alone, about 1000 g/kWh; past this a figure is garbage.
MAX_G_PER_KWH = 3000.0


class LiveUnavailable(Exception):
    """The live figure could not be had; the message says why."""


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "carbonfast" / "live-intensity.json"


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, cache: dict) -> None:
    from carbonfast.report.files import write_atomically

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(cache))
    except (OSError, ValueError):
        pass  # a cache that cannot be written only costs a request next time


def valid_intensity(value: object) -> float | None:
    """The figure as g/kWh if it is one a grid can have: finite, 0 to MAX_G_PER_KWH."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) and 0 <= v <= MAX_G_PER_KWH else None


def _fresh(hit: object, now: float) -> tuple[float, str] | None:
    """A cache entry still worth using: well formed, fetched in the last TTL_S, not dated in
    the future (a clock set back, or a planted file, would make it last forever)."""
    if not isinstance(hit, dict):
        return None
    value, fetched = valid_intensity(hit.get("g_per_kwh")), hit.get("fetched_at")
    if value is None or not isinstance(fetched, (int, float)) or not 0 <= now - fetched < TTL_S:
        return None
    return value, str(hit.get("datetime", ""))


def latest(zone: str, token: str, base_url: str, *, cache: Path | None = None) -> tuple[float, str]:
    """(g CO2e/kWh, the API's datetime) for `zone`, from the cache if fresh, else the API."""
    cache = cache or cache_path()
    key = f"{base_url}|{zone}"
    entries = _read_cache(cache)
    hit = _fresh(entries.get(key), time.time())
    if hit is not None:
        return hit

    from urllib.parse import urlencode

    from carbonfast._http import request

    url = f"{base_url.rstrip('/')}/carbon-intensity/latest?{urlencode({'zone': zone})}"
    try:
        # Within TIMEOUT_S in all (a server sending a byte a second must not hold a run up);
        # a redirect is refused, not followed with the token.
        answer = request(
            url, headers={"auth-token": token, "User-Agent": "carbonfast"}, timeout_s=TIMEOUT_S
        )
        if not 200 <= answer.status < 300:
            raise LiveUnavailable(f"Electricity Maps API unreachable ({answer.reason})")
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise LiveUnavailable(f"Electricity Maps API unreachable ({reason})") from None
    try:
        body = json.loads(answer.body.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # not JSON, or nested past the parser's depth
        why = "nested too deeply" if isinstance(e, RecursionError) else e
        raise LiveUnavailable(f"Electricity Maps API answered no JSON ({why})") from None
    value = valid_intensity(body.get("carbonIntensity") if isinstance(body, dict) else None)
    if value is None:
        raise LiveUnavailable(
            f"Electricity Maps API gave no usable carbonIntensity for {zone} (missing, not a "
            f"number, or outside 0 to {MAX_G_PER_KWH:g} g/kWh)"
        )
    stamp = str(body.get("datetime", ""))
    entries[key] = {"g_per_kwh": value, "datetime": stamp, "fetched_at": time.time()}
    _write_cache(cache, entries)
    return value, stamp
