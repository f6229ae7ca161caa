"""carbonfast: measure the energy and carbon footprint of code from hardware counters.

import carbonfast as cf
with cf.measure("step") as m:
    step()
print(m.energy_j, m.duration_s, m.domains)
"""

from carbonfast._native import SensorUnavailable
from carbonfast.info import info
from carbonfast.measure import CallStats, Measurement, Meter, measure, track

__version__ = "0.1.0"

__all__ = [
    "CallStats",
    "Measurement",
    "Meter",
    "SensorUnavailable",
    "__version__",
    "info",
    "measure",
    "track",
]
