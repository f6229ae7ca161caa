"""Typed stubs of the native extension (rust/carbonfast-py).

Checked against the built module by `python -m mypy.stubtest carbonfast._native` (scripts/test).
Classes that Python code cannot subclass are `@final`; the two bases that carbonfast.measure
subclasses are `@disjoint_base` (their instances have a native layout of their own). Fields that
the bindings expose through getters are read-only properties.
"""

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, final

from typing_extensions import Self, disjoint_base

from carbonfast._typing import DomainKind, MeterConfig, PartName, RoleName

__all__ = [
    "MAX_POWER_W",
    "Attribution",
    "DomainInfo",
    "KindRule",
    "MeasurementBase",
    "Meter",
    "PathInfo",
    "Problem",
    "SamplerStats",
    "SensorUnavailable",
    "Snapshot",
    "SourceInfo",
    "Tally",
    "Window",
    "WindowBase",
    "become_subreaper",
    "choices",
    "kind_rules",
    "meter_rules",
    "time_raw_preads",
    "time_sleep_loop",
]

# The most power one domain is taken to draw: a reading that needs more is not counted.
MAX_POWER_W: float

@final
class KindRule:
    """The core's rule for one domain kind (see kind_rules)."""

    @property
    def name(self) -> DomainKind: ...
    @property
    def counts_in_total(self) -> bool:
        """Added to the total where no platform meter, module or lone psys is the total."""
    @property
    def part(self) -> PartName | None:
        """The CodeCarbon part its energy is the figure of, where it is one."""
    @property
    def role(self) -> RoleName:
        """ "added", "inside" (another domain) or "covers" (several others)."""
    @property
    def rapl(self) -> bool:
        """Read through RAPL: a host counter refreshing about every millisecond."""

def choices() -> dict[str, list[str]]:
    """The values the core accepts for each setting that is one of a few names (source,
    scope, gpu_energy)."""

def kind_rules() -> list[KindRule]:
    """Every domain kind with its rules, in the order reports list them."""

def meter_rules(kinds: Sequence[str]) -> list[tuple[bool, PartName | None]]:
    """For a meter whose domains are of `kinds`, in order: whether each is in the total, and
    the CodeCarbon part it is reported in. ValueError for a name that is not a kind."""

class SensorUnavailable(OSError):
    """An energy sensor is missing or cannot be read."""

@final
class Snapshot:
    """Cumulative energy of every domain at one instant (made by Meter, not by Python code)."""

    @property
    def t_ns(self) -> int:
        """CLOCK_MONOTONIC nanoseconds."""
    @property
    def totals(self) -> list[int]:
        """Per domain, raw counter units since the meter started, wraps unfolded."""

@final
class Window:
    """Energy between two snapshots (made by Meter.window)."""

    @property
    def duration_s(self) -> float: ...
    @property
    def joules(self) -> list[float]: ...
    @property
    def joules_low(self) -> list[float]: ...
    @property
    def joules_high(self) -> list[float]: ...
    @property
    def total_j(self) -> float | None: ...
    @property
    def total_range_j(self) -> tuple[float, float] | None: ...
    @property
    def interpolated(self) -> list[bool]:
        """Per domain: edges interpolated between the counter's refreshes."""
    @property
    def stalled(self) -> list[bool]:
        """Per domain: a counter in the total that never moved, left out of it."""
    @property
    def counted(self) -> list[bool]:
        """Per domain: added to `total_j` (a standby estimate only in place of frozen RAPL)."""
    @property
    def failed(self) -> list[bool]:
        """Per domain: a read failed or did not answer between the edges: its energy is
        unknown (NaN in `joules`) and it is left out of the total."""

@final
class DomainInfo:
    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> DomainKind: ...
    @property
    def source(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def units_per_joule(self) -> float: ...
    @property
    def max_raw(self) -> int: ...
    @property
    def range_j(self) -> float | None:
        """Energy the counter covers before it wraps; None where it never wraps in practice."""
    @property
    def counts_in_total(self) -> bool: ...
    @property
    def part(self) -> PartName | None:
        """The CodeCarbon part ("cpu", "gpu", "ram") its energy is reported in; None for none."""
    @property
    def reading(self) -> str:
        """ "energy" (a counter) or "power" (integrated by the meter)."""
    @property
    def label(self) -> str: ...
    @property
    def update_period_s(self) -> float | None: ...
    @property
    def estimated(self) -> bool: ...
    @property
    def standby(self) -> bool:
        """An estimate kept beside RAPL counters start-up did not see move: counted (and
        reported) only in a window where they all stood still."""
    @property
    def method(self) -> str | None: ...
    @property
    def inputs(self) -> list[tuple[str, str]]: ...

@final
class Problem:
    @property
    def source(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def fix(self) -> str | None: ...

@final
class PathInfo:
    @property
    def name(self) -> str: ...
    @property
    def root(self) -> str: ...
    @property
    def domains(self) -> list[str]: ...
    @property
    def read_ns(self) -> int | None: ...
    @property
    def chosen(self) -> bool: ...
    @property
    def problems(self) -> list[Problem]: ...

@final
class SourceInfo:
    @property
    def name(self) -> str: ...
    @property
    def root(self) -> str: ...
    @property
    def domains(self) -> list[str]: ...
    @property
    def notes(self) -> list[str]: ...

@final
class SamplerStats:
    @property
    def sampling(self) -> bool: ...
    @property
    def samples(self) -> int: ...
    @property
    def missed(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def read_errors(self) -> int: ...
    @property
    def cpu_s(self) -> float: ...
    @property
    def period_s(self) -> float: ...

@final
class Meter:
    def __new__(cls, config: MeterConfig | Mapping[str, Any]) -> Meter:
        """`config`: every key of carbonfast.config's hardware and estimate settings, resolved,
        with sample_hz and capacity (and optionally max_power_w; skip_host, which leaves out
        the host's CPU and DRAM, measured or estimated; gpu_indices, the CUDA indices of the
        GPUs to measure, None for all)."""
    def read(self) -> Snapshot: ...
    def open_window(self) -> Snapshot:
        """Reads the start of a window; the wrap guard runs until the matching close_window."""
    def close_window(self) -> Snapshot: ...
    def record_into(self, tally: Tally, recorder: Any) -> None:
        """Closed windows go to `tally` (added up per label) or, kept, to
        `recorder.record(m)`."""
    def finish(self, m: MeasurementBase, keep: bool) -> None:
        """Closes the window of `m` and records it: the one path every window takes (`with`,
        the decorator, begin/end)."""
    def trace(self) -> tuple[bytes, int, int]:
        """The sampled trace: (bytes of row-major f64 [t_s, energy_j per domain...], rows,
        width). A stepped counter's energy is interpolated between its refreshes; NaN where
        they are not known yet."""
    @property
    def open_windows(self) -> int | None:
        """Windows open on this meter now, where it keeps count (it has a sampler or wrap
        guard)."""
    @property
    def sampler_stats(self) -> SamplerStats | None: ...
    def pause_for_fork(self) -> None: ...
    def resume_after_fork(self) -> None: ...
    def restart_after_fork(self) -> None: ...
    def window(self, start: Snapshot, end: Snapshot) -> Window:
        """Energy between two snapshots."""
    def pacing(self) -> tuple[int, float] | None:
        """The domain that paces a benchmark and its refresh period in seconds."""
    def bench_poll(
        self, pacing: int, since: int | None = None
    ) -> tuple[int, int, list[tuple[int, int]], float]:
        """(t_ns, count, new refreshes of `pacing` since `since` as (midpoint, width) in ns,
        energy of the unlogged domains in the total)."""
    def logged_energy(self, t1_ns: int, t2_ns: int) -> float:
        """Energy between two instants of the domains in the total that have a refresh log."""
    @property
    def domains(self) -> list[DomainInfo]: ...
    @property
    def sources(self) -> list[SourceInfo]: ...
    @property
    def problems(self) -> list[Problem]: ...
    @property
    def paths(self) -> list[PathInfo]:
        """Each RAPL path considered at start-up: its domains, read cost, problems, and which
        won."""
    def anomalies(self) -> list[tuple[int, float]]:
        """Per domain: (readings that could not be explained, joules that may be missing)."""
    def wraps(self) -> list[int]:
        """How many times each domain's counter has wrapped."""
    def failures(self) -> list[str | None]:
        """Per domain: why a read of it last failed or did not answer (None: never)."""
    def gpu_shares(
        self, pids: list[int], since_ns: int
    ) -> list[tuple[int, float, float, float, str] | None]:
        """Per domain, for each GPU whose processes are known: (domain index, share, low,
        high, method), the part of its energy that is the processes `pids`' since `since_ns`
        (CLOCK_MONOTONIC). None for the other domains."""

@final
class Attribution:
    """A scope's CPU time beside the machine's, for its share of the machine's energy."""

    def __new__(
        cls,
        scope: str,
        proc_root: str | os.PathLike[str] = ...,
        cgroup_root: str | os.PathLike[str] = ...,
    ) -> Attribution: ...
    @property
    def label(self) -> str:
        """The scope in words: "process 4312", "cgroup /slurm/job_1234"."""
    @label.setter
    def label(self, value: str) -> None: ...
    @property
    def method(self) -> str:
        """How the CPU times are read, in words."""
    def read(self) -> tuple[int, int]:
        """(the scope's CPU ns, the machine's busy CPU ns), now."""
    def share(
        self, start: tuple[int, int], end: tuple[int, int]
    ) -> tuple[float | None, float, float, float, float]:
        """(share or None, low, high, the scope's CPU s, the machine's busy CPU s) between two
        readings."""

def become_subreaper() -> None:
    """Makes this process the reaper of its orphaned descendants (Linux)."""

def time_raw_preads(paths: Sequence[str | os.PathLike[str]], rounds: int) -> list[int]:
    """Nanoseconds of each of `rounds` rounds of one bare pread per path."""

def time_sleep_loop(hz: float, seconds: float) -> tuple[int, int]:
    """(CPU ns, wall ns) of a thread that only sleeps to absolute deadlines at `hz`."""

@disjoint_base
class MeasurementBase:
    """The fields of a measurement window, kept natively; carbonfast.measure.Measurement
    subclasses it. `_meter` is a carbonfast.measure.Meter."""

    def __new__(cls, label: str | None, meter: Any, start: Snapshot) -> Self: ...
    @property
    def label(self) -> str | None: ...
    @property
    def _meter(self) -> Any: ...
    @property
    def _start(self) -> Snapshot: ...
    _end: Snapshot | None
    _window: Window | None
    # A carbonfast.carbon.intensity.Intensity once looked up, else None.
    _intensity: Any

@disjoint_base
class WindowBase:
    """A window as a context manager, entered and exited natively; carbonfast.measure.Window
    subclasses it. `__enter__` calls `measurement_class(label, meter, start)` and returns
    what it made."""

    def __new__(
        cls,
        label: str | None,
        meter: Any,
        sync: Callable[[], object] | None,
        measurement_class: Callable[[str | None, Any, Snapshot], MeasurementBase],
        default_meter: Callable[[], Any],
        keep: bool = False,
    ) -> Self: ...
    @property
    def label(self) -> str | None: ...
    @property
    def _meter(self) -> Any:
        """The carbonfast.measure.Meter, or None for the default one."""
    @property
    def _sync(self) -> Callable[[], object] | None:
        """Waits for a device's queued work at each edge, or None."""
    @property
    def _keep(self) -> bool: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, _kind: object, _value: object, _traceback: object) -> Literal[False]: ...

@final
class Tally:
    """Closed windows added up per label (count, energy, time, min, max, first and last)."""

    def __new__(cls, max_labels: int = 1000, overflow_label: str = "(other labels)") -> Tally: ...
    @property
    def max_labels(self) -> int: ...
    @property
    def overflow_label(self) -> str: ...
    def add(self, label: str, start: Snapshot, end: Snapshot) -> None:
        """Adds the window between `start` and `end` under `label`."""
    def drain(self) -> list[tuple[str, int, int, float, float, float, float, int, int]]:
        """Every label's sums since the last drain (label, count, windows with known energy,
        energy J, min J, max J, duration s, first start ns, last end ns); empties the tally."""
    def __len__(self) -> int:
        """Windows added since the last drain."""
