"""hwmon through the whole stack: `carbonfast run` on fake trees measures AMD GPUs, Intel GPU
counters and ACPI power meters to within 2% of the declared W x t, makes the total of the most
complete reading, and counts nothing twice; `carbonfast info` shows each sensor with its kind,
path and, where it cannot be read, the fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import carbonfast as cf
from carbonfast.info import format_info
from tests.fakes.hwmon import CounterWriter, FakeHwmon, write
from tests.fakes.powercap import FakePowercap

# The command measured: long enough that a writer held up for a few ms under load moves its
# counter's edges by well under 1% of the work.
WORK = "import time; time.sleep(2.0)"
TOLERANCE = 0.02


@pytest.fixture
def hwmon(tmp_path: Path) -> FakeHwmon:
    return FakeHwmon(tmp_path / "sys")


def _run(
    tmp_path: Path,
    hwmon: FakeHwmon,
    powercap: Path | None = None,
    *flags: str,
    gpu: bool = True,
    csv_path: Path | None = None,
    attribute: str | None = None,
) -> dict[str, Any]:
    """`carbonfast run --json` of WORK, with hwmon (and powercap) at the fakes; the report."""
    report = tmp_path / "run.json"
    env = {
        **os.environ,
        "CARBONFAST_HWMON_ROOT": str(hwmon.root),
        "CARBONFAST_POWERCAP_ROOT": str(powercap or tmp_path / "no-rapl"),
        "CARBONFAST_GPU": "on" if gpu else "off",
        # No GPU library is found, whatever the machine has: only hwmon measures GPUs.
        "CARBONFAST_NVML_LIBRARY": str(tmp_path / "no-libnvidia-ml.so.1"),
        "CARBONFAST_AMDSMI_LIBRARY": str(tmp_path / "no-libamd_smi.so"),
    }
    cmd = [sys.executable, "-m", "carbonfast.cli", *flags, "run", "--quiet"]
    if csv_path is not None:
        cmd += ["--csv", str(csv_path)]
    if attribute is not None:
        cmd += ["--attribute", attribute]
    cmd.append("--json")
    out = subprocess.run(
        [*cmd, str(report), "--", sys.executable, "-c", WORK],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def _close(joules: float, watts: float, seconds: float) -> bool:
    return abs(joules - watts * seconds) <= TOLERANCE * watts * seconds


def _energy(data: dict[str, Any], name: str) -> float:
    return float(data["domains"][name]["energy_j"])


def test_run_measures_an_amd_gpu_at_150_w(tmp_path: Path, hwmon: FakeHwmon) -> None:
    hwmon.amdgpu("0000:03:00.0", 150.0, product="AMD Instinct MI210")
    data = _run(tmp_path, hwmon, None, "--no-estimate")
    t = data["duration_s"]
    assert t > 2.0
    gpu = data["domains"]["gpu-0000:03:00.0"]
    assert gpu["kind"] == "gpu" and gpu["estimated"] is False
    assert _close(gpu["energy_j"], 150.0, t), (gpu, t)
    assert _close(data["energy_j"], 150.0, t), (data["energy_j"], t)
    assert any("integrated from power readings" in n for n in data["notes"])


def test_a_power_reading_past_what_the_gpu_can_draw_is_not_integrated(
    tmp_path: Path, hwmon: FakeHwmon
) -> None:
    """A driver's garbage (here 4.3 GW, an all-ones 32-bit value in mW read as µW x 1000) for
    a tenth of a second would add 430 MJ; it is held at the reading before and noted."""
    hw = hwmon.amdgpu("0000:03:00.0", 150.0)
    meter = cf.Meter(tmp_path / "no-rapl", hwmon_root=hwmon.root, gpu=True, estimate=False)
    with meter.measure() as m:
        time.sleep(0.2)
        write(hw / "power1_average", f"{(2**32 - 1) * 1000 * 1000}\n")
        time.sleep(0.1)
        write(hw / "power1_average", "150000000\n")
        time.sleep(0.2)
    gpu = m.domains["gpu-0000:03:00.0"]
    assert gpu == pytest.approx(150.0 * m.duration_s, rel=0.02)
    [note] = [n for n in m.notes if "above what the hardware can draw" in n]
    assert note.startswith("gpu-0000:03:00.0:")


def test_run_measures_an_intel_gpu_counter_moving_at_40_w(tmp_path: Path, hwmon: FakeHwmon) -> None:
    hw = hwmon.intel_gpu("0000:03:00.0", {"card": 5_000_000, "pkg": 3_000_000})
    with CounterWriter({hw / "energy1_input": 40.0, hw / "energy2_input": 30.0}):
        data = _run(tmp_path, hwmon, None, "--no-estimate")
    t = data["duration_s"]
    card, pkg = _energy(data, "gpu-0000:03:00.0"), _energy(data, "gpu-0000:03:00.0-pkg")
    assert data["domains"]["gpu-0000:03:00.0"]["kind"] == "gpu"
    assert data["domains"]["gpu-0000:03:00.0-pkg"]["kind"] == "part"
    assert _close(card, 40.0, t), (card, t)
    assert _close(pkg, 30.0, t), (pkg, t)
    # The package is inside the card: reported beside it, not added.
    assert data["energy_j"] == pytest.approx(card)


def test_with_a_power_meter_the_total_is_the_meter_alone(
    tmp_path: Path, hwmon: FakeHwmon, fake: FakePowercap
) -> None:
    """A server with RAPL, an AMD GPU, an Intel GPU and an ACPI power meter: the meter covers
    the whole machine, so it alone is the total and the rest are reported beside it."""
    hwmon.power_meter("ACPI000D:00", 400.0)
    hwmon.amdgpu("0000:03:00.0", 150.0)
    xe = hwmon.intel_gpu("0000:04:00.0", {"card": 0})
    package = fake.path("intel-rapl:0")
    with CounterWriter({xe / "energy1_input": 40.0, package: 60.0}):
        data = _run(tmp_path, hwmon, fake.root)
    t = data["duration_s"]
    domains = data["domains"]
    assert domains["platform-0"]["kind"] == "platform"
    assert _close(_energy(data, "platform-0"), 400.0, t)
    assert _close(_energy(data, "gpu-0000:03:00.0"), 150.0, t)
    assert _close(_energy(data, "gpu-0000:04:00.0"), 40.0, t)
    assert _close(_energy(data, "package-0"), 60.0, t)
    assert data["estimated"] is False
    # Not 400 + 150 + 40 + 60: the meter alone.
    assert data["energy_j"] == pytest.approx(_energy(data, "platform-0"))
    assert _close(data["energy_j"], 400.0, t)


def test_the_csv_under_a_power_meter_holds_the_gpus_energy_and_the_meters_total(
    tmp_path: Path, hwmon: FakeHwmon
) -> None:
    """An ACPI power meter of the whole machine (400 W) beside an AMD GPU (150 W): the CSV's
    gpu_energy is what the GPU measured, energy_consumed the meter's, and the CPU and the RAM,
    which nothing measured, are empty cells, not 0."""
    import csv

    hwmon.power_meter("ACPI000D:00", 400.0)
    hwmon.amdgpu("0000:03:00.0", 150.0)
    emissions = tmp_path / "e.csv"
    data = _run(tmp_path, hwmon, None, "--no-estimate", csv_path=emissions, attribute="off")
    [row] = list(csv.DictReader(emissions.open()))
    assert row["tracking_mode"] == "machine"
    t = float(row["duration"])
    assert t == pytest.approx(data["duration_s"])
    kwh = 3.6e6
    assert float(row["gpu_energy"]) * kwh == pytest.approx(150.0 * t, rel=0.03)
    assert float(row["gpu_power"]) == pytest.approx(150.0, rel=0.03)
    assert float(row["energy_consumed"]) * kwh == pytest.approx(400.0 * t, rel=0.03)
    for column in ("cpu_energy", "cpu_power", "ram_energy", "ram_power"):
        assert row[column] == "", (column, row[column])
    assert data["domains"]["gpu-0000:03:00.0"]["part"] == "gpu"
    assert data["domains"]["platform-0"]["part"] is None


def test_amd_energy_is_not_counted_twice_beside_rapl(
    tmp_path: Path, hwmon: FakeHwmon, fake: FakePowercap
) -> None:
    """amd_energy reads the same registers as RAPL's packages: with RAPL readable it is left
    out (with a note), so 80 W of package is 80 W, not 160."""
    amd = hwmon.amd_energy(2, [7_000_000])
    counters = {fake.path("intel-rapl:0"): 80.0, amd / "energy3_input": 80.0}
    with CounterWriter(counters):
        data = _run(tmp_path, hwmon, fake.root, "--no-estimate")
    t = data["duration_s"]
    assert sorted(data["domains"]) == ["core-0", "dram-0", "package-0"]
    assert _close(data["energy_j"], 80.0, t), (data["energy_j"], t)
    assert any("amd_energy" in n and "counted once" in n for n in data["notes"])


def test_amd_energy_measures_the_sockets_where_rapl_is_missing(
    tmp_path: Path, hwmon: FakeHwmon
) -> None:
    amd = hwmon.amd_energy(2, [7_000_000, 9_000_000])
    with CounterWriter({amd / "energy3_input": 80.0, amd / "energy4_input": 70.0}):
        data = _run(tmp_path, hwmon, None, "--no-estimate")
    t = data["duration_s"]
    assert {n: d["kind"] for n, d in data["domains"].items()} == {
        "package-0": "package",
        "package-1": "package",
    }
    assert _close(data["energy_j"], 150.0, t), (data["energy_j"], t)


def test_a_jetson_is_measured_by_its_module_input_rail(tmp_path: Path, hwmon: FakeHwmon) -> None:
    # 5.0 V x 1.2 A = 6 W in, of which 5.0 V x 0.4 A = 2 W to the CPU, GPU and CV rail.
    hwmon.ina3221("1-0040", [("VDD_IN", 5_000, 1_200), ("VDD_CPU_GPU_CV", 5_000, 400)])
    data = _run(tmp_path, hwmon)
    t = data["duration_s"]
    assert data["domains"]["vdd_in"]["kind"] == "platform"
    assert data["domains"]["vdd_cpu_gpu_cv"]["kind"] == "part"
    assert _close(_energy(data, "vdd_cpu_gpu_cv"), 2.0, t)
    # No estimate beside the platform rail: it covers the board.
    assert set(data["domains"]) == {"vdd_in", "vdd_cpu_gpu_cv"}
    assert _close(data["energy_j"], 6.0, t), (data["energy_j"], t)


def test_grace_hopper_modules_are_the_total(tmp_path: Path, hwmon: FakeHwmon) -> None:
    hwmon.power_meter("ACPI000D:00", 650.0, "Module Power Socket 0")
    hwmon.power_meter("ACPI000D:01", 200.0, "Grace Power Socket 0")
    hwmon.power_meter("ACPI000D:02", 150.0, "CPU Power Socket 0")
    hwmon.power_meter("ACPI000D:03", 25.0, "SysIO Power Socket 0")
    data = _run(tmp_path, hwmon)
    t = data["duration_s"]
    kinds = {n: d["kind"] for n, d in data["domains"].items()}
    assert kinds == {
        "module-0": "module",
        "package-0": "package",
        "core-0": "core",
        "sysio-0": "part",
    }
    assert _close(data["energy_j"], 650.0, t), (data["energy_j"], t)


def test_info_lists_hwmon_sensors_with_kind_path_and_role(hwmon: FakeHwmon, tmp_path: Path) -> None:
    hwmon.power_meter("ACPI000D:00", 400.0)
    hwmon.intel_gpu("0000:03:00.0", {"card": 1, "pkg": 1})
    psu = hwmon.device("platform/corsair-psu.0", "corsairpsu")
    (psu / "power1_input").write_text("300000000\n")
    data = cf.info(tmp_path / "no-rapl", hwmon_root=hwmon.root, gpu=True)
    [source] = [s for s in data["sources"] if s["name"] == "hwmon"]
    assert source["root"] == str(hwmon.root)
    got = [(d["name"], d["kind"], d["counts_in_total"]) for d in source["domains"]]
    assert got == [
        ("platform-0", "platform", True),
        ("gpu-0000:03:00.0", "gpu", False),
        ("gpu-0000:03:00.0-pkg", "part", False),
    ]
    assert source["domains"][0]["path"] == str(hwmon.root / "hwmon0/device/power1_average")
    assert source["domains"][1]["path"] == str(hwmon.root / "hwmon1/energy1_input")
    assert any("hwmon2 (corsairpsu)" in n and "not counted" in n for n in source["notes"])
    assert data["total_sums"] == ["platform-0"]
    assert [d["reading"] for d in source["domains"]] == ["power", "energy", "energy"]
    assert [d["label"] for d in source["domains"][1:]] == ["card", "pkg"]
    text = format_info(data)
    assert "platform-0" in text and "integrated from power; in total" in text
    assert "covered by platform-0, not added" in text
    assert "inside another domain, not added" in text


def _info_text_without_read_permission(root: Path, hwmon_root: Path) -> str:
    """`carbonfast info` in a process that file permissions apply to (as root, without the
    capabilities that bypass them)."""
    env = {**os.environ, "CARBONFAST_HWMON_ROOT": str(hwmon_root)}
    cmd = [sys.executable, "-m", "carbonfast.cli", "--powercap-root", str(root), "info"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop the DAC capabilities")
        caps = "-dac_override,-dac_read_search"
        cmd = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0 and "setpriv" in out.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_info_gives_the_group_fix_for_an_unreadable_sensor(
    hwmon: FakeHwmon, tmp_path: Path
) -> None:
    """amd_energy's counters are root-only (CVE-2020-12912): info says how to open them to a
    group, even where no RAPL path is there to list problems under."""
    amd = hwmon.amd_energy(0, [7_000_000])
    (amd / "energy1_input").chmod(0o000)
    text = _info_text_without_read_permission(tmp_path / "no-rapl", hwmon.root)
    file = amd / "energy1_input"
    assert f"permission denied: {file}" in text
    assert f"sudo chgrp power {file} && sudo chmod g+r {file}" in text
    assert 'ATTR{name}=="amd_energy"' in text
    assert "setcap" not in text and "a+r" not in text and "o+r" not in text
