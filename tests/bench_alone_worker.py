"""cf.bench on the slow RAPL fake (tests/fakes/slow_rapl.py), in the child process that the fake
is loaded into; prints what cf.bench found beside the truth, as JSON on stdout.

    python tests/bench_alone_worker.py '{"busy400": ["busy", 400e-6]}' [MIN_TIME]

Each variant is ["busy", t] (t seconds of this thread's CPU time, however the scheduler shares
the CPU) or ["sleep", t]. The truth of a variant is taken as `timeit` takes a bare call's time,
from runs of calls timed alone in turns with runs of cf.bench: the wall time per call, and this
thread's CPU time per call, which the fake charges at CPU_W on top of IDLE_W.
"""

from __future__ import annotations

import json
import statistics
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


def timed(call: Callable[[], None], acc: list) -> Callable[[], None]:
    """`call`, adding its own wall and thread CPU seconds and one call to `acc` each time."""

    def run() -> None:
        w0, c0 = time.perf_counter(), time.thread_time()
        call()
        acc[0] += time.perf_counter() - w0
        acc[1] += time.thread_time() - c0
        acc[2] += 1

    return run


def main() -> None:
    spec = json.loads(sys.argv[1])
    min_time = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    calls = {name: make(kind, float(t)) for name, (kind, t) in spec.items()}
    nowhere = Path(tempfile.mkdtemp()) / "nowhere"
    meter = cf.Meter(msr_root=nowhere, perf_root=nowhere, estimate=False, history="off")
    for call in calls.values():
        bare(call, 0.05)  # warm-up
    totals: dict[str, list[float]] = {name: [0.0, 0.0, 0.0] for name in calls}
    found: dict[str, list[tuple[float, float, int]]] = {name: [] for name in calls}
    # Per turn and variant: cf.bench's figures over the calls' own, timed inside them.
    ratios: dict[str, list[tuple[float, float]]] = {name: [] for name in calls}
    # Bare runs (timeit's figure, reported beside) and cf.bench in turns; each turn of cf.bench
    # is compared with its calls' own time, and the median turn is the result.
    chunks = 6
    period = 0.0
    for _ in range(chunks):
        for name, call in calls.items():
            wall, cpu, n = bare(call, 0.05)
            t = totals[name]
            t[0], t[1], t[2] = t[0] + wall, t[1] + cpu, t[2] + n
        # The calls' own time during this turn of cf.bench, timed inside each call: the truth
        # each figure is compared with, taken under the same load as the figure itself.
        own = {name: [0.0, 0.0, 0] for name in calls}
        res = cf.bench(
            {name: timed(call, own[name]) for name, call in calls.items()},
            meter=meter,
            min_time=min_time / chunks,
            record=False,
        )
        period = res.update_period_s
        for name in calls:
            v = res[name]
            found[name].append((v.seconds_per_call, v.joules_per_call, v.samples))
            wall, cpu, n = own[name]
            s_own, j_own = wall / n, (IDLE_W * wall + CPU_W * cpu) / n
            ratios[name].append((v.seconds_per_call / s_own, v.joules_per_call / j_own))
    out = {}
    for name in calls:
        wall, cpu, count = totals[name]
        runs = found[name]
        weight = sum(k for _, _, k in runs)
        out[name] = {
            "bare_s": wall / count,
            "bare_cpu_s": cpu / count,
            "truth_j": IDLE_W * wall / count + CPU_W * cpu / count,
            "seconds_per_call": sum(s * k for s, _, k in runs) / weight,
            "joules_per_call": sum(j * k for _, j, k in runs) / weight,
            "samples": weight,
            "time_ratio": statistics.median(r for r, _ in ratios[name]),
            "energy_ratio": statistics.median(r for _, r in ratios[name]),
        }
    out["_update_period_s"] = period  # type: ignore[assignment]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
