# examples/full_cpu.py (CodeCarbon's repository).
# Changed: 2 x 20_000 turns instead of 100 x 1_000_000.
from codecarbon import EmissionsTracker

a = 0
tracker = EmissionsTracker(measure_power_secs=100)
try:
    tracker.start()
    for i in range(2):
        for i in range(int(2e4)):
            a = a + i**5
finally:
    emissions: float = tracker.stop()

print(a)
print(f"Emissions: {emissions} kg")
