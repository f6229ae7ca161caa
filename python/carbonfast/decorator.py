"""What decorating a function with a window needs: `CallStats` (a tracked function's running
totals), `resolve_sync` (waiting for a device's queued work) and the wrapping of coroutine and
generator functions, whose work runs after the call that makes them."""

from __future__ import annotations

import functools
import threading

from carbonfast.measurement import DistributedMeasurement

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from carbonfast.measurement import Measurement


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
            end_ns = m.end_ns
            self.duration_s += (end_ns - m.start_ns) * 1e-9 if end_ns is not None else 0.0
            self.last = m
            self._pending.append(m)
            if len(self._pending) >= 2 * self._FOLD:
                fold, self._pending = self._pending[: self._FOLD], self._pending[self._FOLD :]
        self._fold(fold)

    def _fold(self, ms: list[Measurement]) -> None:
        # On rank 0 of a job, a gathered call counts the whole job's energy.
        energies = [
            m.energy_j if isinstance(m, DistributedMeasurement) else m.window().total_j for m in ms
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

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        from carbonfast.display import pretty

        pretty(self, p, cycle)

    def _repr_html_(self) -> str:
        from carbonfast.display import call_stats_html

        return call_stats_html(self)


def resolve_sync(sync: str | Callable[[], object] | None) -> Callable[[], object] | None:
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


def is_lazy(func: Callable[..., Any]) -> bool:
    """Whether calling `func` only makes the object that runs it later: a coroutine, a
    generator or an asynchronous generator."""
    import inspect

    return (
        inspect.iscoroutinefunction(func)
        or inspect.isgeneratorfunction(func)
        or inspect.isasyncgenfunction(func)
    )


def wrap_lazy(func: Callable[..., Any], window: Callable[[], Any]) -> Callable[..., Any]:
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
