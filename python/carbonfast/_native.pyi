"""Typed stubs of the native extension (rust/carbonfast-py)."""

from typing import Any

class SensorUnavailable(OSError):
    """An energy sensor is missing or cannot be read."""

class Snapshot:
    @property
    def t_ns(self) -> int:
        """CLOCK_MONOTONIC nanoseconds."""
    @property
    def totals(self) -> list[int]:
        """Per domain, raw counter units since the meter started, wraps unfolded."""

class Window:
    duration_s: float
    joules: list[float]
    joules_low: list[float]
    joules_high: list[float]
    total_j: float | None
    total_range_j: tuple[float, float] | None
    interpolated: list[bool]
    stalled: list[bool]

class DomainInfo:
    name: str
    kind: str
    source: str
    path: str
    units_per_joule: float
    max_raw: int
    range_j: float | None
    counts_in_total: bool
    reading: str
    label: str
    update_period_s: float | None
    estimated: bool
    method: str | None
    inputs: list[tuple[str, str]]

class Problem:
    source: str
    kind: str
    path: str
    reason: str
    fix: str | None

class PathInfo:
    name: str
    root: str
    domains: list[str]
    read_ns: int | None
    chosen: bool
    problems: list[Problem]

class SourceInfo:
    name: str
    root: str
    domains: list[str]
    notes: list[str]

class SamplerStats:
    sampling: bool
    samples: int
    missed: int
    dropped: int
    read_errors: int
    cpu_s: float
    period_s: float

class Meter:
    def __init__(
        self,
        powercap_root: str | None = None,
        *,
        estimate: bool = True,
        scope: str = "process",
        cpu_tdp_w: float | None = None,
        cpu_threads: int | None = None,
        ram_gb: float | None = None,
        cpu_power_w: float | None = None,
        ram_power_w: float | None = None,
        proc_root: str | None = None,
        cgroup_root: str | None = None,
        sample_hz: float | None = None,
        capacity: int = 60_000,
        max_power_w: float = 1500.0,
        source: str = "auto",
        msr_root: str | None = None,
        cpu_topology_root: str | None = None,
        perf_root: str | None = None,
        gpu: bool = True,
        nvml_library: str | None = None,
        gpu_energy: str = "auto",
    ) -> None: ...
    def read(self) -> Snapshot: ...
    def open_window(self) -> Snapshot: ...
    def close_window(self) -> Snapshot: ...
    def trace(self) -> tuple[bytes, int, int]: ...
    @property
    def sampler_stats(self) -> SamplerStats | None: ...
    @property
    def open_windows(self) -> int | None: ...
    def pause_for_fork(self) -> None: ...
    def resume_after_fork(self) -> None: ...
    def restart_after_fork(self) -> None: ...
    def window(self, start: Snapshot, end: Snapshot) -> Window: ...
    def pacing(self) -> tuple[int, float] | None: ...
    def bench_poll(
        self, pacing: int, since: int | None = None
    ) -> tuple[int, int, list[tuple[int, int]], float]: ...
    def logged_energy(self, t1_ns: int, t2_ns: int) -> float: ...
    @property
    def domains(self) -> list[DomainInfo]: ...
    @property
    def sources(self) -> list[SourceInfo]: ...
    @property
    def problems(self) -> list[Problem]: ...
    @property
    def paths(self) -> list[PathInfo]: ...
    def wraps(self) -> list[int]: ...
    def anomalies(self) -> list[tuple[int, float]]: ...

def time_raw_preads(paths: list[str], rounds: int) -> list[int]: ...
def time_sleep_loop(hz: float, seconds: float) -> tuple[int, int]: ...

class MeasurementBase:
    label: str | None
    _meter: Any
    _start: Snapshot
    _end: Snapshot | None
    _window: Window | None
    _intensity: Any
    def __init__(self, label: str | None, meter: Any, start: Snapshot) -> None: ...

class WindowBase:
    label: str | None
    _meter: Any
    _sync: Any
    _keep: bool
    def __init__(
        self,
        label: str | None,
        meter: Any,
        sync: Any,
        measurement_class: Any,
        default_meter: Any,
        keep: bool = False,
    ) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, kind: object, value: object, traceback: object) -> bool: ...

class Tally:
    """Closed windows added up per label (count, energy, time, min, max, first and last)."""

    max_labels: int
    overflow_label: str
    def __init__(self, max_labels: int = 1000, overflow_label: str = "(other labels)") -> None: ...
    def add(self, label: str, start: Snapshot, end: Snapshot) -> None: ...
    def drain(self) -> list[tuple[str, int, int, float, float, float, float, int, int]]: ...
    def __len__(self) -> int: ...
