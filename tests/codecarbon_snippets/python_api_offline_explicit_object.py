# docs/tutorials/python-api.md, "Offline Mode > Explicit Object".
# Changed: the training is a 50 ms CPU loop.
import time

from codecarbon import OfflineEmissionsTracker

tracker = OfflineEmissionsTracker(country_iso_code="CAN")
tracker.start()
# GPU intensive training code
end = time.perf_counter() + 0.05
while time.perf_counter() < end:
    pass
tracker.stop()
