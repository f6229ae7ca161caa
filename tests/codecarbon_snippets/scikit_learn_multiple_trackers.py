# docs/how-to/scikit-learn.md, "Multiple Trackers".
# Changed: the dataset, the RandomForest fit and its predict() are 50 ms CPU loops.
import time

from codecarbon import EmissionsTracker


def busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


tracker = EmissionsTracker()
tracker.start()

try:
    # Training
    busy(0.05)
    training_emissions = tracker.stop()

    # Prediction
    tracker.start()
    busy(0.05)
    prediction_emissions = tracker.stop()

    print(f"Training emissions: {training_emissions:.6f} kg CO2eq")
    print(f"Prediction emissions: {prediction_emissions:.6f} kg CO2eq")
except Exception:
    tracker.stop()
    raise
