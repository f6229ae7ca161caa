"""A GPU that stops answering (Xid 79: reads that never return) or is lost mid-run costs its own
domain only: the command's exit code comes back at once, the CPU and RAM figures are kept,
and a note names the GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import carbonfast as cf
from tests.fakes.nvml import H100, FakeNvml
from tests.fakes.powercap import FakePowercap

CLI = [sys.executable, "-m", "carbonfast.cli"]
HUNG = H100.strip() + " energy_hang_after_ms=800\n"
LOST = H100.strip() + " lost_after_ms=800\n"


def run_with(tmp_path: Path, state: str) -> tuple[subprocess.CompletedProcess[str], float, dict]:
    gpu = FakeNvml(tmp_path / "nvml", state)
    report = tmp_path / "r.json"
    env = {
        **os.environ,
        "CARBONFAST_POWERCAP_ROOT": str(tmp_path / "no-rapl"),
        "CARBONFAST_GPU": "on",
        "CARBONFAST_NVML_LIBRARY": str(gpu.library),
    }
    ended = tmp_path / "ended"
    command = f"sleep 2; date +%s.%N > {ended}; exit 7"
    done = subprocess.run(
        [*CLI, "run", "--json", str(report), "--", "sh", "-c", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    after_end = time.time() - float(ended.read_text())
    return done, after_end, json.loads(report.read_text())


@pytest.mark.parametrize("state", [HUNG, LOST], ids=["energy-read-hangs", "gpu-is-lost"])
def test_a_gpu_failing_mid_run_costs_only_its_own_domain(tmp_path: Path, state: str) -> None:
    done, after_end, data = run_with(tmp_path, state)
    assert done.returncode == 7, done.stderr
    assert after_end < 10, f"the exit code came back {after_end:.1f} s after the command's end"
    domains = data["domains"]
    assert domains["gpu-0"]["energy_j"] is None
    assert domains["cpu"]["energy_j"] > 0 and domains["ram"]["energy_j"] > 0
    assert data["energy_j"] == pytest.approx(
        domains["cpu"]["energy_j"] + domains["ram"]["energy_j"]
    )
    assert data["partial"] is True
    assert any(n.startswith("gpu-0: could not be read") for n in data["notes"]), data["notes"]


def test_a_window_around_a_hung_gpu_closes_in_bounded_time_and_keeps_the_cpu(
    fake: FakePowercap, tmp_path: Path
) -> None:
    gpu = FakeNvml(tmp_path / "nvml", HUNG)
    meter = cf.Meter(fake.root, gpu=True, nvml_library=gpu.library)
    with meter.measure() as before:
        fake.add("intel-rapl:0", 1_000_000)
    assert before.domains["gpu-0"] is not None
    time.sleep(1.0)  # the GPU's reads hang from 0.8 s after it was opened
    t0 = time.monotonic()
    for _ in range(3):
        with meter.measure() as m:
            fake.add("intel-rapl:0", 2_000_000)
            fake.add("intel-rapl:0:1", 1_000_000)
        assert m.domains["gpu-0"] is None
        assert m.domains["package-0"] == 2.0
        assert m.energy_j == pytest.approx(2.0 + m.domains["dram-0"])
        assert m.partial
    assert time.monotonic() - t0 < 3 * 3.0 + 2
    # Once known to hang, a window no longer waits for it at all.
    t1 = time.monotonic()
    with meter.measure() as m:
        pass
    assert time.monotonic() - t1 < 0.5
    assert any("did not answer" in n for n in m.notes), m.notes


def test_one_gpu_lost_of_two_keeps_the_other(fake: FakePowercap, tmp_path: Path) -> None:
    two = "gpu 0 name=A uuid=GPU-a energy_mj={e}\ngpu 1 name=B uuid=GPU-b energy_mj={e} {lost}\n"
    gpu = FakeNvml(tmp_path / "nvml", two.format(e=1000, lost=""))
    meter = cf.Meter(fake.root, gpu=True, nvml_library=gpu.library)
    with meter.measure() as m:
        gpu.set(two.format(e=6000, lost="energy=gpu_lost"))
    assert m.domains["gpu-0"] == 5.0
    assert m.domains["gpu-1"] is None
    assert "gpu-1" not in m.total_domains and "gpu-0" in m.total_domains
    assert any(n.startswith("gpu-1: could not be read") and "lost" in n for n in m.notes)
    record = m.record().to_dict()
    assert record["domains"]["gpu-1"]["energy_j"] is None
    assert record["partial"] is True
    # It recovers: a window wholly after the failure counts it again.
    gpu.set(two.format(e=6000, lost=""))
    with meter.measure() as m:
        gpu.set(two.format(e=7000, lost=""))
    assert m.domains["gpu-1"] == 1.0


def test_a_powercap_zone_that_fails_mid_run_costs_only_its_own_domain(
    fake: FakePowercap,
) -> None:
    meter = cf.Meter(fake.root)
    with meter.measure() as m:
        fake.add("intel-rapl:0", 3_000_000)
        fake.add("intel-rapl:0:1", 1_000_000)
        # The DRAM zone answers garbage for a while (a driver's error), then recovers.
        good = fake.get("intel-rapl:0:1")
        fake.write("intel-rapl:0:1", "energy_uj", "EIO\n")
        meter._native.read()
        fake.set("intel-rapl:0:1", good)
    assert m.domains["package-0"] == 3.0
    assert m.domains["dram-0"] is None
    assert m.energy_j == 3.0  # the package alone, not a DRAM of 0 J
    assert m.partial
    assert any(n.startswith("dram-0: could not be read") for n in m.notes), m.notes


@pytest.mark.parametrize(
    "state",
    ["init=segv\n" + H100, "init=exit\n" + H100, H100.strip() + " segv_after_ms=800\n"],
    ids=["init-segfaults", "init-calls-exit", "a-read-segfaults-mid-run"],
)
def test_a_vendor_library_that_crashes_never_costs_the_command_or_its_code(
    tmp_path: Path, state: str
) -> None:
    gpu = FakeNvml(tmp_path / "nvml", state)
    ran = tmp_path / "ran"
    env = {
        **os.environ,
        "CARBONFAST_POWERCAP_ROOT": str(tmp_path / "no-rapl"),
        "CARBONFAST_GPU": "on",
        "CARBONFAST_NVML_LIBRARY": str(gpu.library),
    }
    t0 = time.monotonic()
    done = subprocess.run(
        [*CLI, "run", "--", "sh", "-c", f"sleep 1.5; echo once >> {ran}; exit 5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 5, done.stderr
    assert ran.read_text() == "once\n", "the command ran once, and only once"
    assert "carbonfast: warning: the measurement process" in done.stderr, done.stderr
    assert time.monotonic() - t0 < 30


def test_a_shutdown_that_crashes_at_exit_does_not_take_the_exit_code(tmp_path: Path) -> None:
    gpu = FakeNvml(tmp_path / "nvml", "shutdown_segv=1\n" + H100)
    env = {
        **os.environ,
        "CARBONFAST_POWERCAP_ROOT": str(tmp_path / "no-rapl"),
        "CARBONFAST_GPU": "on",
        "CARBONFAST_NVML_LIBRARY": str(gpu.library),
    }
    done = subprocess.run(
        [*CLI, "run", "--", "sh", "-c", "exit 5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 5, done.stderr


@pytest.mark.parametrize("reads", [0, 1, 3])
def test_an_amd_gpu_lost_while_it_is_probed_does_not_stop_the_command(
    tmp_path: Path, reads: int
) -> None:
    from tests.fakes.amdsmi import FakeAmdSmi

    gpu = FakeAmdSmi(tmp_path / "amdsmi", f"gpu 0 power_w=50 lost_after={reads}\n")
    ran = tmp_path / "ran"
    env = {
        **os.environ,
        "CARBONFAST_POWERCAP_ROOT": str(tmp_path / "no-rapl"),
        "CARBONFAST_GPU": "on",
        "CARBONFAST_AMDSMI_LIBRARY": str(gpu.library),
    }
    done = subprocess.run(
        [*CLI, "run", "--", "sh", "-c", f"touch {ran}; exit 4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 4, done.stderr
    assert ran.exists()
