# docs/tutorials/first-tracking.md, steps 2 and 3 (the pip install of step 1 is left out).
# Changed: the loop counts to 200_000 rather than 10_000_000, and runs 50 ms at least.
import time

import pandas as pd
from codecarbon import EmissionsTracker

with EmissionsTracker(project_name="my-first-tracking") as tracker:
    # Simulate some computation
    total = 0
    for i in range(200_000):
        total += i
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass

print(f"Computation result: {total}")

# %%
df = pd.read_csv("emissions.csv")
shown = df[
    [
        "project_name",
        "duration",
        "emissions",
        "emissions_rate",
        "cpu_power",
        "ram_power",
        "energy_consumed",
    ]
]

# %%
print(f"Total emissions: {tracker.final_emissions * 1000:.4f} g CO2eq")
print(f"Duration: {tracker.final_emissions_data.duration:.2f} seconds")
print(f"Energy consumed: {tracker.final_emissions_data.energy_consumed:.6f} kWh")
