# docs/how-to/troubleshooting.md, "RAPL - psys domain detected but not used
# (rapl_prefer_psys=False)": "Pass rapl_prefer_psys=True to the tracker for total platform
# power instead".
# Changed: the tracker is started, and stopped in a second cell.
from codecarbon import EmissionsTracker

tracker = EmissionsTracker(rapl_prefer_psys=True)
tracker.start()

# %%
tracker.stop()
