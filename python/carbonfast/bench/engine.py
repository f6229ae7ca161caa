"""Energy microbenchmarks: which variant of a function costs less energy per call, and by how
much, with confidence intervals.

How a sample is taken. The counters refresh in steps (RAPL about every millisecond, NVML every
10 to 100 ms), so a window that starts or ends between two refreshes misplaces up to one step
of energy. Each sample therefore
  1. waits for the counter to change (an edge), runs the calls, then waits for the next edge, so
     both readings are fresh;
  2. subtracts the energy spent waiting for the second edge, at the power of the waiting loop,
     measured at start-up;
  3. runs enough calls that a sample spans many refreshes (calibrated per variant).
Variants are interleaved (A B A B ...) so that drift (temperature, frequency, other load)
falls on all of them alike; warm-up calls are never measured.
"""

from __future__ import annotations

import itertools
import os
import time

from carbonfast.bench import stats
from carbonfast.bench.result import VariantResult

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from carbonfast.measure import Meter

    Variants = dict[str, Callable[..., Any]]

# CLOCK_MONOTONIC, the clock the meter stamps its readings with.
clock = time.monotonic


class MeterReader:
    """(time, cumulative total joules) from a Meter, for the engine."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self._native = meter._native
        self._base = self._native.read()
        if not any(d.counts_in_total for d in meter.domains):
            raise ValueError(
                "cf.bench needs energy to compare, and this meter reads none; see "
                "`carbonfast info`, or leave estimation on (estimate=True)"
            )

    def read(self) -> tuple[float, float]:
        snap = self._native.read()
        w = self._native.window(self._base, snap)
        return snap.t_ns * 1e-9, w.total_j or 0.0


def update_period(read: Callable[[], tuple[float, float]], limit_s: float = 0.3) -> float:
    """The counter's refresh period, from the intervals between changes seen while polling;
    0 for a counter that changes on every read (a model, or a fast counter)."""
    changes: list[float] = []
    reads = 0
    _, last = read()
    start = clock()
    while clock() - start < limit_s and len(changes) < 12:
        t, e = read()
        reads += 1
        if e != last:
            changes.append(t)
            last = e
    if len(changes) >= reads * 0.5:
        return 0.0  # it changes (almost) every read: no steps to synchronise on
    if len(changes) < 3:
        return limit_s  # hardly moves: treat as very coarse
    gaps = sorted(b - a for a, b in itertools.pairwise(changes))
    return gaps[len(gaps) // 2]


class Engine:
    def __init__(
        self,
        read: Callable[[], tuple[float, float]],
        sync: Callable[[], object] | None,
        period_s: float | None = None,
    ) -> None:
        self.read = read
        self.sync = sync
        self.period = update_period(read) if period_s is None else period_s
        self.wait_power = self._wait_power() if self.period > 0 else 0.0

    def edge(self) -> tuple[float, float]:
        """Waits for the counter to change; returns the time and energy of the change."""
        _, e0 = self.read()
        deadline = clock() + max(10 * self.period, 0.05)
        while True:
            t, e = self.read()
            if e != e0 or clock() > deadline:
                return t, e

    def _wait_power(self) -> float:
        """Power drawn while waiting for edges, from a stretch of nothing but waiting."""
        t0, e0 = self.edge()
        t1, e1 = t0, e0
        while t1 - t0 < max(0.1, 20 * self.period):
            t1, e1 = self.edge()
        return (e1 - e0) / (t1 - t0) if t1 > t0 else 0.0

    def sample(self, call: Callable[[], object], n: int) -> tuple[float, float]:
        """(joules, seconds) of `n` calls."""
        sync = self.sync
        if self.period > 0:
            _, e_a = self.edge()
        else:
            _, e_a = self.read()
        start = clock()
        for _ in range(n):
            call()
        if sync is not None:
            sync()
        end = clock()
        if self.period > 0:
            t_b, e_b = self.edge()
            # The second edge came after the calls ended; that wait is not theirs.
            return e_b - e_a - self.wait_power * max(0.0, t_b - end), end - start
        _, e_b = self.read()
        return e_b - e_a, end - start

    def calibrate(self, call: Callable[[], object], target_s: float) -> int:
        """Calls per sample so that a sample lasts about `target_s`."""
        n = 1
        while True:
            start = clock()
            for _ in range(n):
                call()
            if self.sync is not None:
                self.sync()
            elapsed = clock() - start
            if elapsed >= target_s / 4 or n >= 1 << 30:
                return max(1, int(n * target_s / max(elapsed, 1e-9)))
            n *= 4


def run(
    variants: Variants,
    *,
    read: Callable[[], tuple[float, float]],
    args: tuple = (),
    kwargs: dict[str, Any] | None = None,
    min_time: float = 2.0,
    rounds: int | None = None,
    warmup: float = 0.1,
    sync: Callable[[], object] | None = None,
    baseline: bool = False,
    period_s: float | None = None,
) -> dict[str, Any]:
    """Benchmarks every variant; returns the raw samples and what was measured at start-up."""
    kwargs = kwargs or {}
    calls = {name: _bind(f, args, kwargs) for name, f in variants.items()}
    engine = Engine(read, sync, period_s)
    target = max(0.005, 25 * engine.period)
    for call in calls.values():
        end = clock() + warmup
        while clock() < end:
            call()
    n = {name: engine.calibrate(call, target) for name, call in calls.items()}
    idle_w = _idle_power(read, max(0.2, 10 * engine.period)) if baseline else None
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    started = clock()
    done = 0
    while True:
        for name, call in calls.items():
            samples[name].append(engine.sample(call, n[name]))
        done += 1
        if rounds is not None:
            if done >= rounds:
                break
        elif done >= 5 and clock() - started >= min_time:
            break
    return {
        "samples": samples,
        "calls_per_sample": n,
        "update_period_s": engine.period,
        "wait_power_w": engine.wait_power,
        "idle_power_w": idle_w,
    }


def _bind(f: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Callable[[], Any]:
    if not args and not kwargs:
        return f
    return lambda: f(*args, **kwargs)


def _idle_power(read: Callable[[], tuple[float, float]], seconds: float) -> float:
    t0, e0 = read()
    time.sleep(seconds)
    t1, e1 = read()
    return (e1 - e0) / (t1 - t0)


def summarise(raw: dict[str, Any], names: list[str]) -> list[VariantResult]:
    out = []
    for name in names:
        per_call = raw["calls_per_sample"][name]
        joules = [e / per_call for e, _ in raw["samples"][name]]
        seconds = [s / per_call for _, s in raw["samples"][name]]
        j, j_lo, j_hi = stats.mean_ci(joules)
        s, s_lo, s_hi = stats.mean_ci(seconds)
        dynamic = None
        if raw["idle_power_w"] is not None:
            dyn = [jj - raw["idle_power_w"] * ss for jj, ss in zip(joules, seconds, strict=True)]
            dynamic = stats.mean_ci(dyn)
        out.append(
            VariantResult(
                name=name,
                seconds_per_call=s,
                seconds_per_call_ci=(s_lo, s_hi),
                joules_per_call=j,
                joules_per_call_ci=(j_lo, j_hi),
                dynamic_joules_per_call=dynamic[0] if dynamic else None,
                dynamic_joules_per_call_ci=(dynamic[1], dynamic[2]) if dynamic else None,
                samples=len(joules),
                calls_per_sample=per_call,
                outliers=stats.outliers(joules),
                cv=stats.cv(joules),
                joule_samples=joules,
            )
        )
    best = min(out, key=lambda v: v.joules_per_call)
    for v in out:
        v.ratio, lo, hi = stats.ratio_ci(v.joule_samples, best.joule_samples)
        v.ratio_ci = (lo, hi)
        v.significant = v is not best and lo > 1.0
    return out


def isolated(variants: Variants, **kw: Any) -> dict[str, Any]:
    """Runs each variant alone in a forked child process; merges their raw results."""
    import json

    merged: dict[str, Any] = {"samples": {}, "calls_per_sample": {}}
    for name, f in variants.items():
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                raw = run({name: f}, **kw)
                os.write(w, json.dumps(raw).encode())
            finally:
                os._exit(0)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 1 << 16):
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        if not chunks:
            raise RuntimeError(f"the process benchmarking {name!r} died before reporting")
        raw = json.loads(b"".join(chunks))
        merged["samples"][name] = raw["samples"][name]
        merged["calls_per_sample"][name] = raw["calls_per_sample"][name]
        for key in ("update_period_s", "wait_power_w", "idle_power_w"):
            merged[key] = raw[key]
    return merged
