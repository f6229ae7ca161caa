"""Faults of the CodeCarbon drop-in, each against real local servers and real threads: HTTP
outputs that follow redirects or let a slow server hold stop() up, bad forced intensities,
concurrent stop(), flush(), start() and tasks, and outputs written out of order."""

from __future__ import annotations

import contextlib
import csv
import http.server
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.powercap import FakePowercap

KWH = 3.6e6


@pytest.fixture
def work(fake: FakePowercap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Trackers on the fake tree, in an empty working directory, with an empty home and no
    CODECARBON_* variables."""
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
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    logger = logging.getLogger("codecarbon")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.fixture
def interleaved() -> Iterator[None]:
    """Threads switched as often as the interpreter can, so that races show."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _messages(records: list[logging.LogRecord], level: int) -> list[str]:
    return [r.getMessage() for r in records if r.levelno == level]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class _Seen:
    """What a local server received: (method, path, X-Api-Token) per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()

    def add(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests.append((handler.command, handler.path, handler.headers["x-api-token"]))


@contextlib.contextmanager
def serving(
    answer: Callable[[http.server.BaseHTTPRequestHandler], None],
    host: str = "127.0.0.1",
) -> Iterator[tuple[str, _Seen]]:
    """A threaded server on `host` calling `answer` for each GET and POST (after reading the
    body); yields its base URL and what it received."""
    seen = _Seen()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            seen.add(self)
            answer(self)

        do_GET = do_POST = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


def _created(handler: http.server.BaseHTTPRequestHandler) -> None:
    """A CodeCarbon API (and emissions endpoint) that takes everything."""
    body = json.dumps({"id": "run-1"}).encode() if handler.path.endswith("/runs") else b"{}"
    handler.send_response(201)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _tracker(kind: str, url: str, **kwargs: Any) -> Any:
    """An EmissionsTracker sending to `url` through the API output or emissions_endpoint."""
    from carbonfast.compat.codecarbon import EmissionsTracker, OutputMethod

    if kind == "api":
        return EmissionsTracker(
            output_methods=[OutputMethod.API],
            api_endpoint=url,
            api_key="secret-token",
            api_call_interval=-1,
            **kwargs,
        )
    return EmissionsTracker(output_methods=[], emissions_endpoint=url + "/emissions", **kwargs)


# -- 1. redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [302, 303])
@pytest.mark.parametrize("kind", ["api", "endpoint"])
def test_a_redirect_is_refused_and_named(
    work: Path, fake: FakePowercap, cc_log: list[logging.LogRecord], kind: str, code: int
) -> None:
    """A redirect to another host is not followed: the token stays with the host it was
    given for, and a warning names where the redirect pointed."""
    with serving(_created, host="localhost") as (elsewhere, there):

        def redirect(handler: http.server.BaseHTTPRequestHandler) -> None:
            handler.send_response(code)
            handler.send_header("Location", f"{elsewhere}/stolen")
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with serving(redirect) as (url, here):
            tracker = _tracker(kind, url)
            tracker.start()
            fake.add("intel-rapl:0", 3_600_000)
            assert tracker.stop() is not None
    assert there.requests == []
    assert here.requests and {token for _, _, token in here.requests} <= {"secret-token", None}
    warned = " | ".join(_messages(cc_log, logging.WARNING))
    assert f"{elsewhere}/stolen" in warned and "redirect" in warned


# -- 2. slow servers -----------------------------------------------------------------------------


def _trickle(handler: http.server.BaseHTTPRequestHandler) -> None:
    """A whole answer, sent a byte every 0.25 s (about 15 s in all)."""
    body = json.dumps({"id": "run-1"}).encode()
    answer = (
        b"HTTP/1.1 201 Created\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with contextlib.suppress(OSError):
        for byte in answer:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.25)
    handler.close_connection = True


@pytest.mark.parametrize("kind", ["api", "endpoint"])
def test_a_server_that_trickles_cannot_hold_stop_up(
    work: Path,
    fake: FakePowercap,
    cc_log: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """Each request is bounded in total, not per read: CodeCarbon's 2 s for the API, its
    10 s for emissions_endpoint (shortened here to 1 s)."""
    from carbonfast.compat.codecarbon.output_methods import http as outputs

    assert (outputs._TIMEOUT_S, outputs._API_TIMEOUT_S) == (10.0, 2.0)
    monkeypatch.setattr(outputs, "_TIMEOUT_S", 1.0)
    with serving(_trickle) as (url, _):
        tracker = _tracker(kind, url)
        tracker.start()
        fake.add("intel-rapl:0", 3_600_000)
        t0 = time.monotonic()
        assert tracker.stop() is not None
        took = time.monotonic() - t0
    limit = 2.0 if kind == "api" else 1.0
    assert took < limit + 1.5, f"stop() took {took:.1f} s"
    errors = " | ".join(_messages(cc_log, logging.ERROR))
    assert f"within {limit:g} s" in errors
    # The request cut off at its deadline leaves no thread reading the trickle.
    deadline = time.monotonic() + 2
    while any(t.name == "carbonfast-http" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a request thread outlived its deadline"
        time.sleep(0.05)


def test_only_http_urls_are_posted_to(
    work: Path, fake: FakePowercap, cc_log: list[logging.LogRecord], tmp_path: Path
) -> None:
    """emissions_endpoint="file:///..." reads no file; the error says what is taken."""
    from carbonfast.compat.codecarbon import EmissionsTracker

    secret = tmp_path / "secret"
    secret.write_text("x")
    tracker = EmissionsTracker(output_methods=[], emissions_endpoint=secret.as_uri())
    tracker.start()
    assert tracker.stop() is not None
    errors = " | ".join(_messages(cc_log, logging.ERROR))
    assert "not an http:// or https:// URL" in errors and "emissions_endpoint" in errors


# -- 3. forced intensity ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), -100, float("inf"), "lots", True])
def test_a_forced_intensity_that_is_no_intensity_is_a_value_error(
    work: Path, value: object
) -> None:
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    with pytest.raises(ValueError, match=r"force_carbon_intensity_g_co2e_kwh=.*g CO2e per kWh"):
        OfflineEmissionsTracker(country_iso_code="FRA", force_carbon_intensity_g_co2e_kwh=value)


def test_a_forced_intensity_given_as_text_is_the_number(work: Path, fake: FakePowercap) -> None:
    """As CodeCarbon takes it (float(value)): "100" is 100 g/kWh."""
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA", force_carbon_intensity_g_co2e_kwh="100"
    )
    assert tracker.force_carbon_intensity_g_co2e_kwh == 100.0
    tracker.start()
    fake.add("intel-rapl:0", 3_600_000)
    assert tracker.stop() == pytest.approx(3.6 / KWH * 0.1)


@pytest.mark.parametrize("raw", ["nan", "-100", "inf"])
def test_a_forced_intensity_in_the_configuration_is_checked_too(
    work: Path, cc_log: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    """From the configuration, as every setting there: logged as an error, not used."""
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    monkeypatch.setenv("CODECARBON_FORCE_CARBON_INTENSITY_G_CO2E_KWH", raw)
    tracker = OfflineEmissionsTracker(country_iso_code="FRA")
    assert tracker.force_carbon_intensity_g_co2e_kwh is None
    errors = " | ".join(_messages(cc_log, logging.ERROR))
    assert "force_carbon_intensity_g_co2e_kwh" in errors and raw in errors


# -- 4. and 5. concurrent calls -----------------------------------------------------------------


def _at_once(n: int, call: Callable[[], Any]) -> list[Any]:
    """`call` from n threads released together; their results."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_concurrent_stops_all_return_the_runs_emissions(
    work: Path, fake: FakePowercap, interleaved: None
) -> None:
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(country_iso_code="FRA")
    tracker.start()
    fake.add("intel-rapl:0", 3_600_000)
    results = _at_once(16, tracker.stop)
    assert results[0] is not None
    assert results == [tracker.final_emissions] * 16
    assert len(_rows(work / "emissions.csv")) == 1
    assert tracker.stop() == results[0]  # once stopped, as CodeCarbon: the same again


def test_concurrent_flushes_with_update_keep_one_row(
    work: Path, fake: FakePowercap, interleaved: None
) -> None:
    """Flushes whose rows reach the file together (an output of the user's ahead of the
    CSV holds each until all eight are there, or a second has passed)."""
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker
    from carbonfast.compat.codecarbon.output_methods.base_output import BaseOutput

    together = threading.Barrier(8, timeout=1.0)

    class Together(BaseOutput):
        def out(self, total: Any, delta: Any) -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait()

    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA", on_csv_write="update", output_handlers=[Together()]
    )
    tracker.start()
    fake.add("intel-rapl:0", 3_600_000)
    assert None not in _at_once(8, tracker.flush)
    assert len(_rows(work / "emissions.csv")) == 1
    fake.add("intel-rapl:0", 3_600_000)
    tracker.stop()
    [row] = _rows(work / "emissions.csv")
    assert float(row["energy_consumed"]) == pytest.approx(7.2 / KWH)


def test_concurrent_starts_open_one_run(
    work: Path, fake: FakePowercap, cc_log: list[logging.LogRecord], interleaved: None
) -> None:
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(country_iso_code="FRA")
    _at_once(8, tracker.start)
    assert _messages(cc_log, logging.WARNING).count("Already started tracking") == 7
    fake.add("intel-rapl:0", 3_600_000)
    assert tracker.stop() is not None


def test_concurrent_tasks_run_one_at_a_time(
    work: Path, fake: FakePowercap, cc_log: list[logging.LogRecord], interleaved: None
) -> None:
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(country_iso_code="FRA")
    tracker.get_detected_hardware()
    names = iter(range(1000))
    _at_once(8, lambda: tracker.start_task(f"t{next(names)}"))
    assert len(tracker._tasks) == 1
    assert _messages(cc_log, logging.WARNING).count("A task is already under measure") == 7
    fake.add("intel-rapl:0", 3_600_000)
    stopped = [d for d in _at_once(8, tracker.stop_task) if d is not None]
    assert len(stopped) == 1 and len(tracker._run_tasks) == 1
    assert tracker.stop() == pytest.approx(3.6 / KWH * tracker._carbon_intensity().g_per_kwh / 1000)


def test_concurrent_flushes_create_one_api_run(work: Path, fake: FakePowercap) -> None:
    with serving(_created) as (url, seen):
        tracker = _tracker("api", url)
        tracker.start()
        time.sleep(1.1)  # the API takes no part under a second
        fake.add("intel-rapl:0", 3_600_000)
        _at_once(8, tracker.flush)
        tracker.stop()
    assert [p for m, p, _ in seen.requests if p.endswith("/runs")] == ["/runs"]


def test_the_last_row_written_is_the_latest(work: Path, fake: FakePowercap) -> None:
    """A flush() whose outputs are slow, overtaken by stop(): the run's row ends with the
    whole run, not with what the flush had measured."""
    from carbonfast.compat.codecarbon import OfflineEmissionsTracker
    from carbonfast.compat.codecarbon.output_methods.base_output import BaseOutput

    class SlowOnce(BaseOutput):
        calls = 0

        def out(self, total: Any, delta: Any) -> None:
            SlowOnce.calls += 1
            if SlowOnce.calls == 1:
                time.sleep(0.5)

    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA", on_csv_write="update", output_handlers=[SlowOnce()]
    )
    tracker.start()
    fake.add("intel-rapl:0", 3_600_000)
    flushing = threading.Thread(target=tracker.flush)
    flushing.start()
    time.sleep(0.1)
    fake.add("intel-rapl:0", 3_600_000)
    tracker.stop()
    flushing.join()
    [row] = _rows(work / "emissions.csv")
    assert float(row["energy_consumed"]) == pytest.approx(7.2 / KWH)


def test_a_pynvml_that_never_answers_holds_up_no_tracker(monkeypatch: pytest.MonkeyPatch) -> None:
    """pynvml's init blocking for good (a GPU fallen off the bus) costs the utilisation figure,
    not the tracker: the query is given up at its deadline and not asked again."""
    import sys
    import threading
    import types

    from carbonfast.compat.codecarbon import _system

    release = threading.Event()
    fake = types.ModuleType("pynvml")
    fake.nvmlInit = lambda: release.wait(60)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    nvml = _system._Nvml()
    monkeypatch.setattr(_system._Nvml, "DEADLINE_S", 0.3)
    t0 = time.monotonic()
    assert nvml.utilization(None) == []
    assert nvml.utilization(None) == []
    assert time.monotonic() - t0 < 1.5
    release.set()


def test_a_pynvml_reporting_a_billion_devices_is_not_walked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys
    import types

    from carbonfast.compat.codecarbon import _system

    asked: list[int] = []
    fake = types.ModuleType("pynvml")
    fake.nvmlInit = lambda: None  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 1 << 30  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = asked.append  # type: ignore[attr-defined]
    fake.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=50)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert len(_system._Nvml().utilization(None)) == _system._Nvml.MAX_DEVICES
    assert len(asked) == _system._Nvml.MAX_DEVICES
