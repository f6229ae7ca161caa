"""Estimates where no counter is readable: flagged, explained, bounded, and following CPU work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import carbonfast as cf
from tests.fakes.counter import busy
from tests.fakes.powercap import FakePowercap

BUSY_1S = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 1: pass\n"


def _run_json(tmp_path: Path, name: str, *cmd: str, env: dict[str, str]) -> dict:
    report = tmp_path / f"{name}.json"
    out = subprocess.run(
        [sys.executable, "-m", "carbonfast.cli", "run", "--json", str(report), "--", *cmd],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(report.read_text())
    data["stderr"] = out.stderr
    return data


def test_run_without_rapl_estimates_more_for_a_busy_second_than_a_sleeping_one(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "CARBONFAST_POWERCAP_ROOT": str(tmp_path / "no-rapl")}
    busy = _run_json(tmp_path, "busy", sys.executable, "-c", BUSY_1S, env=env)
    idle = _run_json(tmp_path, "idle", "sleep", "1", env=env)
    for r in (busy, idle):
        assert r["estimated"] is True
        assert r["energy_j"] > 0
        lo, hi = r["energy_range_j"]
        assert 0 < lo < r["energy_j"] < hi
        assert r["domains"]["cpu"]["estimated"] is True
        assert "power curve" in r["domains"]["cpu"]["method"]
        assert "ESTIMATED, range" in r["stderr"]
    # The busy second costs the idle second's energy plus the dynamic power of one full CPU.
    assert busy["domains"]["cpu"]["energy_j"] > 1.5 * idle["domains"]["cpu"]["energy_j"]
    assert busy["energy_j"] > idle["energy_j"] + 0.5


def test_measure_grows_with_cpu_work(tmp_path: Path) -> None:
    meter = cf.Meter(tmp_path / "no-rapl")

    def window(work: bool) -> cf.Measurement:
        # The busy window does 0.3 s of CPU work however the machine shares its CPUs.
        with meter.measure() as m:
            if work:
                busy(0.3)
            else:
                time.sleep(0.3)
        return m

    idle, busy_m = window(False), window(True)
    assert idle.estimated and busy_m.estimated
    assert idle.energy_j > 0
    assert busy_m.domains["cpu"] > 1.5 * idle.domains["cpu"]
    assert any("cpu is estimated, not measured" in n for n in busy_m.notes)


def test_a_machine_with_packages_but_no_dram_estimates_only_dram(tmp_path: Path) -> None:
    fake = FakePowercap(tmp_path)
    fake.zone("intel-rapl:0", "package-0", 0)
    meter = cf.Meter(fake.root, ram_gb=8)
    assert [(d.name, d.estimated) for d in meter.domains] == [("package-0", False), ("ram", True)]
    with meter.measure() as m:
        fake.add("intel-rapl:0", 2_000_000)
    assert m.domains["package-0"] == 2.0
    assert m.estimated
    lo, hi = m.energy_range_j
    assert 2.0 < lo < m.energy_j < hi
    d = m.to_dict()["domains"]
    assert d["package-0"] == {"energy_j": 2.0, "kind": "package", "estimated": False, "part": "cpu"}
    assert d["ram"]["estimated"] is True and d["ram"]["kind"] == "dram"


def test_measured_windows_have_a_zero_width_range(fake: FakePowercap) -> None:
    with cf.Meter(fake.root).measure() as m:
        fake.add("intel-rapl:0", 1_000_000)
    assert not m.estimated
    assert m.energy_range_j == (m.energy_j, m.energy_j)


def test_user_inputs_are_used_and_said_to_be(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CARBONFAST_CPU_TDP_W", "100")
    monkeypatch.setenv("CARBONFAST_RAM_GB", "32")
    data = cf.info(tmp_path / "no-rapl", cpu_threads=4)
    domains = {d["name"]: d for s in data["sources"] for d in s["domains"]}
    assert domains["cpu"]["inputs"]["tdp_w"] == "100 per socket (set by user)"
    assert domains["cpu"]["inputs"]["threads"] == "4 (set by user)"
    assert domains["ram"]["inputs"]["ram_gb"] == "32.00 (set by user)"


def test_info_gives_no_wrap_range_for_a_model(tmp_path: Path) -> None:
    """A model has no counter to wrap: its range is null, not the 18 GJ its nanojoules fit."""
    data = cf.info(tmp_path / "no-rapl")
    domains = [d for s in data["sources"] for d in s["domains"]]
    assert {d["name"] for d in domains} == {"cpu", "ram"}
    assert all(d["range_j"] is None for d in domains)


def test_an_argument_wins_over_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CARBONFAST_CPU_POWER_W", "50")
    meter = cf.Meter(tmp_path / "no-rapl", cpu_power_w=10, ram_power_w=1)
    with meter.measure() as m:
        time.sleep(0.05)
    assert m.domains["cpu"] == pytest.approx(10 * m.duration_s, rel=0.05)
    assert m.domains["ram"] == pytest.approx(1 * m.duration_s, rel=0.05)


@pytest.mark.parametrize(
    ("env", "value", "accepted"),
    [
        ("CARBONFAST_CPU_TDP_W", "-3", "watts per socket"),
        ("CARBONFAST_CPU_THREADS", "two", "whole number"),
        ("CARBONFAST_ESTIMATE_SCOPE", "host", "process, container, machine"),
        ("CARBONFAST_ESTIMATE", "maybe", "true, yes, on, 0"),
    ],
)
def test_bad_settings_name_the_variable_and_what_it_accepts(
    tmp_path: Path, monkeypatch, env: str, value: str, accepted: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValueError, match=rf"{env}='{value}' is not valid; expected .*{accepted}"):
        cf.Meter(tmp_path / "no-rapl")


def test_a_bad_setting_fails_the_cli_with_its_name(tmp_path: Path) -> None:
    env = {**os.environ, "CARBONFAST_RAM_GB": "lots"}
    out = subprocess.run(
        [sys.executable, "-m", "carbonfast.cli", "run", "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert "CARBONFAST_RAM_GB='lots' is not valid" in out.stderr


def _fake_proc(tmp_path: Path, cgroup_line: str) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "cpuinfo").write_text("processor : 0\nmodel name : AMD EPYC\nflags : hypervisor\n")
    (proc / "meminfo").write_text("MemTotal: 4000000 kB\n")
    (proc / "self" / "cgroup").write_text(cgroup_line)
    return proc


def test_container_scope_follows_the_cgroup_v2_counter(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, "0::/job\n")
    stat = tmp_path / "cgroup" / "job" / "cpu.stat"
    stat.parent.mkdir(parents=True)
    stat.write_text("usage_usec 0\n")
    meter = cf.Meter(
        tmp_path / "no-rapl", scope="container", proc_root=proc, cgroup_root=tmp_path / "cgroup"
    )
    with meter.measure() as quiet:
        time.sleep(0.05)
    with meter.measure() as busy:
        stat.write_text("usage_usec 1000000\n")  # the container used one CPU-second
    # Per-thread fallback on 1 thread: (3.5 - 0.74) W x 1 CPU-s on top of idle.
    dynamic = busy.domains["cpu"] - 0.74 * busy.duration_s
    assert dynamic == pytest.approx(3.5 - 0.74, rel=1e-3)
    assert quiet.domains["cpu"] == pytest.approx(0.74 * quiet.duration_s, rel=1e-2)


def test_container_scope_without_a_cgroup_fails_with_a_fix(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, "0::/gone\n")
    with pytest.raises(cf.SensorUnavailable, match="use the process or machine scope"):
        cf.Meter(tmp_path / "no-rapl", scope="container", proc_root=proc, cgroup_root=tmp_path)


def test_a_model_has_no_counter_steps_so_short_windows_are_not_called_coarse(
    tmp_path: Path,
) -> None:
    with cf.Meter(tmp_path / "no-rapl").measure() as m:
        pass
    assert m.estimated
    assert not any("coarse" in n for n in m.notes)
