# docs/tutorials/python-api.md, "Online Mode > Context Manager".
# Changed: the training is a 50 ms CPU loop.
import time

from codecarbon import EmissionsTracker

with EmissionsTracker() as tracker:
    # Compute intensive training code goes here
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass
