# docs/reference/examples.md, "Using the Explicit Object".
# Changed: the Keras model and its fit() are a 50 ms CPU loop.
import time

from codecarbon import EmissionsTracker


def fit():
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass


tracker = EmissionsTracker()
tracker.start()
try:
    fit()
except Exception as e:
    print(f"An error occurred: {e}")
finally:
    emissions: float = tracker.stop()
    print(emissions)
