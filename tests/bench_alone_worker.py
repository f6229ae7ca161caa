"""cf.bench on the slow RAPL fake (tests/fakes/slow_rapl.py), in the child process that the fake
is loaded into; prints what cf.bench found beside the truth, as JSON on stdout.

    python tests/bench_alone_worker.py '{"busy400": ["busy", 400e-6]}' [MIN_TIME]

Each variant is ["busy", t] (t seconds of this thread's CPU time, however the scheduler shares
the CPU) or ["sleep", t]. The truth of a variant is taken as `timeit` takes a bare call's time,
before and after cf.bench, from runs of calls timed alone: the wall time per call, and this
thread's CPU time per call, which the fake charges at CPU_W on top of IDLE_W.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import carbonfast as cf
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


def main() -> None:
    spec = json.loads(sys.argv[1])
    min_time = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    calls = {name: make(kind, float(t)) for name, (kind, t) in spec.items()}
    nowhere = Path(tempfile.mkdtemp()) / "nowhere"
    meter = cf.Meter(msr_root=nowhere, perf_root=nowhere, estimate=False, history="off")
    for call in calls.values():
        bare(call, 0.05)  # warm-up
    totals = {name: [0.0, 0.0, 0] for name in calls}

    def measure_bare() -> None:
        for _ in range(2):  # interleaved, so that the machine's load weighs on all alike
            for name, call in calls.items():
                wall, cpu, n = bare(call)
                t = totals[name]
                t[0], t[1], t[2] = t[0] + wall, t[1] + cpu, t[2] + n

    measure_bare()
    res = cf.bench(calls, meter=meter, min_time=min_time, record=False)
    measure_bare()
    out = {}
    for name in calls:
        wall, cpu, n = totals[name]
        v = res[name]
        out[name] = {
            "bare_s": wall / n,
            "bare_cpu_s": cpu / n,
            "truth_j": IDLE_W * wall / n + CPU_W * cpu / n,
            "seconds_per_call": v.seconds_per_call,
            "joules_per_call": v.joules_per_call,
            "joules_per_call_ci": list(v.joules_per_call_ci),
            "samples": v.samples,
        }
    out["_update_period_s"] = res.update_period_s  # type: ignore[assignment]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
