"""`carbonfast serve`: one host's energy counters as a Prometheus exporter.

Every scrape reads the counters then and there (one native read, microseconds) and exposes,
through prometheus-client's own collector API and HTTP server:

- `carbonfast_energy_joules_total{host, domain, kind, estimated}`: energy per domain since the
  exporter started, with every wrap of the hardware counter unfolded by the native meter;
- `carbonfast_power_watts{...same labels}`: the average power since the previous scrape (over
  at least `power_window_s`);
- `carbonfast_emissions_grams_total{host, estimated}`: the energy of the domains in the total
  (packages, DRAM, GPUs: never core, uncore or psys on top) x grid intensity x PUE.

Each sample also carries the job labels found in the environment (`job_labels`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections import deque
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

try:
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
except ImportError as e:  # an optional extra: the rest of carbonfast works without it
    raise ImportError(
        f"carbonfast serve needs prometheus-client ({e}): pip install 'carbonfast[serve]'"
    ) from e

from carbonfast.carbon import emissions_kg

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

    from prometheus_client.metrics_core import Metric

    from carbonfast.measure import Meter

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 9464  # the port OpenTelemetry's Prometheus exporters use by default

# Job labels, from the variables a scheduler sets: Slurm's own, and the names the Kubernetes
# documentation gives to the downward API's pod fields (a pod spec maps them explicitly).
JOB_LABELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("slurm_job_id", ("SLURM_JOB_ID",)),
    ("slurm_job_name", ("SLURM_JOB_NAME",)),
    ("k8s_namespace", ("POD_NAMESPACE", "KUBERNETES_NAMESPACE")),
    ("k8s_pod", ("POD_NAME", "KUBERNETES_POD_NAME")),
)

# Readings kept for the power gauge are at least this far apart (or a quarter of the power
# window), so that a burst of scrapes keeps a handful of them, not one per scrape.
_KEEP_EVERY_NS = 250_000_000
# With a token, the live grid intensity is looked up again this often (the live data's own
# cache lasts as long), off the scrape's path.
_INTENSITY_REFRESH_NS = 600_000_000_000


def host_label(environ: Mapping[str, str] | None = None) -> str:
    """CARBONFAST_HOST_ID where set (hosts whose names repeat, containers), else the
    hostname."""
    env = os.environ if environ is None else environ
    return env.get("CARBONFAST_HOST_ID", "").strip() or socket.gethostname()


def job_labels(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The job this host works for, from the environment: `slurm_job_id` (SLURM_JOB_ID),
    `slurm_job_name` (SLURM_JOB_NAME), `k8s_namespace` (POD_NAMESPACE, else
    KUBERNETES_NAMESPACE) and `k8s_pod` (POD_NAME, else KUBERNETES_POD_NAME); those unset are
    left out. Never `job`: Prometheus gives that label to the scrape job."""
    env = os.environ if environ is None else environ
    labels = {}
    for label, names in JOB_LABELS:
        value = next((v for n in names if (v := env.get(n, "").strip())), "")
        if value:
            labels[label] = value
    return labels


def host_meter(**settings: Any) -> Meter:
    """A Meter for a host's exporter: the settings given (the others from the environment
    and config file, as everywhere), nothing recorded in the history, and estimates that
    follow the whole machine's CPU time unless a scope is set: the exporter's own CPU time
    (the default scope, "process") would estimate next to nothing."""
    from carbonfast.config import resolve
    from carbonfast.measure import Meter

    if settings.get("scope") is None and "scope" not in resolve(("scope",), {}).origins:
        settings["scope"] = "machine"
    return Meter(**settings, history="off")


class MeterCollector:
    """A prometheus-client collector over a carbonfast Meter: `collect()` reads the counters
    at each scrape.

    The energy of a domain is its native total since the collector was made (wraps unfolded),
    and never goes down between scrapes. A measured counter that has not moved at all since
    then is left out rather than exported as 0 J: a working RAPL or GPU counter always moves,
    so such a one is not read (`carbonfast info` says why); it appears once it moves.
    """

    def __init__(
        self,
        meter: Meter,
        *,
        host: str | None = None,
        labels: Mapping[str, str] | None = None,
        power_window_s: float = 1.0,
    ) -> None:
        if not power_window_s > 0:
            raise ValueError(f"power_window_s={power_window_s!r} is not valid; expected > 0 s")
        self.meter = meter
        self._native = meter.native
        self.constant_labels = {
            "host": host_label() if host is None else host,
            **(job_labels() if labels is None else labels),
        }
        domains = meter.domains
        self._label_names = [*self.constant_labels, "domain", "kind", "estimated"]
        const = list(self.constant_labels.values())
        self._domain_labels = [
            [*const, d.name, d.kind, "true" if d.estimated else "false"] for d in domains
        ]
        self._scale = [1.0 / d.units_per_joule for d in domains]
        self._always_shown = [d.estimated or d.reading != "energy" for d in domains]
        self._in_total = [d.counts_in_total for d in domains]
        self._emissions_labels = [
            *const,
            "true" if any(d.estimated and d.counts_in_total for d in domains) else "false",
        ]
        self._power_window_ns = int(power_window_s * 1e9)
        self._keep_every_ns = min(_KEEP_EVERY_NS, self._power_window_ns // 4)
        self._lock = threading.Lock()
        # An open window keeps the meter's wrap guard reading every counter at half its
        # shortest wrap period, so no wrap is lost however far apart scrapes come.
        start = self._native.open_window()
        self._closed = False
        zero = [0.0] * len(domains)
        self._joules = zero
        self._readings: deque[tuple[int, list[float]]] = deque([(start.t_ns, zero)])
        self._total_j = 0.0
        self._grams = 0.0
        self._intensity = meter.carbon.intensity()
        self._intensity_at = time.monotonic_ns()
        self._refreshing = False

    @property
    def intensity(self) -> tuple[float, str, float]:
        """The grid intensity emissions are counted at now: (g/kWh, its source, PUE)."""
        i = self._intensity
        return i.g_per_kwh, i.source, self.meter.carbon.pue

    def describe(self) -> list[Metric]:
        """The metric families, without reading anything (so registering reads nothing)."""
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        energy, power, emissions = self._families()
        # Scrapes served at once read in turn (a read takes microseconds, a GPU's a few
        # milliseconds), so that each reading is newer than the one before.
        with self._lock:
            snap = self._native.read()
            totals = snap.totals
            now = snap.t_ns
            # The native totals never go back (a counter that does is not counted); the max
            # keeps a Prometheus counter's promise whatever the source, models included.
            prev = self._joules
            joules = [max(p, raw * s) for p, raw, s in zip(prev, totals, self._scale, strict=True)]
            self._joules = joules
            ref_t, ref = self._power_reference(now, joules)
            shown = [a or raw > 0 for a, raw in zip(self._always_shown, totals, strict=True)]
            total = sum(j for j, t, s in zip(joules, self._in_total, shown, strict=True) if t and s)
            g_per_kwh = self._current_intensity()
            if total > self._total_j:
                pue = self.meter.carbon.pue
                self._grams += emissions_kg(total - self._total_j, g_per_kwh, pue) * 1000.0
                self._total_j = total
            grams = self._grams
            any_total = any(t and s for t, s in zip(self._in_total, shown, strict=True))
        dt = (now - ref_t) * 1e-9
        for i, labels in enumerate(self._domain_labels):
            if not shown[i]:
                continue
            energy.add_metric(labels, joules[i])
            if dt > 0:
                power.add_metric(labels, (joules[i] - ref[i]) / dt)
        yield energy
        yield power
        if any_total:
            emissions.add_metric(self._emissions_labels, grams)
            yield emissions

    def _families(self) -> tuple[CounterMetricFamily, GaugeMetricFamily, CounterMetricFamily]:
        window = self._power_window_ns * 1e-9
        return (
            CounterMetricFamily(
                "carbonfast_energy_joules",
                "Energy per domain since the exporter started, J; hardware counter wraps "
                "unfolded. core and uncore lie inside their package, psys covers the platform: "
                'sum kind=~"package|dram|gpu" for a host\'s total.',
                labels=self._label_names,
            ),
            GaugeMetricFamily(
                "carbonfast_power_watts",
                "Average power per domain since the previous scrape, W, over at least "
                f"{window:g} s (since the exporter started, at its first scrapes).",
                labels=self._label_names,
            ),
            CounterMetricFamily(
                "carbonfast_emissions_grams",
                "Emissions of the energy in the host's total (packages, DRAM, GPUs) since the "
                "exporter started, g CO2e: energy x grid intensity x PUE, at the intensity of "
                "the time it was used.",
                labels=[*self.constant_labels, "estimated"],
            ),
        )

    def _power_reference(self, now: int, joules: list[float]) -> tuple[int, list[float]]:
        """The reading power is measured from: the newest kept one at least the power window
        old, else the oldest (the start). Keeps `joules` for later scrapes. Under the lock."""
        readings = self._readings
        while len(readings) > 1 and now - readings[1][0] >= self._power_window_ns:
            readings.popleft()
        ref = readings[0]
        if now - readings[-1][0] >= self._keep_every_ns:
            readings.append((now, joules))
        return ref

    def _current_intensity(self) -> float:
        """The intensity now; a live one is looked up again in the background now and then,
        so that no scrape waits on the network. Under the lock."""
        if (
            not self._refreshing
            and time.monotonic_ns() - self._intensity_at >= _INTENSITY_REFRESH_NS
        ):
            self._refreshing = True
            threading.Thread(
                target=self._refresh_intensity, name="carbonfast-intensity", daemon=True
            ).start()
        return self._intensity.g_per_kwh

    def _refresh_intensity(self) -> None:
        try:
            intensity = self.meter.carbon.intensity()
        except Exception:  # the last known figure is kept: a scrape must not fail over it
            intensity = self._intensity
        with self._lock:
            self._intensity = intensity
            self._intensity_at = time.monotonic_ns()
            self._refreshing = False

    def close(self) -> None:
        """Closes the window that kept the wrap guard reading."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._native.close_window()


class _Server(ThreadingMixIn, WSGIServer):
    """A scrape that hangs (a stalled client) must not hold up the next one."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # a line per scrape would fill the log


class Exporter:
    """The collector served over HTTP on `address`:`port`, from a background thread."""

    def __init__(self, collector: MeterCollector, address: str, port: int) -> None:
        self.collector = collector
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        app = make_wsgi_app(registry)
        family = _family(address)

        class Server(_Server):
            address_family = family

        try:
            self._server: WSGIServer = make_server(
                address, port, app, server_class=Server, handler_class=_QuietHandler
            )
        except OSError as e:
            raise OSError(f"cannot listen on {_host_port(address, port)}: {e.strerror}") from None
        self.address = address
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="carbonfast-serve", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{_host_port(self.address, self.port)}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self.collector.close()


def start(
    meter: Meter,
    address: str = DEFAULT_ADDRESS,
    port: int = DEFAULT_PORT,
    *,
    host: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Exporter:
    """Serves `meter`'s counters to Prometheus at http://address:port/metrics until
    `close()`. Port 0 takes a free port (`Exporter.port` says which)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not valid; expected 0 to 65535 (0: any free port)")
    collector = MeterCollector(meter, host=host, labels=labels)
    try:
        return Exporter(collector, address, port)
    except BaseException:
        collector.close()
        raise


def is_loopback(address: str) -> bool:
    """Whether only this host can reach `address` (a name is resolved)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(address, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def _family(address: str) -> socket.AddressFamily:
    try:
        return socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)[0][0]
    except (OSError, IndexError):
        return socket.AF_INET  # binding reports the problem, with the address in it


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
