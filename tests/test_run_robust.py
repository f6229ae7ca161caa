"""`carbonfast run` never loses a run: signals, failures after the command, and files written
by real concurrent processes."""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fakes.nvml import H100, FakeNvml

CLI = [sys.executable, "-m", "carbonfast.cli"]


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "CARBONFAST_POWERCAP_ROOT": str(tmp_path / "no-rapl"),
        "CARBONFAST_HISTORY": "off",
        **extra,
    }


def wait_for_child(marker: str, timeout: float = 20.0) -> int:
    """The pid of the process whose command line holds `marker`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and b"carbonfast.cli" not in cmdline:
                return int(pid)
        time.sleep(0.02)
    raise AssertionError(f"no process with {marker!r} started")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_burst_of_sigterm_reaches_the_command_and_its_code_is_kept(tmp_path: Path) -> None:
    # A GPU meter and a sampler: native threads that a signal could land on.
    gpu = FakeNvml(tmp_path / "nvml", H100)
    report = tmp_path / "r.json"
    marker = "carbonfast-burst-marker"
    child = [sys.executable, "-c", f"import time; time.sleep(60)  # {marker}"]
    proc = subprocess.Popen(
        [*CLI, "run", "--sample-hz", "200", "--json", str(report), "--", *child],
        env=env_for(tmp_path, CARBONFAST_GPU="on", CARBONFAST_NVML_LIBRARY=str(gpu.library)),
        stderr=subprocess.PIPE,
        text=True,
    )
    pid = wait_for_child(marker)
    for _ in range(15):
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert not alive(pid)
    assert json.loads(report.read_text())["exit_code"] == 128 + signal.SIGTERM


def test_sigusr1_and_sigwinch_are_passed_on(tmp_path: Path) -> None:
    got, ready = tmp_path / "got", tmp_path / "ready"
    script = (
        "import signal, sys, time\n"
        "seen = []\n"
        "signal.signal(signal.SIGWINCH, lambda *a: seen.append('winch'))\n"
        f"signal.signal(signal.SIGUSR1, lambda *a: (open({str(got)!r}, 'w').write(','.join(seen"
        " + ['usr1'])), sys.exit(42)))\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [*CLI, "run", "--", sys.executable, "-c", script], env=env_for(tmp_path)
    )
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:  # the handlers are in place
        time.sleep(0.02)
    proc.send_signal(signal.SIGWINCH)
    time.sleep(0.2)  # two kinds of signal may otherwise arrive in either order
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=30) == 42
    assert got.read_text() == "winch,usr1"


@pytest.mark.parametrize("flag", ["--json", "--csv", "--html"])
def test_an_output_that_cannot_be_written_stops_the_run_before_the_command(
    tmp_path: Path, flag: str
) -> None:
    ran = tmp_path / "ran"
    for target, why in (
        (tmp_path / "missing" / "out", "does not exist"),
        (tmp_path, "is a directory"),
        (Path("/dev/full"), "not a regular file"),
    ):
        r = subprocess.run(
            [*CLI, "run", flag, str(target), "--", "touch", str(ran)],
            env=env_for(tmp_path),
            capture_output=True,
            text=True,
            check=False,
        )
        assert r.returncode == 2 and why in r.stderr and flag in r.stderr, r.stderr
        assert not ran.exists()


def test_a_symlink_planted_where_a_report_goes_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "r.json"
    link.symlink_to(victim)
    r = subprocess.run(
        [*CLI, "run", "--json", str(link), "--", "true"],
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2 and "symbolic link" in r.stderr
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("history", ["garbage", "directory", "newer"])
def test_a_history_that_cannot_be_used_is_a_warning_and_the_run_goes_on(
    tmp_path: Path, history: str
) -> None:
    path = tmp_path / "h.sqlite"
    if history == "garbage":
        path.write_bytes(os.urandom(4096))
    elif history == "directory":
        path.mkdir()
    else:
        from carbonfast.report.history import History

        h = History(path)
        h._db.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
        h._db.commit()
    report = tmp_path / "r.json"
    r = subprocess.run(
        [*CLI, "run", "--json", str(report), "--", "sh", "-c", "exit 7"],
        env=env_for(tmp_path, CARBONFAST_HISTORY=str(path)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 7, r.stderr
    if history == "garbage":  # not a database: set aside, and a new history started
        assert f"the history {path} was not a database" in r.stderr
        assert f"moved it aside to {path}.bak-" in r.stderr
    else:
        assert f"the history {path} cannot be used" in r.stderr
    assert json.loads(report.read_text())["exit_code"] == 7
    assert "total" in r.stderr  # the summary is still printed


def test_a_gpu_lost_during_the_run_keeps_the_code_and_the_reports(tmp_path: Path) -> None:
    gpu = FakeNvml(tmp_path / "nvml", "gpu 0 uuid=GPU-1 energy_mj=1000\n")
    state = gpu.library.with_name("nvml_state")
    lose = f"open({str(state)!r}, 'w').write('gpu 0 uuid=GPU-1 energy=gpu_lost\\n'); exit(5)"
    report, table = tmp_path / "r.json", tmp_path / "e.csv"
    r = subprocess.run(
        [*CLI, "run", "--json", str(report), "--csv", str(table), "--", sys.executable, "-c", lose],
        env=env_for(tmp_path, CARBONFAST_GPU="on", CARBONFAST_NVML_LIBRARY=str(gpu.library)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 5, r.stderr
    data = json.loads(report.read_text())
    # The GPU is unknown; the CPU and RAM (estimated here) are kept, the total marked partial.
    assert data["exit_code"] == 5 and data["partial"] is True
    assert data["domains"]["gpu-0"]["energy_j"] is None
    assert (
        data["energy_j"] == data["domains"]["cpu"]["energy_j"] + data["domains"]["ram"]["energy_j"]
    )
    assert any("gpu-0 is lost" in n for n in data["notes"])
    [row] = list(csv.DictReader(table.open()))
    assert float(row["energy_consumed"]) > 0 and float(row["emissions"]) > 0
    # The lost GPU's part is an empty cell, not 0.
    assert row["gpu_energy"] == "" and row["gpu_power"] == ""


def test_a_closed_stderr_does_not_cost_the_exit_code(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    cmd = " ".join([*CLI, "run", "--json", str(report), "--", "sh", "-c", "'exit 3'"])
    r = subprocess.run(["sh", "-c", f"{cmd} 2>&-"], env=env_for(tmp_path), check=False)
    assert r.returncode == 3
    assert json.loads(report.read_text())["exit_code"] == 3


def test_a_script_without_a_shebang_gets_a_clear_message(tmp_path: Path) -> None:
    script = tmp_path / "job"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    r = subprocess.run(
        [*CLI, "run", "--", str(script)], env=env_for(tmp_path), capture_output=True, text=True
    )
    assert r.returncode == 126 and "no #! line" in r.stderr
    assert "Traceback" not in r.stderr


def test_reports_and_the_history_are_the_owners_alone(tmp_path: Path) -> None:
    report, history = tmp_path / "r.json", tmp_path / "h.sqlite"
    r = subprocess.run(
        [*CLI, "run", "--json", str(report), "--", "true"],
        env=env_for(tmp_path, CARBONFAST_HISTORY=str(history)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    for path in (report, history):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_no_estimate_leaves_unknown_energy_empty_in_the_csv(tmp_path: Path) -> None:
    table = tmp_path / "e.csv"
    r = subprocess.run(
        [*CLI, "--no-estimate", "run", "--csv", str(table), "--", "true"],
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    [row] = list(csv.DictReader(table.open()))
    assert row["energy_consumed"] == "" and row["emissions"] == ""


def test_concurrent_writers_share_one_header_and_lose_no_row(tmp_path: Path) -> None:
    table = tmp_path / "e.csv"
    write = (
        "import sys; from carbonfast.report import emissions_csv as e; "
        "r = dict.fromkeys(e.COLUMNS, ''); r['run_id'] = sys.argv[1]; "
        f"e.append({str(table)!r}, r)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", write, str(i)]) for i in range(8)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    lines = table.read_text().splitlines()
    assert sum(1 for line in lines if line.startswith("timestamp,")) == 1
    rows = list(csv.DictReader(table.open()))
    assert sorted(r["run_id"] for r in rows) == [str(i) for i in range(8)]


def test_a_foreign_header_is_backed_up_and_no_backup_is_overwritten(tmp_path: Path) -> None:
    from carbonfast.report import emissions_csv

    table = tmp_path / "e.csv"
    row = dict.fromkeys(emissions_csv.COLUMNS, "")
    for n in range(2):
        table.write_text(f"old,header\n{n},x\n")
        emissions_csv.append(table, row)
    assert (tmp_path / "e.csv.bak").read_text() == "old,header\n0,x\n"
    assert (tmp_path / "e.csv.1.bak").read_text() == "old,header\n1,x\n"


def test_a_counter_that_goes_back_is_noted_not_counted_as_a_wrap(tmp_path: Path) -> None:
    import carbonfast as cf
    from tests.fakes.powercap import three_domain_tree

    fake = three_domain_tree(tmp_path / "sys")
    meter = cf.Meter(fake.root, gpu=False, history="off")
    fake.set("intel-rapl:0", 5_000_000)
    with meter.measure() as m:
        fake.set("intel-rapl:0", 4_999_000)  # back by 1000 uJ: a wrap would be 262 kJ
        meter.read()
        fake.set("intel-rapl:0", 5_001_000)
    # The next reading is near the last good one: the one that went back was a glitch.
    assert m.domains["package-0"] == pytest.approx(0.001)
    assert any("package-0: 1 reading(s) could not be explained" in n for n in m.notes)


def test_a_value_past_the_counters_range_is_ignored(tmp_path: Path) -> None:
    import carbonfast as cf
    from tests.fakes.powercap import REAL_RANGE_UJ, three_domain_tree

    fake = three_domain_tree(tmp_path / "sys")
    meter = cf.Meter(fake.root, gpu=False, history="off")
    with meter.measure() as m:
        fake.set("intel-rapl:0", REAL_RANGE_UJ + 10)
        meter.read()
        fake.set("intel-rapl:0", 1_000)
    assert m.domains["package-0"] < 1.0
    assert any("could not be explained" in n for n in m.notes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_hz": "10"}, "sample_hz='10' is not valid"),
        ({"capacity": 10**12}, "capacity=1000000000000 is not valid"),
        ({"cpu_tdp_w": 1e308}, "cpu_tdp_w='1e+308' is not valid"),
        ({"cpu_threads": 2**70}, "cpu_threads="),
        ({"ram_gb": 1e308}, "ram_gb='1e+308' is not valid"),
        ({"cpu_power_w": 1e308}, "cpu_power_w='1e+308' is not valid"),
        ({"intensity": 1e308}, "intensity='1e+308' is not valid"),
    ],
)
def test_settings_past_sense_are_refused_with_their_name(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    import carbonfast as cf

    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("+", r"\+")):
        cf.Meter(tmp_path / "no-rapl", history="off", **kwargs)


def test_a_sync_that_fails_at_the_end_still_closes_the_window(tmp_path: Path) -> None:
    import carbonfast as cf
    from tests.fakes.powercap import three_domain_tree

    meter = cf.Meter(three_domain_tree(tmp_path / "sys").root, gpu=False, history="off")
    calls: list[int] = []

    def flaky() -> None:  # fine at the start, fails at the end
        calls.append(1)
        if len(calls) % 2 == 0:
            raise RuntimeError("device gone")

    with pytest.raises(RuntimeError, match="device gone"), meter.measure(sync=flaky):
        pass

    @cf.measure(meter=meter, sync=flaky)
    def step() -> None:
        pass

    with pytest.raises(RuntimeError, match="device gone"):
        step()
    assert meter._native.open_windows == 0
    assert step.energy.calls == 1


def test_one_window_entered_from_several_threads_closes_each(tmp_path: Path) -> None:
    import threading

    import carbonfast as cf
    from tests.fakes.powercap import three_domain_tree

    meter = cf.Meter(three_domain_tree(tmp_path / "sys").root, gpu=False, history="off")
    shared = meter.measure("shared")
    barrier = threading.Barrier(4)
    done: list[cf.Measurement] = []

    def worker() -> None:
        barrier.wait()
        for _ in range(50):
            with shared as m:
                time.sleep(0.0005)
            done.append(m)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 200 and all(m.closed for m in done)
    assert meter._native.open_windows == 0


def test_a_gpu_jump_past_twice_its_power_limit_is_not_counted(tmp_path: Path) -> None:
    import carbonfast as cf

    # 50 W, refreshing every 20 ms, on a GPU limited to 100 W; then the counter leaps 150 J
    # at once. carbonfast's 3 kW ceiling for any counter would take it as a busy stretch,
    # but this GPU cannot draw it unless the reads were 0.7 s apart.
    state = "gpu 0 uuid=GPU-1 energy_mj={} tick_ms=20 tick_mj=1000 limit_mw=100000\n"
    gpu = FakeNvml(tmp_path / "nvml", state.format(1_000_000))
    meter = cf.Meter(
        tmp_path / "no-rapl", gpu=True, nvml_library=gpu.library, estimate=False, history="off"
    )
    with meter.measure() as m:
        time.sleep(0.1)
        gpu.set(state.format(1_150_000))  # the ticks go on from the library's start
        time.sleep(0.1)
    assert m.domains["gpu-0"] < 20.0, m.domains  # 50 W for 0.2 s, not 160 J
    assert any("could not be explained" in n for n in m.notes), m.notes


def test_a_glitch_reading_is_a_gap_in_the_trace_not_a_phantom_wrap(tmp_path: Path) -> None:
    import carbonfast as cf

    # A counter refreshing every 20 ms, at 50 W; then one bad answer, 0, for a while.
    state = "gpu 0 uuid=GPU-1 energy_mj={} tick_ms=20 tick_mj=1000\n"
    gpu = FakeNvml(tmp_path / "nvml", state.format(1_000_000))
    meter = cf.Meter(
        tmp_path / "no-rapl",
        gpu=True,
        nvml_library=gpu.library,
        estimate=False,
        sample_hz=200,
        history="off",
    )
    with meter.measure() as m:
        time.sleep(0.05)
        gpu.set("gpu 0 uuid=GPU-1 energy_mj=0\n")  # bad answers: the counter reads 0
        time.sleep(0.05)
        gpu.set(state.format(1_000_000))
        time.sleep(0.05)
    assert m.domains["gpu-0"] < 20.0  # 50 W for 0.15 s, not 1.8e16 J
    assert any("could not be explained" in n for n in m.notes)
    np = pytest.importorskip("numpy")
    trace = meter.trace()
    assert np.nanmax(np.abs(trace.power_w["gpu-0"])) < 1e6


@pytest.mark.parametrize("how", ["removed", "read-only"])
def test_a_working_directory_that_cannot_be_written_still_runs_and_reports(
    tmp_path: Path, how: str
) -> None:
    if how == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes to a read-only directory")
    where = tmp_path / "cwd"
    where.mkdir()
    report = tmp_path / "r.json"
    env = env_for(tmp_path, XDG_DATA_HOME=str(tmp_path / "data"))
    del env["CARBONFAST_HISTORY"]  # the default: outside a project, the user's data directory
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    prepare = f"rmdir {shlex.quote(str(where))}" if how == "removed" else "chmod 555 ."
    cli = shlex.join([*CLI, "run", "--json", str(report), "--", "sh", "-c", "exit 3"])
    try:
        r = subprocess.run(
            ["sh", "-c", f"cd {shlex.quote(str(where))} && {prepare} && exec {cli}"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        if where.exists():
            where.chmod(0o755)
    assert r.returncode == 3, r.stderr
    assert "exit code 3" in r.stderr
    assert json.loads(report.read_text())["exit_code"] == 3
    history = tmp_path / "data" / "carbonfast" / "history.sqlite"
    assert f"saved as run 1 in {history}" in r.stderr


def test_the_history_belongs_to_the_project_and_is_found_from_below(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "src" / "deep").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    env = env_for(tmp_path, XDG_DATA_HOME=str(tmp_path / "data"))
    del env["CARBONFAST_HISTORY"]

    def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, check=False
        )

    r = cli("run", "--label", "from-src", "--", "true", cwd=project / "src")
    assert r.returncode == 0, r.stderr
    assert (project / ".carbonfast" / "history.sqlite").is_file()
    listed = json.loads(cli("history", "--json", cwd=project / "src" / "deep").stdout)
    assert [x["label"] for x in listed] == ["from-src"]
    # Outside any project: the user's data directory.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = cli("run", "--label", "loose", "--", "true", cwd=elsewhere)
    assert (tmp_path / "data" / "carbonfast" / "history.sqlite").is_file(), r.stderr
    assert not (elsewhere / ".carbonfast").exists()


def test_an_unreadable_package_beside_a_readable_one_is_labelled_partial(tmp_path: Path) -> None:
    from tests.fakes.powercap import FakePowercap

    fake = FakePowercap(tmp_path / "sys")
    fake.zone("intel-rapl:0", "package-0", 1_000)
    fake.zone("intel-rapl:1", "package-1", 1_000)
    fake.write("intel-rapl:1", "energy_uj", "garbage\n")
    report = tmp_path / "r.json"
    r = subprocess.run(
        [*CLI, "--powercap-root", str(fake.root), "run", "--json", str(report), "--", "true"],
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(report.read_text())
    assert data["partial"] is True and "PARTIAL" in r.stderr
    assert any("intel-rapl:1" in n for n in data["notes"])


def test_an_unreadable_package_is_estimated_and_its_readable_dram_kept(tmp_path: Path) -> None:
    import carbonfast as cf
    from tests.fakes.powercap import FakePowercap

    fake = FakePowercap(tmp_path / "sys")
    fake.zone("intel-rapl:0", "package-0", 1_000)
    fake.zone("intel-rapl:1", "package-1", 1_000)
    fake.zone("intel-rapl:1:0", "dram", 1_000)
    fake.write("intel-rapl:1", "energy_uj", "garbage\n")
    meter = cf.Meter(fake.root, gpu=False, history="off")
    with meter.measure() as m:
        fake.set("intel-rapl:0", 2_000)
        fake.set("intel-rapl:1:0", 4_000)
    assert m.domains["dram-1"] == pytest.approx(0.003)
    # package-1 is estimated, under its own name, as one socket's share of the CPU model.
    assert m.total_domains == ["package-0", "dram-1", "package-1"]
    record = m.to_dict()
    estimate = record["domains"]["package-1"]
    assert estimate["estimated"] and "one socket's share (1 of 2)" in estimate["method"]
    assert m.energy_j == pytest.approx(0.004 + m.domains["package-1"])
    assert m.estimated and record["partial"] is True
    assert any("package-1 is estimated, not measured" in n for n in m.notes)


def test_an_unreadable_dram_beside_a_readable_one_is_estimated(tmp_path: Path) -> None:
    import carbonfast as cf
    from tests.fakes.powercap import FakePowercap

    fake = FakePowercap(tmp_path / "sys")
    for n in (0, 1):
        fake.zone(f"intel-rapl:{n}", f"package-{n}", 1_000)
        fake.zone(f"intel-rapl:{n}:0", "dram", 1_000)
    fake.write("intel-rapl:1:0", "energy_uj", "garbage\n")
    meter = cf.Meter(fake.root, gpu=False, ram_power_w=8.0, history="off")
    with meter.measure() as m:
        time.sleep(0.05)
        for zone in ("intel-rapl:0", "intel-rapl:1", "intel-rapl:0:0"):
            fake.set(zone, 3_000)
    # dram-1 takes half of the 8 W memory model: the other half is dram-0, measured.
    assert m.total_domains == ["package-0", "dram-0", "package-1", "dram-1"]
    d = m.to_dict()["domains"]["dram-1"]
    assert d["estimated"] and "one socket's share (1 of 2)" in d["method"]
    assert m.domains["dram-1"] == pytest.approx(4.0 * m.duration_s, rel=0.02)
    assert m.energy_j == pytest.approx(0.006 + m.domains["dram-1"])
    assert m.to_dict()["partial"] is True


def test_a_counter_that_never_moves_is_unreadable_not_a_measured_zero(tmp_path: Path) -> None:
    import carbonfast as cf
    from tests.fakes.powercap import FakePowercap

    fake = FakePowercap(tmp_path / "sys")
    fake.zone("intel-rapl:0", "package-0", 1_000)
    fake.zone("intel-rapl:1", "package-1", 1_000)
    meter = cf.Meter(fake.root, gpu=False, estimate=False, history="off")
    with meter.measure() as m:
        time.sleep(0.6)
        fake.set("intel-rapl:1", 3_000)  # package-1 works; package-0 never moves
        time.sleep(0.6)
    assert m.energy_j == pytest.approx(0.002)
    assert m.total_domains == ["package-1"]
    assert any("package-0 has not moved since carbonfast started" in n for n in m.notes)
    assert m.to_dict()["partial"] is True
    with meter.measure() as short:  # under a second: no judgement yet
        pass
    assert "package-0" in short.total_domains


def test_running_out_of_file_descriptors_is_reported_not_silent(tmp_path: Path) -> None:
    from tests.fakes.powercap import FakePowercap

    fake = FakePowercap(tmp_path / "sys")
    for n in range(60):
        fake.zone(f"intel-rapl:{n}", f"package-{n}", 1_000)
    script = (
        "import json, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))\n"
        "import carbonfast as cf\n"
        f"m = cf.Meter({str(fake.root)!r}, gpu=False, estimate=False, history='off')\n"
        "with m.measure() as w:\n"
        "    pass\n"
        "print(json.dumps({'domains': len(m.domains), 'partial': w.to_dict()['partial'],\n"
        "                  'notes': w.notes}))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", script], env=env_for(tmp_path), capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["domains"] < 60 and out["partial"] is True
    assert any("Too many open files" in n for n in out["notes"]), out["notes"]


def test_a_history_that_cannot_be_written_warns_once_and_the_program_goes_on(
    tmp_path: Path,
) -> None:
    import carbonfast as cf
    from tests.fakes.powercap import three_domain_tree

    history = tmp_path / "history-is-a-directory"
    history.mkdir()
    meter = cf.Meter(three_domain_tree(tmp_path / "sys").root, gpu=False, history=history)
    with pytest.warns(RuntimeWarning, match="cannot be written") as caught:
        for _ in range(3):
            for _ in range(5):
                with meter.measure() as m:
                    pass
            meter._recorder.flush()
    assert len([w for w in caught if "cannot be written" in str(w.message)]) == 1
    assert m.energy_j is not None  # measuring goes on


def test_a_rapl_that_refreshes_every_millisecond_is_measured_not_estimated(
    tmp_path: Path,
) -> None:
    """The frozen-RAPL estimate never stands in for a working counter: a package refreshing
    every millisecond, read in 10 us (tests/fakes/slow_rapl.c), beside a window of 0.3 s."""
    from tests.fakes.slow_rapl import slow_rapl_env

    env = slow_rapl_env(tmp_path, delay_us=10)
    child = (
        "import json, os, time, carbonfast as cf\n"
        "m = cf.Meter(os.environ['CARBONFAST_POWERCAP_ROOT'], gpu=False, history='off')\n"
        "with m.measure() as w:\n"
        "    time.sleep(0.3)\n"
        "print(json.dumps([w.estimated, w.total_domains, w.energy_j, w.notes]))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", child], env=env, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    _, total, energy, notes = json.loads(r.stdout)
    # The tree has no DRAM zone: RAM is estimated, as on any such machine; the package is not.
    assert total == ["package-0", "ram"], notes
    assert energy > 0 and not any("frozen" in n for n in notes), notes


@pytest.mark.parametrize("estimate", [True, False])
def test_a_frozen_rapl_tree_is_never_a_measured_zero(tmp_path: Path, estimate: bool) -> None:
    from tests.fakes.powercap import three_domain_tree

    # Counters that never move (an emulated RAPL returning constants, a static copy of sysfs).
    fake = three_domain_tree(tmp_path / "sys")
    report, table = tmp_path / "r.json", tmp_path / "e.csv"
    flags = [] if estimate else ["--no-estimate"]
    r = subprocess.run(
        [
            *CLI,
            *flags,
            *("--powercap-root", str(fake.root), "run", "--json", str(report)),
            *("--csv", str(table), "--", "sleep", "0.5"),
        ],
        env=env_for(tmp_path, CARBONFAST_HISTORY=str(tmp_path / "h.sqlite")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(report.read_text())
    assert any("RAPL is present but frozen" in n for n in data["notes"]), data["notes"]
    # The frozen counters of the total are unknown, never 0 J, and out of the total and the
    # parts. (A core or uncore counter, inside the package, may stand still for good: an idle
    # integrated GPU draws nothing.)
    for name in ("package-0", "dram-0"):
        assert data["domains"][name]["energy_j"] is None, data["domains"][name]
        assert data["domains"][name]["stalled"], data["domains"][name]
        [line] = [x for x in r.stderr.splitlines() if x.split()[:1] == [name]]
        assert "unknown" in line and "never moved" in line, line
    if estimate:
        # Estimated in their place, and said so.
        assert data["energy_j"] > 0 and data["estimated"], data
        assert data["total_domains"] == ["cpu", "ram"], data["total_domains"]
        assert any("RAPL is present but frozen: estimating" in n for n in data["notes"])
        [row] = list(csv.DictReader(table.open()))
        assert float(row["cpu_energy"]) > 0 and float(row["ram_energy"]) > 0, row
    # The stored trace: the frozen counters are unknown at every point, never 0 W; the
    # estimate that stood in for them is traced.
    from carbonfast.report.history import History

    _, trace = History(tmp_path / "h.sqlite", read_only=True).get(1)
    assert trace is not None, "no trace"
    for name in ("package-0", "dram-0"):
        assert set(trace["power_w"][name]) == {None}, trace["power_w"][name]
    assert ("cpu" in trace["power_w"]) == estimate
    if estimate:
        assert all(p > 0 for p in trace["power_w"]["cpu"][1:]), trace["power_w"]["cpu"]
    info = subprocess.run(
        [*CLI, *flags, "--powercap-root", str(fake.root), "info"],
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    said = "RAPL is present but frozen: estimating" if estimate else "RAPL is present but frozen"
    assert said in info.stdout, info.stdout
    if not estimate:
        assert data["energy_j"] is None
        [row] = list(csv.DictReader(table.open()))
        assert row["energy_consumed"] == "" and row["emissions"] == ""
