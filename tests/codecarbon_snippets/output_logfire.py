# docs/reference/output.md, "Logfire > How to use it".
# Changed: "Your code here" is a 50 ms CPU loop.
import time

from codecarbon import OfflineEmissionsTracker

tracker = OfflineEmissionsTracker(
    project_name="my_project",
    country_iso_code="USA",
    save_to_logfire=True,
)
tracker.start()
# Your code here
end = time.perf_counter() + 0.05
while time.perf_counter() < end:
    pass
tracker.stop()
