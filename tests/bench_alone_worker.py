"""cf.bench on the slow RAPL fake (tests/fakes/slow_rapl.py), in the child process that the fake
is loaded into; prints what cf.bench found beside the truth, as JSON on stdout.

    python tests/bench_alone_worker.py '{"busy400": ["busy", 400e-6]}' [MIN_TIME]

Each variant is ["busy", t] (t seconds of this thread's CPU time, however the scheduler shares
the CPU) or ["sleep", t]. Each call is timed inside itself (wall time, and this thread's CPU
time, which the fake charges at CPU_W on top of IDLE_W); the truth of a cf.bench sample is the
calls it held, so that the figure and its truth are taken under the same load. The bare call
timed after cf.bench, as `timeit` times it, is reported beside (bare_*).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import carbonfast as cf
from carbonfast.bench import engine
from tests.fakes.counter import busy
from tests.fakes.slow_rapl import CPU_W, IDLE_W


def make(kind: str, seconds: float) -> Callable[[], None]:
    if kind == "busy":
        return lambda: busy(seconds)
    if kind == "sleep":
        return lambda: time.sleep(seconds)
    raise ValueError(kind)


def bare(call: Callable[[], object], seconds: float = 0.15) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, calls) of calls back to back, timed as timeit times them."""
    n = 1
    while True:
        w0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(n):
            call()
        wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
        if wall >= seconds:
            return wall, cpu, n
        n = max(n * 2, int(n * seconds / max(wall, 1e-9)) + 1)


def timed(call: Callable[[], None], log: list[tuple[float, float, float]]) -> Callable[[], None]:
    """`call`, logging (start, end, thread CPU seconds) of each call, on cf.bench's clock."""

    def run() -> None:
        w0, c0 = time.monotonic(), time.thread_time()
        call()
        log.append((w0, time.monotonic(), time.thread_time() - c0))

    return run


def held(log: list[tuple[float, float, float]], t1: float, t2: float) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, calls) of the logged calls inside [t1, t2], a call that
    straddles an edge counted by the part of it inside."""
    wall = cpu = calls = 0.0
    for a, b, c in log:
        if b <= t1 or a >= t2 or b <= a:
            continue
        part = (min(b, t2) - max(a, t1)) / (b - a)
        wall, cpu, calls = wall + part * (b - a), cpu + part * c, calls + part
    return wall, cpu, calls


def main() -> None:
    spec = json.loads(sys.argv[1])
    min_time = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    calls = {name: make(kind, float(t)) for name, (kind, t) in spec.items()}
    nowhere = Path(tempfile.mkdtemp()) / "nowhere"
    meter = cf.Meter(msr_root=nowhere, perf_root=nowhere, estimate=False, history="off")
    for call in calls.values():
        bare(call, 0.05)  # warm-up
    # The span of each sample cf.bench takes, in order: the truth of a sample is the calls it
    # held, timed inside themselves, under the same load as the sample.
    spans: list[tuple[float, float]] = []
    sample = engine.Engine.sample

    def spanned(self: engine.Engine, *a: Any, **kw: Any) -> tuple[float, float, float, float]:
        out = sample(self, *a, **kw)
        spans.append(self.last_span)
        return out

    engine.Engine.sample = spanned  # type: ignore[method-assign]
    logs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in calls}
    res = cf.bench(
        {name: timed(call, logs[name]) for name, call in calls.items()},
        meter=meter,
        min_time=min_time,
        record=False,
    )
    # Bare runs, as timeit times them, reported beside.
    totals = {name: bare(call, 0.3) for name, call in calls.items()}
    out: dict[str, Any] = {}
    k = len(calls)
    for i, name in enumerate(calls):
        v = res[name]
        own = [held(logs[name], t1, t2) for t1, t2 in spans[i::k]]
        assert len(own) == v.samples, (len(own), v.samples)
        own_s = statistics.fmean(w / n for w, _, n in own)
        own_j = statistics.fmean((IDLE_W * w + CPU_W * c) / n for w, c, n in own)
        wall, cpu, count = totals[name]
        out[name] = {
            "bare_s": wall / count,
            "bare_cpu_s": cpu / count,
            "bare_j": IDLE_W * wall / count + CPU_W * cpu / count,
            "own_s": own_s,
            "own_j": own_j,
            "seconds_per_call": v.seconds_per_call,
            "joules_per_call": v.joules_per_call,
            "samples": v.samples,
            "time_ratio": v.seconds_per_call / own_s,
            "energy_ratio": v.joules_per_call / own_j,
        }
    out["_update_period_s"] = res.update_period_s
    print(json.dumps(out))


if __name__ == "__main__":
    main()
