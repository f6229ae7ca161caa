# docs/how-to/troubleshooting.md: the debug logging of its introduction, then the context manager
# of "The tracker ran but emissions.csv is empty or missing".
# Changed: train_model is a 50 ms CPU loop defined here.
import time

from codecarbon import EmissionsTracker


def train_model():
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass


tracker = EmissionsTracker(log_level="debug")

# %%
with EmissionsTracker() as tracker:  # noqa: F811 (the page's second block)
    train_model()
