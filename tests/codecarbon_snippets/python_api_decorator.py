# docs/tutorials/python-api.md, "Online Mode > Decorator", with the call that runs it.
# Changed: the training is a 50 ms CPU loop that returns how many turns it made.
import time

from codecarbon import track_emissions


@track_emissions
def training_loop():
    # Compute intensive training code goes here
    end = time.perf_counter() + 0.05
    turns = 0
    while time.perf_counter() < end:
        turns += 1
    return turns


result = training_loop()
