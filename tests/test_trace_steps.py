"""Traces of counters that refresh in steps show power, not steps.

A GPU drawing a steady 700 W whose NVML counter refreshes every 100 ms (the fake's H100 model,
reads of 3.3 ms) read at 100 Hz shows the same value for ten samples and then a whole refresh's
energy at once: a trace of the readings is 0 W nine times in ten, with peaks of 7,000 W and
more. A RAPL-like counter refreshing every millisecond, traced at 1 kHz, aliases the same way
where the sampler and the refreshes keep the same pace: 0 W, then two refreshes' worth. The trace
must interpolate between the timestamped refreshes, as short windows do."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import carbonfast as cf
from tests.fakes.nvml import H100, FakeNvml

np = pytest.importorskip("numpy")

WATTS = 700.0
# A steady 700 W: no load to follow, no noise; the refreshes keep their jitter (+-2 ms).
STEADY = H100.rstrip("\n") + " idle_mw=700000 busy_mw=700000 noise_pct=0\n"
S = 1_000_000_000


def steady_gpu(tmp_path: Path) -> FakeNvml:
    return FakeNvml(tmp_path / "nvml", STEADY)


def out_of_range(power: list[float]) -> list[float]:
    return [round(p) for p in power if not 0.5 * WATTS <= p <= 1.5 * WATTS]


def test_a_100_hz_trace_of_an_h100_counter_shows_its_power(tmp_path: Path) -> None:
    gpu = steady_gpu(tmp_path)
    meter = cf.Meter(
        tmp_path / "no-powercap", gpu=True, nvml_library=gpu.library, estimate=False,
        sample_hz=100,
    )  # fmt: skip
    assert meter.domain_names == ["gpu-0"]
    time.sleep(1.3)
    trace = meter.trace()
    first_refresh_s = gpu.refresh_ns(1) / S
    t, power = trace.t_s, trace.power_w["gpu-0"]
    after = [k for k in range(1, len(t)) if t[k - 1] >= first_refresh_s]
    assert len(after) >= 80, len(after)
    known = [float(power[k]) for k in after if not math.isnan(power[k])]
    # The samples after the last refresh seen are unknown until the next one comes: at most a
    # refresh period and a read of them.
    assert len(known) >= len(after) - 15, (len(known), len(after))
    assert out_of_range(known) == [], (min(known), max(known))
    # Nothing is ever 0 W for want of a refresh: an unknown sample is NaN.
    assert all(p != 0 for p in power[1:])


@pytest.mark.parametrize("hz", [100, 10])
def test_carbonfast_run_stores_an_h100_trace_of_its_power(tmp_path: Path, hz: int) -> None:
    gpu = steady_gpu(tmp_path)
    history = tmp_path / "history.sqlite"
    env = {
        **os.environ,
        "CARBONFAST_POWERCAP_ROOT": str(tmp_path / "no-powercap"),
        "CARBONFAST_GPU": "on",
        "CARBONFAST_NVML_LIBRARY": str(gpu.library),
        "CARBONFAST_HISTORY": str(history),
    }
    done = subprocess.run(
        [sys.executable, "-m", "carbonfast.cli", "run", "--no-estimate", "--sample-hz", str(hz),
         "--json", str(tmp_path / "run.json"), "--", "sleep", "1.5"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    from carbonfast.report.history import History

    _, trace = History(history).get(1)
    assert trace is not None
    t, power = trace["t_s"], trace["power_w"]["gpu-0"]
    # The meter's first refresh comes within a period of its start (the fake's model starts
    # with the child's first NVML call); the samples before it are left out.
    after = [k for k in range(1, len(t)) if t[k - 1] >= t[0] + 0.11]
    assert len(after) >= 0.6 * hz, (len(after), t)
    known = [power[k] for k in after if power[k] is not None]
    assert len(known) >= 0.9 * len(after), power
    assert out_of_range(known) == [], power
    # What the run reports agrees with the trace.
    energy = json.loads((tmp_path / "run.json").read_text())["domains"]["gpu-0"]["energy_j"]
    duration = json.loads((tmp_path / "run.json").read_text())["duration_s"]
    assert energy / duration == pytest.approx(WATTS, rel=0.05)


CHILD = """
import json, os, sys, time
import carbonfast as cf
meter = cf.Meter(os.environ["CARBONFAST_POWERCAP_ROOT"], sample_hz=1000, estimate=False)
time.sleep(1.0)
trace = meter.trace()
name = meter.domain_names[0]
print(json.dumps({"names": meter.domain_names, "t": trace.t_s.tolist(),
                  "p": [None if p != p else p for p in trace.power_w[name].tolist()]}))
"""


def test_a_1_khz_trace_of_a_rapl_counter_does_not_alias(tmp_path: Path) -> None:
    """A package refreshing every millisecond at a steady 50 W (tests/fakes/slow_rapl.c with no
    power for CPU time), traced at 1 kHz."""
    from tests.fakes.slow_rapl import slow_rapl_env

    env = slow_rapl_env(tmp_path / "sys", delay_us=0)
    env.update(FAKE_RAPL_IDLE_W="50", FAKE_RAPL_CPU_W="0", CARBONFAST_GPU="off")
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["names"] == ["package-0"]
    power = data["p"][10:]  # after the first refreshes
    known = [p for p in power if p is not None]
    assert len(power) >= 500 and len(known) >= len(power) - 5, len(known)
    # Read as it is, the counter shows 0 W between refreshes and two or more refreshes' worth
    # at once. A sample whose reads were late on a busy machine (the sampler or the fake's
    # refresh thread descheduled) may place a refresh a little off: not by a whole one.
    assert min(known) > 0.1 * 50 and max(known) < 2 * 50, (min(known), max(known))
    close = [p for p in known if 0.75 * 50 <= p <= 1.25 * 50]
    assert len(close) >= 0.8 * len(known), sorted(known)[:: max(1, len(known) // 40)]
    assert sorted(known)[len(known) // 2] == pytest.approx(50, rel=0.05)
