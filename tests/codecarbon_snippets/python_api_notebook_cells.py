# docs/tutorials/python-api.md, "Online Mode > Explicit Object": "in Jupyter notebooks where you
# want to start tracking in one cell and stop in a much later cell".
# Changed: the cells between are the test's.
from codecarbon import EmissionsTracker

tracker = EmissionsTracker()
tracker.start()

# %%
tracker.stop()
