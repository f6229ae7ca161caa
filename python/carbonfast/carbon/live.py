"""Live grid intensity from the Electricity Maps API, only when a token is configured.

Short timeout, cached in memory and on disk (so that consecutive `carbonfast run`s do not each
ask), and any failure is reported to the caller, which falls back to the yearly tables.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

TIMEOUT_S = 2.0
TTL_S = 600.0


class LiveUnavailable(Exception):
    """The live figure could not be had; the message says why."""


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "carbonfast" / "live-intensity.json"


def _read_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, cache: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs a request next time


def latest(zone: str, token: str, base_url: str, *, cache: Path | None = None) -> tuple[float, str]:
    """(g CO2e/kWh, the API's datetime) for `zone`, from the cache if fresh, else the API."""
    cache = cache or cache_path()
    key = f"{base_url}|{zone}"
    entries = _read_cache(cache)
    hit = entries.get(key)
    if hit and time.time() - hit["fetched_at"] < TTL_S:
        return hit["g_per_kwh"], hit["datetime"]

    from urllib.error import URLError
    from urllib.parse import urlencode
    from urllib.request import Request, urlopen

    url = f"{base_url.rstrip('/')}/carbon-intensity/latest?{urlencode({'zone': zone})}"
    request = Request(url, headers={"auth-token": token, "User-Agent": "carbonfast"})
    try:
        with urlopen(request, timeout=TIMEOUT_S) as response:
            body = json.loads(response.read().decode("utf-8"))
    except (URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise LiveUnavailable(f"Electricity Maps API unreachable ({reason})") from None
    value = body.get("carbonIntensity")
    if not isinstance(value, (int, float)) or value < 0:
        raise LiveUnavailable(f"Electricity Maps API gave no carbonIntensity for {zone}")
    stamp = str(body.get("datetime", ""))
    entries[key] = {"g_per_kwh": float(value), "datetime": stamp, "fetched_at": time.time()}
    _write_cache(cache, entries)
    return float(value), stamp
