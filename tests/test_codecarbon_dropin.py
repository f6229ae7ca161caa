"""carbonfast.compat.codecarbon against CodeCarbon 3.3: module paths, arguments, configuration,
life cycle, outputs, logging, the data written and the places, compared with the real
codecarbon where that is cheap and offline, on the fake powercap tree otherwise."""

from __future__ import annotations

import csv
import dataclasses
import http.server
import importlib
import inspect
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from carbonfast.carbon import tables
from tests.fakes.powercap import FakePowercap

FRA = tables.countries()["countries"]["FRA"]["g_per_kwh"]
WORLD = tables.countries()["regions"]["World"]["g_per_kwh"]
KWH = 3.6e6


@pytest.fixture
def work(fake: FakePowercap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Trackers on the fake tree, in an empty working directory, with an empty home and no
    CODECARBON_* variables: no configuration but what a test writes."""
    monkeypatch.setenv("CARBONFAST_POWERCAP_ROOT", str(fake.root))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.lower().startswith("codecarbon_"):
            monkeypatch.delenv(name)
    directory = tmp_path / "work"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


@pytest.fixture
def cc_log() -> Iterator[list[logging.LogRecord]]:
    """The records of the "codecarbon" logger (which does not propagate to the root)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    logger = logging.getLogger("codecarbon")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _messages(records: list[logging.LogRecord], level: int | None = None) -> list[str]:
    return [r.getMessage() for r in records if level is None or r.levelno == level]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


# -- 0. module paths and signatures ----------------------------------------------------------

MODULES = {
    "": ("EmissionsTracker", "OfflineEmissionsTracker", "OutputMethod", "track_emissions"),
    ".emissions_tracker": (
        "BaseEmissionsTracker",
        "EmissionsTracker",
        "OfflineEmissionsTracker",
        "TaskEmissionsTracker",
        "track_emissions",
        "track_task_emissions",
    ),
    ".output": (
        "BaseOutput",
        "OutputMethod",
        "EmissionsData",
        "TaskEmissionsData",
        "FileOutput",
        "LoggerOutput",
        "GoogleCloudLoggerOutput",
        "HTTPOutput",
        "CodeCarbonAPIOutput",
        "PrometheusOutput",
        "LogfireOutput",
        "BoAmpsOutput",
    ),
    ".output_methods.base_output": ("BaseOutput", "OutputMethod"),
    ".output_methods.emissions_data": ("EmissionsData", "TaskEmissionsData"),
    ".output_methods.file": ("FileOutput",),
    ".output_methods.logger": ("LoggerOutput", "GoogleCloudLoggerOutput"),
    ".output_methods.http": ("HTTPOutput", "CodeCarbonAPIOutput"),
    ".output_methods.metrics.prometheus": ("PrometheusOutput",),
    ".output_methods.metrics.logfire": ("LogfireOutput",),
    ".output_methods.boamps": (
        "BoAmpsOutput",
        "BoAmpsTask",
        "BoAmpsAlgorithm",
        "BoAmpsDataset",
        "BoAmpsHeader",
        "BoAmpsPublisher",
        "BoAmpsReport",
        "map_emissions_to_boamps",
    ),
    ".external.task": ("Task",),
    ".core.config": ("get_hierarchical_config",),
}


def test_every_codecarbon_module_path_has_its_names_in_the_drop_in() -> None:
    pytest.importorskip("codecarbon")
    for suffix, names in MODULES.items():
        theirs = importlib.import_module("codecarbon" + suffix)
        ours = importlib.import_module("carbonfast.compat.codecarbon" + suffix)
        for name in names:
            assert hasattr(theirs, name), f"codecarbon{suffix}.{name} (the test's list)"
            assert hasattr(ours, name), f"carbonfast.compat.codecarbon{suffix}.{name}"
    import codecarbon

    import carbonfast.compat.codecarbon as drop_in

    assert sorted(drop_in.__all__) == sorted(codecarbon.__all__)
    assert [m.value for m in drop_in.OutputMethod] == [m.value for m in codecarbon.OutputMethod]


def _parameters(f: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.kind) for p in inspect.signature(f).parameters.values()]


def test_signatures_are_codecarbons_and_a_misspelt_argument_is_a_type_error(work: Path) -> None:
    pytest.importorskip("codecarbon")
    from codecarbon import emissions_tracker as theirs
    from codecarbon import output as their_output

    from carbonfast.compat.codecarbon import emissions_tracker as ours
    from carbonfast.compat.codecarbon import output as our_output

    pairs = [
        (theirs.BaseEmissionsTracker.__init__, ours.BaseEmissionsTracker.__init__),
        (theirs.OfflineEmissionsTracker.__init__, ours.OfflineEmissionsTracker.__init__),
        (theirs.EmissionsTracker, ours.EmissionsTracker),
        (theirs.track_emissions, ours.track_emissions),
        (theirs.track_task_emissions, ours.track_task_emissions),
        (theirs.TaskEmissionsTracker, ours.TaskEmissionsTracker),
    ]
    for name in (
        "FileOutput",
        "LoggerOutput",
        "HTTPOutput",
        "PrometheusOutput",
        "BoAmpsOutput",
        "CodeCarbonAPIOutput",
    ):
        pairs.append((getattr(their_output, name), getattr(our_output, name)))
    for their, our in pairs:
        assert _parameters(our) == _parameters(their), our
    with pytest.raises(TypeError, match="projet_name"):
        ours.EmissionsTracker(projet_name="x")
    with pytest.raises(TypeError, match="projet_name"):
        ours.OfflineEmissionsTracker(country_iso_code="FRA", projet_name="x")


# -- 1. life cycle ---------------------------------------------------------------------------


def _life_cycle(module: Any, out: Path) -> dict[str, Any]:
    """The same script, run by either module: what it returns, keeps and writes."""
    out.mkdir()
    tracker = module.OfflineEmissionsTracker(
        country_iso_code="FRA", output_dir=str(out), log_level="critical"
    )
    got: dict[str, Any] = {}
    tracker.start()
    tracker.start_task("a")
    tracker.start_task("b")  # while "a" runs: warned and ignored
    got["active"] = tracker._active_task
    first = tracker.stop_task()
    got["stop_task"] = type(first).__name__
    got["stop_task_again"] = tracker.stop_task()  # nothing running: None
    tracker.start_task("a")  # a name used before: kept as a_<uuid>
    _busy(0.02)
    tracker.stop_task()
    got["tasks"] = [re.sub(r"_[0-9a-f-]{36}$", "_<uuid>", k) for k in tracker._tasks]
    got["task_objects"] = [
        (type(t).__name__, type(t.emissions_data).__name__, t.is_active, t.task_name == k)
        for k, t in tracker._tasks.items()
    ]
    kg = tracker.stop()
    again = tracker.stop()
    got["stop"] = (type(kg).__name__, again == kg, tracker.final_emissions == kg)
    got["final"] = type(tracker.final_emissions_data).__name__
    got["values"] = type(tracker.final_emissions_data.values).__name__
    got["json"] = sorted(json.loads(tracker.final_emissions_data.toJSON()))
    got["hardware"] = sorted(tracker.get_detected_hardware())
    got["run_id"] = type(tracker.run_id).__name__
    run_id = str(tracker.run_id)
    got["files"] = sorted(f.replace(run_id, "<run_id>") for f in os.listdir(out))
    rows = _rows(out / "emissions.csv")
    got["rows"] = (len(rows), rows[0]["run_id"] == run_id)
    got["task_rows"] = [
        re.sub(r"_[0-9a-f-]{36}$", "_<uuid>", r["task_name"])
        for r in _rows(out / f"emissions_base_{run_id}.csv")
    ]
    never = module.OfflineEmissionsTracker(
        country_iso_code="FRA", output_dir=str(out), log_level="critical"
    )
    got["never_started"] = (never.flush(), never.stop())
    return got


def test_the_life_cycle_is_codecarbons(work: Path, fake: FakePowercap) -> None:
    """Two stops return the same kg, stop_task() with no task is None, a second task while
    one runs is ignored, a reused name is kept as name_<uuid>, `_tasks` holds Task objects
    with their emissions_data: the same as the real CodeCarbon, script for script."""
    pytest.importorskip("codecarbon")
    import codecarbon

    from carbonfast.compat import codecarbon as drop_in

    theirs = _life_cycle(codecarbon, work / "codecarbon")
    ours = _life_cycle(drop_in, work / "carbonfast")
    assert theirs["tasks"] == ["a", "a_<uuid>"] and theirs["stop"] == ("float", True, True)
    assert ours == theirs


def test_stop_task_without_a_task_and_a_second_task_are_warned(
    work: Path, fake: FakePowercap, cc_log: list[logging.LogRecord]
) -> None:
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(country_iso_code="FRA")
    assert tracker.stop_task() is None
    tracker.start_task("a")
    tracker.start_task("b")
    fake.add("intel-rapl:0", 3_600_000)
    data = tracker.stop_task()
    assert list(tracker._tasks) == ["a"]
    assert data is tracker._tasks["a"].emissions_data
    assert data.energy_consumed == pytest.approx(3.6 / KWH)
    warnings = _messages(cc_log, logging.WARNING)
    assert "stop_task : No active task to stop." in warnings
    assert "A task is already under measure" in warnings
    assert tracker.stop() == tracker.stop() == pytest.approx(3.6 / KWH * FRA / 1000)


def test_task_helpers_track_their_tasks(work: Path, fake: FakePowercap) -> None:
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker
    from carbonfast.compat.codecarbon.emissions_tracker import (
        TaskEmissionsTracker,
        track_task_emissions,
    )

    tracker = OfflineEmissionsTracker(country_iso_code="FRA")
    with TaskEmissionsTracker("load", tracker=tracker):
        fake.add("intel-rapl:0", 3_600_000)

    @track_task_emissions(tracker=tracker, task_name="infer")
    def infer() -> int:
        fake.add("intel-rapl:0", 7_200_000)
        return 1

    assert infer() == 1
    tracker.stop()
    assert [t.emissions_data.energy_consumed for t in tracker._tasks.values()] == pytest.approx(
        [3.6 / KWH, 7.2 / KWH]
    )
    assert list(tracker._tasks) == ["load", "infer"]


# -- 2. arguments ----------------------------------------------------------------------------


def test_emissions_data_are_codecarbons_dataclasses() -> None:
    pytest.importorskip("codecarbon")
    from codecarbon.output_methods import emissions_data as theirs

    from carbonfast.compat.codecarbon.output_methods import emissions_data as ours

    for name in ("EmissionsData", "TaskEmissionsData"):
        their_fields = [(f.name, f.default) for f in dataclasses.fields(getattr(theirs, name))]
        our_fields = [(f.name, f.default) for f in dataclasses.fields(getattr(ours, name))]
        assert our_fields == their_fields, name
    values = {
        f.name: 1.5 if f.type in ("float", float) else "x"
        for f in dataclasses.fields(theirs.EmissionsData)
    }
    values.update(duration=10.0, emissions=2.0)
    a, b = theirs.EmissionsData(**values), ours.EmissionsData(**values)
    assert repr(b).replace("carbonfast.compat.", "") == repr(a)
    assert type(b.values) is type(a.values) and b.values == a.values
    assert b.toJSON() == a.toJSON()
    earlier = {**values, "duration": 4.0, "emissions": 0.5}
    a.compute_delta_emission(theirs.EmissionsData(**earlier))
    b.compute_delta_emission(ours.EmissionsData(**earlier))
    assert b.values == a.values


def test_forced_intensity_pue_and_wue_are_applied_as_codecarbon_does(
    work: Path, fake: FakePowercap
) -> None:
    """pue multiplies power and energy (hence emissions) in the drop-in; water = energy x wue;
    the forced intensity beats the country's."""
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA", force_carbon_intensity_g_co2e_kwh=100, pue=1.5, wue=2.0
    )
    tracker.start()
    fake.add("intel-rapl:0", 36_000_000)  # 36 J on the package
    fake.add("intel-rapl:0:1", 3_600_000)  # 3.6 J on DRAM
    kg = tracker.stop()
    data = tracker.final_emissions_data
    assert data.energy_consumed == pytest.approx(39.6 * 1.5 / KWH)
    assert data.cpu_energy == pytest.approx(36 * 1.5 / KWH)
    assert data.ram_energy == pytest.approx(3.6 * 1.5 / KWH)
    assert data.cpu_power == pytest.approx(36 * 1.5 / data.duration)
    assert kg == pytest.approx(39.6 * 1.5 / KWH * 100 / 1000)
    assert data.water_consumed == pytest.approx(2.0 * data.energy_consumed)
    assert (data.pue, data.wue) == (1.5, 2.0)
    assert (data.country_iso_code, data.country_name) == ("FRA", "France")
    row = _rows(work / "emissions.csv")[0]
    assert (row["pue"], row["wue"]) == ("1.5", "2.0")


def test_rapl_include_dram_and_prefer_psys_choose_the_cpu_figure(
    work: Path, fake: FakePowercap
) -> None:
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    fake.zone("intel-rapl:1", "psys", 0)

    def run(**options: Any) -> Any:
        tracker = OfflineEmissionsTracker(country_iso_code="FRA", **options)
        tracker.start()
        fake.add("intel-rapl:0", 36_000_000)
        fake.add("intel-rapl:0:1", 3_600_000)
        fake.add("intel-rapl:1", 72_000_000)
        tracker.stop()
        return tracker.final_emissions_data

    plain = run()
    assert (plain.cpu_energy, plain.ram_energy) == pytest.approx((36 / KWH, 3.6 / KWH))
    dram = run(rapl_include_dram=True)
    assert (dram.cpu_energy, dram.ram_energy) == pytest.approx((39.6 / KWH, 0.0))
    assert dram.energy_consumed == pytest.approx(plain.energy_consumed)
    psys = run(rapl_prefer_psys=True)
    assert (psys.cpu_energy, psys.ram_energy) == pytest.approx((72 / KWH, 0.0))
    assert psys.energy_consumed == pytest.approx(72 / KWH)
    assert psys.emissions == pytest.approx(72 / KWH * FRA / 1000)


def test_live_updates_go_to_the_outputs_that_take_them_from_a_thread(
    work: Path, fake: FakePowercap
) -> None:
    """measure_power_secs x api_call_interval paces live_out, from a background thread that
    runs only while some output overrides live_out; out, task_out and exit are called as
    CodeCarbon calls them."""
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker
    from carbonfast.compat.codecarbon.output import BaseOutput, EmissionsData, TaskEmissionsData

    calls: list[tuple[Any, ...]] = []

    class Mine(BaseOutput):
        def out(self, total: EmissionsData, delta: EmissionsData) -> None:
            calls.append(("out", total.project_name, delta.duration <= total.duration))

        def live_out(self, total: EmissionsData, delta: EmissionsData) -> None:
            calls.append(("live_out", threading.current_thread().name))

        def task_out(self, data: list[TaskEmissionsData], experiment_name: str) -> None:
            calls.append(("task_out", [d.task_name for d in data], experiment_name))

        def exit(self) -> None:
            calls.append(("exit",))

    def live_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name == "codecarbon-live"]

    quiet = OfflineEmissionsTracker(country_iso_code="FRA", measure_power_secs=0.01)
    quiet.start()
    assert live_threads() == []  # the CSV output takes no live updates: no thread
    quiet.stop()

    tracker = OfflineEmissionsTracker(
        project_name="live",
        country_iso_code="FRA",
        output_handlers=[Mine()],
        measure_power_secs=0.02,
        api_call_interval=2,
    )
    tracker.start()
    assert live_threads() == ["codecarbon-live"]
    tracker.start_task("step")
    tracker.stop_task()
    deadline = time.monotonic() + 60
    while sum(c[0] == "live_out" for c in calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    tracker.flush()
    tracker.stop()
    assert live_threads() == []
    assert ("live_out", "codecarbon-live") in calls
    finals = [c for c in calls if c[0] != "live_out"]
    assert finals == [
        ("out", "live", True),
        ("task_out", ["step"], "base"),
        ("out", "live", True),
        ("task_out", ["step"], "base"),
        ("exit",),
    ]


def test_logger_output_and_the_codecarbon_log(
    work: Path, fake: FakePowercap, capsys: pytest.CaptureFixture[str]
) -> None:
    """save_to_logger with logging_logger: a JSON record of the run per flush and stop; the
    "codecarbon" logger writes CodeCarbon's key lines to stderr in its format, at log_level."""
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker
    from carbonfast.compat.codecarbon.output import LoggerOutput

    mine = logging.getLogger("test-emissions")
    mine.propagate = False
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    mine.addHandler(Keep())
    mine.setLevel(logging.INFO)
    with pytest.warns(DeprecationWarning, match="save_to_"):
        tracker = OfflineEmissionsTracker(
            project_name="logged",
            country_iso_code="FRA",
            save_to_logger=True,
            logging_logger=LoggerOutput(mine, logging.INFO),
        )
    tracker.start()
    fake.add("intel-rapl:0", 3_600_000)
    tracker.stop()
    payload = json.loads(records[-1])
    assert payload["project_name"] == "logged"
    assert payload["energy_consumed"] == pytest.approx(3.6 / KWH)
    err = capsys.readouterr().err
    assert re.search(r"^\[codecarbon INFO @ \d\d:\d\d:\d\d\] offline tracker init$", err, re.M)
    for line in (
        "Emissions data (if any) will be saved to file",
        ">>> Tracker's metadata:",
        "Energy consumed for All CPU : 0.000001 kWh",
        "0.000001 kWh of electricity and 0.000000 L of water were used since the beginning.",
    ):
        assert line in err

    quiet = OfflineEmissionsTracker(
        country_iso_code="FRA", log_level="error", logger_preamble="job-7"
    )
    quiet.start()
    quiet.stop()
    quiet.stop_task()  # a warning: below the level
    assert capsys.readouterr().err == ""
    OfflineEmissionsTracker(country_iso_code="XYZ", log_level="error", logger_preamble="job-7")
    assert re.search(
        r"^\[codecarbon ERROR @ [\d:]{8}\]\[job-7\] Does not support country",
        capsys.readouterr().err,
        re.M,
    )


# -- 3. configuration ------------------------------------------------------------------------


def _write_config(directory: Path, **settings: str) -> None:
    lines = "".join(f"{k} = {v}\n" for k, v in settings.items())
    (directory / ".codecarbon.config").write_text(f"[codecarbon]\n{lines}")


def test_configuration_layers_are_codecarbons(
    work: Path, monkeypatch: pytest.MonkeyPatch, cc_log: list[logging.LogRecord]
) -> None:
    """Arguments > CODECARBON_* > ./.codecarbon.config > ~/.codecarbon.config, key for key,
    the same settings as the real CodeCarbon reads; a bad value is logged and ignored."""
    pytest.importorskip("codecarbon")
    import codecarbon

    from carbonfast.compat import codecarbon as drop_in

    _write_config(
        Path(os.environ["HOME"]),
        project_name="global",
        experiment_id="global-id",
        measure_power_secs="3",
        pue="1.2",
        tracking_mode="process",
    )
    _write_config(work, project_name="local", experiment_id="local-id", wue="0.5")
    monkeypatch.setenv("CODECARBON_EXPERIMENT_ID", "env-id")
    monkeypatch.setenv("codecarbon_output_methods", "logger,csv")
    names = (
        "project_name",
        "experiment_id",
        "measure_power_secs",
        "pue",
        "wue",
        "tracking_mode",
        "output_file",
        "experiment_name",
    )

    def settings(module: Any, **arguments: Any) -> dict[str, Any]:
        tracker = module.OfflineEmissionsTracker(
            country_iso_code="FRA",
            log_level="error",
            logging_logger=logging.getLogger("x"),
            **arguments,
        )
        got = {name: getattr(tracker, f"_{name}") for name in names}
        got["output_methods"] = [m.value for m in tracker._output_methods]
        return got

    ours = settings(drop_in)
    assert ours == settings(codecarbon)
    assert ours["project_name"] == "local" and ours["experiment_id"] == "env-id"
    assert ours["pue"] == 1.2 and ours["wue"] == 0.5 and ours["tracking_mode"] == "process"
    assert ours["output_methods"] == ["logger", "csv"]
    given = {"project_name": "argument", "pue": 2, "experiment_id": "arg-id"}
    assert settings(drop_in, **given) == settings(codecarbon, **given)

    monkeypatch.setenv("CODECARBON_PUE", "high")
    monkeypatch.setenv("CODECARBON_TRACKING_MODE", "everything")
    cc_log.clear()
    tracker = drop_in.OfflineEmissionsTracker(country_iso_code="FRA")
    assert (tracker._pue, tracker._tracking_mode) == (1.0, "machine")
    errors = _messages(cc_log, logging.ERROR)
    assert any("CONFIG - Value for 'pue'" in e and "'high'" in e for e in errors)
    assert any("CONFIG - Value for 'tracking_mode'" in e for e in errors)
    with pytest.raises(ValueError, match="tracking_mode='everything'"):
        drop_in.OfflineEmissionsTracker(country_iso_code="FRA", tracking_mode="everything")


def test_a_missing_output_dir_raises_as_in_codecarbon(work: Path) -> None:
    from carbonfast.compat.codecarbon import EmissionsTracker, OfflineEmissionsTracker

    for make in (EmissionsTracker, OfflineEmissionsTracker):
        with pytest.raises(OSError, match=r"^Folder '/no/such/dir' doesn't exist !"):
            make(output_dir="/no/such/dir")
    _write_config(work, output_dir="missing")
    with pytest.raises(OSError, match="Folder 'missing' doesn't exist !"):
        EmissionsTracker()


# -- 4. outputs ------------------------------------------------------------------------------


def test_on_csv_write_update_keeps_one_row_per_run(work: Path, fake: FakePowercap) -> None:
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    other = OfflineEmissionsTracker(project_name="other", country_iso_code="FRA")
    other.start()
    other.stop()
    for mode, rows in (("update", 2), ("append", 5)):
        tracker = OfflineEmissionsTracker(
            project_name=mode, country_iso_code="FRA", on_csv_write=mode
        )
        tracker.start()
        for joules in (3.6, 7.2):
            fake.add("intel-rapl:0", int(joules * 1e6))
            tracker.flush()
        fake.add("intel-rapl:0", 3_600_000)
        tracker.stop()
        written = _rows(work / "emissions.csv")
        assert len(written) == rows
        mine = [r for r in written if r["project_name"] == mode]
        assert float(mine[-1]["energy_consumed"]) == pytest.approx(14.4 / KWH)
    assert [r["project_name"] for r in written] == ["other", "update", "append", "append", "append"]


def test_output_methods_replace_the_save_to_flags(work: Path, fake: FakePowercap) -> None:
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker, OutputMethod

    with pytest.warns(DeprecationWarning):
        tracker = OfflineEmissionsTracker(
            country_iso_code="FRA", output_methods=[], save_to_file=True
        )
    tracker.start()
    assert isinstance(tracker.stop(), float)
    assert os.listdir(work) == []
    tracker = OfflineEmissionsTracker(country_iso_code="FRA", output_methods=["csv"])
    assert tracker._output_methods == [OutputMethod.CSV]
    tracker.start()
    tracker.stop()
    assert os.listdir(work) == ["emissions.csv"]


def test_the_boamps_report_is_codecarbons(work: Path, fake: FakePowercap) -> None:
    """boamps_report_<run_id>.json with CodeCarbon's structure: the same dict as CodeCarbon's
    own mapper makes from the run's data, but for the measuring tool's name and version."""
    pytest.importorskip("codecarbon")
    from codecarbon.output_methods.boamps import BoAmpsTask
    from codecarbon.output_methods.boamps import map_emissions_to_boamps as theirs
    from codecarbon.output_methods.emissions_data import EmissionsData

    from carbonfast.compat.codecarbon import OfflineEmissionsTracker, OutputMethod

    context = {"task": {"taskStage": "inference", "taskFamily": "chatbot"}, "quality": "high"}
    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA",
        output_methods=[OutputMethod.BOAMPS],
        metadata={"boamps": context},
    )
    tracker.start()
    fake.add("intel-rapl:0", 3_600_000)
    tracker.stop()
    assert os.listdir(work) == [f"boamps_report_{tracker.run_id}.json"]
    report = json.loads((work / f"boamps_report_{tracker.run_id}.json").read_text())
    data = EmissionsData(**tracker.final_emissions_data.values)
    expected = theirs(data, task=BoAmpsTask.from_dict(context["task"]), quality="high").to_dict()
    assert list(report) == list(expected)
    assert report["measures"][0].pop("measurementMethod") == "carbonfast"
    assert expected["measures"][0].pop("measurementMethod") == "codecarbon"
    report["measures"][0].pop("version")
    expected["measures"][0].pop("version")
    assert report == expected
    assert report["measures"][0]["powerConsumption"] == pytest.approx(3.6 / KWH)


class _Endpoint(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []  # noqa: RUF012

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(json.loads(self.rfile.read(length)))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_http_output_posts_json_and_failures_never_reach_the_code(
    work: Path, fake: FakePowercap, cc_log: list[logging.LogRecord]
) -> None:
    from carbonfast.compat.codecarbon import EmissionsTracker

    _Endpoint.received.clear()
    server = http.server.HTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tracker = EmissionsTracker(
            project_name="posted",
            output_methods=[],
            emissions_endpoint=f"http://127.0.0.1:{server.server_port}/emissions",
        )
        tracker.start()
        fake.add("intel-rapl:0", 3_600_000)
        tracker.stop()
    finally:
        server.shutdown()
        server.server_close()
    [payload] = _Endpoint.received
    assert payload["project_name"] == "posted" and "user" in payload
    assert payload["energy_consumed"] == pytest.approx(3.6 / KWH)

    closed = f"http://127.0.0.1:{_closed_port()}"
    tracker = EmissionsTracker(
        output_methods=["prometheus", "api", "logfire"],
        emissions_endpoint=closed + "/emissions",
        prometheus_url=closed,
        api_endpoint=closed,
        api_call_interval=-1,
    )
    tracker.start()
    fake.add("intel-rapl:0", 3_600_000)
    assert tracker.stop() == pytest.approx(3.6 / KWH * WORLD / 1000)
    errors = " | ".join(_messages(cc_log, logging.ERROR))
    for output in ("HTTP Output", "PrometheusOutput", "CodeCarbon API"):
        assert output in errors
    try:
        import logfire  # noqa: F401
    except ImportError:
        assert "pip install logfire" in errors


def test_the_history_is_written_only_when_asked(
    work: Path, fake: FakePowercap, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carbonfast.compat.codecarbon import EmissionsTracker
    from carbonfast.report.history import History

    monkeypatch.delenv("CARBONFAST_HISTORY")
    (work / "pyproject.toml").write_text("[project]\nname = 'x'\n")  # a project: its history
    tracker = EmissionsTracker(project_name="unasked")
    tracker.start()
    tracker.stop()
    assert sorted(os.listdir(work)) == ["emissions.csv", "pyproject.toml"]
    assert not (Path(os.environ["HOME"]) / ".local").exists()

    monkeypatch.setenv("CARBONFAST_HISTORY", str(work / "h.sqlite"))
    tracker = EmissionsTracker(project_name="asked")
    tracker.start()
    fake.add("intel-rapl:0", 3_600_000)
    tracker.stop()
    [run] = History(work / "h.sqlite").list(kind="run")
    assert run["label"] == "asked"


# -- 5. the data -----------------------------------------------------------------------------


def test_the_row_is_written_as_codecarbon_writes_it(work: Path, fake: FakePowercap) -> None:
    """experiment_id, time of writing, utilisation measured, RAM in CodeCarbon's unit, zeros as
    CodeCarbon prints them."""
    pytest.importorskip("codecarbon")
    from codecarbon.external.ram import RAM

    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(country_iso_code="FRA")
    tracker.start()
    _busy(0.2)
    fake.add("intel-rapl:0", 3_600_000)
    tracker.flush()
    before = datetime.now().replace(microsecond=0)
    kg = tracker.stop()
    after = datetime.now()
    first, last = _rows(work / "emissions.csv")
    assert last["experiment_id"] == "5b0fa12a-3dd7-45bb-9766-cc326314d9f1"
    assert before <= datetime.strptime(last["timestamp"], "%Y-%m-%dT%H:%M:%S") <= after
    assert first["timestamp"] <= last["timestamp"]
    assert 0 < float(last["cpu_utilization_percent"]) <= 100
    assert 0 < float(last["ram_utilization_percent"]) < 100
    assert 0 < float(last["ram_used_gb"]) < float(last["ram_total_size"])
    assert float(last["ram_total_size"]) == pytest.approx(RAM().machine_memory_GB, rel=1e-9)
    assert last["gpu_utilization_percent"] == "0"  # CodeCarbon's mean of no samples
    for column in ("gpu_power", "gpu_energy", "water_consumed", "wue"):
        assert last[column] == "0.0", column
    place = (last["pue"], last["on_cloud"], last["region"], last["longitude"])
    assert place == ("1.0", "N", "", "")
    assert float(last["emissions"]) == pytest.approx(kg)
    assert last["run_id"] == str(tracker.run_id)


def test_detected_hardware_has_codecarbons_keys(work: Path) -> None:
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    hardware = OfflineEmissionsTracker(country_iso_code="FRA").get_detected_hardware()
    assert list(hardware) == [
        "ram_total_size",
        "cpu_count",
        "cpu_physical_count",
        "cpu_model",
        "gpu_count",
        "gpu_model",
        "gpu_ids",
    ]
    assert hardware["cpu_count"] == os.cpu_count() and hardware["gpu_count"] == 0
    assert hardware["cpu_physical_count"] >= 1


# -- 6. places -------------------------------------------------------------------------------


def test_offline_without_a_country_or_with_an_unknown_one_runs_on_the_world_average(
    work: Path, fake: FakePowercap, cc_log: list[logging.LogRecord]
) -> None:
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    for code, logged in (
        (None, "We do not have data for None, using world average."),
        ("XYZ", "Does not support country with ISO code XYZ"),
    ):
        cc_log.clear()
        tracker = (
            OfflineEmissionsTracker()
            if code is None
            else OfflineEmissionsTracker(country_iso_code=code)
        )
        tracker.start()
        fake.add("intel-rapl:0", 3_600_000)
        kg = tracker.stop()
        assert kg == pytest.approx(3.6 / KWH * WORLD / 1000)
        data = tracker.final_emissions_data
        assert (data.country_iso_code, data.country_name) == (code, "")
        assert any(logged in m for m in _messages(cc_log))
    cloud = OfflineEmissionsTracker(cloud_provider="gcp", cloud_region="europe-west1")
    cloud.start()
    cloud.stop()
    data = cloud.final_emissions_data
    assert (data.on_cloud, data.cloud_provider, data.cloud_region) == ("Y", "gcp", "europe-west1")


def test_the_online_tracker_never_geolocates_and_says_so_once(
    work: Path,
    fake: FakePowercap,
    monkeypatch: pytest.MonkeyPatch,
    cc_log: list[logging.LogRecord],
) -> None:
    from carbonfast.compat.codecarbon import EmissionsTracker
    from carbonfast.compat.codecarbon import emissions_tracker as module

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(module, "_warned_no_geolocation", False)
    for _ in range(2):
        tracker = EmissionsTracker()
        tracker.start()
        fake.add("intel-rapl:0", 3_600_000)
        assert tracker.stop() == pytest.approx(3.6 / KWH * WORLD / 1000)
    warned = [m for m in _messages(cc_log, logging.WARNING) if "IP address" in m]
    assert len(warned) == 1 and "country_iso_code" in warned[0]

    monkeypatch.setenv("CODECARBON_COUNTRY_ISO_CODE", "FRA")
    tracker = EmissionsTracker()
    tracker.start()
    fake.add("intel-rapl:0", 3_600_000)
    assert tracker.stop() == pytest.approx(3.6 / KWH * FRA / 1000)
    assert tracker.final_emissions_data.country_name == "France"


def test_gpus_are_counted_named_and_chosen_by_gpu_ids(
    work: Path, fake: FakePowercap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker
    from tests.fakes.nvml import FakeNvml

    state = (
        "gpu 0 name=H100 uuid=GPU-aaaa energy_mj={}\ngpu 1 name=H100 uuid=GPU-bbbb energy_mj={}\n"
    )
    nvml = FakeNvml(tmp_path / "nvml", state.format(1000, 2000))
    monkeypatch.setenv("CARBONFAST_GPU", "on")
    monkeypatch.setenv("CARBONFAST_NVML_LIBRARY", str(nvml.library))
    e0, e1 = 1000, 2000  # mJ: counters only go up
    for gpu_ids, count, joules in ((None, 2, 10.8), ([1], 1, 7.2), ("1", 1, 7.2)):
        tracker = OfflineEmissionsTracker(country_iso_code="FRA", gpu_ids=gpu_ids)
        tracker.start()
        e0, e1 = e0 + 3600, e1 + 7200
        nvml.set(state.format(e0, e1))
        tracker.stop()
        data = tracker.final_emissions_data
        assert (data.gpu_count, data.gpu_model) == (count, f"{count} x H100")
        assert data.gpu_energy == pytest.approx(joules / KWH)
        assert tracker.get_detected_hardware()["gpu_ids"] == gpu_ids


def test_an_output_that_fails_is_logged_and_the_run_goes_on(
    work: Path, fake: FakePowercap, cc_log: list[logging.LogRecord]
) -> None:
    """A symlink where emissions.csv goes is refused (not followed), a malformed config file is
    skipped, each with an error that names it; stop() still returns the kg."""
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    (work / ".codecarbon.config").write_text("project_name = no section\n")
    target = work / "elsewhere.csv"
    target.write_text("keep me\n")
    (work / "emissions.csv").symlink_to(target)
    tracker = OfflineEmissionsTracker(country_iso_code="FRA")
    tracker.start()
    fake.add("intel-rapl:0", 3_600_000)
    assert tracker.stop() == pytest.approx(3.6 / KWH * FRA / 1000)
    assert target.read_text() == "keep me\n"
    errors = " | ".join(_messages(cc_log, logging.ERROR))
    assert ".codecarbon.config is not a valid config file" in errors
    assert "FileOutput.out() failed" in errors and "symbolic link" in errors
    with pytest.raises(ValueError, match="force_cpu_power=-5"):
        OfflineEmissionsTracker(country_iso_code="FRA", force_cpu_power=-5)


def test_prometheus_output_pushes_codecarbons_metrics_to_the_gateway(
    work: Path, fake: FakePowercap
) -> None:
    pytest.importorskip("prometheus_client")
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker, OutputMethod

    requests: list[tuple[str, str, str]] = []

    class Gateway(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            requests.append((self.command, self.path, self.rfile.read(length).decode()))
            self.send_response(200)
            self.end_headers()

        do_PUT = do_POST = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tracker = OfflineEmissionsTracker(
            project_name="pushed",
            country_iso_code="FRA",
            output_methods=[OutputMethod.PROMETHEUS],
            prometheus_url=f"127.0.0.1:{server.server_port}",
        )
        tracker.start()
        fake.add("intel-rapl:0", 3_600_000)
        tracker.stop()
    finally:
        server.shutdown()
        server.server_close()
    (put, path, body), (delete, deleted, _) = requests
    assert (put, delete) == ("PUT", "DELETE")
    assert path == deleted == "/metrics/job/pushed_base"
    assert re.search(r'^codecarbon_energy_consumed\{.*project_name="pushed".*\} 1e-06$', body, re.M)
