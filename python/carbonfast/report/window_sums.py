"""`WindowSums`: one label's windows added up, what the history keeps of the windows not kept
one by one; the sums of two batches merge into one row."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast.record import Record


@dataclass
class WindowSums:
    """One label's windows added up: what the history keeps of windows not kept one by one."""

    label: str
    count: int
    known: int  # windows whose energy is known
    energy_j: float | None
    min_j: float | None
    max_j: float | None
    duration_s: float
    first_at: str
    last_at: str
    estimated: bool = False
    intensity_g_per_kwh: float | None = None
    intensity_source: str = ""
    location: str | None = None
    pue: float | None = None

    @property
    def emissions_kg(self) -> float | None:
        if self.energy_j is None or self.intensity_g_per_kwh is None:
            return None
        from carbonfast.carbon import emissions_kg

        return emissions_kg(self.energy_j, self.intensity_g_per_kwh, self.pue or 1.0)

    def merge(self, new: WindowSums) -> WindowSums:
        """These sums and `new`'s, the intensity being the newest."""

        def add(a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else a + b

        def pick(f: Any, a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else f(a, b)

        return dataclasses.replace(
            new,
            count=self.count + new.count,
            known=self.known + new.known,
            energy_j=add(self.energy_j, new.energy_j),
            min_j=pick(min, self.min_j, new.min_j),
            max_j=pick(max, self.max_j, new.max_j),
            duration_s=self.duration_s + new.duration_s,
            first_at=min(self.first_at, new.first_at),
            last_at=max(self.last_at, new.last_at),
            estimated=self.estimated or new.estimated,
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["mean_j"] = self.energy_j / self.known if self.energy_j and self.known else None
        return out

    @classmethod
    def from_json(cls, text: str) -> WindowSums:
        d = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def record(self) -> Record:
        from carbonfast.record import Record

        return Record(
            kind="windows",
            label=self.label,
            started_at=self.first_at,
            duration_s=self.duration_s,
            energy_j=self.energy_j,
            estimated=self.estimated,
            emissions_kg=self.emissions_kg,
            intensity_g_per_kwh=self.intensity_g_per_kwh,
            intensity_source=self.intensity_source,
            location=self.location,
            pue=self.pue,
            sums=self.to_dict(),
            notes=[
                f"{self.count} windows labelled {self.label!r} added up, from {self.first_at} "
                f"to {self.last_at}; cf.measure(..., keep=True) records each on its own"
            ],
        )
