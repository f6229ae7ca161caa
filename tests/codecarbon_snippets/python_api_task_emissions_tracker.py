# docs/tutorials/python-api.md, "LLM inference: energy per token".
# Changed: each request to the model is a CPU loop of 10 ms per word; the record_tokens() calls
# are left out, as CodeCarbon 3.3.2's TaskEmissionsTracker has no such method.
import time

from codecarbon import EmissionsTracker
from codecarbon.emissions_tracker import TaskEmissionsTracker

prompts = ["Why is the sky blue?", "Say hello.", "Count to three."]
tracker = EmissionsTracker(project_name="llama3.1-8b-bench")

with TaskEmissionsTracker(task_name="llama3.1:8b", tracker=tracker) as task:
    for prompt in prompts:
        end = time.perf_counter() + 0.01 * len(prompt.split())
        while time.perf_counter() < end:
            pass

tracker.stop()
