"""The link from closed windows to the history: `WindowRecorder` writes, from a background
thread, each meter's label sums (`WindowSums`) and the windows asked to be kept one by one."""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections import deque
from pathlib import Path

from carbonfast.report.history import History
from carbonfast.report.window_sums import WindowSums

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast.measurement import Measurement
    from carbonfast.meter import Meter
    from carbonfast.record import Record


def window_record(m: Measurement, intensities: dict[int, Any]) -> Record:
    """The stored form of a closed window (less its notes), with the grid intensity looked up
    once per meter and batch."""
    from carbonfast.record import Record

    meter = m.meter
    it = intensities.get(id(meter))
    if it is None:
        it = intensities[id(meter)] = meter.carbon.intensity()
    m.intensity = it
    return Record.from_measurement(m, "window", notes=False)


def sums_of(meter: Meter, rows: list[tuple]) -> list[WindowSums]:
    """A meter's drained tally as WindowSums, stamped with wall-clock times."""
    from datetime import datetime, timezone

    it = meter.carbon.intensity()

    def wall(t_ns: int) -> str:
        return datetime.fromtimestamp(meter.wall_clock_s(t_ns), timezone.utc).isoformat()

    out = []
    for label, count, known, energy, lo, hi, seconds, first_ns, last_ns in rows:
        out.append(
            WindowSums(
                label=label,
                count=count,
                known=known,
                energy_j=energy if known else None,
                min_j=lo if known else None,
                max_j=hi if known else None,
                duration_s=seconds,
                first_at=wall(first_ns),
                last_at=wall(last_ns),
                estimated=meter.estimated,
                intensity_g_per_kwh=it.g_per_kwh,
                intensity_source=it.source,
                location=it.location,
                pue=meter.carbon.pue,
            )
        )
    return out


class WindowRecorder:
    """Writes windows to the history from a background thread: each watched meter's label
    sums (its native tally), and the windows asked to be kept, queued one by one.

    The thread wakes twice a second, and at exit whatever is pending is written. Kept windows
    closing faster than the history can take them (tens of thousands a second) fill the queue;
    past MAX_PENDING they are dropped, counted, and a warning says so once, rather than memory
    growing without bound. Sums never are: they take a few bytes per label.
    """

    FLUSH_S = 0.5
    MAX_PENDING = 100_000

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._queue: deque[Measurement] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._history: History | None = None
        self._flush_lock = threading.Lock()
        self._meters: weakref.WeakSet[Meter] = weakref.WeakSet()
        self._flushes = 0
        self.dropped = 0
        self.failed = False
        atexit.register(self.flush)

    def watch(self, meter: Meter) -> None:
        """Writes `meter`'s label sums (`drain_window_sums`) from now on."""
        self._meters.add(meter)
        if self._pid != os.getpid():
            self._start()

    def record(self, m: Measurement) -> None:
        if len(self._queue) >= self.MAX_PENDING:
            self.dropped += 1
            if self.dropped == 1:
                import warnings

                warnings.warn(
                    f"carbonfast: kept windows close faster than the history ({self.path}) can "
                    "record them; further ones are dropped and counted. Leave keep=False for "
                    "windows in loops (they are added up per label), or use cf.bench.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return
        self._queue.append(m)
        if self._pid != os.getpid():  # first use, or a child after fork: threads are gone
            self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._history = None
        self._thread = threading.Thread(target=self._run, name="carbonfast-history", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.FLUSH_S)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Writes every queued window and the label sums now."""
        with self._flush_lock:
            batch: list[tuple[Record, dict | None]] = []
            intensities: dict[int, Any] = {}
            while self._queue:
                m = self._queue.popleft()
                batch.append((window_record(m, intensities), None))
            sums = []
            for meter in list(self._meters):
                sums += sums_of(meter, meter.drain_window_sums())
            if not (batch or sums) or self.failed:
                return
            try:
                if self._history is None:
                    self._history = History(self.path)
                if batch:
                    self._history.add_many(batch)
                if sums:
                    self._history.add_sums(sums)
                self._flushes += 1
                if batch and self._flushes % 20 == 1:
                    self._history.prune()
            except Exception as e:
                # The program goes on; its windows are not recorded, and it is told once.
                self.failed = True
                import warnings

                warnings.warn(
                    f"carbonfast: the history {self.path} cannot be written ({e}); windows are "
                    "not recorded from now on. Set CARBONFAST_HISTORY to another file, or off.",
                    RuntimeWarning,
                    stacklevel=2,
                )
