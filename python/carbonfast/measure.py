"""Measurement windows over the native meter: `measure`, `track`, `Meter`, `Measurement`.

A window is two native snapshots; everything else (joules per domain, total, notes) is derived
lazily from them, so opening and closing a window costs two counter reads and little more.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
import weakref

from carbonfast import _native

# `typing` costs more than the rest of `import carbonfast` together; type checkers read this
# block, the interpreter skips it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, Literal, TypeVar, overload

    from carbonfast.carbon.intensity import Intensity
    from carbonfast.config import GpuEnergy, RaplSource, Scope
    from carbonfast.distributed import HostPart, Job, JobWindow, RankPart
    from carbonfast.report.history import WindowRecorder
    from carbonfast.report.record import Attributed, Record
    from carbonfast.trace import Trace

    F = TypeVar("F", bound=Callable[..., Any])
    Sync = str | Callable[[], object] | None
    Distributed = bool | Literal["auto"] | None

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
    def domains(self) -> dict[str, float | None]:
        """Joules per domain, every readable domain included (core, uncore, psys too); None
        for a domain whose read failed or did not answer during the window (see `notes`)."""
        w = self._w()
        return {
            n: None if failed else j
            for n, j, failed in zip(self._meter.domain_names, w.joules, w.failed, strict=True)
        }

    @property
    def partial(self) -> bool:
        """True when the total leaves out a domain it should have counted: one that cannot be
        read at all, never moved, or failed during the window."""
        w = self._w()
        return bool(self._meter.partial or any(w.stalled) or self._failed_in_total(w))

    def _failed_in_total(self, w: _native.Window) -> list[str]:
        return [
            d.name
            for d, failed in zip(self._meter.domains, w.failed, strict=True)
            if failed and d.counts_in_total
        ]

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
        w = self._w()
        return [
            d.name
            for d, s, f in zip(self._meter.domains, w.stalled, w.failed, strict=True)
            if d.counts_in_total and not s and not f
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
        job = self._meter.job
        if w.total_j is None and job is not None and not job.measures_host:
            notes.append(
                "this rank measures no domain: another rank of its host measures the host's "
                "CPU and memory, and it uses no GPU it could measure"
            )
        elif w.total_j is None and self._failed_in_total(w):
            notes.append(
                "energy unknown (not zero): every counter in the total failed during the "
                "window (see the notes on each)"
            )
        elif w.total_j is None:
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
            if n and d.reading == "power":
                notes.append(
                    f"{d.name}: {n} power reading(s) above what the hardware can draw were not "
                    f"integrated (the reading before stood for them): up to {missing:.4g} J may "
                    "be missing"
                )
            elif n:
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
                frozen = (
                    "RAPL is present but frozen: "
                    if d.kind in ("package", "core", "uncore", "dram", "psys")
                    else ""
                )
                notes.append(
                    f"{frozen}{d.name} has not moved since carbonfast started (while other "
                    "counters stepped, or over far more of its refreshes than a working counter "
                    "ever stands still): it is taken as unreadable and left out of the total, "
                    "not counted as 0 J; `carbonfast info` shows it"
                )
        reasons = self._meter._native.failures()
        for d, failed, why in zip(self._meter.domains, w.failed, reasons, strict=True):
            if failed:
                notes.append(
                    f"{d.name}: could not be read during the window ({why or 'no reason given'})"
                    ": its energy is unknown and left out of the total; the other domains are "
                    "kept"
                )
        if self.partial and w.total_j is not None:
            notes.append(
                "PARTIAL: some energy counters could not be read (see the notes on them); the "
                "total covers only those that could"
            )
        notes.extend(self._meter._source_notes)
        notes.extend(self._meter._estimate_notes)
        notes.extend(self._meter._problem_notes)
        return notes

    def local(self) -> Measurement:
        """What this process measured: the window itself (in a distributed job, this rank's
        own part)."""
        return self

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


class AttributedMeasurement(Measurement):
    """A Measurement that also knows its scope's share of the energy (`attributed`): the CPU
    time of this process (or its tree, a thread, a cgroup) beside the machine's, read at the
    window's edges. See carbonfast.attribution."""

    __slots__ = ("_gpus", "_pids", "_readings", "_scope")
    _gpus: list[tuple[int, float, float, float, str] | None]
    _pids: list[int]
    _readings: list[tuple[int, int]]
    _scope: _native.Attribution

    @property
    def attributed(self) -> Attributed | None:
        """The scope's share of `energy_j` (while the window is open, up to now; None where the
        scope's CPU time could not be read)."""
        readings = list(getattr(self, "_readings", []))
        found = getattr(self, "_gpus", [])
        if not self.closed and len(readings) == 1:
            readings.append(self._scope.read())
            found = self.meter._native.gpu_shares(self._pids, self.start_ns)
        if len(readings) != 2:
            return None
        from carbonfast.attribution import attribute, gpu_shares

        gpus = gpu_shares(self.meter.domains, found)
        follows = self.meter._estimate_scope == "process"
        return attribute(
            self, self._scope, readings[0], readings[1], gpus, estimate_follows_scope=follows
        )

    def record(self) -> Record:
        r = super().record()
        r.attributed = self.attributed
        return r


class DistributedMeasurement(Measurement):
    """A window of a distributed job (see carbonfast.distributed).

    On rank 0, once the window is closed and the other ranks' parts gathered, its figures are
    the job's: `energy_j` is the total over every host, `domains` are named "host/domain",
    `hosts` and `ranks` break it down, and `missing` names the ranks whose part did not arrive
    in time. On the other ranks (and where nothing can be gathered) they are the rank's own
    part, and `hosts` and `ranks` are None. `local()` is always the rank's own part.
    """

    __slots__ = ("_job_window",)
    _job_window: JobWindow | None

    def _jw(self) -> JobWindow | None:
        return getattr(self, "_job_window", None)

    @property
    def job(self) -> Job | None:
        return self._meter.job

    @property
    def job_window(self) -> JobWindow | None:
        """The job's window, on rank 0 once closed; else None."""
        return self._jw()

    @property
    def hosts(self) -> dict[str, HostPart] | None:
        jw = self._jw()
        return None if jw is None else jw.hosts

    @property
    def ranks(self) -> dict[int, RankPart] | None:
        jw = self._jw()
        return None if jw is None else jw.ranks

    @property
    def missing(self) -> list[int]:
        """The ranks whose part did not arrive before the timeout (rank 0 only)."""
        jw = self._jw()
        return [] if jw is None else jw.missing

    def local(self) -> Measurement:
        own = Measurement(self.label, self._meter, self._start)
        own._end = self._end
        own._window = self._window
        own._intensity = self._intensity
        return own

    @property
    def duration_s(self) -> float:
        jw = self._jw()
        return super().duration_s if jw is None else jw.duration_s

    @property
    def energy_j(self) -> float | None:
        jw = self._jw()
        return super().energy_j if jw is None else jw.energy_j

    @property
    def domains(self) -> dict[str, float | None]:
        jw = self._jw()
        if jw is None:
            return super().domains
        return {name: d.energy_j for name, d in jw.domains.items()}

    @property
    def interpolated(self) -> list[str]:
        jw = self._jw()
        if jw is None:
            return super().interpolated
        return [name for name, d in jw.domains.items() if d.interpolated]

    @property
    def domain_kinds(self) -> dict[str, str]:
        jw = self._jw()
        if jw is None:
            return super().domain_kinds
        return {name: d.kind for name, d in jw.domains.items()}

    @property
    def energy_range_j(self) -> tuple[float, float] | None:
        jw = self._jw()
        if jw is None:
            return super().energy_range_j
        if jw.energy_range_j is None and jw.energy_j is not None:
            return (jw.energy_j, jw.energy_j)
        return jw.energy_range_j

    @property
    def power_w(self) -> float | None:
        jw = self._jw()
        if jw is None:
            return super().power_w
        if jw.energy_j is None or jw.duration_s <= 0:
            return None
        return jw.energy_j / jw.duration_s

    @property
    def total_domains(self) -> list[str]:
        jw = self._jw()
        if jw is None:
            return super().total_domains
        return [name for name, d in jw.domains.items() if d.in_total]

    @property
    def estimated(self) -> bool:
        jw = self._jw()
        return super().estimated if jw is None else jw.estimated

    @property
    def notes(self) -> list[str]:
        jw = self._jw()
        job = self._meter.job
        if jw is not None:
            return [*jw.notes, *(job.notes if job is not None else ())]
        notes = super().notes
        if job is not None:
            notes.extend(job.notes)
            notes.append(_part_note(job, self.closed))
        return notes

    def record(self) -> Record:
        """On rank 0, the job's window with its hosts and ranks; elsewhere this rank's own
        part; both tagged with the job, host, rank and world size."""
        from carbonfast.report.record import Record

        jw = self._jw()
        if jw is None:
            record = Record.from_measurement(self.local())
            record.notes = self.notes
            return record
        return Record.from_job(self, jw)

    def __repr__(self) -> str:
        jw = self._jw()
        if jw is None:
            return super().__repr__()
        energy = "unknown" if jw.energy_j is None else f"{jw.energy_j:.6g} J"
        missing = f", missing ranks {jw.missing}" if jw.missing else ""
        return (
            f"DistributedMeasurement(label={self.label!r}, job={jw.job_id!r}, "
            f"hosts={len(jw.hosts)}, ranks={jw.world_size}, energy={energy}{missing})"
        )


def _part_note(job: Job, closed: bool) -> str:
    what = "its host's CPU and memory and its GPUs" if job.measures_host else "its GPUs"
    where = f"rank {job.rank} of {job.world_size} in job {job.job_id or '(no id)'}"
    if job.gathers and job.rank != 0:
        rest = "the job's total is on rank 0"
    elif job.gathers and not closed:
        rest = "the job's total comes when the window closes"
    else:
        rest = (
            "nothing is gathered here: the ranks' reports add up to the job "
            f"(carbonfast history --job {job.job_id or 'ID'}, --merge for other hosts)"
        )
    return f"{where}, on host {job.host}: this is its own part ({what}); {rest}"


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
        # On rank 0 of a job, a gathered call counts the whole job's energy.
        energies = [
            m.energy_j if isinstance(m, DistributedMeasurement) else m._w().total_j for m in ms
        ]
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
        gathered = isinstance(self, _JobWindow)
        meter_of = _default_distributed_meter if self._is_forced() else default_meter

        if _lazy(func):
            import contextlib

            @contextlib.contextmanager
            def window() -> Iterator[None]:
                meter = fixed_meter or meter_of()
                if sync is not None:
                    sync()
                cls = DistributedMeasurement if gathered else Measurement
                m = cls(label, meter, meter._native.open_window())
                try:
                    yield
                finally:
                    try:
                        if sync is not None:
                            sync()
                    finally:
                        meter._native.finish(m, keep)
                        if gathered:
                            _gather(m)
                        stats.record(m)

            lazy = _wrap_lazy(func, window)
            lazy.energy = stats  # type: ignore[attr-defined]
            return lazy  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            meter = fixed_meter or meter_of()
            native = meter._native
            if sync is not None:
                sync()
            cls = DistributedMeasurement if gathered else Measurement
            m = cls(label, meter, native.open_window())
            try:
                return func(*args, **kwargs)
            finally:
                try:
                    if sync is not None:
                        sync()
                finally:  # a sync that fails still closes the window
                    native.finish(m, keep)
                    if gathered:
                        _gather(m)
                    stats.record(m)

        wrapper.energy = stats  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    def _is_forced(self) -> bool:
        return False


class _AttributedWindow(Window):
    """A window that reads its scope's CPU time beside the counters at each edge (a file read
    or a clock, some microseconds: only where attribution is asked for)."""

    __slots__ = ("_open_here", "_scope_name")
    _scope_name: str
    _open_here: dict[int, list[AttributedMeasurement]]

    def __enter__(self) -> Any:
        m = super().__enter__()
        meter = m.meter
        m._scope = meter._attribution(self._scope_name)
        m._pids = [os.getpid()]
        m._readings = [m._scope.read()]
        meter._native.gpu_shares(m._pids, m.start_ns)  # a look, for those that need two
        self._open_here.setdefault(threading.get_ident(), []).append(m)
        return m

    def __exit__(self, kind: object, value: object, traceback: object) -> Literal[False]:
        stack = self._open_here.get(threading.get_ident())
        m = stack.pop() if stack else None
        if m is not None:
            m._readings.append(m._scope.read())
            m._gpus = m.meter._native.gpu_shares(m._pids, m.start_ns)
        super().__exit__(kind, value, traceback)
        return False

    def __call__(self, func: F) -> F:
        if _lazy(func):
            # A window of its own for each call: calls that interleave on one thread (tasks
            # of one event loop, generators iterated by turns) close their own windows.
            def fresh() -> Window:
                return _attributed_window(
                    self.label, self._meter, self._sync, self._keep, self._scope_name
                )

            return _wrap_lazy(func, fresh)  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def _lazy(func: Callable[..., Any]) -> bool:
    """Whether calling `func` only makes the object that runs it later: a coroutine, a
    generator or an asynchronous generator."""
    import inspect

    return (
        inspect.iscoroutinefunction(func)
        or inspect.isgeneratorfunction(func)
        or inspect.isasyncgenfunction(func)
    )


def _wrap_lazy(func: Callable[..., Any], window: Callable[[], Any]) -> Callable[..., Any]:
    """`func` (a coroutine or generator function) measured where its work runs, not where
    calling it makes a coroutine or a generator (microseconds, whatever the work):

    - `async def`: the window spans the awaited run, from its first step to its return;
    - a generator (sync or async): the window opens at the first item asked for and closes
      when the iteration ends (exhausted, closed, or collected). It spans the iteration as
      its consumer sees it, the consumer's own work between items included: a generator's
      work cannot be told apart from the loop it feeds, and refusing to decorate generators
      would leave streaming code (a data loader, a token stream) unmeasured.

    `window()` gives a fresh context manager for each call, so that calls interleaving on one
    thread each close their own window."""
    import inspect

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run(*args: Any, **kwargs: Any) -> Any:
            with window():
                return await func(*args, **kwargs)

        return run
    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def iterate_async(*args: Any, **kwargs: Any) -> Any:
            with window():
                async for item in func(*args, **kwargs):
                    yield item

        return iterate_async

    @functools.wraps(func)
    def iterate(*args: Any, **kwargs: Any) -> Any:
        with window():
            return (yield from func(*args, **kwargs))

    return iterate


def _checked_scope(scope: str) -> str:
    from carbonfast.attribution import SCOPES

    if scope in SCOPES[:-1] or (scope.startswith("cgroup:") and len(scope) > len("cgroup:")):
        return scope
    raise ValueError(f"attribute={scope!r} is not valid; expected off, {', '.join(SCOPES)}")


def _attributed_window(
    label: str | None, meter: Meter | None, sync: Sync, keep: bool, scope: str
) -> Window:
    w = _AttributedWindow(
        label, meter, _resolve_sync(sync), AttributedMeasurement, default_meter, keep
    )
    w._scope_name = scope
    w._open_here = {}
    return w


class _JobWindow(Window):
    """A window whose close is gathered to rank 0 when its meter belongs to a job with an
    engine. Entered and exited natively, as any window; the gather follows the exit."""

    __slots__ = ("_open_here",)
    _open_here: dict[int, list[Measurement]]

    def __enter__(self) -> Any:
        m = super().__enter__()
        opened = getattr(self, "_open_here", None)
        if opened is None:
            opened = self._open_here = {}
        opened.setdefault(threading.get_ident(), []).append(m)
        return m

    def __exit__(self, kind: object, value: object, traceback: object) -> Literal[False]:
        stack = getattr(self, "_open_here", {}).get(threading.get_ident())
        super().__exit__(kind, value, traceback)
        if stack:
            _gather(stack.pop())
        return False


def _gather(m: Measurement) -> None:
    """After the window `m` closed: gathers it to rank 0, where its meter has a job that can."""
    job = m.meter.job
    if job is not None and job.gathers and isinstance(m, DistributedMeasurement):
        m._job_window = job.close(m)


class _ForcedJobWindow(_JobWindow):
    """distributed=True without a meter: the default distributed meter's window."""

    __slots__ = ()

    def _is_forced(self) -> bool:
        return True


def _window(
    label: str | None,
    meter: Meter | None,
    sync: Sync,
    keep: bool = False,
    distributed: bool | str | None = None,
) -> Window:
    """A window; one gathered to rank 0 where it may belong to a distributed job."""
    resolved = _resolve_sync(sync)
    if distributed is None or distributed == "auto":
        if meter is not None and meter.job is None:
            return Window(label, meter, resolved, Measurement, default_meter, keep)
        if meter is None and not _maybe_in_job():
            return Window(label, meter, resolved, Measurement, default_meter, keep)
        return _JobWindow(label, meter, resolved, DistributedMeasurement, default_meter, keep)
    if distributed is False:
        return Window(label, meter, resolved, Measurement, default_meter, keep)
    if distributed is not True:
        raise ValueError(
            f"distributed={distributed!r} is not valid; expected 'auto', True or False"
        )
    if meter is None:
        return _ForcedJobWindow(
            label, None, resolved, DistributedMeasurement, _default_distributed_meter, keep
        )
    if meter.job is None:
        raise ValueError(
            "distributed=True, but this meter is not distributed: create it with "
            "cf.Meter(distributed=True), or leave meter out"
        )
    return _JobWindow(label, meter, resolved, DistributedMeasurement, default_meter, keep)


_in_job: bool | None = None


def _maybe_in_job() -> bool:
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


if TYPE_CHECKING:

    @overload
    def measure(
        label: F,
        *,
        meter: Meter | None = None,
        sync: Sync = None,
        keep: bool = False,
        distributed: Distributed = None,
        attribute: str | None = None,
    ) -> F: ...
    @overload
    def measure(
        label: str | None = None,
        *,
        meter: Meter | None = None,
        sync: Sync = None,
        keep: bool = False,
        distributed: Distributed = None,
        attribute: str | None = None,
    ) -> Window: ...


def measure(
    label: Any = None,
    *,
    meter: Meter | None = None,
    sync: Sync = None,
    keep: bool = False,
    distributed: Distributed = None,
    attribute: str | None = None,
) -> Any:
    """Measure a block (`with cf.measure("step") as m:`) or every call of a function.

    As a decorator (`@cf.measure` or `@cf.measure("label")`) the function gains an `energy`
    attribute, a CallStats with the running totals and the last Measurement.

    `sync` ("torch", "cupy", "jax" or a function) waits for the GPU before each edge, so that
    queued asynchronous work is measured where it runs.

    The history adds windows up per label (count, energy, time, min, max); `keep=True` stores
    each of them as a record of its own instead.

    In a distributed job (see `Meter`), the window is gathered to rank 0 when it closes, on a
    meter that belongs to the job (by default, where one is found): every rank must close the
    same windows in the same order. `distributed=False` keeps a window to this rank alone (its
    own part); `distributed=True` makes it a job's window even where no launcher is found (a
    job of one rank).

    `attribute` ("process": this process; "tree": with its descendants; "thread": the thread
    that opens the window; "cgroup" or "cgroup:PATH") also reports the share of the machine's
    energy that is that scope's, as `m.attributed` (see carbonfast.attribution): each edge then
    reads the scope's CPU time beside the counters.
    """
    if attribute is not None and attribute != "off":
        if distributed:
            raise ValueError("attribute= is not available for a distributed window")
        scope = _checked_scope(attribute)
        if callable(label):
            return _attributed_window(None, meter, sync, keep, scope)(label)
        return _attributed_window(label, meter, sync, keep, scope)
    if callable(label):
        return _window(None, meter, sync, keep, distributed)(label)
    return _window(label, meter, sync, keep, distributed)


if TYPE_CHECKING:

    @overload
    def track(
        func: F,
        *,
        label: str | None = None,
        meter: Meter | None = None,
        sync: Sync = None,
        keep: bool = False,
        distributed: Distributed = None,
    ) -> F: ...
    @overload
    def track(
        func: None = None,
        *,
        label: str | None = None,
        meter: Meter | None = None,
        sync: Sync = None,
        keep: bool = False,
        distributed: Distributed = None,
    ) -> Callable[[F], F]: ...


def track(
    func: Any = None,
    *,
    label: str | None = None,
    meter: Meter | None = None,
    sync: Sync = None,
    keep: bool = False,
    distributed: Distributed = None,
) -> Any:
    """Decorator: measure every call of `func`; totals in `func.energy` (a CallStats).
    `distributed` as for `measure`."""
    window = _window(label, meter, sync, keep, distributed)
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
        # still make its records.
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
        self.domains: list[_native.DomainInfo] = self._native.domains
        self.domain_names: list[str] = [d.name for d in self.domains]
        # For attributed windows: where the scopes' CPU times are, the scopes opened so far,
        # and what the CPU estimate follows.
        self._proc_root: str = settings["proc_root"]
        self._cgroup_root: str = settings["cgroup_root"]
        self._estimate_scope: str = settings["scope"]
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
        if attribute is not None and attribute != "off":
            if distributed:
                raise ValueError("attribute= is not available for a distributed window")
            return _attributed_window(label, self, sync, keep, _checked_scope(attribute))
        if sync is None and distributed is None and self.job is None:  # the common case
            return Window(label, self, None, Measurement, default_meter, keep)
        return _window(label, self, sync, keep, distributed)

    def _attribution(self, scope: str) -> _native.Attribution:
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
        if self.job is not None and distributed is not False:
            _gather(m)
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
        job = "" if self.job is None else f", job={self.job!r}"
        return f"Meter(domains={self.domain_names}{job})"


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


_default_distributed: Meter | None = None


def _default_distributed_meter() -> Meter:
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
