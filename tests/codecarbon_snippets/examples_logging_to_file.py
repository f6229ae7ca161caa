# examples/logging_to_file.py (CodeCarbon's repository).
# Changed: train_model is a 50 ms CPU loop instead of a hundred years of sleep.
import logging
import sys
import time

from codecarbon import OfflineEmissionsTracker


def train_model():
    """
    This function will do nothing during (occurrence * delay) seconds.
    The Code Carbon API will be called every (measure_power_secs * api_call_interval) seconds.
    """
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass


if __name__ == "__main__":
    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA",
        measure_power_secs=30,
        project_name="ultra_secret",
    )

    # Clear CodeCarbon handlers
    logger = logging.getLogger("codecarbon")
    while logger.hasHandlers():
        logger.removeHandler(logger.handlers[0])

    # Define a log formatter
    formatter = logging.Formatter("%(asctime)s - %(name)-12s: %(levelname)-8s %(message)s")

    # Create file handler which logs debug messages
    fh = logging.FileHandler("codecarbon.log")
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(formatter)
    logger.addHandler(fh)

    consoleHandler = logging.StreamHandler(sys.stdout)
    consoleHandler.setFormatter(formatter)
    consoleHandler.setLevel(logging.WARNING)
    logger.addHandler(consoleHandler)

    logger.debug("GO!")

    tracker.start()
    try:
        model = train_model()
    finally:
        tracker.stop()
