# docs/how-to/configuration.md, "Including DRAM in the CPU Measurement" ("Or in code").
# Changed: the tracker is kept in a variable, started, and stopped in a second cell.
from codecarbon import EmissionsTracker

tracker = EmissionsTracker(rapl_include_dram=True)
tracker.start()

# %%
tracker.stop()
