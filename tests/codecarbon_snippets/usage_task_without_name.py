# docs/getting-started/usage.md, "Explicit Object": the task manager, of which the page says "If
# no name is provided, CodeCarbon will generate a uuid".
# Changed: one task, started without a name, around a 50 ms CPU loop.
import time

from codecarbon import EmissionsTracker

try:
    tracker = EmissionsTracker(project_name="bert_inference", measure_power_secs=10)
    tracker.start_task()
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass
    task_emissions = tracker.stop_task()
finally:
    _ = tracker.stop()
