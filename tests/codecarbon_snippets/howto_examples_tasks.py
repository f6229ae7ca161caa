# docs/how-to/examples.md, "Common Patterns > Track Specific Tasks".
# Changed: loading and training are 50 ms CPU loops.
import time

from codecarbon import EmissionsTracker


def busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


tracker = EmissionsTracker()
tracker.start()
tracker.start_task("data_loading")
# Load data...
busy(0.05)
tracker.stop_task()

tracker.start_task("training")
# Train model...
busy(0.05)
tracker.stop_task()
tracker.stop()
