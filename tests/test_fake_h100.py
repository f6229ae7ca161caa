"""The fake NVML's H100 model (tests/fakes/fake_nvml.c): a counter that refreshes every ~100 ms,
reads that take 3.3 ms and power that lags the load, all against the model's exact truth.

Timing is asserted only where the fake controls it (a read lasts at least its delay, refresh
instants come from the model), never as an upper bound a descheduled test process could break."""

from __future__ import annotations

import ctypes
import math
import time
from pathlib import Path

import pytest

from tests.fakes.nvml import H100, FakeNvml

MS = 1_000_000
S = 1_000_000_000
IDLE_W, BUSY_W, TAU_S = 70.0, 700.0, 0.020
PERIOD_NS = 100 * MS
FI_POWER_INSTANT = 186


class FieldValue(ctypes.Structure):
    class Value(ctypes.Union):
        _fields_ = (("d", ctypes.c_double), ("ui", ctypes.c_uint), ("ull", ctypes.c_ulonglong))

    _fields_ = (
        ("fieldId", ctypes.c_uint),
        ("scopeId", ctypes.c_uint),
        ("timestamp", ctypes.c_longlong),
        ("latencyUsec", ctypes.c_longlong),
        ("valueType", ctypes.c_int),
        ("nvmlReturn", ctypes.c_int),
        ("value", Value),
    )


class Gpu:
    """GPU 0 of a fake, read through the NVML calls a meter makes, and the model's truth."""

    def __init__(self, tmp_path: Path, keys: str = "") -> None:
        self.fake = FakeNvml(tmp_path / "nvml", H100.rstrip("\n") + " " + keys + "\n")
        lib = self.lib = self.fake.cdll
        assert lib.nvmlInit_v2() == 0
        self.handle = ctypes.c_void_p()
        assert lib.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(self.handle)) == 0
        self.t0 = self.fake.t0_ns()
        assert 0 < self.t0 <= time.monotonic_ns()

    def energy_mj(self) -> int:
        v = ctypes.c_ulonglong()
        assert self.lib.nvmlDeviceGetTotalEnergyConsumption(self.handle, ctypes.byref(v)) == 0
        return v.value

    def power_mw(self) -> int:
        v = ctypes.c_uint()
        assert self.lib.nvmlDeviceGetPowerUsage(self.handle, ctypes.byref(v)) == 0
        return v.value

    def instant_mw(self) -> int:
        f = FieldValue(fieldId=FI_POWER_INSTANT)
        assert self.lib.nvmlDeviceGetFieldValues(self.handle, 1, ctypes.byref(f)) == 0
        assert f.nvmlReturn == 0
        return f.value.ui

    def refresh(self, k: int) -> int:
        return self.fake.refresh_ns(k)

    def refresh_before(self, t: int) -> int:
        """k of the latest refresh at or before t (0: t0, before the first)."""
        k = max(0, (t - self.t0) // PERIOD_NS + 1)
        while k > 0 and self.refresh(k) > t:
            k -= 1
        return k

    def refreshes(self, since: int, until: int) -> range:
        """The k whose refresh was the latest one at some instant of [since, until]."""
        return range(self.refresh_before(since), self.refresh_before(until) + 1)

    def counter_at(self, k: int, base: int = 0) -> int:
        return base + math.floor(self.fake.true_energy_j(self.refresh(k)) * 1000)

    def mean_mw(self, k: int) -> float:
        """The mean power over refresh interval k, in mW."""
        a, b = self.refresh(k - 1), self.refresh(k)
        e = self.fake.true_energy_j(b) - self.fake.true_energy_j(a)
        return e / ((b - a) / S) * 1000


def timed(read):
    before = time.monotonic_ns()
    value = read()
    return before, value, time.monotonic_ns()


def poll(read, seconds: float, pause: float = 0.0) -> list[tuple[int, int, int]]:
    end = time.monotonic_ns() + int(seconds * S)
    out = []
    while time.monotonic_ns() < end:
        out.append(timed(read))
        if pause:
            time.sleep(pause)
    return out


def matching_refresh(gpu: Gpu, value: int, ks: range, base: int = 0) -> int:
    """The refresh among ks whose counter value the read returned; fails if none."""
    counters = {gpu.counter_at(k, base): k for k in ks}
    assert value in counters, f"{value} is no refresh's value: {counters}"
    return counters[value]


def lagged_power(t_ns: float, start_ns: float, seconds: float) -> float:
    """P(t) with no noise for one kernel of `seconds` from start_ns on a device idle before."""
    x = (t_ns - start_ns) / S
    if x <= 0:
        return IDLE_W
    if x <= seconds:
        s = -math.expm1(-x / TAU_S)
    else:
        s = -math.expm1(-seconds / TAU_S) * math.exp(-(x - seconds) / TAU_S)
    return IDLE_W + (BUSY_W - IDLE_W) * s


def test_the_counter_changes_only_at_refreshes_about_every_100_ms(tmp_path: Path) -> None:
    gpu = Gpu(tmp_path)
    reads = poll(gpu.energy_mj, 1.1)
    seen = [matching_refresh(gpu, v, gpu.refreshes(before, after)) for before, v, after in reads]
    # Between two refreshes the value stands still; across ~1.1 s it moved several times.
    assert seen == sorted(seen)
    assert len(set(seen)) >= 3, seen
    gaps_ms = [(gpu.refresh(k) - gpu.refresh(k - 1)) / MS for k in range(1, 60)]
    assert all(96 <= g <= 104 for g in gaps_ms), gaps_ms
    assert max(gaps_ms) - min(gaps_ms) > 1, "the refresh jitters"
    assert 99 < sum(gaps_ms) / len(gaps_ms) < 101


def test_a_read_takes_its_delay_and_latches_where_told(tmp_path: Path) -> None:
    gpu = Gpu(tmp_path)
    for _ in range(5):
        before, _, after = timed(gpu.energy_mj)
        assert after - before >= 3.3 * MS
    # A delay longer than a refresh period, so that entry and exit see different refreshes.
    delay = 150 * MS
    for latch in ("start", "end"):
        gpu.fake.set(H100.rstrip("\n") + f" delay_us={delay // 1000} latch={latch}\n")
        for _ in range(3):
            before, v, after = timed(gpu.energy_mj)
            assert after - before >= delay
            entry = gpu.refreshes(before, after - delay)
            exit_ = gpu.refreshes(before + delay, after)
            matching_refresh(gpu, v, entry if latch == "start" else exit_)


def test_at_each_refresh_the_counter_is_the_floor_of_the_true_energy(tmp_path: Path) -> None:
    base = 5_000_000_000
    gpu = Gpu(tmp_path, f"energy_mj={base}")
    time.sleep(0.15)
    gpu.fake.enqueue(0.25)
    reads = poll(gpu.energy_mj, 0.7)
    seen = {matching_refresh(gpu, v, gpu.refreshes(b, a), base) for b, v, a in reads}
    assert len(seen) >= 3, seen
    for k in sorted(seen):
        assert gpu.counter_at(k, base) == base + math.floor(
            gpu.fake.true_energy_j(gpu.fake.refresh_ns(k)) * 1000
        )


def test_without_load_the_energy_rate_is_idle_within_noise(tmp_path: Path) -> None:
    gpu = Gpu(tmp_path)
    first = timed(gpu.energy_mj)
    time.sleep(0.5)
    last = timed(gpu.energy_mj)
    k1 = matching_refresh(gpu, first[1], gpu.refreshes(first[0], first[2]))
    k2 = matching_refresh(gpu, last[1], gpu.refreshes(last[0], last[2]))
    assert k2 - k1 >= 3
    rate = (last[1] - first[1]) / ((gpu.refresh(k2) - gpu.refresh(k1)) / S) / 1000
    assert 0.9 * IDLE_W - 0.1 < rate < 1.1 * IDLE_W + 0.1
    now = time.monotonic_ns()
    assert 0.9 * IDLE_W <= gpu.fake.true_energy_j(now) / ((now - gpu.t0) / S) <= 1.1 * IDLE_W
    # The noise holds for each 50 ms segment and differs between them.
    segments = []
    for k in range(8):
        watts = {gpu.fake.power_w(gpu.t0 + k * 50 * MS + dt * MS) for dt in (0, 13, 37, 49)}
        assert len(watts) == 1, watts
        segments.append(watts.pop())
    assert all(0.9 * IDLE_W <= w <= 1.1 * IDLE_W for w in segments), segments
    assert len(set(segments)) == len(segments)


def test_power_follows_the_load_with_its_lag(tmp_path: Path) -> None:
    gpu = Gpu(tmp_path, "noise_pct=0")
    time.sleep(0.15)
    before = time.monotonic_ns()
    gpu.fake.enqueue(0.5)
    after = time.monotonic_ns()
    gpu.fake.sync()
    assert time.monotonic_ns() >= before + 0.5 * S
    time.sleep(0.2)
    # Where the kernel started, from the rise: P = idle + (busy - idle) (1 - e^(-x/tau)).
    t = before + 30 * MS
    rise = (gpu.fake.power_w(t) - IDLE_W) / (BUSY_W - IDLE_W)
    start = t + TAU_S * math.log1p(-rise) * S
    assert before <= start <= after
    for offset_ms in (-50, 5, 20, 60, 300, 505, 520, 560, 650):
        t = round(start) + offset_ms * MS
        assert gpu.fake.power_w(t) == pytest.approx(lagged_power(t, start, 0.5), abs=1e-4)
    assert gpu.fake.power_w(round(start) + 499 * MS) > 0.99 * BUSY_W
    assert gpu.fake.power_w(round(start) + 700 * MS) < IDLE_W + 0.1


def test_energy_is_conserved(tmp_path: Path) -> None:
    gpu = Gpu(tmp_path, "noise_pct=0")
    # Idle for over a second: the history is split into checkpoints and stays exact.
    for _ in range(12):
        time.sleep(0.1)
        t = time.monotonic_ns()
        assert gpu.fake.true_energy_j(t) == pytest.approx(IDLE_W * (t - gpu.t0) / S, rel=1e-9)
    t = gpu.t0 + 150 * MS
    assert gpu.fake.true_energy_j(t) == pytest.approx(IDLE_W * 0.15, rel=1e-9)
    t1 = time.monotonic_ns()
    before = time.monotonic_ns()
    gpu.fake.enqueue(0.1)
    gpu.fake.enqueue(0.1)  # joins the first: one stretch of 0.2 s
    gpu.fake.sync()
    assert time.monotonic_ns() >= before + 0.2 * S
    time.sleep(0.3)
    gpu.fake.enqueue(0.05)  # a new stretch after the power decayed
    gpu.fake.sync()
    time.sleep(0.4)
    t2 = time.monotonic_ns()
    e = gpu.fake.true_energy_j(t2) - gpu.fake.true_energy_j(t1)
    truth = IDLE_W * (t2 - t1) / S + (BUSY_W - IDLE_W) * 0.25
    assert e == pytest.approx(truth, rel=1e-6)


def test_reported_power_is_the_mean_of_the_last_refresh_interval(tmp_path: Path) -> None:
    gpu = Gpu(tmp_path)
    time.sleep(0.15)
    before = time.monotonic_ns()
    gpu.fake.enqueue(0.3)
    read = timed(gpu.power_mw)
    if gpu.refresh_before(before) == gpu.refresh_before(read[2]):
        # No refresh since the kernel started: the reported power still shows idle.
        assert read[1] <= 1.1 * IDLE_W * 1000 + 1
    usage = poll(gpu.power_mw, 0.6, pause=0.002)
    ks = set()
    for b, mw, a in usage:
        means = {k: gpu.mean_mw(k) for k in gpu.refreshes(b, a)}
        k = [k for k, m in means.items() if abs(mw - m) <= 1]
        assert k, f"{mw} mW is no refresh interval's mean: {means}"
        ks.add(k[0])
    assert len(ks) >= 3, ks
    gpu.fake.enqueue(0.3)  # while power rises, P at the refresh differs from P now
    instant = poll(gpu.instant_mw, 0.3, pause=0.002)
    for b, mw, a in instant:
        at = [gpu.fake.power_w(gpu.refresh(k)) * 1000 for k in gpu.refreshes(b, a)]
        assert any(abs(mw - w) <= 1 for w in at), (mw, at)
