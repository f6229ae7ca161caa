"""The background thread of a tracker's live updates: a tick every `measure_power_secs`, of
which every `api_call_interval`-th sends the run so far to the outputs that take it."""

from __future__ import annotations

import threading
import time

from carbonfast.compat.codecarbon.external.logger import logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# The shortest period of live updates (CodeCarbon measures no more often either).
_MIN_LIVE_PERIOD_S = 0.05


class _LiveUpdates:
    """The live-update thread of one tracker, started and stopped with its run."""

    def __init__(self) -> None:
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, tick: Callable[[bool], None], period_s: float, interval: int) -> None:
        """Calls tick(send) every `period_s` seconds, 50 ms at the least (send: at every
        `interval`-th)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_live_loop,
            # CodeCarbon takes 0 (as often as it can): no less than its own 50 ms between
            # measurements, rather than a loop that spins.
            args=(self._stop, max(_MIN_LIVE_PERIOD_S, float(period_s)), interval, tick),
            name="codecarbon-live",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        thread, stop = self._thread, self._stop
        self._thread = self._stop = None
        if thread is not None and stop is not None:
            stop.set()
            if thread is not threading.current_thread():
                # An output's live_out() in progress is given time to finish (theirs are
                # bounded by their own timeouts); one that hangs does not hold up stop().
                thread.join(timeout=60)
                if thread.is_alive():
                    logger.warning("a live update is still running after 60 s; stopping without it")


def _live_loop(
    stop: threading.Event, period_s: float, interval: int, tick: Callable[[bool], None]
) -> None:
    every = max(1, int(interval))
    ticks = 0
    deadline = time.monotonic() + period_s
    while not stop.wait(max(0.0, deadline - time.monotonic())):
        deadline += period_s
        now = time.monotonic()
        if deadline < now:  # held up longer than a period: on from now
            deadline = now + period_s
        ticks += 1
        try:
            tick(ticks % every == 0)
        except Exception as e:
            logger.error(f"live update failed: {e!r}; the run goes on", exc_info=True)
