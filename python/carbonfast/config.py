"""Settings: an explicit argument wins over the environment, which wins over the default.

Every bad value raises ValueError naming the setting (the argument or the environment variable)
and what it accepts.
"""

from __future__ import annotations

import math
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

SCOPES = ("process", "container", "machine")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError
    return value


def _scope(raw: str) -> str:
    if raw not in SCOPES:
        raise ValueError
    return raw


def _flag(raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError


def _path(raw: str) -> str:
    if not raw:
        raise ValueError
    return raw


class Setting:
    """One setting: its environment variable, parser, what it accepts (for errors), default."""

    __slots__ = ("accepts", "default", "env", "parse")

    def __init__(
        self, env: str, parse: Callable[[str], Any], accepts: str, default: Any = None
    ) -> None:
        self.env = env
        self.parse = parse
        self.accepts = accepts
        self.default = default


ESTIMATE_SETTINGS: dict[str, Setting] = {
    "estimate": Setting("CARBONFAST_ESTIMATE", _flag, "one of " + ", ".join(_TRUE + _FALSE), True),
    "scope": Setting("CARBONFAST_ESTIMATE_SCOPE", _scope, "one of " + ", ".join(SCOPES), "process"),
    "cpu_tdp_w": Setting("CARBONFAST_CPU_TDP_W", _positive_float, "watts per socket, above 0"),
    "cpu_threads": Setting("CARBONFAST_CPU_THREADS", _positive_int, "a whole number above 0"),
    "ram_gb": Setting("CARBONFAST_RAM_GB", _positive_float, "gigabytes, above 0"),
    "cpu_power_w": Setting("CARBONFAST_CPU_POWER_W", _positive_float, "watts, above 0"),
    "ram_power_w": Setting("CARBONFAST_RAM_POWER_W", _positive_float, "watts, above 0"),
    "proc_root": Setting("CARBONFAST_PROC_ROOT", _path, "a directory"),
    "cgroup_root": Setting("CARBONFAST_CGROUP_ROOT", _path, "a directory"),
}


def resolve(table: dict[str, Setting], arguments: dict[str, Any]) -> dict[str, Any]:
    """Each setting of `table` from its argument (if not None), else the environment, else the
    default; validated either way."""
    out: dict[str, Any] = {}
    for name, setting in table.items():
        arg = arguments.get(name)
        if arg is not None:
            out[name] = _parse(
                setting, os.fspath(arg) if isinstance(arg, os.PathLike) else str(arg), name
            )
            continue
        raw = os.environ.get(setting.env, "")
        out[name] = setting.default if raw == "" else _parse(setting, raw, setting.env)
    return out


def _parse(setting: Setting, raw: str, name: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not valid; expected {setting.accepts}") from None
