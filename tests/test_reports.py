"""Reports: CodeCarbon-format CSV, the SQLite history (and its survival of SIGKILL), HTML with
plots checked in headless Chromium, and the CodeCarbon drop-in."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import carbonfast as cf
from carbonfast.carbon import tables
from carbonfast.report.history import History
from carbonfast.report.record import Record
from tests.fakes.powercap import FakePowercap

# The header CodeCarbon 3.2 writes, as found in emissions.csv files it produced.
CODECARBON_HEADER = [
    "timestamp",
    "project_name",
    "run_id",
    "experiment_id",
    "duration",
    "emissions",
    "emissions_rate",
    "cpu_power",
    "gpu_power",
    "ram_power",
    "cpu_energy",
    "gpu_energy",
    "ram_energy",
    "energy_consumed",
    "water_consumed",
    "country_name",
    "country_iso_code",
    "region",
    "cloud_provider",
    "cloud_region",
    "os",
    "python_version",
    "codecarbon_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "longitude",
    "latitude",
    "ram_total_size",
    "tracking_mode",
    "cpu_utilization_percent",
    "gpu_utilization_percent",
    "ram_utilization_percent",
    "ram_used_gb",
    "on_cloud",
    "pue",
    "wue",
]


def _cli(*args: str, root: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "carbonfast.cli", *args],
        env={**os.environ, "CARBONFAST_POWERCAP_ROOT": str(root), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def _bump(fake: FakePowercap, zone: str, delta_uj: int, sleep_s: float = 0.0) -> list[str]:
    path = fake.path(zone)
    code = (
        f"import time; time.sleep({sleep_s}); p={str(path)!r}; v=int(open(p).read()); "
        f"open(p,'w').write(str(v+{delta_uj}))"
    )
    return [sys.executable, "-c", code]


def test_csv_has_codecarbons_columns_units_and_one_header(
    fake: FakePowercap, tmp_path: Path
) -> None:
    out_csv = tmp_path / "emissions.csv"
    for _ in range(2):
        r = _cli(
            "--country", "FR", "run", "--attribute", "off", "--csv", str(out_csv), "--",
            *_bump(fake, "intel-rapl:0", 36_000_000),
            root=fake.root, cwd=tmp_path,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    with open(out_csv, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == CODECARBON_HEADER
    assert len(rows) == 3  # the header once
    row = dict(zip(rows[0], rows[1], strict=True))
    g = tables.countries()["countries"]["FRA"]["g_per_kwh"]
    assert float(row["energy_consumed"]) == pytest.approx(36 / 3.6e6)  # kWh
    assert float(row["cpu_energy"]) == pytest.approx(36 / 3.6e6)
    assert float(row["emissions"]) == pytest.approx(36 / 3.6e6 * g / 1000)  # kg
    duration = float(row["duration"])
    assert float(row["cpu_power"]) == pytest.approx(36 / duration)  # W
    assert (row["country_iso_code"], row["country_name"]) == ("FRA", "France")
    assert row["project_name"] == "carbonfast" and row["on_cloud"] == "N"
    # The machine's figures, as without attribution.
    assert row["tracking_mode"] == "machine"


def test_a_csv_with_other_columns_is_kept_aside(tmp_path: Path) -> None:
    from carbonfast.report import emissions_csv

    old = tmp_path / "emissions.csv"
    old.write_text("timestamp,project_name,run_id,duration\n2024-01-01,x,y,1\n")
    report = {"started_at": "2026-01-01T00:00:00+00:00", "duration_s": 1.0, "energy_j": 3.6e6}
    emissions_csv.append(old, emissions_csv.row(Record.from_dict(report)))
    assert (
        (tmp_path / "emissions.csv.bak").read_text().startswith("timestamp,project_name,run_id,d")
    )
    assert old.read_text().splitlines()[0].split(",") == CODECARBON_HEADER


def test_csv_lines_and_ram_size_are_as_codecarbon_writes_them(
    fake: FakePowercap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LF line endings, as CodeCarbon's pandas to_csv writes them (csv's default is CRLF), and
    ram_total_size in GiB, as CodeCarbon's RAM gives it: in emissions.csv and the task file."""
    pytest.importorskip("codecarbon")
    from codecarbon.external.ram import RAM

    from carbonfast.compat.codecarbon import OfflineEmissionsTracker
    from carbonfast.report import emissions_csv

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    gib = RAM(tracking_mode="machine").machine_memory_GB
    path = tmp_path / "emissions.csv"
    report = {"started_at": "2026-01-01T00:00:00+00:00", "duration_s": 1.0, "energy_j": 3.6e6}
    for _ in range(2):
        emissions_csv.append(path, emissions_csv.row(Record.from_dict(report)))
    monkeypatch.setenv("CARBONFAST_POWERCAP_ROOT", str(fake.root))
    logs = tmp_path / "logs"
    logs.mkdir()
    tracker = OfflineEmissionsTracker(output_dir=str(logs), country_iso_code="FRA")
    tracker.start_task("step")
    fake.add("intel-rapl:0", 1_000_000)
    tracker.stop_task()
    tracker.stop()
    [task_file] = logs.glob("emissions_base_*.csv")
    for f, rows in ((path, 2), (logs / "emissions.csv", 1), (task_file, 1)):
        raw = f.read_bytes()
        assert b"\r" not in raw and raw.count(b"\n") == rows + 1, f
        for row in _csv_rows(f)[1]:
            assert float(row["ram_total_size"]) == pytest.approx(gib, rel=1e-9), f


def test_runs_land_in_the_history_and_can_be_reported(fake: FakePowercap, tmp_path: Path) -> None:
    env = {"CARBONFAST_HISTORY": str(tmp_path / "h.sqlite")}
    r = _cli(
        "run", "--label", "train-a", "--", *_bump(fake, "intel-rapl:0", 5_000_000),
        root=fake.root, cwd=tmp_path, **env,
    )  # fmt: skip
    assert r.returncode == 0 and "saved as run 1" in r.stderr
    _cli("run", "--label", "eval-b", "--", "true", root=fake.root, cwd=tmp_path, **env)
    listed = json.loads(_cli("history", "--json", root=fake.root, cwd=tmp_path, **env).stdout)
    assert [(x["id"], x["label"], x["kind"]) for x in listed] == [
        (2, "eval-b", "run"),
        (1, "train-a", "run"),
    ]
    assert listed[1]["energy_j"] == 5.0
    only = _cli("history", "--label", "train", root=fake.root, cwd=tmp_path, **env).stdout
    assert "train-a" in only and "eval-b" not in only
    shown = _cli("report", "1", root=fake.root, cwd=tmp_path, **env)
    assert "package-0" in shown.stdout and "5.0000 J" in shown.stdout
    missing = _cli("report", "99", root=fake.root, cwd=tmp_path, **env)
    assert missing.returncode == 2 and "no run 99" in missing.stderr


def test_every_entry_the_history_lists_opens_as_a_report(
    fake: FakePowercap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "h.sqlite"
    env = {"CARBONFAST_HISTORY": str(path)}
    monkeypatch.setenv("CARBONFAST_HISTORY", str(path))
    r = _cli(
        "run", "--", *_bump(fake, "intel-rapl:0", 2_000_000), root=fake.root, cwd=tmp_path, **env
    )
    assert r.returncode == 0, r.stderr
    meter = cf.Meter(fake.root, history=str(path))
    with meter.measure("step"):
        fake.add("intel-rapl:0", 1_000_000)
    with meter.measure("kept", keep=True):
        fake.add("intel-rapl:0", 1_000_000)
    meter._recorder.flush()
    cf.bench({"noop": lambda: None}, meter=meter, rounds=2, record=True)
    listed = json.loads(_cli("history", "--json", root=fake.root, cwd=tmp_path, **env).stdout)
    assert {x["kind"] for x in listed} >= {"run", "window", "windows", "bench"}
    for entry in listed:
        rid = str(entry["id"])
        text = _cli("report", rid, root=fake.root, cwd=tmp_path, **env)
        assert text.returncode == 0, (entry, text.stderr)
        as_json = _cli("report", rid, "--json", root=fake.root, cwd=tmp_path, **env)
        assert as_json.returncode == 0, (entry, as_json.stderr)
        assert json.loads(as_json.stdout)["kind"] == entry["kind"]
        html_file = tmp_path / f"{rid}.html"
        as_html = _cli("report", rid, "--html", str(html_file), root=fake.root, cwd=tmp_path, **env)
        assert as_html.returncode == 0 and "<html" in html_file.read_text(), as_html.stderr


def test_the_csv_cpu_part_is_the_total_on_a_psys_only_machine(
    empty_fake: FakePowercap, tmp_path: Path
) -> None:
    from carbonfast.report import emissions_csv

    empty_fake.zone("intel-rapl:0", "psys", 1_000)
    meter = cf.Meter(empty_fake.root, gpu=False, estimate=False, history="off")
    with meter.measure() as m:
        empty_fake.add("intel-rapl:0", 7_200_000)
    assert m.total_domains == ["psys"] and m.energy_j == pytest.approx(7.2)
    row = emissions_csv.row(m.record())
    # psys stands for the CPU; nothing measured the GPU or the RAM: empty, not 0.
    assert row["cpu_energy"] == pytest.approx(row["energy_consumed"])
    assert row["cpu_energy"] == pytest.approx(2e-6)
    assert row["gpu_energy"] == row["ram_energy"] == ""


def test_kept_windows_land_in_the_history_one_by_one(fake: FakePowercap, tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    meter = cf.Meter(fake.root, history=path)
    with meter.measure("w1", keep=True):
        fake.add("intel-rapl:0", 1_000_000)

    @cf.track(meter=meter, label="tracked", keep=True)
    def f() -> None:
        fake.add("intel-rapl:0", 2_000_000)

    f()
    meter.begin("named")
    meter.end("named", keep=True)
    meter._recorder.flush()
    rows = History(path).list()
    assert [(r["label"], r["kind"], r["energy_j"]) for r in rows] == [
        ("named", "window", 0.0),
        ("tracked", "window", 2.0),
        ("w1", "window", 1.0),
    ]
    record, _ = History(path).get(rows[-1]["id"])
    assert record.domains["package-0"].energy_j == 1.0


def test_other_windows_are_added_up_per_label(fake: FakePowercap, tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    meter = cf.Meter(fake.root, history=path)
    for j in (1, 2, 3):
        with meter.measure("step"):
            fake.add("intel-rapl:0", j * 1_000_000)

    @cf.measure(meter=meter)
    def anonymous() -> None:
        fake.add("intel-rapl:0", 4_000_000)

    anonymous()
    meter._recorder.flush()
    with meter.measure("step"):  # a later flush adds to the same row
        fake.add("intel-rapl:0", 10_000_000)
    meter._recorder.flush()
    rows = History(path).list()
    by_label = {r["label"].rsplit(".", 1)[-1]: (r["kind"], r["count"], r["energy_j"]) for r in rows}
    assert by_label == {"anonymous": ("windows", 1, 4.0), "step": ("windows", 4, 16.0)}
    step = next(r for r in rows if r["label"] == "step")
    record, _ = History(path).get(step["id"])
    assert record.kind == "windows" and record.sums is not None
    assert (record.sums["min_j"], record.sums["max_j"], record.sums["mean_j"]) == (1.0, 10.0, 4.0)
    assert record.sums["first_at"] <= record.sums["last_at"]
    assert [r["label"] for r in History(path).list(kind="run")] == []
    assert len(History(path).list(kind="window")) == 2


def test_labels_past_the_cap_are_added_up_together(fake: FakePowercap, tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    meter = cf.Meter(fake.root, history=path)
    meter._tally = cf._native.Tally(max_labels=3)
    meter._native.record_into(meter._tally, meter._recorder)
    for i in range(10):
        with meter.measure(f"step {i}"):
            fake.add("intel-rapl:0", 1_000_000)
    meter._recorder.flush()
    rows = History(path).list()
    assert len(rows) == 4
    other = next(r for r in rows if r["label"] == "(other labels)")
    assert other["count"] == 7 and other["energy_j"] == 7.0


def test_a_long_label_is_kept_to_256_bytes(fake: FakePowercap, tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    meter = cf.Meter(fake.root, history=path)
    for _ in range(3):
        with meter.measure("é" * 5000):  # 10 kB: memory per label stays bounded
            fake.add("intel-rapl:0", 1_000_000)
    meter._recorder.flush()
    [row] = History(path).list()
    assert row["label"] == "é" * 128 and row["count"] == 3


def test_many_writers_can_open_a_new_history_at_once(tmp_path: Path) -> None:
    """Trackers in threads, or the ranks of a job, may all open a history that does not exist
    yet: each must open it and add its record, none fail on the schema or the WAL switch."""
    import threading

    errors: list[str] = []
    for round_ in range(25):
        path = tmp_path / f"h{round_}.sqlite"
        barrier = threading.Barrier(8)

        def write(i: int, path: Path = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                record = Record(
                    kind="run",
                    started_at="2026-01-01T00:00:00+00:00",
                    label=f"w{i}",
                    duration_s=1.0,
                    energy_j=1.0,
                )
                History(path).add(record)
            except Exception as e:  # the test collects every failure
                errors.append(f"{type(e).__name__}: {e}")

        threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if not errors:
            assert len(History(path).list()) == 8
        # A history another writer is creating at that instant is not taken for a damaged one.
        assert not list(tmp_path.glob("*.bak*"))
    assert errors == []


def test_the_history_survives_the_writer_being_killed(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    writer = (
        "import carbonfast as cf, time\n"
        f"m = cf.Meter({str(tmp_path / 'none')!r}, history={str(path)!r})\n"
        "while True:\n"
        "    with m.measure('w', keep=True): pass\n"
        "    m._recorder.flush()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], env=os.environ.copy())
    deadline = time.monotonic() + 30
    count = 0
    while count < 200:
        assert time.monotonic() < deadline, "the writer wrote too little"
        time.sleep(0.05)
        if path.exists():
            try:
                with sqlite3.connect(path, timeout=5) as db:
                    count = db.execute("SELECT count(*) FROM runs").fetchone()[0]
            except sqlite3.OperationalError:
                continue  # the schema is being created
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        final = db.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert final >= count
    rows = History(path).list(limit=final)
    assert len(rows) == final and all(r["kind"] == "window" for r in rows)
    assert all(History(path).get(r["id"])[0].label == "w" for r in rows[:20])


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_the_html_report_shows_its_plots_in_a_browser(fake: FakePowercap, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    r = _cli(
        "--country", "DE", "run", "--sample-hz", "50", "--html", str(page), "--",
        *_bump(fake, "intel-rapl:0", 20_000_000, sleep_s=0.5),
        root=fake.root, cwd=tmp_path, CARBONFAST_HISTORY="off",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # The power chart drew (uPlot's canvas and its legend), with no script error.
    root = re.search(r"<html[^>]*>", dom)
    assert root and 'data-ready="1"' in root[0] and 'data-charts="1"' in root[0]
    assert "data-errors" not in root[0]
    assert "u-legend" in dom and "Energy per domain" in dom and "Advice" in dom


@pytest.mark.filterwarnings("ignore:The save_to_\\* parameters are deprecated")
def test_codecarbon_scripts_switch_with_one_import(fake: FakePowercap, tmp_path: Path) -> None:
    from carbonfast.compat.codecarbon import (
        EmissionsTracker,
        OfflineEmissionsTracker,
        track_emissions,
    )

    os.environ["CARBONFAST_POWERCAP_ROOT"] = str(fake.root)
    g = tables.countries()["countries"]["FRA"]["g_per_kwh"]
    try:
        tracker = OfflineEmissionsTracker(
            project_name="demo", output_dir=str(tmp_path), country_iso_code="FRA"
        )
        tracker.start()
        fake.add("intel-rapl:0", 72_000_000)
        tracker.start_task("load")
        fake.add("intel-rapl:0", 3_600_000)
        task = tracker.stop_task()
        kg = tracker.stop()
        assert kg == pytest.approx(75.6 / 3.6e6 * g / 1000)
        assert tracker.final_emissions == kg
        assert tracker.final_emissions_data.energy_consumed == pytest.approx(75.6 / 3.6e6)
        assert task.emissions == pytest.approx(3.6 / 3.6e6 * g / 1000)
        assert tracker._tasks["load"].emissions_data is task

        with EmissionsTracker(project_name="ctx", output_dir=str(tmp_path), save_to_file=False):
            fake.add("intel-rapl:0", 1_000_000)

        @track_emissions(project_name="deco", output_dir=str(tmp_path), offline=True,
                         country_iso_code="FRA")  # fmt: skip
        def work() -> int:
            fake.add("intel-rapl:0", 7_200_000)
            return 3

        assert work() == 3
    finally:
        del os.environ["CARBONFAST_POWERCAP_ROOT"]
    with open(tmp_path / "emissions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["project_name"] for r in rows] == ["demo", "deco"]
    assert float(rows[1]["energy_consumed"]) == pytest.approx(7.2 / 3.6e6)


def test_the_live_line_shows_time_power_and_energy(fake: FakePowercap) -> None:
    import io

    from carbonfast.report.console import LiveLine

    stream = io.StringIO()
    with cf.Meter(fake.root).measure() as m:
        live = LiveLine(m, stream=stream, period_s=0.05)
        live.start()
        fake.add("intel-rapl:0", 3_000_000)
        time.sleep(0.2)
        live.stop()
    text = stream.getvalue()
    assert text.count("\r") >= 3
    assert " W " in text and "3.0000 J" in text


def test_codecarbons_own_writer_and_pandas_read_our_csv(fake: FakePowercap, tmp_path: Path) -> None:
    """CodeCarbon's FileOutput accepts our file's header (it backs up files it does not) and
    appends its own row after ours; pandas reads both back."""
    pytest.importorskip("codecarbon")
    import pandas as pd
    from codecarbon.output_methods.emissions_data import EmissionsData
    from codecarbon.output_methods.file import FileOutput

    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    os.environ["CARBONFAST_POWERCAP_ROOT"] = str(fake.root)
    try:
        tracker = OfflineEmissionsTracker(output_dir=str(tmp_path), country_iso_code="FRA")
        tracker.start()
        fake.add("intel-rapl:0", 36_000_000)
        tracker.stop()
    finally:
        del os.environ["CARBONFAST_POWERCAP_ROOT"]
    ours = tracker.final_emissions_data.values
    theirs = EmissionsData(**{**ours, "project_name": "codecarbon-itself"})
    path = tmp_path / "emissions.csv"
    FileOutput("emissions.csv", str(tmp_path)).out(theirs, None)
    assert not list(tmp_path.glob("emissions.csv.bak*")), "CodeCarbon rejected our header"
    df = pd.read_csv(path)
    assert list(df.columns) == CODECARBON_HEADER
    assert list(df.project_name) == ["codecarbon", "codecarbon-itself"]
    assert df.energy_consumed.tolist() == pytest.approx([36 / 3.6e6] * 2)


# The header CodeCarbon 3.3 writes to emissions_<experiment_name>_<run_id>.csv for an offline
# tracker: its TaskEmissionsData's fields less those it has no value for (region, longitude,
# latitude), which pandas drops.
CODECARBON_TASK_HEADER = [
    "task_name",
    *(c for c in CODECARBON_HEADER if c not in ("experiment_id", "region", "longitude",
                                                 "latitude", "pue", "wue")),
]  # fmt: skip


def _csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_codecarbon_task_mode_returns_the_kg_and_writes_a_row_per_task(
    fake: FakePowercap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """start_task/stop_task without start(), then stop(): the kg of the tasks, emissions.csv
    and emissions_base_<run_id>.csv with one row per task, as CodeCarbon 3.3 writes them."""
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    monkeypatch.setenv("CARBONFAST_POWERCAP_ROOT", str(fake.root))
    g = tables.countries()["countries"]["FRA"]["g_per_kwh"]
    out = tmp_path / "logs"
    out.mkdir()
    tracker = OfflineEmissionsTracker(
        project_name="tasks", output_dir=str(out), country_iso_code="FRA"
    )
    for name, joules in (("load", 3.6), ("train", 36.0)):
        tracker.start_task(name)
        fake.add("intel-rapl:0", int(joules * 1e6))
        task = tracker.stop_task()
        assert tracker._tasks[name].emissions_data is task
        assert task.emissions == pytest.approx(joules / 3.6e6 * g / 1000)
    fake.add("intel-rapl:0", 72_000_000)  # between tasks: outside every task, as in CodeCarbon
    tracker.start_task("load")  # a name used before: a row of its own, as CodeCarbon keeps it
    fake.add("intel-rapl:0", 1_800_000)
    kg = tracker.stop()  # stops the running task first

    assert isinstance(kg, float)
    assert kg == pytest.approx(41.4 / 3.6e6 * g / 1000)
    assert tracker.final_emissions == kg
    header, runs = _csv_rows(out / "emissions.csv")
    assert header == CODECARBON_HEADER and len(runs) == 1
    assert float(runs[0]["energy_consumed"]) == pytest.approx(41.4 / 3.6e6)
    run_id = runs[0]["run_id"]
    task_file = out / f"emissions_base_{run_id}.csv"
    assert sorted(os.listdir(out)) == ["emissions.csv", task_file.name]
    header, tasks = _csv_rows(task_file)
    assert header == CODECARBON_TASK_HEADER
    names = [t["task_name"] for t in tasks]
    assert names[:2] == ["load", "train"] and names[2].startswith("load_") and len(names) == 3
    assert [float(t["energy_consumed"]) for t in tasks] == pytest.approx(
        [3.6 / 3.6e6, 36 / 3.6e6, 1.8 / 3.6e6]
    )
    assert {(t["run_id"], t["project_name"]) for t in tasks} == {(run_id, "tasks")}


def test_codecarbon_task_file_is_named_after_the_experiment(
    fake: FakePowercap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carbonfast.compat.codecarbon import EmissionsTracker

    monkeypatch.setenv("CARBONFAST_POWERCAP_ROOT", str(fake.root))
    tracker = EmissionsTracker(output_dir=str(tmp_path), experiment_name="ablation")
    tracker.start()
    tracker.start_task("step")
    fake.add("intel-rapl:0", 3_600_000)
    tracker.stop_task()
    tracker.stop()
    run_id = _csv_rows(tmp_path / "emissions.csv")[1][0]["run_id"]
    assert _csv_rows(tmp_path / f"emissions_ablation_{run_id}.csv")[1][0]["task_name"] == "step"


def test_codecarbon_task_mode_files_match_the_real_codecarbons(
    fake: FakePowercap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same task-mode script run by CodeCarbon itself and by the drop-in: the same files,
    headers, row counts and return types (energy values are not compared)."""
    pytest.importorskip("codecarbon")
    import codecarbon

    from carbonfast.compat import codecarbon as drop_in

    monkeypatch.setenv("CARBONFAST_POWERCAP_ROOT", str(fake.root))

    def run(module: Any, out: Path) -> dict[str, Any]:
        out.mkdir()
        tracker = module.OfflineEmissionsTracker(
            project_name="p", output_dir=str(out), country_iso_code="FRA", log_level="error"
        )
        stopped = []
        for name in ("a", "b", "a"):
            tracker.start_task(name)
            _busy(0.05)
            fake.add("intel-rapl:0", 1_000_000)
            stopped.append(tracker.stop_task())
        kg = tracker.stop()
        run_header, runs = _csv_rows(out / "emissions.csv")
        run_id = runs[0]["run_id"]
        task_header, tasks = _csv_rows(out / f"emissions_base_{run_id}.csv")
        return {
            "files": sorted(f.replace(run_id, "<run_id>") for f in os.listdir(out)),
            "run_header": run_header,
            "runs": len(runs),
            "task_header": task_header,
            "task_names": [re.sub(r"_[0-9a-f-]{36}$", "_<uuid>", t["task_name"]) for t in tasks],
            "task_run_ids": {t["run_id"] for t in tasks} == {run_id},
            "stop": type(kg),
            "stop_task": [(type(s.emissions), type(s.duration)) for s in stopped],
        }

    theirs = run(codecarbon, tmp_path / "codecarbon")
    ours = run(drop_in, tmp_path / "carbonfast")
    assert theirs["files"] == ["emissions.csv", "emissions_base_<run_id>.csv"]
    assert theirs["task_names"] == ["a", "b", "a_<uuid>"]
    assert ours == theirs


@pytest.mark.filterwarnings("ignore:The save_to_\\* parameters are deprecated")
def test_codecarbon_save_to_file_false_writes_nothing_at_all(
    fake: FakePowercap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No emissions.csv, no task file and no history, whichever way the tracker is used."""
    from carbonfast.compat.codecarbon import (
        EmissionsTracker,
        OfflineEmissionsTracker,
        track_emissions,
    )

    monkeypatch.setenv("CARBONFAST_POWERCAP_ROOT", str(fake.root))
    monkeypatch.delenv("CARBONFAST_HISTORY")  # the history's default: .carbonfast/ right here
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    tracker = EmissionsTracker(save_to_file=False)
    tracker.start()
    tracker.start_task("step")
    fake.add("intel-rapl:0", 3_600_000)
    tracker.stop_task()
    assert isinstance(tracker.flush(), float)
    assert isinstance(tracker.stop(), float)
    assert os.listdir(work) == []

    tasks_only = OfflineEmissionsTracker(country_iso_code="FRA", save_to_file=False)
    tasks_only.start_task("step")
    fake.add("intel-rapl:0", 3_600_000)
    tasks_only.stop_task()
    assert isinstance(tasks_only.stop(), float)
    with EmissionsTracker(save_to_file=False):
        fake.add("intel-rapl:0", 3_600_000)
    track_emissions(save_to_file=False)(lambda: None)()
    assert os.listdir(work) == []


def test_each_domain_of_a_record_carries_the_part_the_core_gives_it(
    empty_fake: FakePowercap,
) -> None:
    """The part (cpu, gpu, ram) is the core's rule, stored with the domain, and kept through
    the record's JSON form."""
    from carbonfast.report.record import Record

    empty_fake.zone("intel-rapl:0", "package-0", 1_000)
    empty_fake.zone("intel-rapl:0:0", "core", 1_000)
    empty_fake.zone("intel-rapl:0:1", "dram", 1_000)
    meter = cf.Meter(empty_fake.root, gpu=False, estimate=False, history="off")
    with meter.measure() as m:
        empty_fake.add("intel-rapl:0", 1_000_000)
    record = m.record()
    expected = {d.name: d.part for d in meter.domains}
    assert {"cpu", "ram", None} <= set(expected.values())
    assert {n: d.part for n, d in record.domains.items()} == expected
    again = Record.from_dict(record.to_dict())
    assert {n: d.part for n, d in again.domains.items()} == expected
