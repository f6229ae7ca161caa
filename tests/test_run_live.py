"""While a command runs: its CPU time shows in the estimate as it is used, not once it has
exited, and a run ends as soon as its command does."""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import carbonfast as cf
from carbonfast.report.console import LiveLine

# CPU seconds the busy grandchild burns, by its own clock, whatever the machine's load.
BURN_S = 1.0
# The grandchild burns BURN_S, says so, then waits for its stdin to close: it is still running
# (not reaped) when the test looks.
BURNER = (
    "import sys, time\n"
    f"while time.process_time() < {BURN_S}: pass\n"
    "print('burnt', flush=True)\n"
    "sys.stdin.read()\n"
)


def _start_burner() -> subprocess.Popen[str]:
    """sh, which stays as the parent, running Python: a grandchild of the test."""
    script = f'{shlex.quote(sys.executable)} -c "$BURNER"; true'
    return subprocess.Popen(
        ["sh", "-c", script],
        env={**os.environ, "BURNER": BURNER},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.close()
    assert child.wait(timeout=30) == 0


def _model(meter: cf.Meter) -> tuple[float, float, float]:
    """(idle W, full-load W, threads) of the cpu estimate, from the inputs it states."""
    inputs = dict(next(d for d in meter._native.domains if d.name == "cpu").inputs)
    return (
        float(inputs["idle_w"].split()[0]),
        float(inputs["full_load_w"].split()[0]),
        float(inputs["threads"].split()[0]),
    )


def _cpu_seconds(meter: cf.Meter, cpu_j: float, duration_s: float) -> float:
    """The CPU seconds the estimate saw, from its energy: E = idle * t + (full - idle) * cpu /
    threads."""
    idle, full, threads = _model(meter)
    return (cpu_j - idle * duration_s) * threads / (full - idle)


def _meter(tmp_path: Path, **kw: object) -> cf.Meter:
    # No RAPL: the cpu domain is the CPU-time model, relative to one thread so that one busy
    # CPU stands far above idle however many the machine has.
    return cf.Meter(tmp_path / "no-rapl", scope="process", cpu_threads=1, **kw)


def test_a_running_grandchilds_cpu_time_shows_in_the_window_and_the_trace(
    tmp_path: Path,
) -> None:
    meter = _meter(tmp_path, sample_hz=20)
    with meter.measure() as m:
        child = _start_burner()
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "burnt"
        burnt_at = time.monotonic()
        time.sleep(0.15)  # a few samples more, the grandchild still alive
        running = _cpu_seconds(meter, m.domains["cpu"], m.duration_s)
        trace = meter.trace()
        _finish(child)
    assert running > 0.8 * BURN_S, f"saw {running:.3f} CPU-s while it ran"

    # The trace saw it too: from the window's start to the last sample before the
    # grandchild said it was done.
    t0 = m._start.t_ns * 1e-9
    inside = [i for i, t in enumerate(trace.t_s) if t0 <= t <= burnt_at]
    assert len(inside) >= 2
    first, last = inside[0], inside[-1]
    traced = _cpu_seconds(
        meter,
        float(trace.energy_j["cpu"][last] - trace.energy_j["cpu"][first]),
        float(trace.t_s[last] - trace.t_s[first]),
    )
    assert traced > 0.6 * BURN_S, f"the trace saw {traced:.3f} CPU-s"

    # Once reaped, its time is counted once: not lost, not twice.
    done = _cpu_seconds(meter, m.domains["cpu"], m.duration_s)
    assert running <= done < BURN_S + 0.6, f"{running:.3f} then {done:.3f} CPU-s"


def test_the_live_line_shows_the_power_of_a_busy_grandchild(tmp_path: Path) -> None:
    meter = _meter(tmp_path)
    idle, full, threads = _model(meter)
    stream = io.StringIO()
    with meter.measure() as m:
        live = LiveLine(m, stream=stream, period_s=0.1)
        live.start()
        child = _start_burner()
        assert child.stdout is not None
        child.stdout.readline()
        live.stop()
        _finish(child)
    watts = [float(w) for w in re.findall(r"([\d.]+) W", stream.getvalue())]
    ram = m.domains["ram"] / m.duration_s
    # At least one update during the burn showed a good part of one busy CPU above idle.
    above_idle = max(watts) - idle - ram
    assert above_idle > 0.3 * (full - idle) / threads, (watts, idle, full, ram)


def test_run_exits_as_soon_as_its_command_does(tmp_path: Path) -> None:
    env = {**os.environ, "CARBONFAST_POWERCAP_ROOT": str(tmp_path / "no-rapl")}
    cmd = [sys.executable, "-m", "carbonfast.cli", "run", "--sample-hz", "1", "--quiet"]
    # A period of 1 s is not waited out at the end; Python's start-up is all there is. The
    # best of three, so that a moment of load on a shared machine does not count.
    best = float("inf")
    for _ in range(3):
        t = time.monotonic()
        subprocess.run([*cmd, "--", "true"], env=env, check=True)
        best = min(best, time.monotonic() - t)
        if best < 0.5:
            break
    assert best < 0.5, f"`carbonfast run --sample-hz 1 -- true` took {best:.2f} s"
