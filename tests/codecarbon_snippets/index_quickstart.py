# docs/index.md, "Quickstart > Python".
# Changed: "Your code here" is a 50 ms CPU loop.
import time

from codecarbon import EmissionsTracker

tracker = EmissionsTracker()
tracker.start()

# Your code here
end = time.perf_counter() + 0.05
while time.perf_counter() < end:
    pass

emissions = tracker.stop()
print(f"Emissions: {emissions} kg CO₂")
