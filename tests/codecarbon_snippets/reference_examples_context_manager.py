# docs/reference/examples.md, "Using the Context Manager".
# Changed: the Keras model and its fit() are a 50 ms CPU loop.
import time

from codecarbon import EmissionsTracker

with EmissionsTracker() as tracker:
    end = time.perf_counter() + 0.05
    while time.perf_counter() < end:
        pass

# Display the emissions data
print(f"\nCarbon emissions from computation: {tracker.final_emissions * 1000:.4f} g CO2eq")
print("\nDetailed emissions data:", tracker.final_emissions_data)
