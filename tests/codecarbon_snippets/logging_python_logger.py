# docs/how-to/logging.md, "Python logger" then "Create an EmissionTracker".
# Changed: log_name is set and LoggerOutput imported (the page leaves both out); "Your code
# here" is a 50 ms CPU loop.
# ruff: noqa: E501 (the original's long lines)
import logging
import time

from codecarbon import EmissionsTracker
from codecarbon.output import LoggerOutput

log_name = "codecarbon_emissions"

# Create a dedicated logger (log name can be the CodeCarbon project name for example)
_logger = logging.getLogger(log_name)

# Add a handler, see Python logging for various handlers (here a local file named after log_name)
_channel = logging.FileHandler(log_name + ".log")
_logger.addHandler(_channel)

# Set logging level from DEBUG to CRITICAL (typically INFO)
# This level can be used in the logging process to filter emissions messages
_logger.setLevel(logging.INFO)

# Create a CodeCarbon LoggerOutput with the logger, specifying the logging level to be used for emissions data messages
my_logger = LoggerOutput(_logger, logging.INFO)

# %%
tracker = EmissionsTracker(save_to_logger=True, logging_logger=my_logger)
tracker.start()
# Your code here
end = time.perf_counter() + 0.05
while time.perf_counter() < end:
    pass
emissions: float = tracker.stop()
