# docs/how-to/configuration.md: a tracker made without parameters, configured by the
# .codecarbon.config files and CODECARBON_* variables the test writes as that page shows them.
# Changed: the tracker is started and stopped around a CPU loop.
import time

from codecarbon import EmissionsTracker

tracker = EmissionsTracker()
tracker.start()
end = time.perf_counter() + 0.05
while time.perf_counter() < end:
    pass
tracker.stop()
