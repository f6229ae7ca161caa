"""From energy to emissions: grid intensity by place (offline tables, optional live data),
data-centre overhead (PUE), and advice on cutting the footprint."""

from __future__ import annotations

from dataclasses import replace

from carbonfast.carbon.intensity import PLACE_SETTINGS, Intensity, for_setting, world

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast.config import Origin

J_PER_KWH = 3.6e6


def emissions_kg(energy_j: float, g_per_kwh: float, pue: float = 1.0) -> float:
    """kg CO2e of `energy_j` joules drawn by the IT load, with the facility's PUE on top."""
    return energy_j / J_PER_KWH * pue * g_per_kwh / 1000.0


def emissions_range_kg(
    energy_range_j: tuple[float, float] | None, g_per_kwh: float, pue: float = 1.0
) -> tuple[float, float] | None:
    """The emissions of each end of an energy range (None where there is no range)."""
    if energy_range_j is None:
        return None
    low, high = energy_range_j
    return (emissions_kg(low, g_per_kwh, pue), emissions_kg(high, g_per_kwh, pue))


class Carbon:
    """The carbon side of one configuration: where the energy is drawn, and the PUE.

    The place is looked up when the Carbon is made, so that a bad name fails at once; live
    data (with a token) is fetched when an intensity is first asked for.

    Which place: the one from the strongest layer of settings (argument, then environment,
    then config file: see carbonfast.config), whatever kind of place the others name; within
    one layer, the most specific (intensity, zone, cloud, country). The places left out are
    named in a note.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        self.pue: float = settings.get("pue") or 1.0
        self.table: Intensity = _chosen_place(settings)
        self._token: str | None = settings.get("electricitymaps_token")
        self._url: str = settings.get("electricitymaps_url") or ""

    def intensity(self) -> Intensity:
        """Live where a token is configured and the place has a zone; else the yearly table."""
        table = self.table
        if not self._token or table.kind == "explicit":
            return table
        if table.zone is None:
            return _noted(table, "live intensity needs a grid zone; this place has none")
        from carbonfast.carbon.intensity import ELECTRICITY_MAPS
        from carbonfast.carbon.live import LiveUnavailable, latest

        try:
            g, stamp = latest(table.zone, self._token, self._url)
        except LiveUnavailable as e:
            return _noted(table, f"live intensity unavailable: {e}; used the yearly table")
        except Exception as e:  # a lookup that fails in any way costs the live figure only
            return _noted(
                table,
                f"live intensity unavailable: the lookup failed ({type(e).__name__}: {e}); "
                "used the yearly table",
            )
        live = f"{ELECTRICITY_MAPS} live API, zone {table.zone}, {stamp}"
        return replace(
            table,
            g_per_kwh=g,
            kind="live",
            source=f"{table.setting}: {live}" if table.setting else live,
            dataset=ELECTRICITY_MAPS,
            year=None,
        )


def _chosen_place(settings: dict[str, Any]) -> Intensity:
    """The intensity of the place settings' winner, with a note naming the places it beat."""
    origins: dict[str, Origin] = getattr(settings, "origins", {})
    given = [k for k in PLACE_SETTINGS if settings.get(k) is not None]
    if not given:
        return world()
    layer = {k: origins[k].layer if k in origins else 0 for k in given}
    label = {k: origins[k].label if k in origins else f"{k}={settings[k]!r}" for k in given}
    # `given` is in order of specificity, and min() keeps the first of equals.
    winner = min(given, key=lambda k: layer[k])
    chosen = for_setting(winner, settings[winner], label[winner])
    notes = [_overridden(label[winner], layer[winner], label[k], layer[k]) for k in given]
    return _noted(chosen, *(n for k, n in zip(given, notes, strict=True) if k != winner))


def _overridden(winner: str, winner_layer: int, loser: str, loser_layer: int) -> str:
    from carbonfast.config import LAYER_NAMES

    if winner_layer == loser_layer:
        return f"{loser} is not used: {winner} is more specific"
    return (
        f"{loser} is not used: {winner} overrides it "
        f"({LAYER_NAMES[winner_layer]} beats {LAYER_NAMES[loser_layer]})"
    )


def _noted(it: Intensity, *notes: str) -> Intensity:
    """`it` with `notes` added to its own."""
    joined = "; ".join(n for n in (it.note, *notes) if n)
    return replace(it, note=joined or None)
