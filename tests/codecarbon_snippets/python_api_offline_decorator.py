# docs/tutorials/python-api.md, "Offline Mode > Decorator", with the call that runs it.
# Changed: the training is a 50 ms CPU loop.
import time

from codecarbon import track_emissions


@track_emissions(offline=True, country_iso_code="CAN")
def training_loop():
    # training code goes here
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass


training_loop()
