# docs/how-to/configuration.md, "Tracking Mode" ("Or in code").
# Changed: the tracker is kept in a variable and used as a context manager around a CPU loop.
import time

from codecarbon import EmissionsTracker

with EmissionsTracker(tracking_mode="process") as tracker:
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass
