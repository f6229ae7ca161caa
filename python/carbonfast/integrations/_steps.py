"""What the training-loop callbacks share: `StepMeter`, a window kept open across a loop's
steps that gives the energy, power and emissions since the last report, and running totals.

The window is closed and a new one opened at each report (and at each change of phase, such
as the start of an evaluation), never per step: a step costs the loop nothing. Each interval
is an ordinary window of a `carbonfast.Meter` (named windows, `Meter.begin` / `Meter.end`):

- its figures are carbonfast's own (`Measurement.energy_j`, `.emissions_kg`, `.estimated`);
- closed intervals go to the history like any window, added up under the loop's label;
- on a meter of a distributed job, each interval is a window of the job: the host's CPU
  packages and DRAM are measured by one rank per host (the node's local rank 0, or the
  lowest rank of the host where an engine tells the ranks of each other), each GPU by the
  rank that uses it, and closing the interval gathers every rank's part to rank 0 over the
  job's engine (see carbonfast.distributed). So on rank 0 the figures are the job's, every
  node counted once; on the other ranks they are the rank's own part. Every rank must reach
  the same reports, which the loops' callbacks do: they fire on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from carbonfast.measurement import Measurement
    from carbonfast.meter import Meter

# A logged figure: joules, watts, kg, or whether a figure is estimated.
Figure = float | bool


@dataclass
class _Sum:
    """Intervals added up: None energy (or emissions) once any interval's is unknown, so that
    a part that nothing measured is never taken as 0."""

    duration_s: float = 0.0
    energy_j: float | None = 0.0
    emissions_kg: float | None = 0.0
    estimated: bool = False
    intervals: int = 0

    @classmethod
    def of(cls, m: Measurement) -> _Sum:
        return cls(m.duration_s, m.energy_j, m.emissions_kg, m.estimated, 1)

    def merge(self, other: _Sum) -> None:
        self.duration_s += other.duration_s
        self.energy_j = (
            None
            if other.energy_j is None or self.energy_j is None
            else self.energy_j + other.energy_j
        )
        self.emissions_kg = (
            None
            if other.emissions_kg is None or self.emissions_kg is None
            else self.emissions_kg + other.emissions_kg
        )
        self.estimated = self.estimated or other.estimated
        self.intervals += other.intervals


class StepMeter:
    """Energy, power and emissions of a training loop, per report and in total, by phase
    ("train", "eval", ...).

    `start()` opens the first interval; `mark(phase)` closes the open one, puts it to `phase`
    and opens the next; `take(phase)` gives what `phase` gathered since its last report, as
    the keys a loop logs, and adds it to the phase's total; `report(phase)` is both. `meter`
    is the carbonfast Meter to measure on (default: carbonfast's default meter, made at
    `start()`, so that in a distributed job it is made once the ranks' engine is up); `label`
    names the intervals' windows in the history, and must not be the name of another window
    open on the same meter.
    """

    def __init__(self, meter: Meter | None = None, label: str = "training loop") -> None:
        self.label = label
        self._meter = meter
        self._open = False
        self._pending: dict[str, _Sum] = {}
        self._totals: dict[str, _Sum] = {}

    @property
    def meter(self) -> Meter:
        """The meter the intervals are measured on (the default one unless given)."""
        if self._meter is None:
            from carbonfast.meter import default_meter

            self._meter = default_meter()
        return self._meter

    @property
    def started(self) -> bool:
        return self._open

    def start(self) -> None:
        """Opens the first interval; nothing where one is open."""
        if not self._open:
            self.meter.begin(self.label)
            self._open = True

    def mark(self, phase: str) -> None:
        """Closes the open interval, puts it to `phase`, and opens the next one (starts the
        first where none is open)."""
        if not self._open:
            self.start()
            return
        self._close_into(phase)
        self.meter.begin(self.label)
        self._open = True

    def stop(self, phase: str) -> None:
        """Closes the open interval, putting it to `phase`; the next mark or report starts
        afresh."""
        if self._open:
            self._close_into(phase)

    def _close_into(self, phase: str) -> None:
        m = self.meter.end(self.label)
        self._open = False
        self._pending.setdefault(phase, _Sum()).merge(_Sum.of(m))

    def take(self, phase: str) -> dict[str, Figure]:
        """The figures `phase` gathered since its last report, and its totals, as a loop logs
        them (see `figures`); empty where it gathered nothing."""
        pending = self._pending.pop(phase, None)
        if pending is None:
            return {}
        total = self._totals.setdefault(phase, _Sum())
        total.merge(pending)
        return figures(phase, pending, total)

    def report(self, phase: str) -> dict[str, Figure]:
        """`mark(phase)`, then `take(phase)`."""
        self.mark(phase)
        return self.take(phase)


def figures(phase: str, since: _Sum, total: _Sum) -> dict[str, Figure]:
    """The keys a loop logs for `phase`: `energy/{phase}_j`, `power/{phase}_w` and
    `emissions/{phase}_kg` since the last report, `energy/{phase}_total_j` and
    `emissions/{phase}_total_kg` since the start, and `energy/estimated` (True where any part
    comes from a power model rather than a counter). An unknown figure is left out, never 0."""
    out: dict[str, Figure] = {}
    if since.energy_j is not None:
        out[f"energy/{phase}_j"] = since.energy_j
        if since.duration_s > 0:
            out[f"power/{phase}_w"] = since.energy_j / since.duration_s
    if since.emissions_kg is not None:
        out[f"emissions/{phase}_kg"] = since.emissions_kg
    if total.energy_j is not None:
        out[f"energy/{phase}_total_j"] = total.energy_j
    if total.emissions_kg is not None:
        out[f"emissions/{phase}_total_kg"] = total.emissions_kg
    if out:
        out["energy/estimated"] = since.estimated or total.estimated
    return out
