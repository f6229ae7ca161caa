"""CodeCarbon 3.3's documented usage, run against CodeCarbon itself and against the drop-in.

Each snippet in tests/codecarbon_snippets/ is a code block of CodeCarbon's documentation
(docs/ of github.com/mlco2/codecarbon, published at docs.codecarbon.io) or one of the
examples/*.py scripts of its repository, with its machine learning replaced by a short CPU
loop. The `impl` fixture runs a snippet as written ("codecarbon") and with `codecarbon`
replaced by `carbonfast.compat.codecarbon` in its imports ("carbonfast"), the one change the
drop-in asks of a user, each in its own working directory and HOME. The tests check what the
documentation defines: the files written, their headers and rows, the types and the values
that follow from the inputs (a forced carbon intensity, the PUE, the WUE, the run's ids), the
log records on the `codecarbon` logger and the exceptions. Energy values are not compared:
CodeCarbon estimates here (no readable RAPL), the drop-in measures a fake RAPL tree whose
counters advance as a machine drawing steady power would (see Feeder).

The expectations are what CodeCarbon 3.3.2 does here, so the "codecarbon" run of every test
passes (but Logfire's, which needs a Logfire account) and the "carbonfast" run shows where the
drop-in differs. test_both_write_the_same runs the two side by side and compares what they
wrote directly.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
import types
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.powercap import FakePowercap

SNIPPETS = Path(__file__).parent / "codecarbon_snippets"
PREFIXES = {"codecarbon": "codecarbon", "carbonfast": "carbonfast.compat.codecarbon"}
PACKAGE, DRAM = "intel-rapl:0", "intel-rapl:0:1"

# The columns of emissions.csv: CodeCarbon 3.3's EmissionsData, in its order.
HEADER = [
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
# The columns of emissions_<experiment_name>_<run_id>.csv: TaskEmissionsData's fields, the
# run's less experiment_id, pue and wue, after the task's name.
TASK_HEADER = ["task_name", *(c for c in HEADER if c not in ("experiment_id", "pue", "wue"))]
# Where the machine is. Online, CodeCarbon finds it from the IP address (here, where no lookup
# gets through, its fallback: Canada, quebec, and that province's coordinates); the drop-in
# never looks the address up, and leaves these empty.
GEO_COLUMNS = ("country_name", "country_iso_code", "region", "longitude", "latitude")
# experiment_id when none is given (BaseEmissionsTracker's default).
DEFAULT_EXPERIMENT_ID = "5b0fa12a-3dd7-45bb-9766-cc326314d9f1"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# -- the two implementations ------------------------------------------------------------------


class Feeder:
    """Advances the fake package and DRAM counters as a machine drawing steady power would, so
    that whatever window the drop-in measures holds some energy. Paused, the counters move
    only by what a test adds.

    Like RAPL's, the counters move about every millisecond: the interpreter switches threads
    every 0.2 ms meanwhile (rather than 5 ms), so that the snippets' busy loops let the feeder
    run on time (a counter that moves in bursts is one the meter interpolates)."""

    def __init__(self, fake: FakePowercap, package_w: float = 20.0, dram_w: float = 2.0):
        self.fake = fake
        self.package_w, self.dram_w = package_w, dram_w
        self._lock = threading.Lock()
        self._running = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-rapl-feeder", daemon=True)
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0002)
        self._thread.start()

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(0.001):
            now = time.perf_counter()
            with self._lock:
                if self._running:
                    self.fake.add(PACKAGE, round(self.package_w * (now - last) * 1e6))
                    self.fake.add(DRAM, round(self.dram_w * (now - last) * 1e6))
            last = now

    def add(self, package_j: float, dram_j: float = 0.0) -> None:
        with self._lock:
            self.fake.add(PACKAGE, round(package_j * 1e6))
            self.fake.add(DRAM, round(dram_j * 1e6))

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        with self._lock:
            self._running = False
        try:
            yield
        finally:
            with self._lock:
                self._running = True

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        sys.setswitchinterval(self._switch_interval)


_IMPORT = re.compile(r"^(\s*)(from|import)(\s+)codecarbon(?=[\s.])", re.MULTILINE)


def for_prefix(source: str, prefix: str) -> str:
    """The snippet with `codecarbon` replaced by `prefix` in its imports."""
    assert not re.search(r"^\s*import\s+codecarbon\b", source, re.MULTILINE), (
        "`import codecarbon` would need an alias; snippets use `from codecarbon... import`"
    )
    return _IMPORT.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{prefix}", source)


class Recorder(logging.Handler):
    """Keeps the records it is given and hands them to caplog too. Not a StreamHandler, as
    CodeCarbon drops those from its logger whenever a tracker is made (caplog's included)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        super().__init__(logging.NOTSET)
        self.caplog = caplog
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.caplog.handler.handle(record)


@dataclass
class Impl:
    """One implementation, with its own working directory and HOME under the test's tmp_path."""

    name: str
    prefix: str
    root: Path
    monkeypatch: pytest.MonkeyPatch
    recorder: Recorder
    feeder: Feeder | None

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True)
        self.home.mkdir(parents=True)

    def __str__(self) -> str:
        return self.name

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def is_carbonfast(self) -> bool:
        return self.name == "carbonfast"

    def module(self, name: str = "") -> types.ModuleType:
        return importlib.import_module(self.prefix + name)

    def source(self, snippet: str, replace: dict[str, str] | None = None) -> str:
        text = (SNIPPETS / f"{snippet}.py").read_text()
        for old, new in (replace or {}).items():
            assert old in text, f"{old!r} is not in {snippet}.py"
            text = text.replace(old, new)
        return for_prefix(text, self.prefix)

    def setup(self) -> types.ModuleType:
        """The working directory, HOME and logger of a script, for a test that uses the
        module directly; returns the module (`codecarbon` or the drop-in)."""
        self.monkeypatch.chdir(self.work)
        self.monkeypatch.setenv("HOME", str(self.home))
        self._reset_logger()
        return self.module()

    def run(
        self,
        snippet: str,
        *,
        between: Callable[[dict[str, Any]], None] | None = None,
        replace: dict[str, str] | None = None,
        argv: list[str] | None = None,
    ) -> dict[str, Any]:
        """Runs the snippet as a script (__name__ == "__main__") in this implementation's
        working directory and HOME, cell after cell (`# %%` lines), calling `between` with
        the namespace between two cells; returns the namespace."""
        self.setup()
        self.monkeypatch.setattr(sys, "argv", [f"{snippet}.py", *(argv or [])])
        path = SNIPPETS / f"{snippet}.py"
        namespace: dict[str, Any] = {"__name__": "__main__", "__file__": str(path)}
        line = 0
        for i, cell in enumerate(re.split(r"(?m)^# %%.*$", self.source(snippet, replace))):
            if i and between is not None:
                between(namespace)
            # Padded so that a traceback names the snippet's own lines.
            exec(compile("\n" * line + cell, str(path), "exec"), namespace)
            line += cell.count("\n")
        return namespace

    def _reset_logger(self) -> None:
        """The `codecarbon` logger as a script finds it: set up by CodeCarbon's import for
        CodeCarbon; untouched for the drop-in, whose users no longer import CodeCarbon. Its
        records reach the recorder (and caplog) in both cases."""
        logger = logging.getLogger("codecarbon")
        if self.is_carbonfast:
            logger.handlers = []
            logger.propagate = True
            logger.setLevel(logging.NOTSET)
        else:
            from codecarbon.external import logger as cc_logger

            cc_logger.set_logger_format()
            cc_logger.set_logger_level()
            logger.propagate = False
        logger.addHandler(self.recorder)
        self.recorder.records.clear()

    def records(self, level: int = logging.DEBUG) -> list[logging.LogRecord]:
        """The records of the `codecarbon` logger (and its children) since the last run,
        at `level` or above."""
        return [r for r in self.recorder.records if r.levelno >= level]

    def messages(self, level: int = logging.DEBUG) -> str:
        return "\n".join(r.getMessage() for r in self.records(level))

    def files(self, where: Path | None = None) -> list[str]:
        """Every file under `where` (the working directory by default), relative to it."""
        base = where or self.work
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())

    def add_joules(self, package_j: float, dram_j: float = 0.0) -> None:
        """Energy for the drop-in's fake counters (CodeCarbon estimates and sees none)."""
        if self.feeder is not None:
            self.feeder.add(package_j, dram_j)

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """The fake counters move only by add_joules()."""
        if self.feeder is None:
            yield
            return
        with self.feeder.paused():
            yield


@pytest.fixture
def make_impl(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fake: FakePowercap,
) -> Iterator[Callable[[str], Impl]]:
    """Makes an Impl, "codecarbon" or "carbonfast", in tmp_path/<name>."""
    # Nothing configures either implementation but what a test writes.
    for key in list(os.environ):
        if key.lower().startswith("codecarbon_"):
            monkeypatch.delenv(key)
    # CodeCarbon's online lookups (IP geolocation, its API, Electricity Maps, a Pushgateway)
    # go through a proxy that refuses at once, network or not (docs/how-to/configuration.md,
    # "Access internet through proxy server"): nothing leaves the machine, nothing waits.
    for key in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(key, "http://127.0.0.1:9")
    for key in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
    # urllib builds its default opener once, with the proxies of that moment: the one built
    # here must not outlive the test and send later tests' local requests to the proxy.
    urllib.request.install_opener(None)
    request.addfinalizer(lambda: urllib.request.install_opener(None))
    # The drop-in measures the fake RAPL tree, with carbonfast's own defaults otherwise (its
    # history included: a drop-in writes only CodeCarbon's files).
    monkeypatch.setenv("CARBONFAST_POWERCAP_ROOT", str(fake.root))
    monkeypatch.delenv("CARBONFAST_HISTORY", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    measure_module = importlib.import_module("carbonfast.measure")
    measure_module._reset_default_meter()

    logger = logging.getLogger("codecarbon")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    recorder = Recorder(caplog)
    feeders: list[Feeder] = []

    def make(name: str) -> Impl:
        if name == "codecarbon":
            pytest.importorskip("codecarbon")
            feeder = None
        else:
            feeder = Feeder(fake)
            feeders.append(feeder)
        return Impl(name, PREFIXES[name], tmp_path / name, monkeypatch, recorder, feeder)

    yield make

    for feeder in feeders:
        feeder.close()
    measure_module._reset_default_meter()
    for handler in logger.handlers:
        if handler not in saved[0] and handler is not recorder:
            handler.close()
    logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]
    # Loggers the snippets made (LoggerOutput's) keep no handle on tmp_path.
    for other in list(logging.root.manager.loggerDict.values()):
        if isinstance(other, logging.Logger) and other is not logger:
            for handler in list(other.handlers):
                if isinstance(handler, logging.FileHandler) and str(tmp_path) in str(
                    handler.baseFilename
                ):
                    other.removeHandler(handler)
                    handler.close()


@pytest.fixture(params=list(PREFIXES))
def impl(request: pytest.FixtureRequest, make_impl: Callable[[str], Impl]) -> Impl:
    return make_impl(request.param)


# -- helpers ----------------------------------------------------------------------------------


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def run_csv(impl: Impl, where: Path | None = None) -> list[dict[str, str]]:
    """The rows of emissions.csv, after checking its header."""
    header, rows = read_csv((where or impl.work) / "emissions.csv")
    assert header == HEADER
    return rows


def assert_task_header(header: list[str]) -> None:
    """The task file's header: all TaskEmissionsData's columns, those that say where the
    machine is included (CodeCarbon always knows them; the drop-in leaves them empty)."""
    assert header == TASK_HEADER


def is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def ram_total_gb() -> float:
    psutil = pytest.importorskip("psutil")
    return float(psutil.virtual_memory().total) / 1024**3


def assert_run_row(row: dict[str, str], **expected: str) -> None:
    """A row of emissions.csv as CodeCarbon's output page defines it (docs/reference/output.md,
    "CSV"), with `expected` cells as given."""
    for column, value in expected.items():
        assert row[column] == value, column
    assert TIMESTAMP.match(row["timestamp"]), row["timestamp"]
    assert is_uuid(row["run_id"])
    duration, emissions = float(row["duration"]), float(row["emissions"])
    assert duration > 0 and emissions > 0
    assert float(row["emissions_rate"]) == pytest.approx(emissions / duration, rel=1e-6)
    energy = [float(row[c]) for c in ("cpu_energy", "gpu_energy", "ram_energy")]
    assert float(row["energy_consumed"]) == pytest.approx(sum(energy), rel=1e-9)
    assert float(row["energy_consumed"]) > 0
    # "Total RAM available (GB)", as psutil counts it (GiB).
    assert float(row["ram_total_size"]) == pytest.approx(ram_total_gb(), rel=0.01)
    assert row["on_cloud"] == "N"
    assert int(float(row["cpu_count"])) >= 1


def assert_emissions_data(data: Any, **expected: Any) -> None:
    """An EmissionsData: a dataclass whose `values` is an OrderedDict of the CSV's columns."""
    assert type(data).__name__ == "EmissionsData"
    assert isinstance(data.values, OrderedDict)
    assert list(data.values) == HEADER
    for column, value in expected.items():
        assert getattr(data, column) == value, column
    assert isinstance(data.emissions, float) and data.emissions > 0
    assert isinstance(data.energy_consumed, float) and data.energy_consumed > 0
    assert isinstance(data.duration, float) and data.duration > 0


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


# -- docs/tutorials/python-api.md, docs/index.md, docs/how-to/examples.md -------------------


# docs/tutorials/python-api.md, "Online Mode > Explicit Object": the default tracker writes one
# row to ./emissions.csv and nothing else, in the working directory or in HOME.
def test_python_api_explicit_object(impl: Impl) -> None:
    ns = impl.run("python_api_explicit_object")
    tracker = ns["tracker"]
    assert impl.files() == ["emissions.csv"]
    assert impl.files(impl.home) == []
    (row,) = run_csv(impl)
    assert_run_row(
        row,
        project_name="codecarbon",
        experiment_id=DEFAULT_EXPERIMENT_ID,
        run_id=str(tracker.run_id),
        tracking_mode="machine",
        # 0.0 and 1.0, as pandas writes floats, where nothing was used or set.
        gpu_power="0.0",
        gpu_energy="0.0",
        water_consumed="0.0",
        pue="1.0",
        wue="0.0",
    )
    assert tracker.final_emissions == float(row["emissions"])
    assert_emissions_data(tracker.final_emissions_data, run_id=str(tracker.run_id))


# docs/tutorials/python-api.md, "Online Mode > Context Manager"; docs/index.md, "Quickstart";
# docs/reference/examples.md, "Using the Explicit Object"; docs/how-to/examples.md, "Track
# with Decorator": each writes one row; stop() returns the kg of CO2e, a float.
ONE_RUN_PROJECTS = {
    "python_api_context_manager": "codecarbon",
    "index_quickstart": "codecarbon",
    "reference_examples_explicit_object": "codecarbon",
    "howto_examples_decorator": "my_project",
}


@pytest.mark.parametrize("snippet", list(ONE_RUN_PROJECTS))
def test_one_run_one_row(impl: Impl, snippet: str) -> None:
    ns = impl.run(snippet)
    assert impl.files() == ["emissions.csv"]
    (row,) = run_csv(impl)
    project_name = ONE_RUN_PROJECTS[snippet]
    assert_run_row(row, project_name=project_name, experiment_id=DEFAULT_EXPERIMENT_ID)
    returned = ns.get("emissions")
    if returned is not None:
        assert isinstance(returned, float)
        assert returned == float(row["emissions"])


# docs/tutorials/python-api.md, "Online Mode > Decorator": the decorated function runs once,
# returns what it returns, and its call writes one row.
def test_python_api_decorator(impl: Impl) -> None:
    ns = impl.run("python_api_decorator")
    assert isinstance(ns["result"], int) and ns["result"] > 0
    assert ns["training_loop"].__name__ == "training_loop"
    (row,) = run_csv(impl)
    assert_run_row(row, project_name="codecarbon")


# docs/tutorials/python-api.md, "Offline Mode" (explicit object, context manager, decorator):
# the country given is the one written.
@pytest.mark.parametrize(
    "snippet",
    [
        "python_api_offline_explicit_object",
        "python_api_offline_context_manager",
        "python_api_offline_decorator",
    ],
)
def test_python_api_offline(impl: Impl, snippet: str) -> None:
    impl.run(snippet)
    assert impl.files() == ["emissions.csv"]
    (row,) = run_csv(impl)
    assert_run_row(row, country_iso_code="CAN", country_name="Canada", region="")
    # No coordinates offline.
    assert row["longitude"] == row["latitude"] == ""


# docs/tutorials/first-tracking.md, steps 2 and 3: pandas reads the file back, and the
# tracker keeps final_emissions and final_emissions_data.
def test_first_tracking(impl: Impl) -> None:
    pd = pytest.importorskip("pandas")
    ns = impl.run("first_tracking")
    assert ns["total"] == sum(range(200_000))
    shown = ns["shown"]
    assert isinstance(shown, pd.DataFrame)
    assert len(shown) == 1 and shown.project_name.tolist() == ["my-first-tracking"]
    tracker = ns["tracker"]
    assert isinstance(tracker.final_emissions, float)
    assert tracker.final_emissions == pytest.approx(float(shown.emissions.iloc[0]), rel=1e-12)
    assert_emissions_data(tracker.final_emissions_data, project_name="my-first-tracking")


# docs/reference/examples.md, "Using the Context Manager": the tracker's final data prints as
# CodeCarbon's EmissionsData dataclass; its values and toJSON() hold the CSV's columns.
def test_reference_examples_context_manager(impl: Impl, capsys: pytest.CaptureFixture) -> None:
    ns = impl.run("reference_examples_context_manager")
    out = capsys.readouterr().out
    data = ns["tracker"].final_emissions_data
    assert_emissions_data(data)
    assert f"Detailed emissions data: {data!r}" in out
    assert repr(data).startswith("EmissionsData(timestamp='")
    assert f"project_name='codecarbon', run_id='{ns['tracker'].run_id}'" in repr(data)
    decoded = json.loads(data.toJSON())
    assert sorted(decoded) == sorted(HEADER)
    assert decoded["emissions"] == data.emissions
    (row,) = run_csv(impl)
    assert float(row["emissions"]) == data.emissions


# docs/how-to/examples.md, "Track Specific Tasks": a started tracker with two tasks writes its
# run to emissions.csv and its tasks to emissions_<experiment_name>_<run_id>.csv.
def test_howto_examples_tasks(impl: Impl) -> None:
    ns = impl.run("howto_examples_tasks")
    run_id = str(ns["tracker"].run_id)
    assert impl.files() == sorted(["emissions.csv", f"emissions_base_{run_id}.csv"])
    (row,) = run_csv(impl)
    assert_run_row(row, run_id=run_id)
    header, tasks = read_csv(impl.work / f"emissions_base_{run_id}.csv")
    assert_task_header(header)
    assert [t["task_name"] for t in tasks] == ["data_loading", "training"]
    assert {t["run_id"] for t in tasks} == {run_id}
    for t in tasks:
        assert float(t["duration"]) > 0 and float(t["energy_consumed"]) > 0
        assert float(t["emissions"]) > 0


# docs/tutorials/python-api.md, "Advanced: Task-Level Monitoring": a tracker used through
# tasks alone; stop_task() returns each task's EmissionsData and stop() the kg of the run.
# (The page says tasks are not written to disk; CodeCarbon 3.3.2 writes them, at stop(), to
# emissions_<experiment_name>_<run_id>.csv.)
def test_python_api_task_manager(impl: Impl) -> None:
    ns = impl.run("python_api_task_manager")
    tracker = ns["tracker"]
    for name in ("imdb_emissions", "model_emissions"):
        assert_emissions_data(ns[name], run_id=str(tracker.run_id))
    assert isinstance(ns["_"], float) and ns["_"] > 0
    run_id = str(tracker.run_id)
    assert impl.files() == sorted(["emissions.csv", f"emissions_base_{run_id}.csv"])
    (row,) = run_csv(impl)
    assert_run_row(row, project_name="bert_inference", run_id=run_id)
    header, tasks = read_csv(impl.work / f"emissions_base_{run_id}.csv")
    assert_task_header(header)
    assert [t["task_name"] for t in tasks] == ["load dataset", "build model"]
    assert float(tasks[0]["emissions"]) == ns["imdb_emissions"].emissions
    assert {t["project_name"] for t in tasks} == {"bert_inference"}


# docs/getting-started/usage.md, "Explicit Object": a task started without a name is named by
# a uuid.
def test_usage_task_without_name(impl: Impl) -> None:
    ns = impl.run("usage_task_without_name")
    tracker = ns["tracker"]
    (name,) = list(tracker._tasks)
    assert is_uuid(name)
    assert_emissions_data(ns["task_emissions"])
    _, tasks = read_csv(impl.work / f"emissions_base_{tracker.run_id}.csv")
    assert [t["task_name"] for t in tasks] == [name]


# docs/tutorials/python-api.md, "LLM inference: energy per token" (without record_tokens, which
# 3.3.2 lacks): TaskEmissionsTracker, from codecarbon.emissions_tracker, measures one task.
def test_python_api_task_emissions_tracker(impl: Impl) -> None:
    ns = impl.run("python_api_task_emissions_tracker")
    tracker = ns["tracker"]
    assert ns["task"].task_name == "llama3.1:8b"
    run_id = str(tracker.run_id)
    assert impl.files() == sorted(["emissions.csv", f"emissions_base_{run_id}.csv"])
    (row,) = run_csv(impl)
    assert_run_row(row, project_name="llama3.1-8b-bench")
    header, tasks = read_csv(impl.work / f"emissions_base_{run_id}.csv")
    assert_task_header(header)
    assert [t["task_name"] for t in tasks] == ["llama3.1:8b"]
    assert float(tasks[0]["energy_consumed"]) > 0


# -- examples/*.py of CodeCarbon's repository -------------------------------------------------


# examples/task_inference.py: four tasks in a started run; tracker._tasks holds CodeCarbon's
# Task objects by name, each with its emissions_data.
def test_examples_task_inference(impl: Impl) -> None:
    tracker = impl.run("examples_task_inference")["tracker"]
    names = ["load dataset", "build model", "Inference0", "Inference1"]
    assert list(tracker._tasks) == names
    for name, task in tracker._tasks.items():
        assert task.task_name == name
        assert task.is_active is False
        assert_emissions_data(task.emissions_data, run_id=str(tracker.run_id))
    run_id = str(tracker.run_id)
    assert impl.files() == sorted(["emissions.csv", f"emissions_base_{run_id}.csv"])
    header, tasks = read_csv(impl.work / f"emissions_base_{run_id}.csv")
    assert_task_header(header)
    assert [t["task_name"] for t in tasks] == names
    (row,) = run_csv(impl)
    assert_run_row(row, project_name="bert_inference", run_id=run_id)
    assert float(row["emissions"]) == tracker.final_emissions


# examples/task_loop_same_task.py: tasks stopped one after the other, then a stop_task() with
# no task running, which returns None (the example's "returned None" branch) with a warning on
# the codecarbon logger ("stop_task : No active task to stop."). The tracker is never stopped,
# so nothing is written.
def test_examples_task_loop_same_task(impl: Impl) -> None:
    ns = impl.run("examples_task_loop_same_task")
    tracker = ns["tracker"]
    assert ns["current_round"] == 2
    assert list(tracker._tasks) == ["round_1_task", "round_2_task", "round_3_task"]
    assert_emissions_data(ns["emissions_data"])
    assert ns["last"] is None
    warnings = [r.getMessage() for r in impl.records(logging.WARNING)]
    assert any("No active task to stop" in w for w in warnings), warnings
    # log_level="debug" sets the codecarbon logger's level.
    assert logging.getLogger("codecarbon").level == logging.DEBUG
    assert impl.files() == []


# examples/command_line_tool.py: stop() twice; the second returns the first's emissions again
# and writes nothing more.
def test_examples_command_line_tool(impl: Impl) -> None:
    ns = impl.run("examples_command_line_tool")
    emissions = ns["emissions"]
    assert isinstance(emissions, float) and emissions > 0
    assert emissions == ns["tracker"].final_emissions
    (row,) = run_csv(impl)
    assert float(row["emissions"]) == emissions
    assert_run_row(row)


# examples/full_cpu.py: a CPU loop inside a started tracker (measure_power_secs=100, longer
# than the run).
def test_examples_full_cpu(impl: Impl) -> None:
    ns = impl.run("examples_full_cpu")
    assert isinstance(ns["emissions"], float) and ns["emissions"] > 0
    (row,) = run_csv(impl)
    assert_run_row(row)
    assert float(row["emissions"]) == ns["emissions"]


# examples/multithread.py: three offline trackers in three threads append three rows, under
# one header, each with its own run_id. (CodeCarbon's CSV output has no lock: the threads stop
# 0.3 s apart, after a first tracker has loaded what CodeCarbon loads once, which would hold
# the first stops up until they meet.)
def test_examples_multithread(impl: Impl) -> None:
    with impl.setup().OfflineEmissionsTracker(country_iso_code="FRA", output_dir=str(impl.root)):
        pass
    impl.run("examples_multithread")
    assert impl.files() == ["emissions.csv"]
    rows = run_csv(impl)
    assert len(rows) == 3
    for row in rows:
        assert_run_row(row, project_name="ultra_secret", country_iso_code="FRA")
    assert len({r["run_id"] for r in rows}) == 3


# examples/pue.py: the pue column records the pue given (CodeCarbon writes it as given: 2).
def test_examples_pue(impl: Impl) -> None:
    impl.run("examples_pue")
    (row,) = run_csv(impl)
    assert_run_row(row, wue="0.0")
    assert float(row["pue"]) == 2.0


# examples/wue.py, with docs/reference/api.md (wue: "litres of water consumed per
# kilowatt-hour of electricity consumed"): water_consumed is wue times energy_consumed.
def test_examples_wue(impl: Impl) -> None:
    impl.run("examples_wue")
    (row,) = run_csv(impl)
    assert_run_row(row, wue="1.1", pue="1.0")
    assert float(row["water_consumed"]) == pytest.approx(
        1.1 * float(row["energy_consumed"]), rel=1e-9
    )


# examples/water_consumption.py: save_to_file=False writes nothing; wue=0 counts no water.
def test_examples_water_consumption(impl: Impl) -> None:
    tracker = impl.run("examples_water_consumption")["tracker"]
    data = tracker.final_emissions_data
    assert_emissions_data(data, wue=0.0)
    assert data.water_consumed == 0.0
    assert isinstance(data.country_name, str)
    assert impl.files() == []


# examples/print_hardware.py: get_detected_hardware() without starting the tracker; the
# example formats ram_total_size with :.3f.
def test_examples_print_hardware(impl: Impl, capsys: pytest.CaptureFixture) -> None:
    ns = impl.run("examples_print_hardware")
    info = ns["hardware_info"]
    assert set(info) == {
        "ram_total_size",
        "cpu_count",
        "cpu_physical_count",
        "cpu_model",
        "gpu_count",
        "gpu_model",
        "gpu_ids",
    }
    assert info["ram_total_size"] == pytest.approx(ram_total_gb(), rel=0.01)
    assert isinstance(info["cpu_count"], int) and info["cpu_count"] >= 1
    assert isinstance(info["cpu_physical_count"], int) and info["cpu_physical_count"] >= 1
    assert isinstance(info["cpu_model"], str)
    assert info["gpu_count"] == 0
    assert "- Available RAM: " in capsys.readouterr().out
    assert impl.files() == []


# examples/do_nothing.py passes measure_occurrence_before_calling_api, which CodeCarbon 3 does
# not take: the decorator raises TypeError, before anything runs.
def test_examples_do_nothing_unknown_argument(impl: Impl) -> None:
    with pytest.raises(TypeError, match="measure_occurrence_before_calling_api"):
        impl.run("examples_do_nothing")
    assert impl.files() == []


# docs/reference/api.md: EmissionsTracker takes the parameters listed there and no others;
# a misspelt one is a TypeError, as for any Python function.
def test_unknown_argument_is_a_type_error(impl: Impl) -> None:
    module = impl.setup()
    with pytest.raises(TypeError, match="measure_power_sec"):
        module.EmissionsTracker(measure_power_sec=1)
    with pytest.raises(TypeError, match="project"):
        module.track_emissions(project="x")


# -- docs/reference/output.md ---------------------------------------------------------------


def check_boamps_report(impl: Impl, tracker: Any, country: str) -> dict[str, Any]:
    """boamps_report_<run_id>.json: BoAmps' sections, the run's id and one measure."""
    report = json.loads((impl.work / f"boamps_report_{tracker.run_id}.json").read_text())
    for section in ("header", "measures", "system", "software", "infrastructure"):
        assert section in report, section
    assert report["header"]["reportId"] == str(tracker.run_id)
    assert report["header"]["formatVersion"] == "0.1"
    (measure,) = report["measures"]
    assert measure["powerConsumption"] > 0 and measure["measurementDuration"] > 0
    assert report["software"]["language"] == "python"
    assert report["environment"]["country"] == country
    return report


# docs/reference/output.md, "BoAmps > How to use it": output_methods=[CSV, BOAMPS] writes
# emissions.csv and boamps_report_<run_id>.json in output_dir.
def test_output_boamps(impl: Impl) -> None:
    tracker = impl.run("output_boamps")["tracker"]
    assert impl.files() == sorted(["emissions.csv", f"boamps_report_{tracker.run_id}.json"])
    (row,) = run_csv(impl)
    assert_run_row(row, project_name="my_project", country_iso_code="USA")
    check_boamps_report(impl, tracker, "United States")


# examples/boamps_output.py: output_methods=[BOAMPS] alone writes the report and no CSV.
def test_examples_boamps_output(impl: Impl) -> None:
    ns = impl.run("examples_boamps_output")
    assert isinstance(ns["emissions"], float)
    assert impl.files() == [f"boamps_report_{ns['tracker'].run_id}.json"]


# docs/reference/api.md (metadata): the "boamps" section of the metadata fills the report's
# fields CodeCarbon cannot detect, such as the task.
def test_boamps_metadata(impl: Impl) -> None:
    module = impl.setup()
    metadata = {"boamps": {"task": {"taskStage": "inference", "taskFamily": "classification"}}}
    tracker = module.OfflineEmissionsTracker(
        country_iso_code="FRA", output_methods=[module.OutputMethod.BOAMPS], metadata=metadata
    )
    tracker.start()
    busy(0.05)
    tracker.stop()
    report = check_boamps_report(impl, tracker, "France")
    assert report["task"] == metadata["boamps"]["task"]


# docs/reference/output.md, "Prometheus": save_to_prometheus=True pushes to a Pushgateway at
# localhost:9091; none listens here, CodeCarbon logs the error and writes its CSV as usual.
def test_output_prometheus_without_a_gateway(impl: Impl) -> None:
    ns = impl.run("output_prometheus")
    assert impl.files() == ["emissions.csv"]
    (row,) = run_csv(impl)
    assert_run_row(row, project_name="my_project", country_iso_code="USA")
    assert ns["tracker"].final_emissions == float(row["emissions"])


# docs/reference/output.md, "Logfire": save_to_logfire=True. CodeCarbon's needs the logfire
# package and, "the first time", a login to Logfire: only the drop-in runs it here, which takes
# the parameter and writes its CSV as usual.
def test_output_logfire(impl: Impl) -> None:
    if not impl.is_carbonfast:
        pytest.skip("CodeCarbon's LogfireOutput needs logfire and a Logfire login")
    impl.run("output_logfire")
    (row,) = run_csv(impl)
    assert_run_row(row, project_name="my_project")


# docs/reference/output.md, CSV note: a custom BaseOutput from codecarbon/output.py, given in
# output_handlers, receives the run's EmissionsData at each measure (live_out, every
# api_call_interval measures of measure_power_secs) and at stop() (out), and the tasks' (task_out).
def test_output_custom_handler(impl: Impl) -> None:
    ns = impl.run("output_custom_handler")
    handler = ns["handler"]
    (total, delta) = handler.runs[-1]
    assert_emissions_data(total)
    assert total.emissions == ns["emissions"]
    assert type(delta).__name__ == "EmissionsData"
    # Measured each 50 ms while the run went on (not while the task did), sent at each.
    assert len(handler.live) >= 1
    assert_emissions_data(handler.live[0][0])
    (tasks, experiment_name) = handler.tasks[-1]
    assert experiment_name == "base"
    assert [type(t).__name__ for t in tasks] == ["TaskEmissionsData"]
    assert tasks[0].task_name == "step"
    assert impl.files() == []


# docs/reference/output.md, CSV note ("codecarbon/output.py"), and the modules the examples
# import from: the drop-in mirrors CodeCarbon's module paths.
def test_module_paths(impl: Impl) -> None:
    names = {
        "": ["EmissionsTracker", "OfflineEmissionsTracker", "OutputMethod", "track_emissions"],
        ".emissions_tracker": [
            "EmissionsTracker",
            "OfflineEmissionsTracker",
            "TaskEmissionsTracker",
            "track_emissions",
            "track_task_emissions",
        ],
        ".output": [
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
        ],
        ".output_methods.base_output": ["BaseOutput", "OutputMethod"],
        ".output_methods.emissions_data": ["EmissionsData", "TaskEmissionsData"],
        ".output_methods.file": ["FileOutput"],
        ".output_methods.logger": ["LoggerOutput", "GoogleCloudLoggerOutput"],
        ".output_methods.http": ["HTTPOutput", "CodeCarbonAPIOutput"],
        ".output_methods.boamps": ["BoAmpsOutput"],
        ".output_methods.metrics.prometheus": ["PrometheusOutput"],
        ".output_methods.metrics.logfire": ["LogfireOutput"],
    }
    missing = [
        f"{impl.prefix}{module}.{name}"
        for module, attrs in names.items()
        for name in attrs
        if not hasattr(_import_or_none(impl.prefix + module), name)
    ]
    assert missing == []
    output_method = impl.module().OutputMethod
    assert [m.value for m in output_method] == [
        "csv",
        "api",
        "logger",
        "prometheus",
        "logfire",
        "boamps",
    ]
    assert output_method("csv") is output_method.CSV and isinstance(output_method.CSV, str)


def _import_or_none(name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# -- docs/how-to/logging.md and the logging examples -----------------------------------------


def logged_payloads(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# docs/how-to/logging.md, "Python logger" and "Create an EmissionTracker": LoggerOutput logs
# the run's EmissionsData, as JSON, to the user's logger at the level given; emissions.csv is
# still written.
def test_logging_python_logger(impl: Impl) -> None:
    ns = impl.run("logging_python_logger")
    assert isinstance(ns["emissions"], float)
    assert impl.files() == sorted(["codecarbon_emissions.log", "emissions.csv"])
    (payload,) = logged_payloads(impl.work / "codecarbon_emissions.log")
    assert list(payload) == HEADER
    assert payload["emissions"] == ns["emissions"]
    assert payload["run_id"] == str(ns["tracker"].run_id)
    (row,) = run_csv(impl)
    assert float(row["emissions"]) == payload["emissions"]


class FakeCloudLogger:
    def __init__(self, name: str) -> None:
        self.name = name
        self.structs: list[tuple[dict[str, Any], Any]] = []

    def log_struct(self, info: dict[str, Any], severity: Any = None) -> None:
        self.structs.append((info, severity))


def fake_google_cloud_logging(monkeypatch: pytest.MonkeyPatch) -> list[FakeCloudLogger]:
    """google.cloud.logging as far as the example uses it: Client(project).logger(name)."""
    made: list[FakeCloudLogger] = []

    class Client:
        def __init__(self, project: str | None = None) -> None:
            self.project = project

        def logger(self, name: str) -> FakeCloudLogger:
            made.append(FakeCloudLogger(name))
            return made[-1]

    google = types.ModuleType("google")
    cloud = types.ModuleType("google.cloud")
    cloud_logging = types.ModuleType("google.cloud.logging")
    cloud_logging.Client = Client  # type: ignore[attr-defined]
    google.cloud = cloud  # type: ignore[attr-defined]
    cloud.logging = cloud_logging  # type: ignore[attr-defined]
    for name, module in (
        ("google", google),
        ("google.cloud", cloud),
        ("google.cloud.logging", cloud_logging),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    return made


# examples/logging_to_google_cloud.py, without --google-project: a LoggerOutput on a file.
def test_examples_logging_to_google_cloud_file(impl: Impl, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_google_cloud_logging(monkeypatch)
    ns = impl.run("examples_logging_to_google_cloud")
    assert impl.files() == sorted(["code_carbone.log", "emissions.csv"])
    (payload,) = logged_payloads(impl.work / "code_carbone.log")
    assert payload["emissions"] == ns["emissions"]


# examples/logging_to_google_cloud.py --google-project my-project (google.cloud.logging faked,
# since it is not installed and would need credentials): GoogleCloudLoggerOutput sends the
# run's EmissionsData as a struct, at INFO.
def test_examples_logging_to_google_cloud_struct(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = fake_google_cloud_logging(monkeypatch)
    ns = impl.run("examples_logging_to_google_cloud", argv=["--google-project", "my-project"])
    (cloud_logger,) = made
    assert cloud_logger.name == "code_carbone"
    ((info, severity),) = cloud_logger.structs
    assert list(info) == HEADER
    assert info["emissions"] == ns["emissions"]
    assert severity == logging.INFO
    assert impl.files() == ["emissions.csv"]


# examples/logging_to_file.py: the script replaces the codecarbon logger's handlers by its own
# file (DEBUG) and console (WARNING) handlers; the tracker's own log lines then go to
# codecarbon.log, in the script's format.
def test_examples_logging_to_file(impl: Impl, monkeypatch: pytest.MonkeyPatch) -> None:
    # As in a script: the root logger has no handler (pytest's would otherwise keep the
    # example's `while logger.hasHandlers()` turning for a logger that propagates).
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    impl.run("examples_logging_to_file")
    assert impl.files() == sorted(["codecarbon.log", "emissions.csv"])
    lines = (impl.work / "codecarbon.log").read_text().splitlines()
    assert lines, "the tracker logged nothing through the codecarbon logger"
    pattern = re.compile(
        r"^\d{4}-\d\d-\d\d [\d:,]+ - codecarbon\S*\s*: (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    )
    assert all(pattern.match(line) for line in lines if " - codecarbon" in line)
    assert any(pattern.match(line) for line in lines)
    (row,) = run_csv(impl)
    assert_run_row(row, project_name="ultra_secret", country_iso_code="FRA")


# docs/how-to/troubleshooting.md: log_level="debug" sets the codecarbon logger to DEBUG; the
# context manager of "emissions.csv is empty or missing" writes its row.
def test_troubleshooting_debug_logging(impl: Impl) -> None:
    levels: list[int] = []
    impl.run(
        "troubleshooting_debug",
        between=lambda ns: levels.append(logging.getLogger("codecarbon").getEffectiveLevel()),
    )
    assert levels == [logging.DEBUG]
    (row,) = run_csv(impl)
    assert_run_row(row)


# -- docs/how-to/configuration.md ----------------------------------------------------------


# docs/how-to/configuration.md, "Configuration priority": ~/.codecarbon.config, then
# ./.codecarbon.config, then CODECARBON_* variables, then the script's parameters. The files
# and variables are the page's, but for output_dir (the page's /Users/victor/emissions does
# not exist here) and the API endpoint, kept off the network.
def test_configuration_priority(impl: Impl, monkeypatch: pytest.MonkeyPatch) -> None:
    emissions_dir = impl.work / "emissions"
    emissions_dir.mkdir()
    (impl.home / ".codecarbon.config").write_text(
        "[codecarbon]\n"
        "measure_power_secs=10\n"
        "save_to_file=local-overwrite\n"
        "emissions_endpoint=localhost:7777\n"
        "api_endpoint=http://127.0.0.1:9\n"
    )
    (impl.work / ".codecarbon.config").write_text(
        "[codecarbon]\n"
        "save_to_file = true\n"
        f"output_dir = {emissions_dir}\n"
        "electricitymaps_api_token=script-overwrite\n"
        "experiment_id = 235b1da5-aaaa-aaaa-aaaa-893681599d2c\n"
        "log_level = DEBUG\n"
        "tracking_mode = process\n"
    )
    monkeypatch.setenv("CODECARBON_GPU_IDS", "0, 1")
    monkeypatch.setenv("CODECARBON_LOG_LEVEL", "WARNING")
    impl.run("configuration_script")
    # output_dir from ./.codecarbon.config; save_to_file true there, over the home file's.
    assert impl.files() == [".codecarbon.config", "emissions/emissions.csv"]
    (row,) = run_csv(impl, emissions_dir)
    # experiment_id and tracking_mode from ./.codecarbon.config.
    assert row["experiment_id"] == "235b1da5-aaaa-aaaa-aaaa-893681599d2c"
    assert row["tracking_mode"] == "process"
    # log_level from the environment, over ./.codecarbon.config's DEBUG.
    assert logging.getLogger("codecarbon").level == logging.WARNING


# docs/how-to/configuration.md, note "Where does a value come from?": one INFO line names each
# key read from the files and the environment, and where it came from (never its value).
def test_configuration_sources_are_logged(impl: Impl, monkeypatch: pytest.MonkeyPatch) -> None:
    (impl.home / ".codecarbon.config").write_text("[codecarbon]\nmeasure_power_secs=10\n")
    monkeypatch.setenv("CODECARBON_EXPERIMENT_ID", "235b1da5-aaaa-aaaa-aaaa-893681599d2c")
    impl.run("configuration_from_files")
    home_config = (impl.home / ".codecarbon.config").resolve()
    expected = (
        "Codecarbon configuration: experiment_id from CODECARBON_EXPERIMENT_ID, "
        f"measure_power_secs from {home_config}"
    )
    assert expected in [r.getMessage() for r in impl.records(logging.INFO)]
    assert "235b1da5" not in impl.messages(logging.INFO).replace(expected, "")
    (row,) = run_csv(impl)
    assert row["experiment_id"] == "235b1da5-aaaa-aaaa-aaaa-893681599d2c"


# docs/how-to/configuration.md, "Tracking Mode": "process" in code or in ./.codecarbon.config.
@pytest.mark.parametrize("where", ["code", "config file"])
def test_configuration_tracking_mode(impl: Impl, where: str) -> None:
    if where == "code":
        impl.run("configuration_tracking_mode")
    else:
        (impl.work / ".codecarbon.config").write_text("[codecarbon]\ntracking_mode = process\n")
        impl.run("configuration_from_files")
    (row,) = run_csv(impl)
    assert_run_row(row, tracking_mode="process")


# docs/how-to/configuration.md, "Including DRAM in the CPU Measurement": rapl_include_dram in
# code or in ./.codecarbon.config adds the RAPL dram domain to the CPU's energy. CodeCarbon
# estimates here (no RAPL); for the drop-in, the fake package and dram counters advance by
# 36 J and 18 J, so cpu_energy is their sum.
@pytest.mark.parametrize("where", ["code", "config file"])
def test_configuration_rapl_include_dram(impl: Impl, where: str) -> None:
    def work(ns: dict[str, Any]) -> None:
        busy(0.02)
        impl.add_joules(36.0, 18.0)

    with impl.quiet():
        if where == "code":
            impl.run("configuration_rapl_include_dram", between=work)
        else:
            (impl.work / ".codecarbon.config").write_text(
                "[codecarbon]\nrapl_include_dram = true\n"
            )
            impl.run(
                "configuration_rapl_include_dram",
                between=work,
                replace={"EmissionsTracker(rapl_include_dram=True)": "EmissionsTracker()"},
            )
    (row,) = run_csv(impl)
    assert_run_row(row)
    if impl.is_carbonfast:
        assert float(row["cpu_energy"]) == pytest.approx(54.0 / 3.6e6, rel=1e-6)


# docs/how-to/troubleshooting.md, "psys domain detected but not used": rapl_prefer_psys=True
# measures the platform (psys) domain rather than the package. CodeCarbon estimates here (no
# RAPL); the drop-in's fake tree gets a psys zone, and between start() and stop() the package
# counter advances by 36 J and psys by 50 J.
def test_rapl_prefer_psys(impl: Impl, fake: FakePowercap) -> None:
    fake.zone("intel-rapl:1", "psys", 1_000_000)

    def work(ns: dict[str, Any]) -> None:
        busy(0.02)
        impl.add_joules(36.0)
        if impl.is_carbonfast:
            fake.add("intel-rapl:1", 50_000_000)

    with impl.quiet():
        impl.run("troubleshooting_rapl_prefer_psys", between=work)
    (row,) = run_csv(impl)
    assert_run_row(row)
    if impl.is_carbonfast:
        assert float(row["cpu_energy"]) == pytest.approx(50.0 / 3.6e6, rel=1e-6)


# docs/reference/output.md, "Choosing output methods": output_methods in the config file, "as
# a comma-separated string".
def test_configuration_output_methods(impl: Impl) -> None:
    (impl.work / ".codecarbon.config").write_text("[codecarbon]\noutput_methods = csv,boamps\n")
    tracker = impl.run("configuration_from_files")["tracker"]
    assert impl.files() == sorted(
        [".codecarbon.config", "emissions.csv", f"boamps_report_{tracker.run_id}.json"]
    )


# -- docs/reference/api.md (the parameters of BaseEmissionsTracker, OfflineEmissionsTracker) --


# docs/reference/api.md, on_csv_write: "update" keeps one row per run_id through flush() and
# stop(); "append" adds one at each.
@pytest.mark.parametrize(("mode", "rows"), [("update", 1), ("append", 3)])
def test_on_csv_write(impl: Impl, mode: str, rows: int) -> None:
    module = impl.setup()
    tracker = module.EmissionsTracker(on_csv_write=mode)
    tracker.start()
    busy(0.03)
    first = tracker.flush()
    busy(0.03)
    second = tracker.flush()
    busy(0.03)
    last = tracker.stop()
    assert all(isinstance(kg, float) for kg in (first, second, last))
    assert first <= second <= last
    written = run_csv(impl)
    assert len(written) == rows
    assert {r["run_id"] for r in written} == {str(tracker.run_id)}
    assert float(written[-1]["emissions"]) == last


# docs/reference/api.md, force_carbon_intensity_g_co2e_kwh: "Override grid carbon intensity in
# gCO2e/kWh": the emissions are the energy times that intensity.
def test_force_carbon_intensity(impl: Impl) -> None:
    module = impl.setup()
    with module.OfflineEmissionsTracker(
        country_iso_code="FRA", force_carbon_intensity_g_co2e_kwh=100
    ) as tracker:
        busy(0.05)
    (row,) = run_csv(impl)
    assert_run_row(row)
    assert float(row["emissions"]) == pytest.approx(float(row["energy_consumed"]) * 0.1, rel=1e-6)
    assert tracker.final_emissions == float(row["emissions"])


# docs/reference/api.md, pue: "It multiplies both the reported power and the reported energy".
# For the drop-in, 36 J reach the fake package counter between start() and stop(), some 200 ms
# apart.
def test_pue_multiplies_energy(impl: Impl) -> None:
    module = impl.setup()
    with impl.quiet():
        tracker = module.OfflineEmissionsTracker(country_iso_code="FRA", pue=1.5)
        tracker.start()
        busy(0.2)
        impl.add_joules(36.0)
        tracker.stop()
    (row,) = run_csv(impl)
    assert_run_row(row, pue="1.5")
    if impl.is_carbonfast:
        assert float(row["energy_consumed"]) == pytest.approx(1.5 * 36 / 3.6e6, rel=1e-6)
        assert float(row["cpu_energy"]) == pytest.approx(1.5 * 36 / 3.6e6, rel=1e-6)
        # The mean power over the run, with the same factor (not 1.0: that is a third less).
        power = 1.5 * 36 / float(row["duration"])
        assert float(row["cpu_power"]) == pytest.approx(power, rel=0.2)


# docs/reference/api.md, OfflineEmissionsTracker's country_iso_code ("See
# global_energy_mix.json for available countries"): without one, or with a code it does not
# know (an error is logged), the tracker still runs, with the world's average intensity.
@pytest.mark.parametrize("country", [None, "XYZ"])
def test_offline_without_a_known_country(impl: Impl, country: str | None) -> None:
    module = impl.setup()
    kwargs = {} if country is None else {"country_iso_code": country}
    with module.OfflineEmissionsTracker(**kwargs) as tracker:
        busy(0.05)
    assert isinstance(tracker.final_emissions, float) and tracker.final_emissions > 0
    (row,) = run_csv(impl)
    assert_run_row(row, country_name="", country_iso_code=country or "")
    if country is not None:
        errors = impl.messages(logging.ERROR)
        assert "XYZ" in errors


# docs/tutorials/comparing-model-efficiency.md, "Step 3": three trackers, one per model, write
# three rows to ./emissions/emissions.csv, the folder the tutorial creates first.
def test_comparing_model_efficiency(impl: Impl) -> None:
    ns = impl.run("comparing_model_efficiency")
    assert impl.files() == ["emissions/emissions.csv"]
    rows = run_csv(impl, impl.work / "emissions")
    assert [r["project_name"] for r in rows] == ["ml_small_rf", "ml_medium_rf", "ml_large_rf"]
    assert len({r["run_id"] for r in rows}) == 3
    assert [r["CO2 Emissions (kg)"] for r in ns["results"]] == [float(r["emissions"]) for r in rows]


# docs/tutorials/comparing-model-efficiency.md again, without its mkdir: the output_dir does
# not exist, and the tracker raises OSError when it is made.
def test_missing_output_dir_raises(impl: Impl) -> None:
    with pytest.raises(OSError, match="emissions"):
        impl.run(
            "comparing_model_efficiency",
            replace={'Path("./emissions").mkdir(exist_ok=True)': "pass"},
        )
    assert impl.files() == []
    # When the tracker is made, before anything is measured.
    with pytest.raises(OSError, match="emissions"):
        impl.module().EmissionsTracker(output_dir="./emissions")


# docs/how-to/scikit-learn.md, "Multiple Trackers": one tracker stopped, started again and
# stopped; each stop() returns a float and writes a row, both of the same run.
def test_scikit_learn_multiple_trackers(impl: Impl) -> None:
    ns = impl.run("scikit_learn_multiple_trackers")
    for name in ("training_emissions", "prediction_emissions"):
        assert isinstance(ns[name], float) and ns[name] > 0
    rows = run_csv(impl)
    assert len(rows) == 2
    assert {r["run_id"] for r in rows} == {str(ns["tracker"].run_id)}


# docs/tutorials/python-api.md, "Explicit Object" in a notebook ("start tracking in one cell
# and stop in a much later cell"): the row's timestamp is when it was written, and the
# utilization columns are the averages measured while the tracker ran (CodeCarbon samples
# them each second).
def test_notebook_cells_timestamp_and_utilization(impl: Impl) -> None:
    marks: dict[str, datetime] = {}

    def later_cell(ns: dict[str, Any]) -> None:
        # A new second on the clock, and time for a sample: CodeCarbon's monitor takes its
        # first a second after start(); on a busy machine, wait for it a little longer.
        start = datetime.now().replace(microsecond=0)
        busy(1.2)
        deadline = time.monotonic() + 10
        while not getattr(ns["tracker"], "_ram_utilization_history", [0]):
            assert time.monotonic() < deadline, "CodeCarbon took no utilization sample"
            busy(0.05)
        marks["before_stop"] = datetime.now().replace(microsecond=0)
        assert marks["before_stop"] > start

    impl.run("python_api_notebook_cells", between=later_cell)
    after = datetime.now().replace(microsecond=0)
    (row,) = run_csv(impl)
    assert_run_row(row)
    written = datetime.strptime(row["timestamp"], "%Y-%m-%dT%H:%M:%S")
    assert marks["before_stop"] <= written <= after
    assert 0 < float(row["ram_utilization_percent"]) <= 100
    assert 0 < float(row["ram_used_gb"]) <= ram_total_gb()
    cpu = float(row["cpu_utilization_percent"])
    assert 0 <= cpu <= 100 and not math.isnan(cpu)


# -- side by side ----------------------------------------------------------------------------


def outline(impl: Impl, ns: dict[str, Any]) -> dict[str, Any]:
    """What a snippet left, with run ids masked: each file and, for a CSV, its header and the
    kind of each cell (empty, number, text) row by row; the types of the values it kept."""
    found: dict[str, Any] = {}
    for name in impl.files():
        masked = UUID.sub("<run_id>", name)
        found[masked] = None
        if name.endswith(".csv"):
            header, rows = read_csv(impl.work / name)
            found[masked] = {
                "header": [c for c in header if c not in GEO_COLUMNS],
                "rows": [
                    {c: _kind(v) for c, v in row.items() if c not in GEO_COLUMNS} for row in rows
                ],
            }
    kept = ("emissions", "_", "imdb_emissions", "model_emissions", "emissions_data", "last")
    returned = {k: type(v).__name__ for k, v in ns.items() if k in kept}
    return {"files": found, "returned": returned}


def _kind(cell: str) -> str:
    if cell == "":
        return "empty"
    try:
        float(cell)
    except ValueError:
        return "text"
    return "number"


def differences(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """How the drop-in's outline differs from CodeCarbon's, in words."""
    out = []
    if sorted(theirs["files"]) != sorted(ours["files"]):
        out.append(f"files: CodeCarbon {sorted(theirs['files'])}, drop-in {sorted(ours['files'])}")
    for name in sorted(set(theirs["files"]) & set(ours["files"])):
        a, b = theirs["files"][name], ours["files"][name]
        if a is None or b is None:
            continue
        if a["header"] != b["header"]:
            out.append(f"{name}: header {a['header']} != {b['header']}")
        if len(a["rows"]) != len(b["rows"]):
            out.append(f"{name}: {len(a['rows'])} rows != {len(b['rows'])}")
        for i, (ra, rb) in enumerate(zip(a["rows"], b["rows"], strict=False)):
            for column in ra:
                if column in rb and ra[column] != rb[column]:
                    out.append(f"{name} row {i + 1} {column}: {ra[column]} != {rb[column]}")
    if theirs["returned"] != ours["returned"]:
        out.append(f"returned: {theirs['returned']} != {ours['returned']}")
    return out


# The same snippet under both implementations, compared directly: the same files, headers, row
# counts, kinds of cell (empty, number or text; where the machine is aside) and types returned.
@pytest.mark.parametrize(
    "snippet",
    [
        "python_api_explicit_object",
        "python_api_offline_decorator",
        "python_api_task_manager",
        "howto_examples_tasks",
        "examples_task_inference",
        "examples_command_line_tool",
        "output_boamps",
        "logging_python_logger",
        "comparing_model_efficiency",
    ],
)
def test_both_write_the_same(make_impl: Callable[[str], Impl], snippet: str) -> None:
    outlines = {}
    for name in PREFIXES:
        impl = make_impl(name)
        outlines[name] = outline(impl, impl.run(snippet))
    assert outlines["codecarbon"]["files"], "the snippet wrote nothing to compare"
    assert differences(outlines["codecarbon"], outlines["carbonfast"]) == []


def test_snippets_name_their_source() -> None:
    """Every snippet says where in CodeCarbon's documentation or examples it comes from, and is
    run by a test here."""
    tests = Path(__file__).read_text()
    for path in sorted(SNIPPETS.glob("*.py")):
        first = path.read_text().splitlines()[0]
        assert re.match(r"# (docs/\S+\.md|examples/\S+\.py)", first), path.name
        assert f'"{path.stem}"' in tests, f"{path.name} is run by no test"
        assert "from carbonfast" not in for_prefix(path.read_text(), "codecarbon")
        assert "from codecarbon" not in for_prefix(path.read_text(), PREFIXES["carbonfast"])
