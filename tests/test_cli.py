from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import carbonfast
from carbonfast.cli import main
from tests.fakes.powercap import FakePowercap


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "CARBONFAST_POWERCAP_ROOT": str(root)}


def _carbonfast(*args: str, root: Path, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carbonfast.cli", *args],
        env=_env(root),
        capture_output=True,
        text=True,
        check=False,
        **kw,
    )


def _bump(fake: FakePowercap, zone: str, delta: int) -> str:
    """Python source that advances a fake counter, for a child command to run."""
    path = fake.path(zone)
    return f"p={str(path)!r}; v=int(open(p).read()); open(p,'w').write(str(v+{delta}))"


def test_info_json_lists_domains_and_total(fake: FakePowercap) -> None:
    out = _carbonfast("info", "--json", root=fake.root)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    # hwmon is listed too (empty here: the tests point it at an empty tree).
    [source] = [s for s in data["sources"] if s["name"] == "powercap"]
    assert source["root"] == str(fake.root)
    assert [(d["name"], d["kind"], d["counts_in_total"]) for d in source["domains"]] == [
        ("package-0", "package", True),
        ("core-0", "core", False),
        ("dram-0", "dram", True),
    ]
    assert data["total_sums"] == ["package-0", "dram-0"]


def test_info_text_gives_the_fix(tmp_path: Path) -> None:
    out = _carbonfast("--no-estimate", "info", root=tmp_path / "none")
    assert out.returncode == 0
    assert "not usable" in out.stdout
    assert "fix: " in out.stdout and "modprobe" in out.stdout
    assert "cannot measure energy here" in out.stdout


def test_run_reports_the_commands_energy_exactly(fake: FakePowercap, tmp_path: Path) -> None:
    report = tmp_path / "run.json"
    code = _bump(fake, "intel-rapl:0", 3_000_000) + ";" + _bump(fake, "intel-rapl:0:1", 250_000)
    out = _carbonfast(
        "run", "--json", str(report), "--", sys.executable, "-c", code, root=fake.root
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(report.read_text())
    assert data["energy_j"] == 3.25
    assert data["estimated"] is False
    assert data["domains"]["package-0"] == {
        "energy_j": 3.0,
        "kind": "package",
        "estimated": False,
        "part": "cpu",
    }
    assert data["domains"]["dram-0"]["energy_j"] == 0.25
    assert data["command"] == [sys.executable, "-c", code]
    assert data["exit_code"] == 0
    assert data["duration_s"] > 0
    assert data["started_at"].endswith("+00:00")
    assert "total" in out.stderr and "3.2500 J" in out.stderr


def test_run_exits_with_the_commands_exit_code(fake: FakePowercap) -> None:
    out = _carbonfast("run", "--", sys.executable, "-c", "raise SystemExit(7)", root=fake.root)
    assert out.returncode == 7


def test_run_of_a_missing_command_fails_like_a_shell(fake: FakePowercap) -> None:
    out = _carbonfast("run", "--", "no-such-command-xyz", root=fake.root)
    assert out.returncode == 127
    assert "command not found: no-such-command-xyz" in out.stderr


def test_run_without_a_command_explains_usage(fake: FakePowercap, capsys) -> None:
    assert main(["--powercap-root", str(fake.root), "run"]) == 2
    assert "run needs a command" in capsys.readouterr().err


def test_run_without_counters_still_runs_and_says_energy_is_unknown(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    out = _carbonfast(
        "--no-estimate", "run", "--json", str(report), "--", "true", root=tmp_path / "none"
    )
    assert out.returncode == 0
    data = json.loads(report.read_text())
    assert data["energy_j"] is None
    assert any("energy unknown" in n for n in data["notes"])
    assert "unknown" in out.stderr


def test_run_without_counters_leaves_every_part_of_the_csv_empty(tmp_path: Path) -> None:
    """Nothing measured the CPU, the RAM or the GPU: their cells are empty, never 0.0."""
    import csv

    emissions = tmp_path / "e.csv"
    out = _carbonfast(
        "--no-estimate", "run", "--csv", str(emissions), "--", "true", root=tmp_path / "none"
    )
    assert out.returncode == 0, out.stderr
    [row] = list(csv.DictReader(emissions.open()))
    for column in ("energy_consumed", "emissions"):
        assert row[column] == "", (column, row[column])
    for part in ("cpu", "gpu", "ram"):
        for column in (f"{part}_energy", f"{part}_power"):
            assert row[column] == "", (column, row[column])


@pytest.mark.parametrize(
    ("sig", "expected"),
    [(signal.SIGTERM, 42), (signal.SIGINT, 130)],
)
def test_run_forwards_signals_and_still_reports(
    fake: FakePowercap, tmp_path: Path, sig: signal.Signals, expected: int
) -> None:
    report = tmp_path / "r.json"
    ready = tmp_path / "ready"
    child = (
        "import signal, sys, time, pathlib\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
        # Python leaves SIGINT ignored where it started so (a suite run in the background of
        # a script): the command asks for it, as an interactive program would.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(30)\n"
    )
    run = [sys.executable, "-m", "carbonfast.cli", "run", "--json", str(report), "--"]
    proc = subprocess.Popen(
        [*run, sys.executable, "-c", child],
        env=_env(fake.root),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert time.monotonic() < deadline, "child never started"
        time.sleep(0.01)
    proc.send_signal(sig)  # to carbonfast only, as kill(1) or a scheduler would
    assert proc.wait(timeout=20) == expected
    assert json.loads(report.read_text())["exit_code"] == expected


def test_version_flag(fake: FakePowercap) -> None:
    out = _carbonfast("--version", root=fake.root)
    assert out.stdout.strip() == f"carbonfast {carbonfast.__version__}"


def test_run_works_without_numpy_and_keeps_its_trace(fake: FakePowercap, tmp_path: Path) -> None:
    """The main job needs no optional package: numpy is blocked, the trace still lands."""
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "from carbonfast.cli import main\n"
        "sys.exit(main(['run', '--sample-hz', '100', '--', 'sleep', '0.2']))\n"
    )
    history = tmp_path / "h.sqlite"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**_env(fake.root), "CARBONFAST_HISTORY": str(history)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    from carbonfast.report.history import History

    _, trace = History(history).get(1)
    assert trace is not None and len(trace["t_s"]) >= 10
    assert set(trace["power_w"]) == {"package-0", "core-0", "dram-0"}


def test_the_summary_marks_what_the_total_sums(tmp_path: Path) -> None:
    """Where only psys is readable, psys is the total, not 'inside' it."""
    fake = FakePowercap(tmp_path)
    fake.zone("intel-rapl:1", "psys", 0)
    fake.zone("intel-rapl:1:0", "core", 0)
    report = tmp_path / "r.json"
    out = _carbonfast("run", "--json", str(report), "--", "true", root=fake.root)
    assert out.returncode == 0, out.stderr
    assert json.loads(report.read_text())["total_domains"] == ["psys"]
    lines = {line.split()[0]: line for line in out.stderr.splitlines()[1:4]}
    assert "measured" in lines["psys"] and "(inside total)" in lines["core-1"]


def test_settings_work_after_the_command_too(fake: FakePowercap, tmp_path: Path) -> None:
    after = tmp_path / "after.json"
    r = _carbonfast(
        "run", "--country", "FR", "--no-estimate", "--json", str(after), "--", "true",
        root=fake.root,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(after.read_text())["location"] == "FR"
    before = tmp_path / "before.json"
    r = _carbonfast("--country", "DE", "run", "--json", str(before), "--", "true", root=fake.root)
    assert r.returncode == 0 and json.loads(before.read_text())["location"] == "DE"
    from carbonfast.config import SETTINGS

    helped = _carbonfast("run", "--help-all", root=fake.root).stdout
    options = [s for s in SETTINGS.values() if s.group]
    assert len(options) >= 20
    for name, setting in SETTINGS.items():
        if setting.group:  # every setting of the table with an option is listed, env beside it
            assert "--" + name.replace("_", "-") in helped and setting.env in helped
    assert "--no-estimate" in helped and "--no-gpu" in helped
    assert "--electricitymaps-token" not in helped  # a secret in argv shows in ps


_HARDWARE_OPTIONS = (
    "--powercap-root",
    "--msr-root",
    "--hwmon-root",
    "--proc-root",
    "--nvml-library",
    "--amdsmi-library",
)
_JOB_OPTIONS = ("--job-id", "--host-id", "--job-dir", "--distributed")


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("where", [(), ("run",), ("info",), ("history",), ("serve",)])
def test_help_fits_a_screen_and_help_all_has_the_rest(
    where: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # the terminal's width decides how argparse wraps
    short = _help(capsys, *where, "--help")
    lines = short.splitlines()
    assert len(lines) <= 40, short
    assert len(lines[0]) <= 100  # the usage line
    for option in (*_HARDWARE_OPTIONS, *_JOB_OPTIONS):
        assert option not in short
    assert "--help-all" in short and "--country" in short
    full = _help(capsys, *where, "--help-all")
    for option in (*_HARDWARE_OPTIONS, *_JOB_OPTIONS):
        assert option in full
    assert "hardware:" in full and "distributed jobs:" in full


def test_hidden_options_still_work(fake: FakePowercap, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    r = _carbonfast(
        "run", "--powercap-root", str(fake.root), "--json", str(report), "--", "true",
        root=tmp_path / "elsewhere",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(report.read_text())["energy_j"] is not None


def test_the_hardware_roots_are_settings_a_config_file_can_give(
    fake: FakePowercap, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "carbonfast.toml").write_text(
        f'powercap_root = "{fake.root}"\nnvml_library = "{tmp_path / "no-nvml.so"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "CARBONFAST_POWERCAP_ROOT"}
    env["CARBONFAST_GPU"] = "on"
    r = subprocess.run(
        [sys.executable, "-m", "carbonfast.cli", "info", "--json"],
        env=env,
        cwd=project / "sub",
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert str(fake.root) in r.stdout and "package-0" in r.stdout
    assert "no-nvml.so" in r.stdout  # the library named there is the one tried
    # An argument beats the file.
    r = subprocess.run(
        [sys.executable, "-m", "carbonfast.cli", "--powercap-root", str(tmp_path / "x"), "info"],
        env=env,
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert str(tmp_path / "x") in r.stdout and "package-0" not in r.stdout


def test_python_m_carbonfast_is_the_command(fake: FakePowercap, tmp_path: Path) -> None:
    """Where the `carbonfast` script is not on PATH (a venv not activated), `python -m
    carbonfast` runs the same command and passes the exit code through."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "carbonfast",
            "run",
            "--quiet",
            "--",
            sys.executable,
            "-c",
            "raise SystemExit(7)",
        ],
        env=_env(fake.root),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 7, out.stderr
    info = subprocess.run(
        [sys.executable, "-m", "carbonfast", "info", "--json"],
        env=_env(fake.root),
        capture_output=True,
        text=True,
        check=False,
    )
    assert info.returncode == 0, info.stderr
    assert "package-0" in json.loads(info.stdout)["total_sums"]


@pytest.mark.parametrize("flag", ["--json", "--csv", "--html"])
def test_an_output_that_cannot_be_made_stops_the_run_before_the_command(
    fake: FakePowercap, tmp_path: Path, flag: str
) -> None:
    """/proc takes no new file, even from root: the run exits 2 naming the path given, and
    the command never starts."""
    started = tmp_path / "started"
    out = _carbonfast(
        "run", flag, "/proc/x.out", "--", sys.executable, "-c",
        f"open({str(started)!r}, 'w').close()", root=fake.root,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert f"{flag} /proc/x.out" in out.stderr, out.stderr
    assert not started.exists()
    assert ".tmp" not in out.stderr, out.stderr


def test_an_existing_csv_is_checked_by_opening_it_and_kept(
    fake: FakePowercap, tmp_path: Path
) -> None:
    emissions = tmp_path / "e.csv"
    out = _carbonfast("run", "--csv", str(emissions), "--", "true", root=fake.root)
    assert out.returncode == 0, out.stderr
    first = emissions.read_text()
    out = _carbonfast("run", "--csv", str(emissions), "--", "true", root=fake.root)
    assert out.returncode == 0, out.stderr
    text = emissions.read_text()
    assert text.startswith(first) and len(text.splitlines()) == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".e.csv")] == []


def test_the_summary_is_short_by_default(fake: FakePowercap, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    r = _carbonfast("run", "--no-history", "--json", str(report), "--", "true", root=fake.root)
    assert r.returncode == 0, r.stderr
    advice = json.loads(report.read_text())["advice"]
    assert len(advice) > 1  # the world average leaves cleaner places to name
    shown = [line for line in r.stderr.splitlines() if line.startswith("  advice: ")]
    assert len(shown) == 1
    best = max(
        (a for a in advice if a["kind"] in ("location", "idle")),
        key=lambda a: a["figures"].get("saved_kg", a["figures"].get("idle_emissions_kg")),
    )
    assert shown[0] == f"  advice: {best['message']}"
    assert "--verbose: " in r.stderr.splitlines()[-1]
    assert "total" in r.stderr and "emissions" in r.stderr


def test_the_summary_has_every_advice_with_verbose(fake: FakePowercap, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    r = _carbonfast(
        "run", "--no-history", "--verbose", "--json", str(report), "--", "true", root=fake.root
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads(report.read_text())
    shown = [line[len("  advice: ") :] for line in r.stderr.splitlines() if "  advice: " in line]
    assert shown == [a["message"] for a in data["advice"]]
    notes = [line[len("  note: ") :] for line in r.stderr.splitlines() if "  note: " in line]
    assert notes == data["notes"]
    assert "--verbose" not in r.stderr


def test_only_the_command_given_is_loaded_and_values_are_not_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from carbonfast.cli import COMMANDS
    from carbonfast.cli.options import command_in

    assert command_in(["--job-id", "run", "history", "--json"], COMMANDS) == "history"
    assert command_in(["--country=FR", "info"], COMMANDS) == "info"
    assert command_in(["--no-gpu", "--", "run"], COMMANDS) is None
    none = str(tmp_path / "none.sqlite")
    assert main(["--job-id", "run", "history", "--history", none, "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
