"""`carbonfast serve`: the Prometheus exporter, read with prometheus-client's own parser and
scraped by a real Prometheus server."""

from __future__ import annotations

import importlib
import json
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import carbonfast
import carbonfast as cf
from carbonfast import cli
from tests.fakes.powercap import FakePowercap

PKG, CORE, DRAM = "intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1"


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Any:
    pytest.importorskip("prometheus_client")
    from carbonfast import serve

    # The tests say which job labels they expect: none from a CI job running under Slurm.
    for _, names in serve.JOB_LABELS:
        for name in names:
            monkeypatch.delenv(name, raising=False)
    return serve


def scrape(collector: Any) -> dict[str, Any]:
    """The collector's exposition, as Prometheus's text format, parsed back by
    prometheus-client's parser: metric families by name."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def by_domain(family: Any) -> dict[str, float]:
    return {s.labels["domain"]: s.value for s in family.samples}


def test_a_scrape_exposes_energy_power_and_emissions_with_their_labels(
    fake: FakePowercap, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARBONFAST_HOST_ID", "node-7")
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    monkeypatch.setenv("POD_NAMESPACE", "ml")
    monkeypatch.setenv("POD_NAME", "trainer-0")
    meter = cf.Meter(fake.root, intensity=500, pue=1.2)
    collector = serve.MeterCollector(meter)
    fake.add(PKG, 3_000_000)
    fake.add(CORE, 2_000_000)
    fake.add(DRAM, 1_000_000)
    families = scrape(collector)

    assert set(families) == {
        "carbonfast_energy_joules",
        "carbonfast_power_watts",
        "carbonfast_emissions_grams",
        "carbonfast_stale",
    }
    (fresh,) = families["carbonfast_stale"].samples
    assert fresh.value == 0
    energy = families["carbonfast_energy_joules"]
    assert energy.type == "counter"
    assert {s.name for s in energy.samples} == {"carbonfast_energy_joules_total"}
    assert by_domain(energy) == pytest.approx({"package-0": 3.0, "core-0": 2.0, "dram-0": 1.0})
    job = {"slurm_job_id": "1234", "slurm_job_name": "train", "k8s_namespace": "ml"}
    job["k8s_pod"] = "trainer-0"
    package = next(s for s in energy.samples if s.labels["domain"] == "package-0")
    assert package.labels == {
        "host": "node-7",
        "domain": "package-0",
        "kind": "package",
        "estimated": "false",
        **job,
    }
    assert {s.labels["kind"] for s in energy.samples} == {"package", "core", "dram"}

    power = families["carbonfast_power_watts"]
    assert power.type == "gauge"
    assert set(by_domain(power)) == {"package-0", "core-0", "dram-0"}
    assert all(w > 0 for w in by_domain(power).values())

    emissions = families["carbonfast_emissions_grams"]
    assert emissions.type == "counter"
    (sample,) = emissions.samples
    assert sample.name == "carbonfast_emissions_grams_total"
    assert sample.labels == {"host": "node-7", "estimated": "false", **job}
    # Package and DRAM only: the cores are inside the package.
    assert sample.value == pytest.approx((3.0 + 1.0) / 3.6e6 * 1.2 * 500)  # J -> kWh, x g/kWh
    collector.close()


def test_energy_is_continuous_across_wraps_even_between_far_apart_scrapes(
    tmp_path: Path, serve: Any
) -> None:
    fake = FakePowercap(tmp_path / "sys")
    fake.zone(PKG, "package-0", energy_uj=9_000_000, max_uj=9_999_999)  # wraps every 10 J
    meter = cf.Meter(fake.root)
    collector = serve.MeterCollector(meter)
    exported = []
    added = 0
    for _ in range(6):
        # 12 J between scrapes, more than the counter's whole range: only the meter's wrap
        # guard, reading while the exporter runs, sees every wrap.
        for _ in range(4):
            fake.add(PKG, 3_000_000)
            added += 3_000_000
            time.sleep(0.03)
        exported.append(by_domain(scrape(collector)["carbonfast_energy_joules"])["package-0"])
    assert exported == pytest.approx([12.0 * (i + 1) for i in range(6)])
    assert added == 72_000_000
    assert meter.native.wraps()[0] >= 7
    collector.close()


def test_a_counter_that_goes_back_is_never_exported_as_a_decrease(
    fake: FakePowercap, serve: Any
) -> None:
    meter = cf.Meter(fake.root)
    collector = serve.MeterCollector(meter)
    fake.add(PKG, 5_000_000)
    fake.add(DRAM, 1_000_000)
    first = by_domain(scrape(collector)["carbonfast_energy_joules"])["package-0"]
    fake.set(PKG, 500_000)  # the counter started again (a driver reload, a reset)
    second = by_domain(scrape(collector)["carbonfast_energy_joules"])["package-0"]
    fake.add(PKG, 2_000_000)
    third = by_domain(scrape(collector)["carbonfast_energy_joules"])["package-0"]
    assert first == pytest.approx(5.0)
    assert second == pytest.approx(5.0)
    # Counting goes on from where the counter started again.
    assert third == pytest.approx(7.0)
    collector.close()


def test_estimated_domains_are_labelled_estimated(tmp_path: Path, serve: Any) -> None:
    fake = FakePowercap(tmp_path / "sys")
    fake.zone(PKG, "package-0")  # no DRAM zone: memory is estimated
    meter = cf.Meter(fake.root, ram_power_w=4.0)
    collector = serve.MeterCollector(meter)
    fake.add(PKG, 1_000_000)
    time.sleep(0.05)
    families = scrape(collector)
    labels = {s.labels["domain"]: s.labels for s in families["carbonfast_energy_joules"].samples}
    assert labels["package-0"]["estimated"] == "false"
    assert labels["ram"]["estimated"] == "true"
    assert labels["ram"]["kind"] == "dram"
    assert by_domain(families["carbonfast_energy_joules"])["ram"] > 0
    (emissions,) = families["carbonfast_emissions_grams"].samples
    assert emissions.labels["estimated"] == "true"
    collector.close()


def test_a_counter_that_never_moved_is_left_out_until_it_moves(
    fake: FakePowercap, serve: Any
) -> None:
    meter = cf.Meter(fake.root)
    collector = serve.MeterCollector(meter)
    fake.add(PKG, 1_000_000)
    families = scrape(collector)
    assert set(by_domain(families["carbonfast_energy_joules"])) == {"package-0"}
    assert set(by_domain(families["carbonfast_power_watts"])) == {"package-0"}
    fake.add(DRAM, 250_000)
    energy = by_domain(scrape(collector)["carbonfast_energy_joules"])
    assert energy == pytest.approx({"package-0": 1.0, "dram-0": 0.25})
    collector.close()


def test_power_is_the_average_since_the_previous_scrape_over_at_least_its_window(
    fake: FakePowercap, serve: Any
) -> None:
    meter = cf.Meter(fake.root)
    collector = serve.MeterCollector(meter)  # a power window of 1 s
    time.sleep(0.3)
    before1 = time.monotonic()
    scrape(collector)
    after1 = time.monotonic()
    fake.add(PKG, 2_000_000)
    time.sleep(1.05)
    before2 = time.monotonic()
    power2 = by_domain(scrape(collector)["carbonfast_power_watts"])["package-0"]
    after2 = time.monotonic()
    # The reads fall inside the scrapes: the interval between them is bounded by these.
    assert 2.0 / (after2 - before1) <= power2 <= 2.0 / (before2 - after1)
    # A scrape right after the last one still measures from the one before: no 0 W, and no
    # rate over a few microseconds.
    power3 = by_domain(scrape(collector)["carbonfast_power_watts"])["package-0"]
    after3 = time.monotonic()
    assert 2.0 / (after3 - before1) <= power3 <= 2.0 / (before2 - after1)
    collector.close()


def test_job_labels_and_host_come_from_the_environment(serve: Any) -> None:
    env = {
        "SLURM_JOB_ID": "77",
        "SLURM_JOB_NAME": " ",
        "KUBERNETES_NAMESPACE": "batch",
        "POD_NAME": "worker-3",
    }
    assert serve.job_labels(env) == {
        "slurm_job_id": "77",
        "k8s_namespace": "batch",
        "k8s_pod": "worker-3",
    }
    assert serve.job_labels({"POD_NAMESPACE": "a", "KUBERNETES_NAMESPACE": "b"}) == {
        "k8s_namespace": "a"
    }
    assert serve.job_labels({}) == {}
    assert serve.host_label({"CARBONFAST_HOST_ID": "rack4-n2"}) == "rack4-n2"
    assert serve.host_label({}) == socket.gethostname()


def test_the_exporter_estimates_for_the_whole_machine_unless_a_scope_is_set(
    tmp_path: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CARBONFAST_ESTIMATE_SCOPE", raising=False)
    no_rapl = tmp_path / "no-rapl"

    def cpu_time(meter: cf.Meter) -> str:
        cpu = next(d for d in meter.domains if d.name == "cpu")
        return dict(cpu.inputs)["cpu_time"]

    assert cpu_time(serve.host_meter(powercap_root=no_rapl)).startswith("machine scope")
    monkeypatch.setenv("CARBONFAST_ESTIMATE_SCOPE", "process")
    assert cpu_time(serve.host_meter(powercap_root=no_rapl)).startswith("process scope")
    assert cpu_time(serve.host_meter(powercap_root=no_rapl, scope="machine")).startswith(
        "machine scope"
    )


def test_only_loopback_addresses_count_as_this_host_only(serve: Any) -> None:
    assert serve.is_loopback("127.0.0.1")
    assert serve.is_loopback("::1")
    assert serve.is_loopback("localhost")
    assert not serve.is_loopback("0.0.0.0")
    assert not serve.is_loopback("::")


def test_serve_without_prometheus_client_names_the_extra(
    fake: FakePowercap, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails, as uninstalled
    monkeypatch.delitem(sys.modules, "carbonfast.serve", raising=False)
    monkeypatch.delattr(carbonfast, "serve", raising=False)
    with pytest.raises(ImportError, match=re.escape("pip install 'carbonfast[serve]'")):
        importlib.import_module("carbonfast.serve")
    monkeypatch.delitem(sys.modules, "carbonfast.serve", raising=False)
    assert cli.main(["serve", "--powercap-root", str(fake.root), "--port", "0"]) == 2
    assert "pip install 'carbonfast[serve]'" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_CARBONFAST = (sys.executable, "-m", "carbonfast.cli")


def _start_serving(root: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """`carbonfast serve` on a free port; its process and the URL it says it serves."""
    proc = subprocess.Popen(
        [*_CARBONFAST, "serve", "--powercap-root", str(root), "--port", "0", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline()
            seen += line
            found = re.search(r"at (http://\S+/metrics)", line)
            if found:
                return proc, found.group(1)
            if not line:
                break
    proc.kill()
    proc.wait()
    raise AssertionError(f"carbonfast serve did not say where it listens: {seen!r}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_carbonfast_serve_listens_on_loopback_and_exits_cleanly_on_a_signal(
    fake: FakePowercap, serve: Any, sig: signal.Signals
) -> None:
    proc, url = _start_serving(fake.root)
    try:
        assert url.startswith("http://127.0.0.1:")
        fake.add(PKG, 1_500_000)
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        package = r'carbonfast_energy_joules_total\{[^}]*domain="package-0"[^}]*\} 1\.5\n'
        assert re.search(package, text), text
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        assert "stopped serving" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_carbonfast_serve_refuses_a_port_out_of_range_or_taken(
    fake: FakePowercap, serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "--powercap-root", str(fake.root), "--port", "70000"]) == 2
    assert "port 70000 is not valid" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--powercap-root", str(fake.root), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"carbonfast: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def _query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as r:
        answer = json.load(r)
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus")
def test_prometheus_rate_of_the_energy_counter_is_the_power_drawn(
    tmp_path: Path, serve: Any
) -> None:
    power_w = 50.0
    fake = FakePowercap(tmp_path / "sys")
    fake.zone(PKG, "package-0", energy_uj=1_000_000)
    # The counter advances at `power_w` by the writer's own clock: each value written is the
    # energy since the writer started, so the truth is in what was written, whatever the
    # scheduler does to the writer's cadence.
    written: list[tuple[float, int]] = []
    stop = threading.Event()

    def writer() -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            t = time.monotonic()
            uj = 1_000_000 + round(power_w * 1e6 * (t - t0))
            fake.set(PKG, uj)
            written.append((t, uj))
            stop.wait(0.01)

    feeding = threading.Thread(target=writer, daemon=True)
    feeding.start()
    exporter, url = _start_serving(fake.root)
    target = urllib.parse.urlsplit(url).netloc
    web = f"127.0.0.1:{_free_port()}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: carbonfast\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115 (closed in finally)
    prometheus = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={web}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    series = 'carbonfast_energy_joules_total{domain="package-0"}'
    try:
        base = f"http://{web}"
        deadline = time.monotonic() + 60
        rate: float | None = None
        while time.monotonic() < deadline and prometheus.poll() is None:
            time.sleep(0.5)
            try:
                # rate() is only exact once samples cover its whole range: wait until the
                # series is 12 s old.
                count = _query(base, f"count_over_time({series}[20s])")
                if not count or float(count[0]["value"][1]) < 12:
                    continue
                (result,) = _query(base, f"rate({series}[10s])")
            except OSError:
                continue  # not up yet
            assert result["metric"]["kind"] == "package"
            rate = float(result["value"][1])
            break
        stop.set()
        feeding.join()
        recent = [(t, uj) for t, uj in written if t >= written[-1][0] - 10]
        truth = (recent[-1][1] - recent[0][1]) * 1e-6 / (recent[-1][0] - recent[0][0])
        log.flush()
        assert rate is not None, (tmp_path / "prometheus.log").read_text()[-3000:]
        assert truth == pytest.approx(power_w, rel=1e-3)
        assert rate == pytest.approx(truth, rel=0.02)
    finally:
        stop.set()
        for proc in (prometheus, exporter):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_a_frozen_rapl_is_estimated_in_its_place(fake: FakePowercap, serve: Any) -> None:
    # Nothing moves: past 250 of RAPL's refreshes, the estimate stands in for the package
    # and DRAM, in the domains and in the emissions.
    meter = cf.Meter(fake.root)
    collector = serve.MeterCollector(meter)
    assert set(by_domain(scrape(collector)["carbonfast_energy_joules"])) == set()
    time.sleep(0.3)
    families = scrape(collector)
    energy = by_domain(families["carbonfast_energy_joules"])
    assert set(energy) == {"cpu", "ram"} and all(j > 0 for j in energy.values()), energy
    [emissions] = [s.value for s in families["carbonfast_emissions_grams"].samples]
    assert emissions > 0
    # The package moves: measured again, and the estimate is no longer shown.
    fake.add(PKG, 1_000_000)
    assert set(by_domain(scrape(collector)["carbonfast_energy_joules"])) == {"package-0"}
    collector.close()
