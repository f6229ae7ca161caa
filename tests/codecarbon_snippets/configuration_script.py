# docs/how-to/configuration.md, "Configuration priority": the script parameters, under the
# configuration files and environment variables of the same page (written by the test).
# Changed: the tracker is kept in a variable, started and stopped.
import time

from codecarbon import EmissionsTracker

tracker = EmissionsTracker(
    api_call_interval=4, save_to_api=True, electricitymaps_api_token="some-token"
)
tracker.start()
end = time.perf_counter() + 0.05
while time.perf_counter() < end:
    pass
tracker.stop()
