"""The sampling Meter from Python: traces, statistics, fork."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

import carbonfast as cf
from tests.fakes.powercap import FakePowercap

np = pytest.importorskip("numpy")


def _drive(fake: FakePowercap, zone: str, watts: float, seconds: float) -> None:
    """Advances a fake counter as a `watts` load would, in 1 ms steps, in place.

    Fixed-width pwrite at offset 0: the reader never sees a truncated file.
    """
    fd = os.open(fake.path(zone), os.O_WRONLY)
    try:
        value = fake.get(zone)
        start = time.monotonic()
        while (now := time.monotonic()) - start < seconds:
            os.pwrite(fd, f"{value + int(watts * (now - start) * 1e6):020d}\n".encode(), 0)
            time.sleep(0.001)
    finally:
        os.close(fd)


def test_a_trace_follows_a_known_power_profile(fake: FakePowercap) -> None:
    fake.write("intel-rapl:0", "energy_uj", f"{0:020d}\n")
    meter = cf.Meter(fake.root, sample_hz=200)
    _drive(fake, "intel-rapl:0", 40.0, 0.6)
    trace = meter.trace()
    assert len(trace) > 80
    assert list(trace.energy_j) == meter.domain_names
    assert np.all(np.diff(trace.t_s) > 0)
    power = trace.power_w["package-0"]
    assert np.isnan(power[0])
    # Intervals inside the 0.6 s load: 40 W, give or take the writer's 1 ms steps.
    inside = power[1:][(trace.t_s[1:] > trace.t_s[0] + 0.05) & (trace.t_s[1:] < trace.t_s[0] + 0.5)]
    assert len(inside) > 40
    assert np.median(inside) == pytest.approx(40.0, rel=0.1)
    # The cumulative energy column agrees with the counter itself.
    assert trace.energy_j["package-0"][-1] <= fake.get("intel-rapl:0") / 1e6
    assert not trace.energy_j["package-0"].flags.writeable  # a view, not a copy


def test_sampler_statistics(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root, sample_hz=500, capacity=20)
    time.sleep(0.2)
    stats = meter.sampler_stats
    assert stats.sampling and stats.period_s == pytest.approx(0.002)
    assert stats.samples > 50
    assert stats.dropped >= stats.samples - 21
    assert len(meter.trace()) == 20
    assert 0 <= stats.cpu_s < 0.2


def test_without_sampling_there_is_no_trace(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root)
    with pytest.raises(ValueError, match="sample_hz"):
        meter.trace()


@pytest.mark.parametrize("hz", [0, -5, 1e6])
def test_bad_rates_are_refused(fake: FakePowercap, hz: float) -> None:
    with pytest.raises(ValueError, match="sample_hz"):
        cf.Meter(fake.root, sample_hz=hz)


def test_windows_on_a_sampling_meter_stay_exact(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root, sample_hz=1000)
    with meter.measure() as m:
        fake.add("intel-rapl:0", 1_234_567)
    assert m.domains["package-0"] == 1.234567


def test_the_sampler_restarts_in_a_forked_child(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root, sample_hz=200)
    time.sleep(0.05)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            before = meter.sampler_stats.samples
            time.sleep(0.2)
            with meter.measure() as m:
                fake.add("intel-rapl:0", 2_000_000)
            result = {"grew": meter.sampler_stats.samples - before, "energy": m.energy_j}
            os.write(w, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    child = json.loads(os.read(r, 1000))
    os.close(r)
    assert child["grew"] > 10, child
    assert child["energy"] == 2.0
    # The parent's sampler carries on too.
    before = meter.sampler_stats.samples
    time.sleep(0.1)
    assert meter.sampler_stats.samples > before + 5


def test_threads_and_a_sampler_share_one_meter(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root, sample_hz=1000)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(300):
                with meter.measure() as m:
                    pass
                assert m.energy_j == 0.0
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert not any(meter._native.wraps())
