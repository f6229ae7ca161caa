# examples/pue.py (CodeCarbon's repository).
# Changed: train_model works 50 ms in a CPU loop instead of sleeping 30 s.
import time

from codecarbon import track_emissions


@track_emissions(
    measure_power_secs=3,
    pue=2,
)
def train_model():
    """
    This function will do nothing.
    """
    print("30 seconds before ending script...")
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass


if __name__ == "__main__":
    model = train_model()
