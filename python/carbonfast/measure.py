"""Measurement windows over the native meter: `measure`, `track`, `Meter`, `Measurement`.

The pieces live in modules of their own: `carbonfast.measurement` (a window's figures),
`carbonfast.decorator` (what decorating a function needs), `carbonfast.windows` (`measure`,
`track` and the kinds of window) and `carbonfast.meter` (`Meter` and the default meters). This
module gathers them where they have always been imported from.
"""

from __future__ import annotations

from carbonfast import decorator, meter, windows
from carbonfast.decorator import CallStats as CallStats
from carbonfast.measurement import AttributedMeasurement as AttributedMeasurement
from carbonfast.measurement import DistributedMeasurement as DistributedMeasurement
from carbonfast.measurement import Measurement as Measurement
from carbonfast.measurement import _part_note as _part_note
from carbonfast.meter import MAX_CAPACITY as MAX_CAPACITY
from carbonfast.meter import Meter as Meter
from carbonfast.meter import _reset_default_meter as _reset_default_meter
from carbonfast.meter import default_meter as default_meter
from carbonfast.windows import Window as Window
from carbonfast.windows import _AttributedWindow as _AttributedWindow
from carbonfast.windows import _ForcedJobWindow as _ForcedJobWindow
from carbonfast.windows import _JobWindow as _JobWindow
from carbonfast.windows import measure as measure
from carbonfast.windows import track as track

# Their names from before the split, for code that still reaches for them here.
_lazy = decorator.is_lazy
_wrap_lazy = decorator.wrap_lazy
_resolve_sync = decorator.resolve_sync
_default_distributed_meter = meter.default_distributed_meter
_maybe_in_job = meter.maybe_in_job
_attributed_window = windows.attributed_window
_checked_scope = windows.checked_scope
_window = windows.make_window

__all__ = [
    "MAX_CAPACITY",
    "AttributedMeasurement",
    "CallStats",
    "DistributedMeasurement",
    "Measurement",
    "Meter",
    "Window",
    "default_meter",
    "measure",
    "track",
]
