# docs/tutorials/python-api.md, "Online Mode > Explicit Object"
# (also docs/getting-started/usage.md).
# Changed: the compute is a 50 ms CPU loop instead of `_ = 1 + 1`.
import time

from codecarbon import EmissionsTracker

tracker = EmissionsTracker()
tracker.start()
try:
    # Compute intensive code goes here
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        _ = 1 + 1
finally:
    tracker.stop()
