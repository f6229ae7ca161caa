"""A drop-in for CodeCarbon 3.3: change `codecarbon` to `carbonfast.compat.codecarbon` in your
imports and nothing else.

    from carbonfast.compat.codecarbon import EmissionsTracker   # was: from codecarbon import ...

    tracker = EmissionsTracker(project_name="train")
    tracker.start()
    ...
    emissions_kg = tracker.stop()

The module paths mirror CodeCarbon's (`.emissions_tracker`, `.output`, `.output_methods.file`,
`.output_methods.boamps`, ...), and so do the trackers' arguments, `.codecarbon.config` and
CODECARBON_* configuration, the outputs (emissions.csv and the task file, logger, HTTP,
Prometheus, BoAmps, ...) and the "codecarbon" logger. The energy comes from carbonfast's
counters. Where it differs from CodeCarbon, and why: the README, "Coming from CodeCarbon".
"""

from carbonfast import __version__
from carbonfast.compat.codecarbon.emissions_tracker import (
    EmissionsTracker,
    OfflineEmissionsTracker,
    TaskEmissionsTracker,
    track_emissions,
    track_task_emissions,
)
from carbonfast.compat.codecarbon.output_methods.base_output import OutputMethod

__all__ = [
    "EmissionsTracker",
    "OfflineEmissionsTracker",
    "OutputMethod",
    "track_emissions",
]
__app_name__ = "codecarbon"
# Importable as in CodeCarbon's documentation, beside what __all__ lists.
_ALSO = (TaskEmissionsTracker, track_task_emissions, __version__)
