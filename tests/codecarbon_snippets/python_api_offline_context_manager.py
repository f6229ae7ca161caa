# docs/tutorials/python-api.md, "Offline Mode > Context Manager".
# Changed: the training is a 50 ms CPU loop.
import time

from codecarbon import OfflineEmissionsTracker

with OfflineEmissionsTracker(country_iso_code="CAN") as tracker:
    # GPU intensive training code goes here
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass
