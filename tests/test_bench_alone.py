"""cf.bench charges a call alone, never its harness's reads, whatever a read costs.

The counter is a RAPL package behind a slow file (tests/fakes/slow_rapl.c, in a child process
through LD_PRELOAD): its power is 10 W + 40 W per busy CPU of the benchmark process, refreshed
every millisecond on the counter's own clock, and each read of energy_uj costs 100 us spent busy
on the reading thread, as a counter behind a FUSE file, a slow hwmon sensor or an ACPI power
meter evaluated by the kernel does. Such a read draws the full 50 W: reads that the harness
left in a sample would be charged at the call's own power, or above it.

The truth is taken from what the child declares and measures, not from the scheduler: a busy
call runs for a declared CPU time (tests.fakes.counter.busy), and each call is timed inside
itself: its wall time and this thread's CPU time, which the fake charges at 10 W and 40 W. The
truth of a sample is the calls it held, so that a figure and its truth are taken under the same
load: on a busy machine the scheduler stretches some calls by milliseconds, and the bare call
timed apart (as `timeit` does, reported beside) can differ from the benchmarked one by 50%.
On a quiet machine the truth is (10 + 40) W x the bare call's time for a busy call, and about
10 W x its time for a sleep.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.slow_rapl import slow_rapl_env

ROOT = Path(__file__).resolve().parent.parent
READ_COST_US = 100
# How far a figure may lie from its truth: the 5%, quiet machine or busy.
TOLERANCE = 0.05


def bench_on_slow_counter(tmp_path: Path, variants: dict[str, list[Any]]) -> dict[str, Any]:
    env = slow_rapl_env(tmp_path / "sys", delay_us=READ_COST_US)
    r = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "bench_alone_worker.py"), json.dumps(variants)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    assert out.pop("_update_period_s") == pytest.approx(0.001, rel=0.2)
    return out


def test_a_busy_call_is_charged_its_own_time_and_energy_on_a_counter_with_slow_reads(
    tmp_path: Path,
) -> None:
    found = bench_on_slow_counter(tmp_path, {"400us": ["busy", 400e-6], "50us": ["busy", 50e-6]})
    for name, v in found.items():
        # (10 + 40) W x the call's time; the share of it that the scheduler gave to other
        # processes draws 10 W only.
        assert v["own_j"] <= 50.0 * v["own_s"] * 1.001, name
        assert v["own_j"] >= 10.0 * v["own_s"] + 40.0 * float(name.removesuffix("us")) * 1e-6
        assert v["time_ratio"] == pytest.approx(1.0, abs=TOLERANCE), (name, v)
        assert v["energy_ratio"] == pytest.approx(1.0, abs=TOLERANCE), (name, v)


def test_a_sleep_and_a_spin_of_equal_time_are_told_apart_on_a_counter_with_slow_reads(
    tmp_path: Path,
) -> None:
    found = bench_on_slow_counter(tmp_path, {"spin": ["busy", 400e-6], "sleep": ["sleep", 400e-6]})
    spin, sleep = found["spin"], found["sleep"]
    # A sleep draws 10 W and 40 W for what its own system calls run; a spin draws 50 W while
    # it runs, 10 W while the scheduler runs others.
    assert sleep["bare_cpu_s"] < 0.25 * sleep["bare_s"]
    assert 50.0 * spin["bare_cpu_s"] <= spin["bare_j"] <= 50.0 * spin["bare_s"] * 1.001
    # A sleep's own energy is a fifth of its looks' (100 us reads at 50 W beside 400 us at
    # 10 W): an error in what is taken off for them weighs five times more on it.
    assert sleep["energy_ratio"] == pytest.approx(1.0, abs=3 * TOLERANCE), sleep
    assert spin["energy_ratio"] == pytest.approx(1.0, abs=TOLERANCE), spin
    assert sleep["time_ratio"] == pytest.approx(1.0, abs=TOLERANCE), sleep
    assert spin["time_ratio"] == pytest.approx(1.0, abs=TOLERANCE), spin
    watts = {k: v["joules_per_call"] / v["seconds_per_call"] for k, v in found.items()}
    assert watts["spin"] > 2 * watts["sleep"]
