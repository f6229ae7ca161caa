"""carbonfast: measure the energy and carbon footprint of code from hardware counters.

import carbonfast as cf
with cf.measure("step") as m:
    step()
print(m.energy_j, m.duration_s, m.domains)
"""

from __future__ import annotations

from carbonfast._native import SensorUnavailable
from carbonfast.bench import bench, compare
from carbonfast.info import info
from carbonfast.measure import CallStats, Measurement, Meter, measure, track

__version__ = "0.1.0"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from carbonfast.carbon.advice import Advice


def advise(
    m: Measurement, *, cpu_seconds: float | None = None, threads: int | None = None, top: int = 3
) -> list[Advice]:
    """Quantified suggestions for cutting the footprint of the work `m` measured: cleaner places
    to run it, the energy idle capacity cost (given the work's `cpu_seconds`), and everyday
    equivalents, each with its source."""
    from carbonfast.carbon.advice import advise as _advise

    return _advise(m, cpu_seconds=cpu_seconds, threads=threads, top=top)


__all__ = [
    "CallStats",
    "Measurement",
    "Meter",
    "SensorUnavailable",
    "__version__",
    "advise",
    "bench",
    "compare",
    "info",
    "measure",
    "track",
]
