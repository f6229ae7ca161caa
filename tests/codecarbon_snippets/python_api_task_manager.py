# docs/tutorials/python-api.md, "Advanced: Task-Level Monitoring"
# (also docs/getting-started/usage.md).
# Changed: load_dataset and build_model are 50 ms CPU loops defined here.
import time

from codecarbon import EmissionsTracker


def busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def load_dataset(name, split):
    busy(0.05)
    return [name, split]


def build_model():
    busy(0.05)
    return "model"


try:
    tracker = EmissionsTracker(project_name="bert_inference", measure_power_secs=10)
    tracker.start_task("load dataset")
    dataset = load_dataset("imdb", split="test")
    imdb_emissions = tracker.stop_task()
    tracker.start_task("build model")
    model = build_model()
    model_emissions = tracker.stop_task()
finally:
    _ = tracker.stop()
