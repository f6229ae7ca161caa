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

    def read(self) -> tuple[float, float]:
        """(CLOCK_MONOTONIC seconds, cumulative joules), as cf.bench reads a meter."""
        now = time.monotonic()
        tick = int(now / self.period)
        if tick != self._tick:  # a refresh: the value jumps to the energy so far
            self._tick = tick
            self._value = self.watts * time.thread_time()
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
