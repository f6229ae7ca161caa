"""`Meter`: a set of energy sources and the windows open on them; the default meters that
`measure` and `track` use; and keeping meters sound across fork."""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import weakref

from carbonfast import _native
from carbonfast.measurement import DistributedMeasurement, Measurement

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast._typing import EstimateScope as Scope
    from carbonfast._typing import GpuEnergy, RaplSource
    from carbonfast.distributed import Job
    from carbonfast.recording import WindowRecorder
    from carbonfast.trace import Trace
    from carbonfast.windows import Distributed, Sync, Window


_in_job: bool | None = None


def maybe_in_job() -> bool:
    """Whether this process may be a rank of a job: a launcher's environment (looked at once),
    or torch.distributed initialised. Outside jobs, windows on the default meter stay the
    plain native ones."""
    global _in_job
    if _in_job is None:
        from carbonfast.distributed import launch_from_environment

        try:
            launch = launch_from_environment()
        except ValueError:
            launch = None
        _in_job = launch is not None and launch.world_size > 1
    if _in_job:
        return True
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    dist = getattr(torch, "distributed", None)
    return bool(dist is not None and dist.is_available() and dist.is_initialized())


_all_meters: weakref.WeakSet[Meter] = weakref.WeakSet()

# The sampler's ring is allocated when the meter starts: ten million samples of a few domains
# is already hundreds of MB.
MAX_CAPACITY = 10_000_000


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class Meter:
    """A set of energy sources and the windows open on them.

    Windows are named with `begin(name)` / `end(name)`; they may nest and overlap, and be begun
    and ended from different threads. `measure()` opens anonymous windows on this meter.

    RAPL is read through one path, `source`: "powercap" (/sys/class/powercap), "msr"
    (/dev/cpu/N/msr), "perf" (the perf_event power PMU), or "auto" (default; CARBONFAST_SOURCE):
    the path covering most domains, the cheapest among those. Each hardware root can be pointed
    elsewhere: `powercap_root` (CARBONFAST_POWERCAP_ROOT), `msr_root` (CARBONFAST_MSR_ROOT),
    `cpu_topology_root` (CARBONFAST_CPU_TOPOLOGY_ROOT), `perf_root` (CARBONFAST_PERF_PMU_ROOT).

    NVIDIA GPUs are measured through NVML unless `gpu=False` (CARBONFAST_GPU=off);
    `nvml_library` (CARBONFAST_NVML_LIBRARY) names the library to load; `gpu_energy="power"`
    (CARBONFAST_GPU_ENERGY) integrates power readings even where an energy counter exists.
    AMD GPUs are measured through AMD SMI (`amdsmi_library`, CARBONFAST_AMDSMI_LIBRARY), and
    the sensors of Linux hwmon (AMD and Intel GPUs, ACPI power meters, Grace, Jetson rails)
    under `hwmon_root` (CARBONFAST_HWMON_ROOT, default /sys/class/hwmon).

    Closed windows go to the history (`history`, CARBONFAST_HISTORY: a file, or "off"; by
    default the project's .carbonfast/history.sqlite, see carbonfast.config.default_history),
    added up per label, or one by one where `keep=True`.

    `sample_hz` starts a background sampler (a native thread, never holding the GIL) that
    records a power trace of the last `capacity` samples: see `trace()`.

    Where a CPU package or DRAM has no readable counter, that domain is estimated from a power
    model (unless `estimate=False`), flagged, with its method, inputs and a low-high range.
    The model's inputs can be set here or in the environment (an argument wins):
    `scope` ("process": this process and its finished children, "container": its cgroup,
    "machine": /proc/stat; CARBONFAST_ESTIMATE_SCOPE), `cpu_tdp_w` (per socket;
    CARBONFAST_CPU_TDP_W), `cpu_threads` (CARBONFAST_CPU_THREADS), `ram_gb`
    (CARBONFAST_RAM_GB), or fixed powers `cpu_power_w` / `ram_power_w`
    (CARBONFAST_CPU_POWER_W, CARBONFAST_RAM_POWER_W).

    In a distributed job (`distributed`, CARBONFAST_DISTRIBUTED: "auto" by default, a job of
    more than one rank under torch.distributed, MPI, torchrun or srun; True; False), this
    meter measures this rank's share and nothing twice: the host's CPU packages and DRAM (or
    their estimates) only on the rank elected for its host, and only the GPUs this rank uses
    (`gpus`, CARBONFAST_GPUS). `host_id` (CARBONFAST_HOST_ID) names the host (default: the
    hostname), `job_id` (CARBONFAST_JOB_ID) the job. Creating it is a collective step where
    the job has an engine (torch.distributed or MPI): every rank creates its meter, after the
    engine is initialised. Its windows are then gathered to rank 0 when they close, waiting
    no longer than `distributed_timeout_s` (CARBONFAST_DISTRIBUTED_TIMEOUT_S). See
    carbonfast.distributed; `meter.job` is this rank's place in the job (None outside one).
    """

    def __init__(
        self,
        powercap_root: str | os.PathLike[str] | None = None,
        *,
        estimate: bool | None = None,
        scope: Scope | None = None,
        cpu_tdp_w: float | None = None,
        cpu_threads: int | None = None,
        ram_gb: float | None = None,
        cpu_power_w: float | None = None,
        ram_power_w: float | None = None,
        proc_root: str | os.PathLike[str] | None = None,
        cgroup_root: str | os.PathLike[str] | None = None,
        sample_hz: float | None = None,
        capacity: int = 60_000,
        source: RaplSource | None = None,
        gpu: bool | None = None,
        nvml_library: str | os.PathLike[str] | None = None,
        amdsmi_library: str | os.PathLike[str] | None = None,
        hwmon_root: str | os.PathLike[str] | None = None,
        gpu_energy: GpuEnergy | None = None,
        history: str | os.PathLike[str] | None = None,
        msr_root: str | os.PathLike[str] | None = None,
        cpu_topology_root: str | os.PathLike[str] | None = None,
        perf_root: str | os.PathLike[str] | None = None,
        country: str | None = None,
        zone: str | None = None,
        cloud: str | None = None,
        intensity: float | None = None,
        pue: float | None = None,
        distributed: bool | str | Job | None = None,
        host_id: str | None = None,
        job_id: str | None = None,
        gpus: str | tuple[int, ...] | list[int] | None = None,
        distributed_timeout_s: float | None = None,
    ) -> None:
        # Loaded before the counters' files are opened: a process short of descriptors can
        # still make its records (the record's old home too, which some callers still use).
        import carbonfast.record
        import carbonfast.report.record  # noqa: F401
        from carbonfast.carbon import Carbon
        from carbonfast.config import (
            CARBON_KEYS,
            DISTRIBUTED_KEYS,
            ESTIMATE_KEYS,
            HARDWARE_KEYS,
            resolve,
        )
        from carbonfast.distributed import Job, join

        self.carbon = Carbon(
            resolve(
                CARBON_KEYS,
                {
                    "country": country,
                    "zone": zone,
                    "cloud": cloud,
                    "intensity": intensity,
                    "pue": pue,
                },
            )
        )
        settings = resolve(
            (*HARDWARE_KEYS, *ESTIMATE_KEYS),
            {
                "powercap_root": powercap_root,
                "msr_root": msr_root,
                "cpu_topology_root": cpu_topology_root,
                "perf_root": perf_root,
                "nvml_library": nvml_library,
                "amdsmi_library": amdsmi_library,
                "hwmon_root": hwmon_root,
                "source": source,
                "gpu": gpu,
                "gpu_energy": gpu_energy,
                "estimate": estimate,
                "scope": scope,
                "cpu_tdp_w": cpu_tdp_w,
                "cpu_threads": cpu_threads,
                "ram_gb": ram_gb,
                "cpu_power_w": cpu_power_w,
                "ram_power_w": ram_power_w,
                "proc_root": proc_root,
                "cgroup_root": cgroup_root,
            },
        )
        if sample_hz is not None and not (_is_number(sample_hz) and 0 < sample_hz <= 10_000):
            raise ValueError(f"sample_hz={sample_hz!r} is not valid; expected 0 < Hz <= 10000")
        if not (isinstance(capacity, int) and 1 <= capacity <= MAX_CAPACITY):
            raise ValueError(
                f"capacity={capacity!r} is not valid; expected 1 to {MAX_CAPACITY} samples "
                "(the ring is allocated up front)"
            )
        given_job = distributed if isinstance(distributed, Job) else None
        job_settings = resolve(
            DISTRIBUTED_KEYS,
            {
                "distributed": None if given_job is not None else distributed,
                "host_id": host_id,
                "job_id": job_id,
                "gpus": ",".join(map(str, gpus)) if isinstance(gpus, (tuple, list)) else gpus,
                "distributed_timeout_s": distributed_timeout_s,
            },
        )
        job = given_job or join(
            job_settings["distributed"],
            host=job_settings["host_id"],
            job_id=job_settings["job_id"],
            gpus=job_settings["gpus"],
            timeout_s=job_settings["distributed_timeout_s"],
        )
        self.job: Job | None = job
        """This rank's place in a distributed job (carbonfast.distributed.Job); None outside
        one."""
        gpu_indices = job.gpu_indices if job is not None else job_settings["gpus"]
        self._native = _native.Meter(
            {
                **settings,
                "sample_hz": sample_hz,
                "capacity": capacity,
                "skip_host": job is not None and not job.measures_host,
                "gpu_indices": None if gpu_indices == "auto" else gpu_indices,
            }
        )
        # Every domain the meter reads, in the order of a window's figures.
        self.all_domains: list[_native.DomainInfo] = self._native.domains
        # Those it reports: all but an estimate standing by for RAPL counters start-up did not
        # see move, which a window reports only where it stood in for them (they come last).
        self.domains: list[_native.DomainInfo] = [d for d in self.all_domains if not d.standby]
        self.domain_names: list[str] = [d.name for d in self.domains]
        # For attributed windows: where the scopes' CPU times are, the scopes opened so far,
        # and what the CPU estimate follows.
        self._proc_root: str = settings["proc_root"]
        self._cgroup_root: str = settings["cgroup_root"]
        self.estimate_scope: str = settings["scope"]
        self._scopes: dict[str, _native.Attribution] = {}
        self.estimated = any(d.estimated and d.counts_in_total for d in self.domains)
        self._estimate_notes = [
            f"{d.name} is estimated, not measured: {d.method}; inputs in `carbonfast info`"
            for d in self.domains
            if d.estimated
        ]
        # hwmon's notes always: a sensor it reads from power, or leaves out so that nothing
        # counts twice. A GPU library's where it measures a GPU: otherwise "no NVIDIA driver" or
        # "no ROCm" is no news (an AMD machine has no NVIDIA driver).
        self._source_notes = [
            note
            for s in self._native.sources
            if (s.name in _GPU_SOURCES and s.domains) or s.name == "hwmon"
            for note in s.notes
        ]
        self._problem_notes = _problem_notes(self._native)
        # Some counters of the RAPL path in use could not be read while others could: the
        # total misses them, and says so.
        chosen = {p.name for p in self._native.paths if p.chosen}
        self.partial = bool(chosen) and any(p.source in chosen for p in self._native.problems)
        self._recorder = _recorder(resolve(("history",), {"history": history})["history"])
        # Windows not kept one by one are added up per label, natively (see WindowRecorder).
        self._tally = _native.Tally() if self._recorder is not None else None
        if self._recorder is not None and self._tally is not None:
            self._recorder.watch(self)
            self._native.record_into(self._tally, self._recorder)
        self._open: dict[str, Measurement] = {}
        # Windows are stamped on CLOCK_MONOTONIC; this turns a stamp into wall-clock time for
        # report metadata, without a clock call per window.
        self._wall_minus_monotonic = time.time() - time.monotonic()
        _all_meters.add(self)

    @property
    def native(self) -> _native.Meter:
        """The native meter: raw snapshots, windows and the trace, for tools built on it."""
        return self._native

    @property
    def notes(self) -> list[str]:
        """What every window on this meter notes: its sources, its estimates and what could
        not be read."""
        return [*self._source_notes, *self._estimate_notes, *self._problem_notes]

    @property
    def problem_notes(self) -> list[str]:
        """What could not be read, as every window's notes say it."""
        return list(self._problem_notes)

    @property
    def estimate_notes(self) -> list[str]:
        """Which domains are estimated rather than measured, and how."""
        return list(self._estimate_notes)

    def drain_window_sums(self) -> list[tuple]:
        """The label sums of the windows closed since the last drain (none where nothing is
        recorded), as the native tally adds them up; for the history's recorder."""
        if self._tally is None or not len(self._tally):
            return []
        return self._tally.drain()

    def wall_clock_s(self, t_ns: int) -> float:
        """A window's CLOCK_MONOTONIC stamp as wall-clock seconds since the epoch (report
        metadata only; durations are monotonic)."""
        return self._wall_minus_monotonic + t_ns * 1e-9

    @property
    def problems(self) -> list[_native.Problem]:
        return self._native.problems

    @property
    def readable(self) -> bool:
        """Whether a hardware counter, not only a model, contributes to the total."""
        return any(d.counts_in_total and not d.estimated for d in self.domains)

    def read(self) -> _native.Snapshot:
        return self._native.read()

    def measure(
        self,
        label: str | None = None,
        sync: Sync = None,
        keep: bool = False,
        distributed: Distributed = None,
        attribute: str | None = None,
    ) -> Window:
        """A window on this meter (see carbonfast.measure). `attribute` ("process", "tree",
        "thread", "cgroup" or "cgroup:PATH") also reports that scope's share of the energy,
        as `m.attributed`."""
        plain = attribute is None or attribute == "off"
        if plain and sync is None and distributed is None and self.job is None:
            # The common case, on every window: the class is imported once (an import here
            # cost a microsecond a window), not on each call.
            window = _PLAIN_WINDOW or _plain_window()
            return window(label, self, None, Measurement, default_meter, keep)
        # Windows are built on meters: the import is here, not at the top, so that the windows
        # module can import this one.
        from carbonfast.windows import attributed_window, checked_scope, make_window

        if attribute is not None and not plain:
            if distributed:
                raise ValueError("attribute= is not available for a distributed window")
            return attributed_window(label, self, sync, keep, checked_scope(attribute))
        return make_window(label, self, sync, keep, distributed)

    def attribution(self, scope: str) -> _native.Attribution:
        """The scope's CPU clock, opened once per meter (per thread for "thread")."""
        key = f"{scope}@{threading.get_ident()}" if scope == "thread" else scope
        found = self._scopes.get(key)
        if found is None:
            from carbonfast.attribution import open_scope

            found = self._scopes[key] = open_scope(scope, self._proc_root, self._cgroup_root)
        return found

    def begin(self, name: str) -> None:
        """Opens the window `name`. Raises ValueError if a window of that name is open."""
        if name in self._open:
            raise ValueError(
                f"window {name!r} is already open on this meter; end it first or use another name"
            )
        cls = Measurement if self.job is None else DistributedMeasurement
        m = cls(name, self, self._native.open_window())
        # setdefault is atomic: of two threads opening the same name, one wins.
        if self._open.setdefault(name, m) is not m:
            self._native.close_window()
            raise ValueError(f"window {name!r} was opened by another thread meanwhile")

    def end(self, name: str, keep: bool = False, distributed: bool | None = None) -> Measurement:
        """Closes the window `name` and returns its Measurement. The history adds it to its
        label's sums, or, with `keep=True`, stores it as a record of its own. On a meter of a
        distributed job the window is gathered to rank 0 (every rank must end it), unless
        `distributed=False`."""
        m = self._open.pop(name, None)  # atomic: a window is ended once
        if m is None:
            open_names = ", ".join(repr(n) for n in list(self._open)) or "none"
            raise ValueError(f"no open window named {name!r} (open: {open_names})")
        self._native.finish(m, keep)
        if (
            self.job is not None
            and distributed is not False
            and isinstance(m, DistributedMeasurement)
        ):
            m.gather()
        return m

    def trace(self) -> Trace:
        """The samples recorded so far (up to `capacity`, the newest kept), as numpy arrays.
        Needs `sample_hz`."""
        from carbonfast.trace import Trace

        data, rows, width = self._native.trace()
        # A standby estimate is left out: it stands in for frozen RAPL in windows alone.
        names = [None if d.standby else d.name for d in self.all_domains]
        return Trace(data, rows, width, names)

    @property
    def sampler_stats(self) -> SamplerStats | None:
        """Reads, missed deadlines, dropped samples and CPU time of the background thread;
        None where the meter needs none (no sampling, no counter that can wrap)."""
        native = self._native.sampler_stats
        return None if native is None else SamplerStats(native)

    @property
    def open_windows(self) -> list[str]:
        return list(self._open)

    def __repr__(self) -> str:
        job = "" if self.job is None else f", job={self.job!r}"
        return f"Meter(domains={self.domain_names}{job})"

    def __str__(self) -> str:
        """Its domains: which are measured, which estimated, which the total adds."""
        from carbonfast.display import meter_text

        return meter_text(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from carbonfast.display import pretty

        pretty(self, p, cycle)

    def _repr_html_(self) -> str:
        from carbonfast.display import meter_html

        return meter_html(self)


class SamplerStats:
    """What the background sampler has done so far: reads (`samples`), `missed` deadlines,
    `dropped` samples (the ring was full), `read_errors`, its thread's CPU time (`cpu_s`) and
    its period (`period_s`); `sampling` is False where the meter only guards against wraps."""

    __slots__ = ("cpu_s", "dropped", "missed", "period_s", "read_errors", "samples", "sampling")

    def __init__(self, native: _native.SamplerStats) -> None:
        self.sampling = native.sampling
        self.samples = native.samples
        self.missed = native.missed
        self.dropped = native.dropped
        self.read_errors = native.read_errors
        self.cpu_s = native.cpu_s
        self.period_s = native.period_s

    def as_dict(self) -> dict[str, bool | int | float]:
        return {name: getattr(self, name) for name in _SAMPLER_FIELDS}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"SamplerStats({fields})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from carbonfast.display import pretty

        pretty(self, p, cycle)

    def _repr_html_(self) -> str:
        from carbonfast.display import sampler_stats_html

        return sampler_stats_html(self)


_SAMPLER_FIELDS = ("sampling", "samples", "missed", "dropped", "read_errors", "cpu_s", "period_s")


# The native sources of GPU libraries.
_GPU_SOURCES = ("nvml", "amdsmi")


def _problem_notes(native: _native.Meter) -> list[str]:
    """What could not be read, for measurements' notes. Where no RAPL path works at all (VMs,
    containers) one line says so, not every path's full story: `carbonfast info` has that."""
    paths = native.paths
    rapl = {p.name for p in paths}
    problems = native.problems
    notes = []
    if paths and not any(p.chosen for p in paths):
        kinds = ", ".join(
            f"{p.name}: {p.problems[0].kind if p.problems else 'no domains'}" for p in paths
        )
        notes.append(
            f"no RAPL counter is readable here ({kinds}); `carbonfast info` says why and how "
            "to grant access"
        )
        problems = [p for p in problems if p.source not in rapl]
    notes += [f"{p.source}: {p.reason}" + (f". Fix: {p.fix}" if p.fix else "") for p in problems]
    return notes


_recorders: dict[str, WindowRecorder] = {}


def _recorder(path: str | None) -> WindowRecorder | None:
    """The one background recorder per history file (None: not recording)."""
    if path is None:
        return None
    if path not in _recorders:
        from carbonfast.recording import WindowRecorder

        _recorders[path] = WindowRecorder(path)
    return _recorders[path]


def flush_history(path: str) -> None:
    """Writes to the history file `path` what this process's windows have left pending."""
    recorder = _recorders.get(path)
    if recorder is not None:
        recorder.flush()


_default: Meter | None = None
_default_lock = threading.Lock()


# The plain window class, once imported (windows.py imports this module: not at the top).
_PLAIN_WINDOW: type[Window] | None = None


def _plain_window() -> type[Window]:
    global _PLAIN_WINDOW
    from carbonfast.windows import Window

    _PLAIN_WINDOW = Window
    return Window


def default_meter() -> Meter:
    """The meter `measure()` and `track` use unless given one; created on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Meter()
    return _default


_default_distributed: Meter | None = None


def default_distributed_meter() -> Meter:
    """The meter of `measure(..., distributed=True)` without a meter: the default meter where
    it belongs to a job, else one made with distributed=True (a job of one rank at least)."""
    global _default_distributed
    meter = default_meter()
    if meter.job is not None:
        return meter
    if _default_distributed is None:
        with _default_lock:
            if _default_distributed is None:
                _default_distributed = Meter(distributed=True)
    return _default_distributed


def _reset_default_meter() -> None:
    global _default, _default_distributed, _in_job
    with _default_lock:
        _default = None
        _default_distributed = None
        _in_job = None


def _before_fork() -> None:
    # The sampler thread must not be inside a read (holding the meter's lock) at fork time.
    for meter in list(_all_meters):
        meter._native.pause_for_fork()


def _after_fork_in_parent() -> None:
    for meter in list(_all_meters):
        meter._native.resume_after_fork()


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time would stay held forever in the child, and
    # threads do not survive fork: the sampler is started afresh.
    global _default_lock
    _default_lock = threading.Lock()
    for meter in list(_all_meters):
        meter._native.restart_after_fork()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
