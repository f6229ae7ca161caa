"""How a tracker takes each setting: from its argument, else CodeCarbon's configuration
(CODECARBON_* variables, `.codecarbon.config` files), else its default; a value from the
configuration that cannot be used is logged and the default kept, an argument that cannot be
used is a ValueError."""

from __future__ import annotations

from carbonfast.compat.codecarbon._arguments import _ACCEPTED, _EXPECTED, _non_negative, _sentinel
from carbonfast.compat.codecarbon.external.logger import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from carbonfast.compat.codecarbon.output_methods.base_output import OutputMethod


class _Settings:
    """The settings of a tracker, as attributes named after them (`_pue` for `pue`)."""

    # Set by the tracker's __init__, before any setting is taken.
    _external_conf: dict[str, str]
    _conf: dict[str, Any]

    # The settings, each set by _setting() from its argument, the configuration or its default
    # (an argument as given, but for a number given as text).
    _log_level: Any
    _logger_preamble: str
    _force_carbon_intensity_g_co2e_kwh: float | None
    force_carbon_intensity_g_co2e_kwh: float | None
    _allow_multiple_runs: bool
    _api_call_interval: int
    _api_endpoint: str
    _api_key: str | None
    _electricitymaps_api_token: str | None
    _emissions_endpoint: str | None
    _experiment_name: str
    _gpu_ids: Any
    _measure_power_secs: float
    _output_dir: str
    _output_file: str
    _project_name: str
    _output_methods: list[OutputMethod]
    _save_to_file: bool
    _save_to_api: bool
    _save_to_logger: bool
    _save_to_prometheus: bool
    _save_to_logfire: bool
    _logging_logger: Any
    _prometheus_url: str
    _output_handlers: list[Any]
    _tracking_mode: str
    _on_csv_write: str
    _metadata: dict[str, Any] | str | None
    _force_cpu_power: float | None
    _force_ram_power: float | None
    _pue: float
    _wue: float
    _force_mode_cpu_load: bool
    _rapl_include_dram: bool
    _rapl_prefer_psys: bool
    _experiment_id: str

    def _setting(
        self,
        var: Any,
        name: str,
        default: Any = None,
        parse: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Sets self._<name>: the argument as given; else the configuration's value, parsed
        (a value that does not parse is logged and the default used); else the default."""
        if var is not _sentinel:
            value = var
        elif name in self._external_conf and parse is not None:
            raw = self._external_conf[name]
            try:
                value = parse(raw)
            except (ValueError, TypeError):
                what = _EXPECTED.get(parse, "one of the accepted values")
                logger.error(
                    f"CONFIG - Value for '{name}' must be {what}. Got '{raw}' instead. It will "
                    f"be ignored; using {default!r}."
                )
                value = default
        else:
            value = self._external_conf.get(name, default)
        self._conf[name] = value
        setattr(self, f"_{name}", value)
        return value

    def _check_argument(self, name: str, parse: Callable[[Any], Any]) -> None:
        """Raises ValueError, naming the argument and what it accepts, where a value given as
        an argument cannot be used."""
        value = getattr(self, f"_{name}")
        try:
            parsed = None if isinstance(value, bool) else parse(value)
        except (ValueError, TypeError):
            parsed = None
        if parsed is not None and isinstance(value, str):
            # A number given as text ("1.5"), taken as the number.
            setattr(self, f"_{name}", parsed)
            self._conf[name] = parsed
        if parsed is None:
            raise ValueError(f"{name}={value!r} is not valid; expected {_ACCEPTED[name]}")

    def _forced_intensity(self, value: Any) -> None:
        """force_carbon_intensity_g_co2e_kwh: a number, 0 or more and finite (text of one
        taken as the number, as CodeCarbon's float() takes it). An argument that is none is
        a ValueError; a configuration value, logged and not used."""
        name = "force_carbon_intensity_g_co2e_kwh"
        if self._setting(value, name, None, _non_negative) is not None:
            self._check_argument(name, _non_negative)
        self.force_carbon_intensity_g_co2e_kwh = self._force_carbon_intensity_g_co2e_kwh

    def _electricitymaps_token(self, token: Any, old_token: Any) -> None:
        if old_token is not _sentinel:
            logger.warning(
                "Parameter 'co2_signal_api_token' is deprecated and will be removed in a future "
                "version. Please use 'electricitymaps_api_token' instead."
            )
            if token is _sentinel:
                token = old_token
        self._setting(token, "electricitymaps_api_token")
        if self._electricitymaps_api_token is None and self._external_conf.get(
            "co2_signal_api_token"
        ):
            logger.warning(
                "Configuration parameter 'co2_signal_api_token' is deprecated. Please update "
                "your config to use 'electricitymaps_api_token' instead."
            )
            self._electricitymaps_api_token = self._external_conf["co2_signal_api_token"]
