# examples/command_line_tool.py (CodeCarbon's repository).
# Changed: the command is a Python one-liner instead of WhisperX.
import subprocess
import sys

from codecarbon import EmissionsTracker

COMMAND = [sys.executable, "-c", "print(sum(i * i for i in range(100_000)))"]


def run_command_line_tool(command):
    result = subprocess.run(command, capture_output=True, text=True)
    print(result.stdout)
    if result.stderr:
        print(f"Error: {result.stderr}")


if __name__ == "__main__":
    tracker = EmissionsTracker()
    tracker.start()
    try:
        run_command_line_tool(COMMAND)
    except Exception as e:
        print(f"An error occurred: {e}")
    finally:
        tracker.stop()

    emissions: float = tracker.stop()
    print(f"Emissions: {emissions * 1000:.2f} g.co2.eq")
