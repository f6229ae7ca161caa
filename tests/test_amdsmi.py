"""AMD GPUs through AMD SMI, on the fake libamd_smi: `carbonfast run` counts a GPU's energy across
its counter's wraps, `carbonfast info` shows the GPU, its library and the fix when access is
refused, and a GPU lost during a run is reported, never counted as garbage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import carbonfast as cf
from tests.fakes.amdsmi import FakeAmdSmi
from tests.fakes.powercap import FakePowercap

CLI = [sys.executable, "-m", "carbonfast.cli"]

# A counter of 2^32 counts of 0.005 uJ wraps every 21.5 J: at 40 W, every 0.54 s, so a run of
# a second and a half sees it wrap two or three times. The cap bounds a plausible step (80 W).
RESOLUTION_UJ = 0.005
RANGE_J = 2**32 * RESOLUTION_UJ * 1e-6
WRAPPING = (
    "gpu 0 name=MI300X uuid=aaaa1111-0000-1000-8000-000000000001 bdf=0000:03:00.0 "
    f"power_w=40 cap_w=40 resolution_uj={RESOLUTION_UJ} modulus={2**32}\n"
)


def env_for(tmp_path: Path, gpu: FakeAmdSmi, **extra: str) -> dict[str, str]:
    """The GPU alone: no RAPL (an empty powercap root), the fake AMD SMI."""
    (tmp_path / "no-rapl").mkdir(exist_ok=True)
    return {
        **os.environ,
        "CARBONFAST_POWERCAP_ROOT": str(tmp_path / "no-rapl"),
        "CARBONFAST_GPU": "on",
        "CARBONFAST_AMDSMI_LIBRARY": str(gpu.library),
        "CARBONFAST_HISTORY": "off",
        **extra,
    }


def run(
    tmp_path: Path, gpu: FakeAmdSmi, *command: str
) -> tuple[subprocess.CompletedProcess[str], dict]:
    report = tmp_path / "r.json"
    out = subprocess.run(
        [*CLI, "run", "--json", str(report), "--", *command],
        env=env_for(tmp_path, gpu),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return out, json.loads(report.read_text())


def test_run_counts_an_amd_gpus_energy_across_its_counters_wraps(tmp_path: Path) -> None:
    gpu = FakeAmdSmi(tmp_path / "amdsmi", WRAPPING)
    out, data = run(tmp_path, gpu, sys.executable, "-c", "import time; time.sleep(1.5)")
    assert out.returncode == 0, out.stderr
    energy = data["domains"]["gpu-amd-0"]
    assert energy["kind"] == "gpu" and energy["estimated"] is False
    truth = 40.0 * data["duration_s"]
    # Past two wraps of the counter, each counted: within 2% of power x time.
    assert truth > 2 * RANGE_J
    assert energy["energy_j"] == pytest.approx(truth, rel=0.02)
    assert "gpu-amd-0" in data["total_domains"]
    assert "gpu-amd-0" in out.stderr


def test_info_shows_the_amd_gpu_with_its_library(tmp_path: Path) -> None:
    gpu = FakeAmdSmi(tmp_path / "amdsmi", WRAPPING)
    env = env_for(tmp_path, gpu)
    out = subprocess.run([*CLI, "info", "--json"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    [source] = [s for s in data["sources"] if s["name"] == "amdsmi"]
    assert source["root"] == str(gpu.library)
    [domain] = source["domains"]
    assert (domain["name"], domain["kind"], domain["path"]) == (
        "gpu-amd-0",
        "gpu",
        str(gpu.library),
    )
    assert domain["counts_in_total"] and not domain["estimated"]
    # A 32-bit counter: info says when it wraps.
    assert domain["range_j"] == pytest.approx(RANGE_J)
    text = subprocess.run([*CLI, "info"], env=env, capture_output=True, text=True).stdout
    assert f"source amdsmi: {gpu.library}" in text
    [line] = [line for line in text.splitlines() if line.strip().startswith("gpu-amd-0")]
    assert "readable" in line and str(gpu.library) in line and "wraps every 21 J" in line


def test_info_gives_the_group_fix_when_amd_smi_is_refused(tmp_path: Path) -> None:
    gpu = FakeAmdSmi(tmp_path / "amdsmi", "init=no_perm\n" + WRAPPING)
    env = env_for(tmp_path, gpu)
    data = json.loads(
        subprocess.run([*CLI, "info", "--json"], env=env, capture_output=True, text=True).stdout
    )
    [problem] = [p for p in data["problems"] if p["source"] == "amdsmi"]
    assert problem["kind"] == "permission" and problem["path"] == "/dev/kfd"
    fix = "sudo usermod -aG render,video $USER"
    assert fix in problem["fix"] and "/dev/dri/renderD" in problem["fix"]
    assert "setcap" not in problem["fix"] and "chmod" not in problem["fix"]
    # No RAPL here either: the GPU's fix is still listed in the text.
    text = subprocess.run([*CLI, "info"], env=env, capture_output=True, text=True).stdout
    assert "not readable:" in text and fix in text


def test_an_amd_gpu_lost_during_the_run_is_reported_not_counted(tmp_path: Path) -> None:
    gpu = FakeAmdSmi(tmp_path / "amdsmi", WRAPPING)
    lost = WRAPPING.replace("\n", " energy=lost power=lost\n")
    lose = (
        f"import time; time.sleep(0.3); open({str(gpu.state_file)!r}, 'w').write({lost!r}); exit(3)"
    )
    out, data = run(tmp_path, gpu, sys.executable, "-c", lose)
    assert out.returncode == 3, out.stderr
    assert data["exit_code"] == 3
    # The command's time is known even where its energy is not.
    assert data["duration_s"] >= 0.3
    # The GPU is unknown, not a number made of a missing reading; the rest is kept.
    assert data["domains"]["gpu-amd-0"]["energy_j"] is None
    assert data["partial"] is True
    cpu_ram = [d["energy_j"] for n, d in data["domains"].items() if n != "gpu-amd-0"]
    assert data["energy_j"] == sum(cpu_ram) > 0
    [note] = [n for n in data["notes"] if "gpu-amd-0 is lost" in n]
    assert "Device Not found" in note and "amd-smi" in note


def test_a_meter_measures_amd_gpus_beside_the_cpu_with_their_notes(
    fake: FakePowercap, tmp_path: Path
) -> None:
    gpu = FakeAmdSmi(
        tmp_path / "amdsmi",
        "gpu 0 name=MI210 uuid=u-0 bdf=0000:c1:00.0 energy=not_supported power_w=120 cap_w=300\n",
    )
    meter = cf.Meter(fake.root, gpu=True, amdsmi_library=gpu.library)
    assert meter.domain_names[-1] == "gpu-amd-0"
    d = meter.domains[-1]
    assert (d.kind, d.reading, d.label) == ("gpu", "power", "MI210, u-0, 0000:c1:00.0, hip:0")
    with meter.measure() as m:
        fake.add("intel-rapl:0", 1_000_000)
        time.sleep(0.2)
    assert m.domains["package-0"] == 1.0
    assert m.domains["gpu-amd-0"] == pytest.approx(120 * m.duration_s, rel=1e-3)
    # AMD SMI's notes reach the measurement; NVML's "no driver" is no news on an AMD machine.
    assert any("gpu-amd-0 has no energy counter" in n for n in m.notes)
    assert not any("no NVIDIA driver" in n for n in m.notes)


@pytest.mark.parametrize("var", ["ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"])
def test_the_visible_devices_choose_the_gpus(
    fake: FakePowercap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    gpu = FakeAmdSmi(
        tmp_path / "amdsmi",
        "gpu 0 uuid=aaaa-1 bdf=0000:03:00.0 power_w=10\n"
        "gpu 1 name=MI100 uuid=bbbb-2 bdf=0000:83:00.0 power_w=20\n",
    )
    monkeypatch.delenv("ROCR_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("HIP_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv(var, "1")
    meter = cf.Meter(fake.root, gpu=True, amdsmi_library=gpu.library)
    gpus = [d for d in meter.domains if d.kind == "gpu"]
    assert [(d.name, d.label) for d in gpus] == [
        ("gpu-amd-1", "MI100, bbbb-2, 0000:83:00.0, hip:0")
    ]


def test_a_named_library_that_does_not_load_leaves_the_cpu_measured(
    fake: FakePowercap, tmp_path: Path
) -> None:
    meter = cf.Meter(fake.root, gpu=True, amdsmi_library=tmp_path / "nowhere" / "libamd_smi.so")
    with meter.measure() as m:
        fake.add("intel-rapl:0", 1_000_000)
    assert m.energy_j == 1.0
    [problem] = [p for p in meter.problems if p.source == "amdsmi"]
    assert "cannot load AMD SMI" in problem.reason and "CARBONFAST_AMDSMI_LIBRARY" in problem.fix
    assert any("cannot load AMD SMI" in n for n in m.notes)


def test_a_card_both_amd_smi_and_hwmon_see_is_counted_once(tmp_path: Path) -> None:
    """amdgpu's hwmon power and AMD SMI's counter are two views of one card (told apart by PCI
    address): the card is measured through AMD SMI's counter and hwmon's view is left out, so
    40 W is 40 W, not 80. A second card that only hwmon sees is still counted."""
    from tests.fakes.hwmon import FakeHwmon

    gpu = FakeAmdSmi(tmp_path / "amdsmi", WRAPPING)
    hwmon = FakeHwmon(tmp_path / "sys")
    hwmon.amdgpu("0000:03:00.0", 40.0)
    hwmon.amdgpu("0000:04:00.0", 25.0)
    report = tmp_path / "r.json"
    out = subprocess.run(
        [
            *CLI,
            "run",
            "--json",
            str(report),
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(1)",
        ],
        env=env_for(tmp_path, gpu, CARBONFAST_HWMON_ROOT=str(hwmon.root)),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(report.read_text())
    gpus = sorted(d for d in data["total_domains"] if data["domains"][d]["kind"] == "gpu")
    assert gpus == ["gpu-0000:04:00.0", "gpu-amd-0"]
    t = data["duration_s"]
    joules = sum(data["domains"][d]["energy_j"] for d in gpus)
    assert joules == pytest.approx((40.0 + 25.0) * t, rel=0.02)
    assert any("0000:03:00.0" in n and "amdsmi" in n for n in data["notes"]), data["notes"]
