# examples/multithread.py (CodeCarbon's repository).
# Changed: the threads sleep 0.3, 0.6 and 0.9 s rather than 1 to 3 s at random, so that no two
# trackers stop together: CodeCarbon's CSV output has no lock, and two of its trackers that
# stop at once can lose a row or interleave two.
import threading
import time

from codecarbon import OfflineEmissionsTracker


def tracker_example(occurrence):
    """
    This function will do nothing during (occurrence * delay) seconds.
    """
    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA",
        measure_power_secs=30,
        project_name="ultra_secret",
    )

    tracker.start()
    try:
        delay = 0.3  # Seconds
        for _ in range(occurrence):
            time.sleep(delay)
    finally:
        tracker.stop()


if __name__ == "__main__":
    threads = []
    for occurrence in range(1, 4):
        t = threading.Thread(target=tracker_example, args=(occurrence,))
        threads.append(t)
        t.start()

    for t in threads:
        t.join()
