# docs/reference/output.md, "BoAmps > How to use it".
# Changed: "Your code here" is a 50 ms CPU loop.
import time

from codecarbon import OfflineEmissionsTracker, OutputMethod

tracker = OfflineEmissionsTracker(
    project_name="my_project",
    country_iso_code="USA",
    output_methods=[OutputMethod.CSV, OutputMethod.BOAMPS],
)
tracker.start()
# Your code here
end = time.perf_counter() + 0.05
while time.perf_counter() < end:
    pass
tracker.stop()
