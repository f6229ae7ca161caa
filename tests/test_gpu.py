"""GPUs through NVML, on the fake libnvidia-ml: beside the CPU domains, in the total and the
JSON, and a missing or broken library never costs the CPU measurement."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

import carbonfast as cf
from tests.fakes.nvml import FakeNvml
from tests.fakes.powercap import FakePowercap

TWO_GPUS = (
    "gpu 0 name=H100 uuid=GPU-aaaa energy_mj={e0}\ngpu 1 name=H100 uuid=GPU-bbbb energy_mj={e1}\n"
)


@pytest.fixture
def nvml(tmp_path: Path) -> FakeNvml:
    return FakeNvml(tmp_path / "nvml", TWO_GPUS.format(e0=1000, e1=2000))


def test_gpus_are_measured_beside_the_cpu_and_counted_in_the_total(
    fake: FakePowercap, nvml: FakeNvml
) -> None:
    meter = cf.Meter(fake.root, gpu=True, nvml_library=nvml.library)
    assert meter.domain_names == ["package-0", "core-0", "dram-0", "gpu-0", "gpu-1"]
    gpu0 = meter.domains[3]
    assert (gpu0.kind, gpu0.reading, gpu0.label) == ("gpu", "energy", "H100, GPU-aaaa, cuda:0")
    with meter.measure() as m:
        fake.add("intel-rapl:0", 10_000_000)
        nvml.set(TWO_GPUS.format(e0=1000 + 150_000, e1=2000 + 50_500))
    assert m.domains["gpu-0"] == 150.0 and m.domains["gpu-1"] == 50.5
    assert m.energy_j == 10.0 + 150.0 + 50.5
    d = m.to_dict()["domains"]
    assert d["gpu-1"] == {"energy_j": 50.5, "kind": "gpu", "estimated": False, "part": "gpu"}


def test_run_reports_each_gpu_in_the_json(fake: FakePowercap, nvml: FakeNvml, tmp_path) -> None:
    report = tmp_path / "r.json"
    state = nvml.library.with_name("nvml_state")
    bump = f"open({str(state)!r}, 'w').write({TWO_GPUS.format(e0=4000, e1=2000)!r})"
    env = {
        **os.environ,
        "CARBONFAST_POWERCAP_ROOT": str(fake.root),
        "CARBONFAST_GPU": "on",
        "CARBONFAST_NVML_LIBRARY": str(nvml.library),
    }
    cli = [sys.executable, "-m", "carbonfast.cli", "run", "--json", str(report), "--"]
    out = subprocess.run(
        [*cli, sys.executable, "-c", bump],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(report.read_text())
    assert data["domains"]["gpu-0"] == {
        "energy_j": 3.0,
        "kind": "gpu",
        "estimated": False,
        "part": "gpu",
    }
    assert data["domains"]["gpu-1"]["energy_j"] == 0.0
    assert data["energy_j"] == 3.0
    assert "gpu-0" in out.stderr


def test_info_says_a_gpu_counter_never_wraps(fake: FakePowercap, nvml: FakeNvml) -> None:
    """NVML's 64-bit millijoule counter would take millennia to wrap: info says "never", not
    a 19-digit number of joules; the RAPL counter beside it keeps its range."""
    from carbonfast.info import format_info

    data = cf.info(fake.root, gpu=True, nvml_library=nvml.library)
    domains = {d["name"]: d for s in data["sources"] for d in s["domains"]}
    assert domains["gpu-0"]["range_j"] is None
    assert domains["package-0"]["range_j"] == pytest.approx(262_143.328851)
    json.dumps(data, allow_nan=False)
    lines = {line.split()[0]: line for line in format_info(data).splitlines() if line[:2] == "  "}
    assert "(never wraps; in total)" in lines["gpu-0"]
    assert "(wraps every 262143 J; in total)" in lines["package-0"]


def test_a_missing_library_leaves_the_cpu_measured_and_says_why(
    fake: FakePowercap, tmp_path: Path
) -> None:
    meter = cf.Meter(fake.root, gpu=True, nvml_library=tmp_path / "nowhere" / "libnvidia-ml.so.1")
    with meter.measure() as m:
        fake.add("intel-rapl:0", 1_000_000)
    assert m.energy_j == 1.0
    assert any("cannot load NVML" in n for n in m.notes)
    assert [p.source for p in meter.problems] == ["nvml"]


def test_a_broken_driver_leaves_the_cpu_measured_and_says_why(
    fake: FakePowercap, tmp_path: Path
) -> None:
    broken = FakeNvml(tmp_path / "nvml", "init=driver_not_loaded\n")
    meter = cf.Meter(fake.root, gpu=True, nvml_library=broken.library)
    with meter.measure() as m:
        fake.add("intel-rapl:0", 1_000_000)
    assert m.energy_j == 1.0
    assert any("NVML failed to start" in n and "Driver Not Loaded" in n for n in m.notes)


def test_no_driver_at_all_is_not_a_problem(fake: FakePowercap, monkeypatch) -> None:
    monkeypatch.delenv("CARBONFAST_NVML_LIBRARY", raising=False)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/nonexistent")
    meter = cf.Meter(fake.root, gpu=True)
    if any(d.kind == "gpu" for d in meter.domains):
        pytest.skip("this machine has an NVIDIA driver")
    assert meter.problems == []
    nvml = next(s for s in meter._native.sources if s.name == "nvml")
    assert any("no NVIDIA driver" in n for n in nvml.notes)


def test_power_only_gpus_are_integrated_and_say_so(fake: FakePowercap, tmp_path: Path) -> None:
    nvml = FakeNvml(tmp_path / "nvml", "gpu 0 uuid=GPU-1 energy=not_supported power_mw=300000\n")
    meter = cf.Meter(fake.root, gpu=True, nvml_library=nvml.library)
    with meter.measure() as m:
        time.sleep(0.2)
    assert m.domains["gpu-0"] == pytest.approx(300 * m.duration_s, rel=1e-3)
    assert any("integrated from power" in n for n in m.notes)


def test_a_window_shorter_than_the_counters_update_period_is_interpolated(
    fake: FakePowercap, tmp_path: Path
) -> None:
    # 10 mJ every 50 ms: 0.2 W.
    nvml = FakeNvml(tmp_path / "nvml", "gpu 0 uuid=GPU-1 energy_mj=0 tick_ms=50 tick_mj=10\n")
    meter = cf.Meter(fake.root, gpu=True, nvml_library=nvml.library)
    assert meter.domains[-1].update_period_s == pytest.approx(0.05, rel=0.3)
    with meter.measure() as m:
        pass
    [note] = [n for n in m.notes if n.startswith("gpu-0: the window")]
    assert "interpolated between the refreshes around it" in note
    assert m.interpolated == ["gpu-0"]
    gpu = m.to_dict()["domains"]["gpu-0"]
    lo, hi = gpu["energy_range_j"]
    truth = 0.2 * m.duration_s
    assert gpu["interpolated"] and gpu["energy_j"] > 0 and lo <= truth <= hi
    assert hi <= 0.02 + 1e-3  # at most the two refresh intervals around it


def test_sync_waits_for_the_device_at_both_edges(fake: FakePowercap, monkeypatch) -> None:
    calls: list[str] = []
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(synchronize=lambda: calls.append("sync"))
    monkeypatch.setitem(sys.modules, "torch", torch)
    meter = cf.Meter(fake.root)
    with meter.measure(sync="torch"):
        calls.append("work")
    assert calls == ["sync", "work", "sync"]

    @cf.measure(meter=meter, sync=lambda: calls.append("custom"))
    def step() -> None:
        calls.append("step")

    step()
    assert calls[-3:] == ["custom", "step", "custom"]
    with pytest.raises(ValueError, match="sync='tpu' is not valid"):
        cf.measure(sync="tpu")


def test_slow_gpu_reads_do_not_hold_up_a_window(fake: FakePowercap, tmp_path: Path) -> None:
    state = "gpu 0 uuid=GPU-1 energy_mj={e} delay_us=20000\n"
    nvml = FakeNvml(tmp_path / "nvml", state.format(e=1000))
    meter = cf.Meter(fake.root, gpu=True, nvml_library=nvml.library)
    t0 = time.perf_counter()
    with meter.measure() as m:
        opening = time.perf_counter() - t0
        fake.add("intel-rapl:0", 1_000_000)
        time.sleep(0.05)
        nvml.set(state.format(e=3000))
        t1 = time.perf_counter()
    closing = time.perf_counter() - t1
    # Each GPU read takes 20 ms; an edge that waited for one would take at least that.
    assert opening < 0.015, f"opening waited {opening * 1e3:.1f} ms for the GPU"
    assert closing < 0.015, f"closing waited {closing * 1e3:.1f} ms for the GPU"
    assert m.domains == {
        "package-0": 1.0,
        "core-0": 0.0,
        "dram-0": 0.0,
        "gpu-0": 2.0,
    }
    assert any("background thread" in n for n in m.notes)
