"""Measurement windows: `measure` and `track`, the `Window` they make (a context manager or a
function decorator), and the kinds of window: attributed to a scope, or gathered across a
distributed job."""

from __future__ import annotations

import functools
import threading

from carbonfast import _native
from carbonfast.decorator import CallStats, is_lazy, resolve_sync, wrap_lazy
from carbonfast.measurement import AttributedMeasurement, DistributedMeasurement, Measurement
from carbonfast.meter import default_distributed_meter, default_meter, maybe_in_job

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, Literal, TypeVar, overload

    from carbonfast.meter import Meter

    F = TypeVar("F", bound=Callable[..., Any])
    Sync = str | Callable[[], object] | None
    Distributed = bool | Literal["auto"] | None


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
        meter_of = default_distributed_meter if self._is_forced() else default_meter

        if is_lazy(func):
            import contextlib

            @contextlib.contextmanager
            def window() -> Iterator[None]:
                meter = fixed_meter or meter_of()
                if sync is not None:
                    sync()
                cls = DistributedMeasurement if gathered else Measurement
                m = cls(label, meter, meter.native.open_window())
                try:
                    yield
                finally:
                    try:
                        if sync is not None:
                            sync()
                    finally:
                        meter.native.finish(m, keep)
                        if gathered:
                            _gather(m)
                        stats.record(m)

            lazy = wrap_lazy(func, window)
            lazy.energy = stats  # type: ignore[attr-defined]
            return lazy  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            meter = fixed_meter or meter_of()
            native = meter.native
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
        m.read_start(m.meter.attribution(self._scope_name))
        self._open_here.setdefault(threading.get_ident(), []).append(m)
        return m

    def __exit__(self, kind: object, value: object, traceback: object) -> Literal[False]:
        stack = self._open_here.get(threading.get_ident())
        m = stack.pop() if stack else None
        if m is not None:
            m.read_end()
        super().__exit__(kind, value, traceback)
        return False

    def __call__(self, func: F) -> F:
        if is_lazy(func):
            # A window of its own for each call: calls that interleave on one thread (tasks
            # of one event loop, generators iterated by turns) close their own windows.
            def fresh() -> Window:
                return attributed_window(
                    self.label, self._meter, self._sync, self._keep, self._scope_name
                )

            return wrap_lazy(func, fresh)  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def checked_scope(scope: str) -> str:
    from carbonfast.attribution import SCOPES

    if scope in SCOPES[:-1] or (scope.startswith("cgroup:") and len(scope) > len("cgroup:")):
        return scope
    raise ValueError(f"attribute={scope!r} is not valid; expected off, {', '.join(SCOPES)}")


def attributed_window(
    label: str | None, meter: Meter | None, sync: Sync, keep: bool, scope: str
) -> Window:
    w = _AttributedWindow(
        label, meter, resolve_sync(sync), AttributedMeasurement, default_meter, keep
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
    if isinstance(m, DistributedMeasurement):
        m.gather()


class _ForcedJobWindow(_JobWindow):
    """distributed=True without a meter: the default distributed meter's window."""

    __slots__ = ()

    def _is_forced(self) -> bool:
        return True


def make_window(
    label: str | None,
    meter: Meter | None,
    sync: Sync,
    keep: bool = False,
    distributed: bool | str | None = None,
) -> Window:
    """A window; one gathered to rank 0 where it may belong to a distributed job."""
    resolved = resolve_sync(sync)
    if distributed is None or distributed == "auto":
        if meter is not None and meter.job is None:
            return Window(label, meter, resolved, Measurement, default_meter, keep)
        if meter is None and not maybe_in_job():
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
            label, None, resolved, DistributedMeasurement, default_distributed_meter, keep
        )
    if meter.job is None:
        raise ValueError(
            "distributed=True, but this meter is not distributed: create it with "
            "cf.Meter(distributed=True), or leave meter out"
        )
    return _JobWindow(label, meter, resolved, DistributedMeasurement, default_meter, keep)


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
        scope = checked_scope(attribute)
        if callable(label):
            return attributed_window(None, meter, sync, keep, scope)(label)
        return attributed_window(label, meter, sync, keep, scope)
    if callable(label):
        return make_window(None, meter, sync, keep, distributed)(label)
    return make_window(label, meter, sync, keep, distributed)


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
    window = make_window(label, meter, sync, keep, distributed)
    return window(func) if func is not None else window
