# docs/how-to/examples.md, "Common Patterns > Track with Decorator", with the call that runs it.
# Changed: "Your code here" is a 50 ms CPU loop.
import time

from codecarbon import track_emissions


@track_emissions(project_name="my_project")
def my_function():
    # Your code here
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass


my_function()
