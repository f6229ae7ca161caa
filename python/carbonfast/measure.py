"""Measurement windows over the native meter: `measure`, `track`, `Meter`, `Measurement`.

A window is two native snapshots; everything else (joules per domain, total, notes) is derived
lazily from them, so opening and closing a window costs two counter reads and little more.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
import weakref

from carbonfast import _native

# `typing` costs more than the rest of `import carbonfast` together; type checkers read this
# block, the interpreter skips it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, overload

    from carbonfast.carbon.intensity import Intensity
    from carbonfast.config import GpuEnergy, RaplSource, Scope
    from carbonfast.report.history import WindowRecorder
    from carbonfast.report.record import Record
    from carbonfast.trace import Trace

    F = TypeVar("F", bound=Callable[..., Any])
    Sync = str | Callable[[], object] | None

# Windows shorter than this span few RAPL counter updates (about one per millisecond), so their
# energy is coarse; the measurement says so instead of presenting it as precise.
_COARSE_WINDOW_S = 0.01
# A longer window on a slow counter notes its interpolated edges only where their range is
# wider than this share of its energy: on a window of seconds it is no news.
_WIDE_RANGE = 0.02


class Measurement(_native.MeasurementBase):
    """Energy and time of one window.

    While the window is open the figures run up to now; once it is closed they are final.
    `energy_j` is None, never 0, when no energy counter could be read; `notes` says why.

    Its fields (label, meter, the two snapshots) live in the native base class, which the
    window fills without running Python code; everything here is derived from them.
    """

    __slots__ = ()

    @property
    def closed(self) -> bool:
        return self._end is not None

    @property
    def meter(self) -> Meter:
        """The meter the window was measured on."""
        return self._meter

    @property
    def start_ns(self) -> int:
        """CLOCK_MONOTONIC nanoseconds at the window's start."""
        return self._start.t_ns

    @property
    def end_ns(self) -> int | None:
        """CLOCK_MONOTONIC nanoseconds at its end; None while it is open."""
        return None if self._end is None else self._end.t_ns

    def window(self) -> _native.Window:
        """The figures per domain (joules, bounds, interpolated, stalled) and the total; while
        the window is open, up to now."""
        return self._w()

    def _w(self) -> _native.Window:
        if self._window is not None:
            return self._window
        native = self._meter._native
        if self._end is None:
            return native.window(self._start, native.read())
        self._window = native.window(self._start, self._end)
        return self._window

    @property
    def duration_s(self) -> float:
        return self._w().duration_s

    @property
    def energy_j(self) -> float | None:
        """Packages + DRAM (+ GPUs): core, uncore and psys are inside those, never added."""
        return self._w().total_j

    @property
    def domains(self) -> dict[str, float]:
        """Joules per domain, every readable domain included (core, uncore, psys too)."""
        return dict(zip(self._meter.domain_names, self._w().joules, strict=True))

    @property
    def interpolated(self) -> list[str]:
        """The domains whose edges were interpolated between the refreshes of their counter: a
        window shorter than one refresh, or any window on a slowly refreshing (polled) counter
        such as a GPU's."""
        names = self._meter.domain_names
        return [n for n, i in zip(names, self._w().interpolated, strict=True) if i]

    @property
    def domain_kinds(self) -> dict[str, str]:
        return {d.name: d.kind for d in self._meter.domains}

    @property
    def energy_range_j(self) -> tuple[float, float] | None:
        """Low and high bounds the true energy lies within: equal to energy_j where every
        counter is read exactly, wider where a domain is estimated, or where a counter's
        refreshes are slow or the window is shorter than one (see `interpolated`)."""
        return self._w().total_range_j

    @property
    def power_w(self) -> float | None:
        w = self._w()
        if w.total_j is None or w.duration_s <= 0:
            return None
        return w.total_j / w.duration_s

    @property
    def total_domains(self) -> list[str]:
        """The domains energy_j sums."""
        stalled = self._w().stalled
        return [
            d.name
            for d, s in zip(self._meter.domains, stalled, strict=True)
            if d.counts_in_total and not s
        ]

    @property
    def intensity(self) -> Intensity:
        """The grid intensity used for emissions, with its source."""
        if self._intensity is None:
            self._intensity = self._meter.carbon.intensity()
        return self._intensity

    @property
    def intensity_g_per_kwh(self) -> float:
        return self.intensity.g_per_kwh

    @property
    def intensity_source(self) -> str:
        return self.intensity.source

    @property
    def location(self) -> str | None:
        """The place the intensity is for, as configured ("FR", "gcp:europe-west1")."""
        return self.intensity.location

    @property
    def pue(self) -> float:
        return self._meter.carbon.pue

    @property
    def emissions_kg(self) -> float | None:
        """kg CO2e: energy x PUE x grid intensity. None where the energy is unknown."""
        energy = self.energy_j
        if energy is None:
            return None
        from carbonfast.carbon import emissions_kg

        return emissions_kg(energy, self.intensity_g_per_kwh, self.pue)

    @property
    def emissions_range_kg(self) -> tuple[float, float] | None:
        r = self.energy_range_j
        if r is None:
            return None
        from carbonfast.carbon import emissions_kg

        g = self.intensity_g_per_kwh
        return (emissions_kg(r[0], g, self.pue), emissions_kg(r[1], g, self.pue))

    @property
    def estimated(self) -> bool:
        """True when any part of energy_j comes from a model rather than a counter."""
        return self._meter.estimated

    @property
    def started_at(self) -> str:
        """Wall-clock UTC start, ISO 8601: report metadata only; durations are monotonic."""
        from datetime import datetime, timezone

        wall = self._meter._wall_minus_monotonic + self._start.t_ns * 1e-9
        return datetime.fromtimestamp(wall, timezone.utc).isoformat()

    @property
    def notes(self) -> list[str]:
        w = self._w()
        notes: list[str] = []
        if w.total_j is None:
            notes.append(
                "energy unknown (not zero): no energy counter is readable on this machine; "
                "run `carbonfast info` for each missing counter and its fix"
            )
        elif (
            w.duration_s < _COARSE_WINDOW_S
            and self._meter.readable
            and not any(w.interpolated)
            and not any(d.update_period_s for d in self._meter.domains)
        ):
            notes.append(
                f"window of {w.duration_s * 1e3:.3f} ms spans few counter updates (RAPL updates "
                "about every 1 ms): energy is coarse; repeat the work in a loop or use cf.bench"
            )
        if self.intensity.note:
            notes.append(self.intensity.note)
        for d, j, lo, hi, interpolated in zip(
            self._meter.domains, w.joules, w.joules_low, w.joules_high, w.interpolated, strict=True
        ):
            period = d.update_period_s
            if not (interpolated and period):
                continue
            if w.duration_s < period:
                notes.append(
                    f"{d.name}: the window ({w.duration_s * 1e3:.3g} ms) is shorter than its "
                    f"counter's refresh ({period * 1e3:.3g} ms): its energy is interpolated "
                    f"between the refreshes around it, and lies between {lo:.4g} J and "
                    f"{hi:.4g} J"
                )
            elif hi - lo > _WIDE_RANGE * abs(j):
                notes.append(
                    f"{d.name}: its counter refreshes every {period * 1e3:.3g} ms: the window's "
                    f"edges are interpolated between the refreshes around them, and its energy "
                    f"lies between {lo:.4g} J and {hi:.4g} J"
                )
        for d, (n, missing) in zip(
            self._meter.domains, self._meter._native.anomalies(), strict=True
        ):
            if n:
                notes.append(
                    f"{d.name}: {n} reading(s) could not be explained (the counter went back, "
                    "jumped further than its maximum power could take it, or read past its "
                    f"range) and were not counted: up to {missing:.4g} J may be missing"
                )
            elif missing:
                notes.append(
                    f"{d.name}: the reader was held up longer than the counter takes to wrap "
                    f"(a stopped process?): up to {missing:.4g} J may be missing"
                )
        for d, stalled in zip(self._meter.domains, w.stalled, strict=True):
            if stalled:
                notes.append(
                    f"{d.name} has not moved since carbonfast started (while other counters "
                    "stepped, or for a second or more): a working counter always does, so it "
                    "is taken as unreadable and left out of the total, not counted as 0 J; "
                    "`carbonfast info` shows it"
                )
        if (self._meter.partial or any(w.stalled)) and w.total_j is not None:
            notes.append(
                "PARTIAL: some energy counters could not be read (see the notes on them); the "
                "total covers only those that could"
            )
        notes.extend(self._meter._source_notes)
        notes.extend(self._meter._estimate_notes)
        notes.extend(self._meter._problem_notes)
        return notes

    def record(self) -> Record:
        """This window as a Record: what every report and the history read."""
        from carbonfast.report.record import Record

        return Record.from_measurement(self)

    def to_dict(self) -> dict[str, Any]:
        return self.record().to_dict()

    def __repr__(self) -> str:
        energy = "unknown" if self.energy_j is None else f"{self.energy_j:.6g} J"
        if self.estimated:
            energy += " (estimated)"
        state = "" if self.closed else ", open"
        return (
            f"Measurement(label={self.label!r}, duration_s={self.duration_s:.6g}, "
            f"energy={energy}{state})"
        )


class CallStats:
    """What a tracked function has cost so far, over all its calls (thread-safe).

    A call's energy is resolved when it is asked for: on a counter that refreshes slowly (an
    H100's, every 100 ms) that may wait for the next refresh, which a loop of calls must not.
    Calls are folded into the totals in batches, so the memory held stays bounded.
    """

    __slots__ = ("_energy_j", "_lock", "_pending", "calls", "duration_s", "last")
    _FOLD = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Measurement] = []
        self._energy_j: float | None = None
        self.calls = 0
        self.duration_s = 0.0
        self.last: Measurement | None = None

    def record(self, m: Measurement) -> None:
        fold: list[Measurement] = []
        with self._lock:
            self.calls += 1
            self.duration_s += (m._end.t_ns - m._start.t_ns) * 1e-9 if m._end else 0.0
            self.last = m
            self._pending.append(m)
            if len(self._pending) >= 2 * self._FOLD:
                fold, self._pending = self._pending[: self._FOLD], self._pending[self._FOLD :]
        self._fold(fold)

    def _fold(self, ms: list[Measurement]) -> None:
        energies = [m._w().total_j for m in ms]
        with self._lock:
            for e in energies:
                if e is not None:
                    self._energy_j = (self._energy_j or 0.0) + e

    @property
    def energy_j(self) -> float | None:
        with self._lock:
            fold, self._pending = self._pending, []
        self._fold(fold)
        return self._energy_j

    def __repr__(self) -> str:
        return (
            f"CallStats(calls={self.calls}, duration_s={self.duration_s:.6g}, "
            f"energy_j={self.energy_j})"
        )


def _resolve_sync(sync: str | Callable[[], object] | None) -> Callable[[], object] | None:
    """The function that waits for the device's queued work, so that a window's edges fall
    where the work starts and ends, not where it was queued."""
    if sync is None or callable(sync):
        return sync
    if sync == "torch":
        import torch

        return torch.cuda.synchronize
    if sync == "cupy":
        import cupy

        return cupy.cuda.runtime.deviceSynchronize
    if sync == "jax":
        import jax.numpy as jnp

        # Work on a device runs in order: a tiny computation finishing means all before it did.
        return lambda: (jnp.zeros(()) + 0).block_until_ready()
    raise ValueError(f"sync={sync!r} is not valid; expected 'torch', 'cupy', 'jax' or a callable")


class Window(_native.WindowBase):
    """A measurement window: a context manager giving a Measurement, or a function decorator.

    Entering and exiting run natively (the base class): a window costs its counter reads and
    little more.
    """

    __slots__ = ()

    def __call__(self, func: F) -> F:
        label = self.label or getattr(func, "__qualname__", repr(func))
        fixed_meter = self._meter
        sync = self._sync
        keep = self._keep
        stats = CallStats()

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            meter = fixed_meter or default_meter()
            native = meter._native
            if sync is not None:
                sync()
            m = Measurement(label, meter, native.open_window())
            try:
                return func(*args, **kwargs)
            finally:
                try:
                    if sync is not None:
                        sync()
                finally:  # a sync that fails still closes the window
                    native.finish(m, keep)
                    stats.record(m)

        wrapper.energy = stats  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]


def _window(label: str | None, meter: Meter | None, sync: Sync, keep: bool = False) -> Window:
    return Window(label, meter, _resolve_sync(sync), Measurement, default_meter, keep)


if TYPE_CHECKING:

    @overload
    def measure(
        label: F, *, meter: Meter | None = None, sync: Sync = None, keep: bool = False
    ) -> F: ...
    @overload
    def measure(
        label: str | None = None,
        *,
        meter: Meter | None = None,
        sync: Sync = None,
        keep: bool = False,
    ) -> Window: ...


def measure(
    label: Any = None, *, meter: Meter | None = None, sync: Sync = None, keep: bool = False
) -> Any:
    """Measure a block (`with cf.measure("step") as m:`) or every call of a function.

    As a decorator (`@cf.measure` or `@cf.measure("label")`) the function gains an `energy`
    attribute, a CallStats with the running totals and the last Measurement.

    `sync` ("torch", "cupy", "jax" or a function) waits for the GPU before each edge, so that
    queued asynchronous work is measured where it runs.

    The history adds windows up per label (count, energy, time, min, max); `keep=True` stores
    each of them as a record of its own instead.
    """
    if callable(label):
        return _window(None, meter, sync, keep)(label)
    return _window(label, meter, sync, keep)


if TYPE_CHECKING:

    @overload
    def track(
        func: F,
        *,
        label: str | None = None,
        meter: Meter | None = None,
        sync: Sync = None,
        keep: bool = False,
    ) -> F: ...
    @overload
    def track(
        func: None = None,
        *,
        label: str | None = None,
        meter: Meter | None = None,
        sync: Sync = None,
        keep: bool = False,
    ) -> Callable[[F], F]: ...


def track(
    func: Any = None,
    *,
    label: str | None = None,
    meter: Meter | None = None,
    sync: Sync = None,
    keep: bool = False,
) -> Any:
    """Decorator: measure every call of `func`; totals in `func.energy` (a CallStats)."""
    window = _window(label, meter, sync, keep)
    return window(func) if func is not None else window


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
    ) -> None:
        # Loaded before the counters' files are opened: a process short of descriptors can
        # still make its records.
        import carbonfast.report.record  # noqa: F401
        from carbonfast.carbon import Carbon
        from carbonfast.config import CARBON_KEYS, ESTIMATE_KEYS, HARDWARE_KEYS, resolve

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
        self._native = _native.Meter({**settings, "sample_hz": sample_hz, "capacity": capacity})
        self.domains: list[_native.DomainInfo] = self._native.domains
        self.domain_names: list[str] = [d.name for d in self.domains]
        self.estimated = any(d.estimated and d.counts_in_total for d in self.domains)
        self._estimate_notes = [
            f"{d.name} is estimated, not measured: {d.method}; inputs in `carbonfast info`"
            for d in self.domains
            if d.estimated
        ]
        has_gpu = any(d.kind == "gpu" for d in self.domains)
        self._source_notes = [
            note for s in self._native.sources if s.name == "nvml" and has_gpu for note in s.notes
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
    def problems(self) -> list[_native.Problem]:
        return self._native.problems

    @property
    def readable(self) -> bool:
        """Whether a hardware counter, not only a model, contributes to the total."""
        return any(d.counts_in_total and not d.estimated for d in self.domains)

    def read(self) -> _native.Snapshot:
        return self._native.read()

    def measure(self, label: str | None = None, sync: Sync = None, keep: bool = False) -> Window:
        if sync is None:  # the common case, without a call to resolve it
            return Window(label, self, None, Measurement, default_meter, keep)
        return _window(label, self, sync, keep)

    def begin(self, name: str) -> None:
        """Opens the window `name`. Raises ValueError if a window of that name is open."""
        if name in self._open:
            raise ValueError(
                f"window {name!r} is already open on this meter; end it first or use another name"
            )
        m = Measurement(name, self, self._native.open_window())
        # setdefault is atomic: of two threads opening the same name, one wins.
        if self._open.setdefault(name, m) is not m:
            self._native.close_window()
            raise ValueError(f"window {name!r} was opened by another thread meanwhile")

    def end(self, name: str, keep: bool = False) -> Measurement:
        """Closes the window `name` and returns its Measurement. The history adds it to its
        label's sums, or, with `keep=True`, stores it as a record of its own."""
        m = self._open.pop(name, None)  # atomic: a window is ended once
        if m is None:
            open_names = ", ".join(repr(n) for n in list(self._open)) or "none"
            raise ValueError(f"no open window named {name!r} (open: {open_names})")
        self._native.finish(m, keep)
        return m

    def trace(self) -> Trace:
        """The samples recorded so far (up to `capacity`, the newest kept), as numpy arrays.
        Needs `sample_hz`."""
        from carbonfast.trace import Trace

        data, rows, width = self._native.trace()
        return Trace(data, rows, width, self.domain_names)

    @property
    def sampler_stats(self) -> _native.SamplerStats | None:
        """Reads, missed deadlines, dropped samples and CPU time of the background thread;
        None where the meter needs none (no sampling, no counter that can wrap)."""
        return self._native.sampler_stats

    @property
    def open_windows(self) -> list[str]:
        return list(self._open)

    def __repr__(self) -> str:
        return f"Meter(domains={self.domain_names})"


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
        from carbonfast.report.history import WindowRecorder

        _recorders[path] = WindowRecorder(path)
    return _recorders[path]


_default: Meter | None = None
_default_lock = threading.Lock()


def default_meter() -> Meter:
    """The meter `measure()` and `track` use unless given one; created on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Meter()
    return _default


def _reset_default_meter() -> None:
    global _default
    with _default_lock:
        _default = None


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
