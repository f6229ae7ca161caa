# examples/water_consumption.py (CodeCarbon's repository).
# Changed: the CPU load lasts 50 ms instead of 5 s; main() returns its tracker.
"""
Demonstrates the water consumption estimation.
"""

import time

from codecarbon import EmissionsTracker


def cpu_load(seconds: float) -> None:
    end = time.time() + seconds
    x = 0
    while time.time() < end:
        x = (x + 1) % 1_000_000


def main():
    # Set wue to the Water Usage Effectiveness of your data center to also
    # count its cooling water; leave it at 0 outside a data center.
    tracker = EmissionsTracker(save_to_file=False, wue=0)

    tracker.start()
    try:
        cpu_load(0.05)
    finally:
        emissions = tracker.stop()

    data = tracker.final_emissions_data
    print(f"emissions: {emissions * 1000:.6f} g CO2eq")
    print(f"energy_consumed: {data.energy_consumed:.6f} kWh")
    print(f"water_consumed: {data.water_consumed:.6f} L")
    if data.energy_consumed:
        ratio = data.water_consumed / data.energy_consumed
        print(f"water intensity: {ratio:.2f} L/kWh in {data.country_name}")
    return tracker


if __name__ == "__main__":
    tracker = main()
