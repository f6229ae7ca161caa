"""Short work on a GPU whose counter behaves like an H100's: it refreshes every ~100 ms with
jitter, one read takes 3.3 ms, and power lags the load and decays after it (tests/fakes/
fake_nvml.c, model=h100). The work is declared to the fake (a kernel of d seconds queued on the
device), so the true energy of any interval is known exactly, whatever the scheduler does to
this process.

The CPU and memory are estimated at fixed powers, as on a cloud VM without RAPL: they move on
every read, which is what hid the GPU's 100 ms steps from the benchmark's calibration before.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import carbonfast as cf
from carbonfast.bench import engine
from tests.fakes.nvml import H100, FakeNvml

# The estimated CPU and memory, watts.
CPU_W, RAM_W = 5.0, 3.0


@pytest.fixture
def gpu(tmp_path: Path) -> FakeNvml:
    return FakeNvml(tmp_path / "nvml", H100)


@pytest.fixture
def meter(gpu: FakeNvml, tmp_path: Path) -> cf.Meter:
    return cf.Meter(
        tmp_path / "no-powercap",
        gpu=True,
        nvml_library=gpu.library,
        cpu_power_w=CPU_W,
        ram_power_w=RAM_W,
    )


def burst(gpu: FakeNvml, seconds: float) -> Callable[[], None]:
    def run() -> None:
        gpu.enqueue(seconds)
        gpu.sync()

    return run


def truth_per_call(gpu: FakeNvml, call: Callable[[], None], seconds: float = 1.5) -> float:
    """Energy per call of a long run of calls back to back, GPU by the fake's exact integral and
    the estimated CPU and memory at their fixed powers, taken in steady state: the device's
    lagging power is settled at both ends, as between two counter refreshes on the H100."""
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        call()
    t0, n = time.monotonic_ns(), 0
    while time.monotonic_ns() - t0 < seconds * 1e9:
        call()
        n += 1
    t1 = time.monotonic_ns()
    return (gpu.true_energy_j(t1) - gpu.true_energy_j(t0) + (CPU_W + RAM_W) * (t1 - t0) * 1e-9) / n


def test_the_benchmark_paces_itself_on_the_gpu_counter(meter: cf.Meter) -> None:
    reader = engine.MeterReader(meter)
    assert meter.domains[reader._pacing].kind == "gpu"
    assert reader.period == pytest.approx(0.1, rel=0.1)


@pytest.mark.parametrize("seconds", [0.0015, 0.02, 0.2], ids=["1.5ms", "20ms", "200ms"])
def test_bench_energy_per_call_is_within_3_percent_and_its_ci_holds_the_truth(
    gpu: FakeNvml, meter: cf.Meter, seconds: float
) -> None:
    call = burst(gpu, seconds)
    before = truth_per_call(gpu, call)
    raw = engine.run({"burst": call}, reader=engine.MeterReader(meter), rounds=4)
    after = truth_per_call(gpu, call)
    [v] = engine.summarise(raw, ["burst"])
    truth = (before + after) / 2
    assert v.joules_per_call == pytest.approx(truth, rel=0.03), (before, after, v)
    # Each sample against the exact energy of its own span: the counter's edges are right.
    exact = []
    samples = zip(raw["samples"]["burst"], raw["spans"]["burst"], strict=True)
    for (joules, _, calls), (t1, t2) in samples:
        e = gpu.true_energy_j(round(t2 * 1e9)) - gpu.true_energy_j(round(t1 * 1e9))
        e += (CPU_W + RAM_W) * (t2 - t1)
        assert joules == pytest.approx(e, rel=0.01)
        assert t2 - t1 >= 25 * 0.097  # 25 refreshes at the least
        exact.append(e / calls)
    lo, hi = v.joules_per_call_ci
    assert lo <= statistics.fmean(exact) <= hi, (v.joules_per_call_ci, exact)


def errors_of_back_to_back_windows(
    gpu: FakeNvml, meter: cf.Meter, seconds: float
) -> tuple[list[float], int, int]:
    """Windows around one burst each, back to back after a warm-up, as a loop of steps runs:
    their relative errors against the exact energy of each window, how many ranges hold it,
    and how many say 0 J with no range."""
    windows = []
    start = time.monotonic()
    while time.monotonic() - start < 0.3 + max(1.0, 15 * seconds):
        with meter.measure(sync=gpu.sync) as m:
            gpu.enqueue(seconds)
        if time.monotonic() - start > 0.3:
            windows.append(m)
    errors, covered, bare_zero = [], 0, 0
    for m in windows:
        truth = gpu.true_energy_j(m._end.t_ns) - gpu.true_energy_j(m._start.t_ns)
        d = m.to_dict()["domains"]["gpu-0"]
        lo, hi = d["energy_range_j"]
        assert d.get("interpolated"), d  # the GPU's refreshes are logged back to each start
        errors.append(d["energy_j"] / truth - 1)
        covered += lo <= truth <= hi
        bare_zero += d["energy_j"] == 0 and lo == hi
    return errors, covered, bare_zero


@pytest.mark.parametrize(
    ("seconds", "max_mean", "max_rms"),
    [(0.0015, 0.10, 0.30), (0.02, 0.05, 0.15), (0.15, 0.03, 0.08), (0.2, 0.03, 0.08)],
    ids=["1.5ms", "20ms", "150ms", "200ms"],
)
def test_back_to_back_windows_are_right_on_average_with_ranges_that_hold(
    gpu: FakeNvml, meter: cf.Meter, seconds: float, max_mean: float, max_rms: float
) -> None:
    errors, covered, bare_zero = errors_of_back_to_back_windows(gpu, meter, seconds)
    n = len(errors)
    mean = statistics.fmean(errors)
    rms = math.sqrt(statistics.fmean(e * e for e in errors))
    assert n >= 5
    assert abs(mean) <= max_mean and rms <= max_rms, (mean, rms, n)
    assert covered >= 0.9 * n, f"{covered} of {n} ranges hold the truth"
    assert bare_zero == 0


def test_a_short_kernel_after_idle_time_gets_a_range_that_holds_the_truth(
    gpu: FakeNvml, meter: cf.Meter
) -> None:
    windows = []
    for _ in range(12):
        time.sleep(0.25)
        with meter.measure(sync=gpu.sync) as m:
            gpu.enqueue(0.0015)
        windows.append(m)
    covered = 0
    for m in windows:
        truth = gpu.true_energy_j(m._end.t_ns) - gpu.true_energy_j(m._start.t_ns)
        d = m.to_dict()["domains"]["gpu-0"]
        lo, hi = d["energy_range_j"]
        assert d["interpolated"] and d["energy_j"] > 0 and hi > lo
        covered += lo <= truth <= hi
    assert covered >= 0.9 * len(windows)
    assert any("interpolated between the refreshes" in n for n in windows[0].notes)


def test_a_slow_counter_costs_the_edges_no_read(gpu: FakeNvml, meter: cf.Meter) -> None:
    # Edges take the GPU's value from the poller's log: a window opened and closed at once
    # does not wait for two 3.3 ms reads. (A loose bound: a busy machine may be slow.)
    t0 = time.perf_counter()
    for _ in range(20):
        with meter.measure():
            pass
    assert (time.perf_counter() - t0) / 20 < 0.003


def test_a_forked_child_measures_the_gpu_with_a_poller_of_its_own(
    gpu: FakeNvml, meter: cf.Meter
) -> None:
    with meter.measure(sync=gpu.sync):
        gpu.enqueue(0.01)  # the parent's poller is running
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            with meter.measure(sync=gpu.sync) as m:
                gpu.enqueue(0.01)
            code = 0 if m.domains["gpu-0"] > 0 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_long_window_begun_after_idle_time_is_right(gpu: FakeNvml, meter: cf.Meter) -> None:
    # The poller stops half a second after the last edge; both edges of this window come when
    # it has stopped, and the 2 s of load between them see no edge at all.
    with meter.measure():
        pass
    time.sleep(1.0)
    with meter.measure() as m:
        gpu.enqueue(2.0)
        gpu.sync()
    truth = gpu.true_energy_j(m._end.t_ns) - gpu.true_energy_j(m._start.t_ns)
    d = m.to_dict()["domains"]["gpu-0"]
    lo, hi = d["energy_range_j"]
    # A read at each edge is at most one refresh off: ~75 J at full load.
    assert d["energy_j"] == pytest.approx(truth, abs=80.0)
    assert lo <= truth <= hi
