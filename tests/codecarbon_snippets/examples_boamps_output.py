# examples/boamps_output.py (CodeCarbon's repository, the version with OutputMethod.BOAMPS).
# Changed: the multiprocessing.Pool is a thread pool (functions defined in an exec'd snippet
# cannot be pickled) and each task makes 20_000 turns instead of 5 x 1_000_000.
import multiprocessing.pool

from codecarbon import EmissionsTracker, OutputMethod


def cpu_load_task(number):
    a = 0
    for i in range(1):
        for i in range(int(2e4)):
            a = a + i**number


tracker = EmissionsTracker(
    measure_power_secs=10,
    force_mode_cpu_load=False,
    log_level="debug",
    output_methods=[OutputMethod.BOAMPS],
)
try:
    tracker.start()
    with multiprocessing.pool.ThreadPool() as pool:
        # call the function for each item in parallel
        pool.map(cpu_load_task, [i for i in range(4)])
finally:
    emissions = tracker.stop()

print(f"Emissions: {emissions} kg")
print(f"BoAmps report written to ./boamps_report_{tracker.run_id}.json")
