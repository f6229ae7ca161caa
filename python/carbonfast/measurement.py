"""A window's figures: `Measurement` (one process's window), `AttributedMeasurement` (with its
scope's share) and `DistributedMeasurement` (a window of a distributed job).

A window is two native snapshots; everything else (joules per domain, total, notes) is derived
lazily from them, so opening and closing a window costs two counter reads and little more.
"""

from __future__ import annotations

import os

from carbonfast import _native, kinds

# `typing` costs more than the rest of `import carbonfast` together; type checkers read this
# block, the interpreter skips it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from carbonfast.carbon.intensity import Intensity
    from carbonfast.distributed import HostPart, Job, JobWindow, RankPart
    from carbonfast.meter import Meter
    from carbonfast.record import Attributed, Record

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
        native = self._meter.native
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
            d.name: None if failed else j
            for d, j, failed, counted in zip(
                self._meter.all_domains, w.joules, w.failed, w.counted, strict=True
            )
            if counted or not d.standby
        }

    @property
    def partial(self) -> bool:
        """True when the total leaves out a domain it should have counted: one that cannot be
        read at all, never moved, or failed during the window."""
        w = self._w()
        return bool(
            self._meter.partial
            or (any(w.stalled) and not self._frozen_estimated(w))
            or self._failed_in_total(w)
        )

    def _frozen_estimated(self, w: _native.Window) -> bool:
        """Whether an estimate stood in for RAPL counters that all stood still."""
        return any(d.standby and c for d, c in zip(self._meter.all_domains, w.counted, strict=True))

    def _failed_in_total(self, w: _native.Window) -> list[str]:
        return [
            d.name
            for d, failed in zip(self._meter.all_domains, w.failed, strict=True)
            if failed and d.counts_in_total
        ]

    @property
    def interpolated(self) -> list[str]:
        """The domains whose edges were interpolated between the refreshes of their counter: a
        window shorter than one refresh, or any window on a slowly refreshing (polled) counter
        such as a GPU's."""
        domains = self._meter.all_domains
        return [d.name for d, i in zip(domains, self._w().interpolated, strict=True) if i]

    @property
    def domain_kinds(self) -> dict[str, str]:
        w = self._w()
        return {
            d.name: d.kind
            for d, counted in zip(self._meter.all_domains, w.counted, strict=True)
            if counted or not d.standby
        }

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
        return [d.name for d, c in zip(self._meter.all_domains, w.counted, strict=True) if c]

    @property
    def intensity(self) -> Intensity:
        """The grid intensity used for emissions, with its source."""
        if self._intensity is None:
            self._intensity = self._meter.carbon.intensity()
        return self._intensity

    @intensity.setter
    def intensity(self, value: Intensity) -> None:
        # Set by those that look the intensity up once for many windows (the history's
        # recorder, per batch), rather than once per window.
        self._intensity = value

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
        from carbonfast.carbon import emissions_range_kg

        return emissions_range_kg(self.energy_range_j, self.intensity_g_per_kwh, self.pue)

    @property
    def estimated(self) -> bool:
        """True when any part of energy_j comes from a model rather than a counter."""
        return self._meter.estimated or self._frozen_estimated(self._w())

    @property
    def started_at(self) -> str:
        """Wall-clock UTC start, ISO 8601: report metadata only; durations are monotonic."""
        from datetime import datetime, timezone

        wall = self._meter.wall_clock_s(self._start.t_ns)
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
            and not any(d.update_period_s for d in self._meter.all_domains)
        ):
            notes.append(
                f"window of {w.duration_s * 1e3:.3f} ms spans few counter updates (RAPL updates "
                "about every 1 ms): energy is coarse; repeat the work in a loop or use cf.bench"
            )
        if self.intensity.note:
            notes.append(self.intensity.note)
        for d, j, lo, hi, interpolated in zip(
            self._meter.all_domains,
            w.joules,
            w.joules_low,
            w.joules_high,
            w.interpolated,
            strict=True,
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
            self._meter.all_domains, self._meter.native.anomalies(), strict=True
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
        if self._frozen_estimated(w):
            domains = self._meter.all_domains
            names = ", ".join(d.name for d, s in zip(domains, w.stalled, strict=True) if s)
            estimate = ", ".join(
                d.name for d, c in zip(domains, w.counted, strict=True) if d.standby and c
            )
            notes.append(
                f"RAPL is present but frozen: estimating. {names} did not move since carbonfast "
                "started, over far more of RAPL's refreshes than a working counter ever stands "
                f"still (an emulated RAPL returning constants?); the total is estimated from "
                f"CPU time and installed memory ({estimate}) in their place; `carbonfast info` "
                "shows the model"
            )
        for d, stalled in zip(self._meter.all_domains, w.stalled, strict=True):
            if stalled and self._frozen_estimated(w):
                continue
            if stalled:
                frozen = "RAPL is present but frozen: " if kinds.is_rapl(d.kind) else ""
                notes.append(
                    f"{frozen}{d.name} has not moved since carbonfast started (while other "
                    "counters stepped, or over far more of its refreshes than a working counter "
                    "ever stands still): it is taken as unreadable and left out of the total, "
                    "not counted as 0 J; `carbonfast info` shows it"
                )
        reasons = self._meter.native.failures()
        for d, failed, why in zip(self._meter.all_domains, w.failed, reasons, strict=True):
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
        notes.extend(self._meter.notes)
        return notes

    def local(self) -> Measurement:
        """What this process measured: the window itself (in a distributed job, this rank's
        own part)."""
        return self

    def record(self) -> Record:
        """This window as a Record: what every report and the history read."""
        from carbonfast.record import Record

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

    def __str__(self) -> str:
        """The summary `carbonfast run` prints: energy per domain, total, emissions, notes."""
        from carbonfast.report.console import format_summary

        return format_summary(self.record())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from carbonfast.display import pretty

        pretty(self, p, cycle)

    def _repr_html_(self) -> str:
        from carbonfast.display import record_html

        return record_html(self.record())


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
            found = self.meter.native.gpu_shares(self._pids, self.start_ns)
        if len(readings) != 2:
            return None
        from carbonfast.attribution import attribute, gpu_shares

        gpus = gpu_shares(self.meter.all_domains, found)
        follows = self.meter.estimate_scope == "process"
        return attribute(
            self, self._scope, readings[0], readings[1], gpus, estimate_follows_scope=follows
        )

    def read_start(self, scope: _native.Attribution) -> None:
        """Reads the scope's CPU time (and, for those that need two looks, the GPUs' process
        shares) at the window's start."""
        self._scope = scope
        self._pids = [os.getpid()]
        self._readings = [scope.read()]
        self.meter.native.gpu_shares(self._pids, self.start_ns)

    def read_end(self) -> None:
        """Reads the scope's CPU time and the GPUs' process shares at the window's end."""
        self._readings.append(self._scope.read())
        self._gpus = self.meter.native.gpu_shares(self._pids, self.start_ns)

    def record(self) -> Record:
        r = super().record()
        r.attributed = self.attributed
        return r


class _JobOrOwn:
    """A DistributedMeasurement figure: the job window's (`of_job`) where there is one, else
    the one Measurement derives for the rank's own window. One mechanism instead of a property
    override per figure."""

    def __init__(self, of_job: Callable[[JobWindow], Any]) -> None:
        self._of_job = of_job
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self._own = getattr(Measurement, name)

    def __get__(self, m: DistributedMeasurement | None, owner: type | None = None) -> Any:
        if m is None:
            return self
        jw = m.job_window
        return self._own.__get__(m, owner) if jw is None else self._of_job(jw)


def _job_energy_range(jw: JobWindow) -> tuple[float, float] | None:
    if jw.energy_range_j is None and jw.energy_j is not None:
        return (jw.energy_j, jw.energy_j)
    return jw.energy_range_j


def _job_power(jw: JobWindow) -> float | None:
    if jw.energy_j is None or jw.duration_s <= 0:
        return None
    return jw.energy_j / jw.duration_s


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

    def gather(self) -> None:
        """Once the window closed: gathers it to rank 0, where its meter has a job that can."""
        job = self._meter.job
        if job is not None and job.gathers:
            self._job_window = job.close(self)

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

    # The figures the job's window answers on rank 0 once gathered; elsewhere, the rank's own.
    duration_s = _JobOrOwn(lambda jw: jw.duration_s)
    energy_j = _JobOrOwn(lambda jw: jw.energy_j)
    domains = _JobOrOwn(lambda jw: {name: d.energy_j for name, d in jw.domains.items()})
    interpolated = _JobOrOwn(lambda jw: [n for n, d in jw.domains.items() if d.interpolated])
    domain_kinds = _JobOrOwn(lambda jw: {name: d.kind for name, d in jw.domains.items()})
    energy_range_j = _JobOrOwn(_job_energy_range)
    power_w = _JobOrOwn(_job_power)
    total_domains = _JobOrOwn(lambda jw: [n for n, d in jw.domains.items() if d.in_total])
    estimated = _JobOrOwn(lambda jw: jw.estimated)

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
        from carbonfast.record import Record

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
