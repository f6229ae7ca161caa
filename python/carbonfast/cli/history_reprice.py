"""`carbonfast history --country FR` (or --zone, --cloud, --intensity, --pue): the history's
emissions counted again at another place's grid intensity.

Each record keeps the energy it measured and the intensity it was counted at; the energy is
what was measured, the intensity a choice. Asking the history at another place answers
"what would these runs have emitted there?" without running anything again, which is what the
advice to move a job elsewhere invites. So the place options are applied, not refused, and
the listing says so in a line of its own.

Only a place given on the command line reprices: one from the environment or a config file
says where new measurements are drawn, and must not silently rewrite what was recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from carbonfast.carbon.intensity import Intensity

# The settings that reprice: the place settings and the PUE.
_REPRICING = ("intensity", "zone", "cloud", "country", "pue")


@dataclass(frozen=True)
class Repricing:
    """The intensity and PUE a listing's emissions are counted at: None keeps each record's
    own."""

    intensity: Intensity | None
    pue: float | None

    def emissions_kg(self, row: dict[str, Any]) -> float | None:
        """A listed record's emissions at this intensity and PUE (None: its energy, or the
        intensity it kept, is unknown)."""
        from carbonfast.carbon import emissions_kg

        energy = _number(row.get("energy_j"))
        g = self.intensity.g_per_kwh if self.intensity else _number(row.get("intensity_g_per_kwh"))
        if energy is None or g is None:
            return None
        pue = self.pue if self.pue is not None else _number(row.get("pue")) or 1.0
        return emissions_kg(energy, g, pue)

    def apply(self, rows: list[dict[str, Any]]) -> None:
        """Reprices `rows` in place: emissions_kg, and the intensity and PUE it is counted
        at, the recorded figure kept as recorded_emissions_kg."""
        for row in rows:
            row["recorded_emissions_kg"] = row.get("emissions_kg")
            row["emissions_kg"] = self.emissions_kg(row)
            if self.intensity is not None:
                row["intensity_g_per_kwh"] = self.intensity.g_per_kwh
                row["location"] = self.intensity.location
            if self.pue is not None:
                row["pue"] = self.pue

    @property
    def line(self) -> str:
        """What the listing says of it."""
        if self.intensity is None:
            where = "each record's own intensity"
        else:
            where = f"{self.intensity.label} ({self.intensity.g_per_kwh:g} g/kWh)"
        pue = "each record's own PUE" if self.pue is None else f"PUE {self.pue:g}"
        return f"g CO2e repriced at {where} x {pue}, not as recorded"


def place_given(args: argparse.Namespace) -> bool:
    """Whether the command line names a place or a PUE."""
    return any(getattr(args, k, None) is not None for k in _REPRICING)


def repricing(args: argparse.Namespace) -> Repricing | None:
    """The repricing the command line asks for (None: none; the emissions as recorded)."""
    given = {k: getattr(args, k) for k in _REPRICING if getattr(args, k, None) is not None}
    if not given:
        return None
    from carbonfast.carbon import Carbon
    from carbonfast.config import resolve

    # Each value checked as any layer's would be, named as the option given.
    settings = resolve(given, given)
    places = [k for k in given if k != "pue"]
    return Repricing(
        intensity=Carbon(settings).table if places else None,
        pue=settings["pue"] if "pue" in given else None,
    )


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None  # unknown, or not a number (an edited file)
