"""cf.bench against the truth as a read of the counter costs more: ~0, 20, 100 and 300 us.

The counter is the test suite's slow RAPL package (tests/fakes/slow_rapl.c, LD_PRELOADed into a
child process per read cost): 10 W + 40 W per busy CPU of the benchmarking process, refreshed
every millisecond, each read of energy_uj spent busy for the read cost (a FUSE file, a slow
hwmon sensor, an ACPI power meter). For each read cost, a 400 us and a 50 us busy call and a
400 us sleep: seconds and joules per call from cf.bench beside the truth, the calls that its
samples held, each timed inside itself (wall and CPU time, charged at 10 W and 40 W); the bare
call as `timeit` times it is shown beside.

    python benches/bench_read_cost.py [--costs 0,20,100,300] [--min-time 1.0] [--busy 2]

--busy N runs N busy loops beside it, for the figures on a busy machine.

PYTHONPATH, if set, is passed on, so that another checkout of the package can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.slow_rapl import slow_rapl_env  # noqa: E402

VARIANTS = {
    "busy 400us": ["busy", 400e-6],
    "busy 50us": ["busy", 50e-6],
    "sleep 400us": ["sleep", 400e-6],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--costs", default="0,20,100,300", help="read costs, us")
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--busy", type=int, default=0, help="busy loops to run beside")
    args = ap.parse_args()
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        rows = measure(args)
    finally:
        for loop in loops:
            loop.kill()
    print(
        f"cf.bench against the truth by read cost ({os.cpu_count()} CPUs, "
        f"{args.busy} busy loops beside)"
    )
    print(
        "| read cost | refresh seen | call | bare us/call | truth us/call "
        "| cf.bench us/call (error) | truth mJ/call | cf.bench mJ/call (error) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


def measure(args: argparse.Namespace) -> list[str]:
    rows = []
    for cost in [float(x) for x in args.costs.split(",")]:
        env = slow_rapl_env(Path(tempfile.mkdtemp()) / "sys", delay_us=cost)
        env["PYTHONPATH"] = os.environ.get("PYTHONPATH") or str(ROOT / "python")
        r = subprocess.run(
            [
                sys.executable,
                str(ROOT / "tests" / "bench_alone_worker.py"),
                json.dumps(VARIANTS),
                str(args.min_time),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            sys.exit(r.stderr)
        found = json.loads(r.stdout)
        period = found.pop("_update_period_s")
        for name, v in found.items():
            rows.append(
                f"| {cost:g} us | {period * 1e3:.2f} ms | {name} "
                f"| {v['bare_s'] * 1e6:.1f} | {v['own_s'] * 1e6:.1f} "
                f"| {v['seconds_per_call'] * 1e6:.1f} ({v['time_ratio'] - 1:+.1%}) "
                f"| {v['own_j'] * 1e3:.4f} | {v['joules_per_call'] * 1e3:.4f} "
                f"({v['energy_ratio'] - 1:+.1%}) |"
            )
    return rows


if __name__ == "__main__":
    main()
