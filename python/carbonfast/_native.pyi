"""Typed stubs of the native extension (rust/carbonfast-py)."""

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
    total_j: float | None

class DomainInfo:
    name: str
    kind: str
    source: str
    path: str
    units_per_joule: float
    max_raw: int
    range_j: float
    counts_in_total: bool

class Problem:
    source: str
    kind: str
    path: str
    reason: str
    fix: str | None

class SourceInfo:
    name: str
    root: str
    domains: list[str]
    notes: list[str]

class Meter:
    def __init__(self, powercap_root: str | None = None) -> None: ...
    def read(self) -> Snapshot: ...
    def window(self, start: Snapshot, end: Snapshot) -> Window: ...
    @property
    def domains(self) -> list[DomainInfo]: ...
    @property
    def sources(self) -> list[SourceInfo]: ...
    @property
    def problems(self) -> list[Problem]: ...
    def wraps(self) -> list[int]: ...

def time_raw_preads(paths: list[str], rounds: int) -> list[int]: ...
