"""The trackers' argument and configuration values: "not given", the parsers of values read as
text from `.codecarbon.config` and CODECARBON_* variables, and what each check accepts, in the
words its error gives."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class _NotGiven:
    """The default of every argument: "not given", so that the configuration fills it (None
    is a value an argument can be given)."""

    def __repr__(self) -> str:
        return "<not given>"


_sentinel: Any = _NotGiven()


def _bool(raw: Any) -> bool:
    low = str(raw).strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off", ""):
        return False
    raise ValueError


def _positive(raw: Any) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError
    return value


def _non_negative(raw: Any) -> float:
    value = float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError
    return value


def _choice(*accepted: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        value = str(raw).strip()
        if value not in accepted:
            raise ValueError
        return value

    return parse


_EXPECTED = {
    _bool: "true or false",
    float: "a number",
    int: "a whole number",
    _positive: "a number above 0",
    _non_negative: "a number, 0 or more",
}

# Named in the ValueError of an argument that cannot be used, so that it says what would do.
_ACCEPTED = {
    "api_call_interval": "a whole number of periods (-1: only at flush and stop)",
    "measure_power_secs": "seconds, 0 or more",
    "tracking_mode": "'machine' or 'process'",
    "on_csv_write": "'append' or 'update'",
    "pue": "a number above 0 (1.0: no overhead)",
    "wue": "litres per kWh, 0 or more",
    "force_cpu_power": "watts above 0",
    "force_ram_power": "watts above 0",
    "force_carbon_intensity_g_co2e_kwh": "g CO2e per kWh: a finite number, 0 or more",
}
