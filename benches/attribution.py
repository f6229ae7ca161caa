"""What attribution costs: a window with and without its scope's share, and a run.

On a fake powercap tree with 3 domains on tmpfs, side by side in one run:
  - a `cf.measure()` window, and the same with `attribute="process"` (the process's CPU clock
    and the machine's busy time read at each edge), "thread" and "tree";
  - one read of each scope's CPU time beside the machine's, alone;
  - `carbonfast run -- true` with `--attribute off` and with the default (the command's
    process tree), alternated.

    python benches/attribution.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import carbonfast as cf
from carbonfast import _native
from tests.fakes.powercap import three_domain_tree


def per_op_ns(op, n: int, batches: int) -> float:
    samples = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            op()
        samples.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    quick = ap.parse_args().quick
    n, batches, runs = (300, 9, 6) if quick else (2000, 21, 20)
    os.environ["CARBONFAST_HISTORY"] = "off"
    os.environ["CARBONFAST_GPU"] = "off"
    base = Path(
        tempfile.mkdtemp(prefix="cf-attr-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
    )
    fake = three_domain_tree(base / "sys")
    meter = cf.Meter(fake.root)

    def window(**kw):
        def op() -> None:
            with meter.measure(**kw):
                pass

        return op

    print(f"carbonfast attribution cost, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    probe = _native.Attribution("process")
    print(f"machine busy time from: {probe.method.split(' from ')[-1].split(';')[0]}")
    print()
    print(f"{'per window (enter + exit)':<46}{'ns':>10}{'x plain':>9}")
    plain = per_op_ns(window(), n, batches)
    print(f"{'cf.measure() window':<46}{plain:>10.0f}{1.0:>9.2f}")
    for scope in ("process", "thread", "tree"):
        cost = per_op_ns(window(attribute=scope), n, batches)
        print(f"{'  with attribute=' + repr(scope):<46}{cost:>10.0f}{cost / plain:>9.2f}")
    print()
    print(f"{'one reading of a scope and the machine':<46}{'ns':>10}")
    for scope in ("process", "thread", "tree", "children"):
        a = _native.Attribution(scope)
        print(f"{'  ' + scope:<46}{per_op_ns(a.read, n, batches):>10.0f}")
    print()
    env = {**os.environ, "CARBONFAST_POWERCAP_ROOT": str(fake.root)}
    cli = [sys.executable, "-m", "carbonfast.cli", "run", "--quiet"]
    times: dict[str, list[float]] = {"off": [], "command": []}
    for _ in range(runs):
        for mode in times:
            t0 = time.perf_counter()
            subprocess.run([*cli, "--attribute", mode, "--", "true"], env=env, check=True)
            times[mode].append(time.perf_counter() - t0)
    off, on = statistics.median(times["off"]), statistics.median(times["command"])
    print(f"{'carbonfast run -- true (median of ' + str(runs) + ')':<46}{'ms':>10}")
    print(f"{'  --attribute off':<46}{off * 1e3:>10.1f}")
    print(f"{'  --attribute command (the default)':<46}{on * 1e3:>10.1f}{on / off:>9.2f}")


if __name__ == "__main__":
    main()
