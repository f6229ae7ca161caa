# docs/reference/output.md, CSV note: "Developers can enhance the Output interface by
# implementing a custom class that extends BaseOutput at codecarbon/output.py", with the
# output_handlers, measure_power_secs and api_call_interval parameters of docs/reference/api.md
# (live_out: "the iterative update of prometheus metrics", as in examples/prometheus_call.py).
# Written for this test: the page describes the class without code.
import time

from codecarbon import EmissionsTracker
from codecarbon.output import BaseOutput, EmissionsData


class InMemoryOutput(BaseOutput):
    def __init__(self):
        self.runs = []
        self.live = []
        self.tasks = []

    def out(self, total: EmissionsData, delta: EmissionsData):
        self.runs.append((total, delta))

    def live_out(self, total: EmissionsData, delta: EmissionsData):
        self.live.append((total, delta))

    def task_out(self, data, experiment_name: str):
        self.tasks.append((data, experiment_name))


def busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


handler = InMemoryOutput()
tracker = EmissionsTracker(
    output_handlers=[handler], save_to_file=False, measure_power_secs=0.05, api_call_interval=1
)
tracker.start()
busy(0.5)
tracker.start_task("step")
busy(0.05)
tracker.stop_task()
emissions = tracker.stop()
