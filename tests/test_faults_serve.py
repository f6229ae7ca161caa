"""`carbonfast serve` against clients and devices that misbehave: idle and trickling
connections, oversized requests, a read of the counters that never returns, and a stop
signal while one hangs."""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import carbonfast as cf
from tests.fakes.nvml import FakeNvml
from tests.fakes.powercap import FakePowercap

PKG = "intel-rapl:0"


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Any:
    pytest.importorskip("prometheus_client")
    from carbonfast import serve

    for _, names in serve.JOB_LABELS:
        for name in names:
            monkeypatch.delenv(name, raising=False)
    # Short deadlines keep the tests short; raising=False: a server without them still runs.
    monkeypatch.setattr(serve, "REQUEST_DEADLINE_S", 1.0, raising=False)
    monkeypatch.setattr(serve, "READ_DEADLINE_S", 0.5, raising=False)
    return serve


def _cap(serve: Any) -> int:
    return int(getattr(serve, "MAX_CONNECTIONS", 32))


class Gate:
    """The real native meter, whose reads (and the read that closes its window) wait while
    the gate is shut, as a read of a hung sysfs file or NVML call would."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self.open = threading.Event()
        self.open.set()
        self.reads = 0

    def read(self) -> Any:
        self.reads += 1
        self.open.wait()
        return self._native.read()

    def close_window(self) -> Any:
        self.open.wait()
        return self._native.close_window()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._native, name)


class GatedMeter:
    """A Meter whose native reads go through a Gate."""

    def __init__(self, meter: cf.Meter) -> None:
        self._meter = meter
        self.native = Gate(meter.native)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._meter, name)


def _get(url: str, timeout: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


def _sample(text: str, name: str, domain: str | None = None) -> float | None:
    where = f'[^}}]*domain="{domain}"' if domain else ""
    found = re.search(rf"^{name}\{{{where}[^}}]*\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


def _in_time(fn: Any, timeout: float) -> Any:
    """fn() on a daemon thread; its result, or AssertionError if it has not returned in time
    (the thread is left behind: the test has failed)."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert out, f"did not return within {timeout} s"
    return out[0]


def _closed_by(conn: socket.socket, deadline: float) -> bool:
    """Whether the server closes `conn` before `deadline` (monotonic)."""
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([conn], [], [], left)
        if not ready:
            continue
        try:
            if conn.recv(65536) == b"":
                return True
        except OSError:
            return True
    return False


def test_idle_and_half_sent_connections_hold_no_thread_and_are_closed_after_the_deadline(
    fake: FakePowercap, serve: Any
) -> None:
    exporter = serve.start(cf.Meter(fake.root), "127.0.0.1", 0)
    base = threading.active_count()
    clients = []
    try:
        opened = time.monotonic()
        for i in range(100):
            c = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
            if i % 2:
                c.sendall(b"GET /metr")  # half a request line, then nothing
            clients.append(c)
        time.sleep(0.3)
        assert threading.active_count() - base < _cap(serve)
        fake.add(PKG, 1_500_000)
        text = _get(exporter.url, timeout=5)
        assert _sample(text, "carbonfast_energy_joules_total", "package-0") == 1.5
        # Closed once their time to send a request is up, not before.
        assert not any(_closed_by(c, opened + 0.5) for c in clients[:2])
        deadline = opened + 1.0 + 2.0
        assert all(_closed_by(c, deadline) for c in clients)
        assert threading.active_count() - base < _cap(serve)
    finally:
        for c in clients:
            c.close()
        exporter.close()


def test_a_client_trickling_its_request_a_byte_at_a_time_is_cut_off_at_the_deadline(
    fake: FakePowercap, serve: Any
) -> None:
    exporter = serve.start(cf.Meter(fake.root), "127.0.0.1", 0)
    try:
        with socket.create_connection(("127.0.0.1", exporter.port), timeout=5) as c:
            opened = time.monotonic()
            request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 100
            closed = False
            # A byte every 0.2 s: no single read waits long, the whole request never comes.
            for byte in request:
                try:
                    c.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                if _closed_by(c, time.monotonic() + 0.2):
                    closed = True
                    break
                if time.monotonic() - opened > 4.0:
                    break
            assert closed
            assert time.monotonic() - opened < 1.0 + 1.5
    finally:
        exporter.close()


def test_a_request_head_over_the_limit_is_refused_and_closed(
    fake: FakePowercap, serve: Any
) -> None:
    exporter = serve.start(cf.Meter(fake.root), "127.0.0.1", 0)
    try:
        with socket.create_connection(("127.0.0.1", exporter.port), timeout=5) as c:
            headers = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 250) for i in range(90))
            try:
                c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
                reply = b""
                while chunk := c.recv(65536):
                    reply += chunk
            except OSError:
                reply = b""  # reset: refused before it was all read
            assert b" 200 " not in reply.split(b"\r\n", 1)[0]
            assert b"carbonfast_energy_joules" not in reply
    finally:
        exporter.close()


def test_a_scrape_while_the_read_hangs_answers_the_last_values_marked_stale(
    fake: FakePowercap, serve: Any
) -> None:
    meter = GatedMeter(cf.Meter(fake.root))
    gate = meter.native
    collector = serve.MeterCollector(meter)
    registry_text = _registry_text(collector)
    try:
        fake.add(PKG, 2_000_000)
        first = registry_text()
        assert _sample(first, "carbonfast_energy_joules_total", "package-0") == 2.0
        assert _sample(first, "carbonfast_stale") == 0
        gate.open.clear()  # the device hangs
        fake.add(PKG, 1_000_000)
        reads = gate.reads
        for _ in range(3):
            started = time.monotonic()
            text = _in_time(registry_text, timeout=5)
            assert time.monotonic() - started < 0.5 + 1.0
            # The last good value: never lower, never the unread 3 J.
            assert _sample(text, "carbonfast_energy_joules_total", "package-0") == 2.0
            assert _sample(text, "carbonfast_stale") == 1
            assert _sample(text, "carbonfast_power_watts", "package-0") is None
        assert gate.reads == reads + 1  # one read under way at a time, no pile-up
        gate.open.set()
        deadline = time.monotonic() + 5
        while True:
            text = registry_text()
            if _sample(text, "carbonfast_stale") == 0 or time.monotonic() > deadline:
                break
        assert _sample(text, "carbonfast_stale") == 0
        assert _sample(text, "carbonfast_energy_joules_total", "package-0") == 3.0
    finally:
        gate.open.set()
        collector.close()


def test_a_read_that_fails_leaves_the_scrape_stale_not_broken(
    fake: FakePowercap, serve: Any
) -> None:
    meter = GatedMeter(cf.Meter(fake.root))
    collector = serve.MeterCollector(meter)
    registry_text = _registry_text(collector)
    try:
        fake.add(PKG, 1_000_000)
        assert _sample(registry_text(), "carbonfast_energy_joules_total", "package-0") == 1.0

        def lost() -> Any:
            raise cf.SensorUnavailable("the device is gone")

        meter.native.read = lost  # type: ignore[method-assign]
        text = registry_text()
        assert _sample(text, "carbonfast_energy_joules_total", "package-0") == 1.0
        assert _sample(text, "carbonfast_stale") == 1
    finally:
        collector.close()


def test_the_exporter_stops_promptly_and_threads_stay_capped_while_the_read_hangs(
    fake: FakePowercap, serve: Any
) -> None:
    meter = GatedMeter(cf.Meter(fake.root))
    gate = meter.native
    collector = serve.MeterCollector(meter)
    exporter = serve.Exporter(collector, "127.0.0.1", 0)
    base = threading.active_count()
    answers: list[str] = []

    def scrape() -> None:
        try:
            answers.append(_get(exporter.url, timeout=10))
        except OSError as e:
            answers.append(str(e))

    scrapers = [threading.Thread(target=scrape, daemon=True) for _ in range(3 * _cap(serve))]
    try:
        gate.open.clear()
        for t in scrapers:
            t.start()
        time.sleep(0.3)
        # The scrapers' own threads, plus at most the cap's and one read.
        assert threading.active_count() - base <= len(scrapers) + _cap(serve) + 2
        for t in scrapers:
            t.join(5)
        assert len(answers) == len(scrapers)
        assert sum("carbonfast_stale" in a for a in answers) >= 1
        assert gate.reads == 1
        started = time.monotonic()
        _in_time(exporter.close, timeout=5)
        assert time.monotonic() - started < 2.0
    finally:
        gate.open.set()
        exporter.close()


def _registry_text(collector: Any) -> Any:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return lambda: generate_latest(registry).decode()


_CARBONFAST = (sys.executable, "-m", "carbonfast.cli")


def _start_serving(root: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*_CARBONFAST, "serve", "--powercap-root", str(root), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline()
            if found := re.search(r"at (http://\S+/metrics)", line):
                return proc, found.group(1)
            if not line:
                break
    proc.kill()
    proc.wait()
    raise AssertionError("carbonfast serve did not say where it listens")


def _serving_over_a_gpu(
    fake: FakePowercap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[subprocess.Popen[str], str, FakeNvml]:
    """`carbonfast serve` over the fake powercap tree and a fake NVML GPU, read at every
    scrape (a domain, whether or not its counter has moved)."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("needs a C compiler for the fake NVML")
    nvml = FakeNvml(tmp_path / "nvml", "gpu 0 uuid=GPU-1 energy_mj=1000\n")
    monkeypatch.delenv("CARBONFAST_GPU", raising=False)
    monkeypatch.setenv("CARBONFAST_NVML_LIBRARY", str(nvml.library))
    proc, url = _start_serving(fake.root)
    assert "carbonfast_energy_joules" in _get(url, timeout=10)
    # Every NVML energy read now takes a minute, as a wedged driver's may.
    nvml.set("gpu 0 uuid=GPU-1 energy_mj=1000 delay_us=60000000\n")
    return proc, url, nvml


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_carbonfast_serve_answers_stale_while_a_gpu_read_hangs(
    fake: FakePowercap, serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, url, _ = _serving_over_a_gpu(fake, tmp_path, monkeypatch)
    try:
        fake.add(PKG, 1_000_000)
        for _ in range(2):
            started = time.monotonic()
            try:
                text = _get(url, timeout=8)
            except OSError as e:
                text = str(e)
            assert time.monotonic() - started < 2.0 + 2.0, text  # READ_DEADLINE_S, 2 s
            assert _sample(text, "carbonfast_stale") == 1, text
    finally:
        _stop(proc)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_carbonfast_serve_stops_on_a_signal_while_a_gpu_read_hangs(
    fake: FakePowercap,
    serve: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sig: signal.Signals,
) -> None:
    proc, url, _ = _serving_over_a_gpu(fake, tmp_path, monkeypatch)
    try:

        def scrape() -> None:
            with contextlib.suppress(OSError):  # cut off when the server stops
                _get(url, timeout=30)

        # A scrape under way, its read hung.
        threading.Thread(target=scrape, daemon=True).start()
        time.sleep(0.5)
        proc.send_signal(sig)
        started = time.monotonic()
        try:
            rc = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        assert rc == 0
        assert time.monotonic() - started < 2.0
    finally:
        _stop(proc)
