"""`carbonfast serve`: one host's energy counters as a Prometheus exporter.

Every scrape reads the counters then and there (one native read, microseconds) and exposes,
through prometheus-client's own collector API:

- `carbonfast_energy_joules_total{host, domain, kind, estimated}`: energy per domain since the
  exporter started, with every wrap of the hardware counter unfolded by the native meter;
- `carbonfast_power_watts{...same labels}`: the average power since the previous scrape (over
  at least `power_window_s`);
- `carbonfast_emissions_grams_total{host, estimated}`: the energy of the domains in the total
  (packages, DRAM, GPUs: never core, uncore or psys on top) x grid intensity x PUE.

Each sample also carries the job labels found in the environment (`job_labels`).

A read that does not finish within READ_DEADLINE_S (a hung sysfs file, a vendor library that
never returns) leaves the scrape with the last values read, `carbonfast_stale` 1 and no power,
and no second read starts while it lasts. The HTTP server gives no client a thread before its
whole request has come (at most MAX_REQUEST_HEAD bytes, within REQUEST_DEADLINE_S), and serves
at most MAX_CONNECTIONS requests at once, so idle or trickling clients cost a socket, not a
thread, and cannot hold up a scrape.
"""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import os
import selectors
import socket
import threading
import time
from collections import OrderedDict, deque
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

# A scrape waits this long for the counters; past it, it answers with the last values read,
# marked stale, while the read goes on in the background (no second one starts meanwhile).
READ_DEADLINE_S = 2.0
# Closing waits this long for the read that ends the meter's window, then leaves it.
CLOSE_DEADLINE_S = 0.5
# A client has this long, from connecting, to send its whole request (line and headers), and
# as long again to take the answer.
REQUEST_DEADLINE_S = 5.0
# The most a request's line and headers may hold together (a scrape's are a few hundred bytes).
MAX_REQUEST_HEAD = 16 * 1024
# Requests answered at once, each on its own thread; one more is answered 503 at once.
MAX_CONNECTIONS = 32
# Connections still sending their request, kept without a thread; past this many, the one
# waiting longest is closed (so a flood of idle clients cannot keep a scrape out).
MAX_PENDING = 256


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
        # In the order of the meter's readings; a standby estimate is never shown (its place
        # is in windows, where RAPL stood still for all of them).
        domains = meter.all_domains
        self._standby = [d.standby for d in domains]
        self._label_names = [*self.constant_labels, "domain", "kind", "estimated"]
        const = list(self.constant_labels.values())
        self._domain_labels = [
            [*const, d.name, d.kind, "true" if d.estimated else "false"] for d in domains
        ]
        self._scale = [1.0 / d.units_per_joule for d in domains]
        self._always_shown = [
            (d.estimated or d.reading != "energy") and not d.standby for d in domains
        ]
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
        # Since the exporter started: whether an estimate stands in for frozen RAPL counters
        # is the core's call over that span (Window.counted).
        self._start = start
        self._closed = False
        zero = [0.0] * len(domains)
        self._joules = zero
        self._readings: deque[tuple[int, list[float]]] = deque([(start.t_ns, zero)])
        self._read_t_ns = start.t_ns
        self._shown = list(self._always_shown)
        self._power: list[float] | None = None
        self._any_total = any(t and s for t, s in zip(self._in_total, self._shown, strict=True))
        self._pending: _Read | None = None
        self._read_lock = threading.Lock()
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
        energy, power, emissions, stale_family = self._families()
        reading = self._read()
        with self._lock:
            # Scrapes served at once may share one read: the first applies it.
            if reading is not None and reading[0] > self._read_t_ns:
                self._apply(*reading)
            joules, shown, watts = self._joules, self._shown, self._power
            grams, any_total = self._grams, self._any_total
        stale = reading is None
        for i, labels in enumerate(self._domain_labels):
            if not shown[i]:
                continue
            energy.add_metric(labels, joules[i])
            # A stale scrape knows no power now: none rather than the last one's.
            if watts is not None and not stale:
                power.add_metric(labels, watts[i])
        yield energy
        yield power
        if any_total:
            emissions.add_metric(self._emissions_labels, grams)
            yield emissions
        stale_family.add_metric(list(self.constant_labels.values()), 1.0 if stale else 0.0)
        yield stale_family

    def _read(self) -> tuple[int, list[int], list[bool]] | None:
        """(t_ns, raw totals, what the total adds) read now, on a thread of its own; None
        where the read does not finish within READ_DEADLINE_S or fails. While one read is
        under way no other starts: a scrape meanwhile waits for that one."""
        with self._read_lock:
            pending = self._pending
            if pending is None:
                pending = self._pending = _Read()
                threading.Thread(
                    target=self._run_read, args=(pending,), name="carbonfast-read", daemon=True
                ).start()
        if not pending.done.wait(READ_DEADLINE_S):
            return None
        return pending.result

    def _run_read(self, pending: _Read) -> None:
        try:
            snap = self._native.read()
            counted = self._native.window(self._start, snap).counted
            pending.result = (snap.t_ns, list(snap.totals), list(counted))
        except Exception:  # the scrape answers stale: one failed read must not fail it
            pending.result = None
        finally:
            with self._read_lock:
                self._pending = None
            pending.done.set()

    def _apply(self, now: int, totals: list[int], counted: list[bool]) -> None:
        """Takes a reading into the exported state. Under the lock."""
        # The native totals never go back (a counter that does is not counted); the max
        # keeps a Prometheus counter's promise whatever the source, models included.
        prev = self._joules
        joules = [max(p, raw * s) for p, raw, s in zip(prev, totals, self._scale, strict=True)]
        self._joules = joules
        self._read_t_ns = now
        ref_t, ref = self._power_reference(now, joules)
        # A standby estimate is shown, and added, where it stands in for frozen RAPL.
        shown = [
            c if s else a or raw > 0
            for a, raw, s, c in zip(self._always_shown, totals, self._standby, counted, strict=True)
        ]
        self._shown = shown
        in_total = [
            t or (s and c) for t, s, c in zip(self._in_total, self._standby, counted, strict=True)
        ]
        total = sum(j for j, t, s in zip(joules, in_total, shown, strict=True) if t and s)
        g_per_kwh = self._current_intensity()
        if total > self._total_j:
            pue = self.meter.carbon.pue
            self._grams += emissions_kg(total - self._total_j, g_per_kwh, pue) * 1000.0
            self._total_j = total
        self._any_total = any(t and s for t, s in zip(in_total, shown, strict=True))
        dt = (now - ref_t) * 1e-9
        self._power = [(j - r) / dt for j, r in zip(joules, ref, strict=True)] if dt > 0 else None

    def _families(
        self,
    ) -> tuple[CounterMetricFamily, GaugeMetricFamily, CounterMetricFamily, GaugeMetricFamily]:
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
            GaugeMetricFamily(
                "carbonfast_stale",
                f"1 where the counters could not be read within {READ_DEADLINE_S:g} s (a hung "
                "device or driver): energy and emissions are the last values read, and no power "
                "is given; 0 where this scrape read them.",
                labels=list(self.constant_labels),
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
        """Closes the window that kept the wrap guard reading. Its read has CLOSE_DEADLINE_S:
        past that (a hung device), the window is left open, on a thread of its own."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        closing = threading.Thread(target=self._close_window, name="carbonfast-close", daemon=True)
        closing.start()
        closing.join(CLOSE_DEADLINE_S)

    def _close_window(self) -> None:
        with contextlib.suppress(Exception):  # nothing waits for it: the exporter has stopped
            self._native.close_window()


class _Read:
    """One read of the counters, shared by the scrapes that wait for it."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        # (t_ns, raw totals, per domain whether the total since the start adds it)
        self.result: tuple[int, list[int], list[bool]] | None = None


_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)
_TOO_LARGE = (
    b"HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)


class _Pending:
    """A connection whose request has not all come yet."""

    __slots__ = ("address", "deadline", "head")

    def __init__(self, address: Any, deadline: float) -> None:
        self.address = address
        self.deadline = deadline
        self.head = bytearray()


class _Server(WSGIServer):
    """WSGIServer's binding and WSGI environment, with a serving loop of its own (`serve`):
    one thread reads every connection's request without blocking, and only a request that has
    all come (its line and headers, at most MAX_REQUEST_HEAD bytes, within REQUEST_DEADLINE_S
    of connecting) gets a thread to answer it, MAX_CONNECTIONS at most at once."""

    request_queue_size = 128

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Made first: a failed bind calls server_close, which closes them.
        self._wake_r, self._wake_w = socket.socketpair()
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._stopping = False
        self._stopped = threading.Event()

    def serve(self) -> None:
        sel = selectors.DefaultSelector()
        pending: OrderedDict[socket.socket, _Pending] = OrderedDict()  # oldest first
        self.socket.setblocking(False)
        sel.register(self.socket, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping:
                timeout = None
                if pending:  # deadlines come in the order of arrival
                    timeout = max(0.0, next(iter(pending.values())).deadline - time.monotonic())
                for key, _ in sel.select(timeout):
                    conn = key.fileobj
                    if conn is self.socket:
                        self._accept(sel, pending)
                    elif conn is not self._wake_r:
                        assert isinstance(conn, socket.socket)
                        self._receive(sel, pending, conn)
                now = time.monotonic()
                while pending and next(iter(pending.values())).deadline <= now:
                    self._drop(sel, pending, next(iter(pending)))
        finally:
            while pending:
                self._drop(sel, pending, next(iter(pending)))
            sel.close()
            self._stopped.set()

    def stop(self, timeout: float) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        self._stopped.wait(timeout)

    def server_close(self) -> None:
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def _accept(self, sel: selectors.BaseSelector, pending: dict[socket.socket, _Pending]) -> None:
        for _ in range(64):  # then the others get their turn
            try:
                conn, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return  # a connection reset before it was taken
                if not pending:
                    time.sleep(0.01)  # the descriptors are the answering threads': they end
                    return
                self._drop(sel, pending, next(iter(pending)))
                continue
            if len(pending) >= MAX_PENDING:
                self._drop(sel, pending, next(iter(pending)))
            conn.setblocking(False)
            pending[conn] = _Pending(address, time.monotonic() + REQUEST_DEADLINE_S)
            sel.register(conn, selectors.EVENT_READ)

    def _receive(
        self,
        sel: selectors.BaseSelector,
        pending: dict[socket.socket, _Pending],
        conn: socket.socket,
    ) -> None:
        request = pending[conn]
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sel, pending, conn)
            return
        head = request.head
        head += data
        end = _head_end(head)
        if end < 0 and len(head) <= MAX_REQUEST_HEAD:
            return
        sel.unregister(conn)
        del pending[conn]
        if end < 0 or end > MAX_REQUEST_HEAD:
            _reply_and_close(conn, _TOO_LARGE)
        elif not self._slots.acquire(blocking=False):
            _reply_and_close(conn, _BUSY)
        else:
            try:
                threading.Thread(
                    target=self._answer,
                    args=(conn, request.address, bytes(head)),
                    name="carbonfast-http",
                    daemon=True,
                ).start()
            except RuntimeError:  # no thread to be had
                self._slots.release()
                _reply_and_close(conn, _BUSY)

    def _answer(self, conn: socket.socket, address: Any, head: bytes) -> None:
        try:
            conn.settimeout(REQUEST_DEADLINE_S)  # for sending the answer
            _Handler(conn, address, self, head)
        except Exception:
            pass  # a client gone or too slow to take its answer: nothing worth a log line
        finally:
            self.shutdown_request(conn)
            self._slots.release()

    @staticmethod
    def _drop(
        sel: selectors.BaseSelector,
        pending: dict[socket.socket, _Pending],
        conn: socket.socket,
    ) -> None:
        del pending[conn]
        sel.unregister(conn)
        conn.close()


def _head_end(head: bytearray) -> int:
    """Where the request's blank line ends (http.client takes bare LF lines too), or -1."""
    ends = [i + len(m) for m in (b"\r\n\r\n", b"\n\n") if (i := head.find(m)) >= 0]
    return min(ends) if ends else -1


def _reply_and_close(conn: socket.socket, reply: bytes) -> None:
    with contextlib.suppress(OSError):
        conn.send(reply)  # a short reply fits a fresh socket's buffer: never blocks
        conn.shutdown(socket.SHUT_WR)
    conn.close()


class _Handler(WSGIRequestHandler):
    """Answers one request whose line and headers have already been read (`head`)."""

    def __init__(self, request: Any, client_address: Any, server: Any, head: bytes) -> None:
        self._head = head
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.rfile = io.BytesIO(self._head)

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
            self._server: _Server = make_server(
                address, port, app, server_class=Server, handler_class=_Handler
            )
        except OSError as e:
            raise OSError(f"cannot listen on {_host_port(address, port)}: {e.strerror}") from None
        self.address = address
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve, name="carbonfast-serve", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{_host_port(self.address, self.port)}/metrics"

    def close(self) -> None:
        """Stops serving at once (requests being answered are left to end on their own
        threads), then closes the collector, within CLOSE_DEADLINE_S however its read goes."""
        self._server.stop(CLOSE_DEADLINE_S)
        self._server.server_close()
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
