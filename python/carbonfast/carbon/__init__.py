"""From energy to emissions: grid intensity by place (offline tables, optional live data),
data-centre overhead (PUE), and advice on cutting the footprint."""

from __future__ import annotations

from dataclasses import replace

from carbonfast.carbon.intensity import Intensity, lookup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

J_PER_KWH = 3.6e6


def emissions_kg(energy_j: float, g_per_kwh: float, pue: float = 1.0) -> float:
    """kg CO2e of `energy_j` joules drawn by the IT load, with the facility's PUE on top."""
    return energy_j / J_PER_KWH * pue * g_per_kwh / 1000.0


class Carbon:
    """The carbon side of one configuration: where the energy is drawn, and the PUE.

    The place is looked up when the Carbon is made, so that a bad name fails at once; live
    data (with a token) is fetched when an intensity is first asked for.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        self.pue: float = settings.get("pue") or 1.0
        self.table: Intensity = lookup(
            country=settings.get("country"),
            zone=settings.get("zone"),
            cloud=settings.get("cloud"),
            g_per_kwh=settings.get("intensity"),
        )
        self._token: str | None = settings.get("electricitymaps_token")
        self._url: str = settings.get("electricitymaps_url") or ""

    def intensity(self) -> Intensity:
        """Live where a token is configured and the place has a zone; else the yearly table."""
        table = self.table
        if not self._token or table.kind == "explicit":
            return table
        if table.zone is None:
            return replace(table, note="live intensity needs a grid zone; this place has none")
        from carbonfast.carbon.live import LiveUnavailable, latest

        try:
            g, stamp = latest(table.zone, self._token, self._url)
        except LiveUnavailable as e:
            return replace(table, note=f"live intensity unavailable: {e}; used the yearly table")
        return replace(
            table,
            g_per_kwh=g,
            kind="live",
            source=f"Electricity Maps live API, zone {table.zone}, {stamp}",
        )
