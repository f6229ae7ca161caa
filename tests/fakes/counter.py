"""A counter with RAPL's habits whose truth is known: it refreshes every `period` seconds, and
its power follows the CPU time of the thread that reads it, `watts` while that thread runs and
nothing while it sleeps. `busy(t)` runs for t seconds of that CPU time, however the scheduler
shares the CPU, so it costs exactly watts x t."""

from __future__ import annotations

import time


class CpuTimeCounter:
    def __init__(self, watts: float = 50.0, period: float = 0.001) -> None:
        self.watts, self.period = watts, period
        self._tick = -1
        self._value = 0.0
        self._last = (time.monotonic(), time.thread_time())

    def read(self) -> tuple[float, float]:
        """(CLOCK_MONOTONIC seconds, cumulative joules), as cf.bench reads a meter. The value
        is the energy as of the latest period boundary, as RAPL's is as of its latest refresh
        whoever reads it: the CPU time at the boundary is interpolated between this read and
        the one before (the thread ran its calls in between)."""
        now, cpu = time.monotonic(), time.thread_time()
        tick = int(now / self.period)
        if tick != self._tick:  # a refresh since the last read
            self._tick = tick
            t0, c0 = self._last
            boundary = max(t0, tick * self.period)
            at = c0 + (cpu - c0) * (boundary - t0) / (now - t0) if now > t0 else cpu
            self._value = max(self._value, self.watts * at)
        self._last = (now, cpu)
        return now, self._value


def busy(seconds: float) -> None:
    """Keeps the CPU busy for `seconds` of this thread's CPU time (more wall time on a busy
    machine): the work is declared, not left to the scheduler."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def busy_100us() -> None:
    """A benchmark target for `carbonfast bench tests.fakes.counter:busy_100us`."""
    busy(100e-6)
