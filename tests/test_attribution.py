"""Whose energy: `carbonfast run` reports the machine's energy and, beside it, the command's
share, on a fake machine whose power follows the processes that run on it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import carbonfast as cf
from carbonfast import _native
from tests.fakes.following import FollowingMachine

CLI = [sys.executable, "-m", "carbonfast.cli"]


def spin(seconds: float, marker: str) -> list[str]:
    code = f"import time\nt = time.monotonic()\nwhile time.monotonic() - t < {seconds}: pass"
    return [sys.executable, "-c", code, marker]


def run_on(machine: FollowingMachine, tmp_path: Path, *extra: str) -> dict:
    report = tmp_path / "r.json"
    env = {
        **os.environ,
        "CARBONFAST_POWERCAP_ROOT": str(machine.powercap.root),
        "CARBONFAST_PROC_ROOT": str(machine.proc),
    }
    done = subprocess.run(
        [*CLI, "run", "--json", str(report), *extra, "--", *spin(1.5, "cf-command")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    data["stderr"] = done.stderr
    return data


def truth_share(machine: FollowingMachine) -> float:
    """The command's share of the followed CPU time while it ran, by the fake's own record:
    from when it was first seen to when its CPU time last grew."""
    seen = [c for _, c in machine.history if c["cf-command"] > 0]
    first = seen[0]
    last = next(c for c in seen if c["cf-command"] == seen[-1]["cf-command"])
    command = last["cf-command"]
    neighbour = last.get("cf-neighbour", 0) - first.get("cf-neighbour", 0)
    return command / (command + neighbour)


def test_a_command_beside_a_neighbour_gets_its_share_of_the_cpu_time(tmp_path: Path) -> None:
    neighbour = subprocess.Popen(spin(6.0, "cf-neighbour"))
    try:
        with FollowingMachine(tmp_path, ["cf-command", "cf-neighbour"]) as machine:
            data = run_on(machine, tmp_path)
    finally:
        neighbour.kill()
        neighbour.wait()
    a = data["attributed"]
    expected = truth_share(machine)
    assert abs(a["share"] - expected) < 0.06, (a, expected)
    # The machine's energy stays energy_j; the command's is its share of it.
    assert a["energy_j"] == pytest.approx(a["share"] * data["energy_j"], rel=1e-6)
    assert a["range_j"][0] <= a["energy_j"] <= a["range_j"][1]
    assert a["scope"].startswith("process tree of ")
    assert "of which this command:" in data["stderr"]
    assert f"({a['share']:.0%} of the CPU time)" in data["stderr"]


def test_a_command_alone_gets_nearly_all_of_it(tmp_path: Path) -> None:
    with FollowingMachine(tmp_path, ["cf-command"]) as machine:
        data = run_on(machine, tmp_path)
    assert data["attributed"]["share"] >= 0.9


def test_the_csv_holds_the_attributed_figures_as_tracking_mode_process(tmp_path: Path) -> None:
    table = tmp_path / "e.csv"
    with FollowingMachine(tmp_path, ["cf-command"]) as machine:
        data = run_on(machine, tmp_path, "--csv", str(table))
    [row] = list(csv.DictReader(table.open()))
    assert row["tracking_mode"] == "process"
    assert float(row["energy_consumed"]) * 3.6e6 == pytest.approx(data["attributed"]["energy_j"])


def test_attribution_off_leaves_the_machine_figures(tmp_path: Path) -> None:
    table = tmp_path / "e.csv"
    with FollowingMachine(tmp_path, ["cf-command"]) as machine:
        data = run_on(machine, tmp_path, "--attribute", "off", "--csv", str(table))
    assert "attributed" not in data
    [row] = list(csv.DictReader(table.open()))
    assert row["tracking_mode"] == "machine"
    assert float(row["energy_consumed"]) * 3.6e6 == pytest.approx(data["energy_j"])


def test_a_cgroup_is_a_scope(tmp_path: Path) -> None:
    cgroups = tmp_path / "cgroup"
    job = cgroups / "slurm" / "job_42"
    job.mkdir(parents=True)
    (job / "cpu.stat").write_text("usage_usec 1000\nuser_usec 800\nsystem_usec 200\n")
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "schedstat").write_text("version 15\ncpu0 0 0 0 0 0 0 1000000 0 0\n")
    scope = _native.Attribution("cgroup:/slurm/job_42", proc, cgroups)
    assert scope.label == "cgroup /slurm/job_42"
    a = scope.read()
    (job / "cpu.stat").write_text("usage_usec 3000\n")
    (proc / "schedstat").write_text("version 15\ncpu0 0 0 0 0 0 0 9000000 0 0\n")
    share, low, high, cpu_s, busy_s = scope.share(a, scope.read())
    assert share == pytest.approx(2e-3 / 8e-3)
    assert low <= share <= high
    assert (cpu_s, busy_s) == pytest.approx((2e-3, 8e-3))


def test_a_slurm_jobs_cgroup_is_found_above_its_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cgroups = tmp_path / "cgroup"
    job = cgroups / "system.slice" / "slurmstepd.scope" / "job_7"
    (job / "step_0" / "user" / "task_0").mkdir(parents=True)
    (job / "cpu.stat").write_text("usage_usec 5\n")
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(
        "0::/system.slice/slurmstepd.scope/job_7/step_0/user/task_0\n"
    )
    (proc / "stat").write_text("cpu  1 0 1 0 0 0 0 0 0 0\ncpu0 1 0 1 0 0 0 0 0 0 0\n")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    scope = _native.Attribution("cgroup", proc, cgroups)
    assert scope.label == "cgroup /system.slice/slurmstepd.scope/job_7"
    assert "10 ms ticks" in scope.method


def test_bad_scopes_and_settings_are_named() -> None:
    with pytest.raises(ValueError, match="accepted: process, tree, thread"):
        _native.Attribution("neighbours")
    from carbonfast.config import resolve

    with pytest.raises(ValueError, match="CARBONFAST_ATTRIBUTE"):
        os.environ["CARBONFAST_ATTRIBUTE"] = "everyone"
        try:
            resolve(("attribute",), {})
        finally:
            del os.environ["CARBONFAST_ATTRIBUTE"]


def test_a_record_keeps_its_attribution_through_json(tmp_path: Path) -> None:
    from carbonfast.report.record import Attributed, Record

    r = Record(kind="run", started_at="", duration_s=1.0, energy_j=10.0)
    r.attributed = Attributed(
        energy_j=4.0, share=0.4, scope="process 1", method="m", range_j=(3.5, 4.5)
    )
    back = Record.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.attributed == r.attributed
    # Garbage in a stored attribution is dropped, not trusted.
    d = r.to_dict()
    d["attributed"]["range_j"] = ["x", None]
    d["attributed"]["share"] = "all"
    back = Record.from_dict(d)
    assert back.attributed is not None and back.attributed.share is None
    assert back.attributed.range_j is None


def test_cf_process_scope_reads_this_process() -> None:
    scope = _native.Attribution("process")
    assert scope.label == f"process {os.getpid()}"
    a = scope.read()
    sum(i * i for i in range(200_000))
    b = scope.read()
    assert b[0] > a[0]


def test_a_gpu_shared_with_another_process_is_split_by_its_sm_samples(tmp_path: Path) -> None:
    from tests.fakes.nvml import FakeNvml

    gpu = FakeNvml(tmp_path / "nvml", "gpu 0 name=A uuid=GPU-a energy_mj=1000\n")
    state = gpu.library.with_name("nvml_state")
    # The command puts itself on the GPU beside a stranger (pid 4000000), at 3x its SM use.
    work = (
        "import os, time\n"
        f"s = {str(state)!r}\n"
        "gpu = 'gpu 0 name=A uuid=GPU-a energy_mj={}\\n'\n"
        "procs = f'proc 0 pid={os.getpid()} sm=60 samples=5\\n'\n"
        "procs += 'proc 0 pid=4000000 sm=20 samples=5\\n'\n"
        "open(s, 'w').write(gpu.format(1000) + procs)\n"
        "time.sleep(1.2)\n"
        "open(s, 'w').write(gpu.format(5000) + procs)\n"
    )
    report = tmp_path / "r.json"
    env = {
        **os.environ,
        "CARBONFAST_POWERCAP_ROOT": str(tmp_path / "no-rapl"),
        "CARBONFAST_GPU": "on",
        "CARBONFAST_NVML_LIBRARY": str(gpu.library),
    }
    done = subprocess.run(
        [*CLI, "run", "--json", str(report), "--", sys.executable, "-c", work],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    a = data["attributed"]
    assert a["shares"]["gpu-0"] == pytest.approx(0.75, abs=0.1)
    assert a["domains"]["gpu-0"] == pytest.approx(a["shares"]["gpu-0"] * 4.0)
    assert "gpu-0: SM utilisation" in a["method"]


def test_a_library_window_reports_its_process_share(tmp_path: Path) -> None:
    from tests.fakes.powercap import three_domain_tree

    fake = three_domain_tree(tmp_path / "sys")
    meter = cf.Meter(fake.root)
    with meter.measure("step", attribute="process") as m:
        fake.add("intel-rapl:0", 4_000_000)
        sum(i * i for i in range(300_000))
    a = m.attributed
    assert a is not None and a.share is not None and 0 < a.share <= 1
    assert a.scope == f"process {os.getpid()}"
    assert a.domains["package-0"] == pytest.approx(a.share * 4.0)
    assert m.to_dict()["attributed"]["share"] == a.share
    with pytest.raises(ValueError, match="attribute='everyone' is not valid"):
        cf.measure(attribute="everyone")


def test_the_codecarbon_drop_in_process_mode_reports_the_measured_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CodeCarbon's tracking_mode="process" scales an estimate; the drop-in's gives this
    process's measured share of the counters: its CPU time over the machine's."""
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker, _meter
    from tests.fakes.powercap import three_domain_tree

    fake = three_domain_tree(tmp_path / "sys")
    proc = tmp_path / "proc"
    proc.mkdir()
    schedstat = proc / "schedstat"
    monkeypatch.setenv("CARBONFAST_POWERCAP_ROOT", str(fake.root))
    monkeypatch.setenv("CARBONFAST_PROC_ROOT", str(proc))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_meter, "_meters", {})

    def run(mode: str) -> Any:
        scope = _native.Attribution("process")
        schedstat.write_text("version 15\ncpu0 0 0 0 0 0 0 0 0 0\n")
        tracker = OfflineEmissionsTracker(
            country_iso_code="FRA", tracking_mode=mode, output_methods=[]
        )
        tracker.start()
        before = scope.read()[0]
        sum(i * i for i in range(300_000))
        used = scope.read()[0] - before
        # The machine was busy four times as long as this process.
        schedstat.write_text(f"version 15\ncpu0 0 0 0 0 0 0 {4 * used} 0 0\n")
        fake.add("intel-rapl:0", 36_000_000)
        tracker.stop()
        return tracker.final_emissions_data

    machine = run("machine")
    own = run("process")
    assert machine.cpu_energy == pytest.approx(36 / 3.6e6)
    assert own.tracking_mode == "process"
    assert own.cpu_energy == pytest.approx(machine.cpu_energy / 4, rel=0.15)


def test_the_console_and_html_reports_show_the_share() -> None:
    from carbonfast.report import html
    from carbonfast.report.console import format_summary
    from carbonfast.report.record import Attributed, Record

    r = Record(kind="run", started_at="", duration_s=2.0, energy_j=180.0, command=["train"])
    r.attributed = Attributed(
        energy_j=89.0, share=0.49, scope="process tree of 4312", method="CPU-time share: ..."
    )
    assert "of which this command: 89.0000 J (49% of the CPU time)" in format_summary(r)
    page = html.render(r)
    assert "process tree of 4312" in page and "89.0000 J (49% of the CPU time)" in page
