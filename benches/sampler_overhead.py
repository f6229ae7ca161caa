"""What the sampler thread costs, and what a window costs on each RAPL path, in one run.

On fake RAPL trees on tmpfs with 4 domains (package, core, uncore, dram) this prints:
  - the CPU time of the sampler thread at 100 Hz and 1 kHz, as a share of one core
    (budget: under 1% at 1 kHz), with missed deadlines, beside a thread that only sleeps to
    the same deadlines: the platform's wakeup cost, which no sleeping sampler can go below
    (on virtual machines it alone can exceed the budget);
  - the median cost of one `cf.measure()` window on each source path available here.
The fakes make reads as cheap as reads get, so what shows is carbonfast's own cost.

    python benches/sampler_overhead.py [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import carbonfast as cf
from carbonfast import _native
from tests.fakes.msr import INTEL_DRAM, INTEL_PKG, INTEL_PP0, INTEL_UNIT, UNIT_ESU_14, FakeMsr
from tests.fakes.powercap import FakePowercap


def four_domain_tree(base: Path) -> FakePowercap:
    fake = FakePowercap(base)
    fake.zone("intel-rapl:0", "package-0", 1_000_000)
    fake.zone("intel-rapl:0:0", "core", 500_000)
    fake.zone("intel-rapl:0:1", "uncore", 100_000)
    fake.zone("intel-rapl:0:2", "dram", 200_000)
    return fake


def sampler_share(root: Path, hz: float, seconds: float) -> tuple[float, int, int]:
    meter = cf.Meter(root, sample_hz=hz, source="powercap", gpu=False)
    time.sleep(0.2)  # let it settle
    before = meter.sampler_stats
    t0 = time.monotonic()
    time.sleep(seconds)
    after = meter.sampler_stats
    wall = time.monotonic() - t0
    share = (after.cpu_s - before.cpu_s) / wall
    return share, after.samples - before.samples, after.missed - before.missed


def window_ns(meter: cf.Meter, batches: int = 31, ops: int = 2000) -> float:
    samples = []
    m = meter.measure
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        for _ in range(ops):
            with m():
                pass
        samples.append((time.perf_counter_ns() - t0) / ops)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0, help="per sampling rate")
    args = ap.parse_args()
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else None))
    fake = four_domain_tree(base / "sys")

    print(
        f"carbonfast {cf.__version__} sampler overhead, {platform.machine()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print(f"fake powercap tree on {'tmpfs' if shm.is_dir() else base}, 4 domains\n")
    print(
        f"{'rate':<10}{'reads':>8}{'missed':>8}{'sampler CPU':>14}{'bare sleep loop':>17}"
        f"{'sampler - sleep':>17}   (% of one core)"
    )
    for hz in (100, 1000):
        share, reads, missed = sampler_share(fake.root, hz, args.seconds)
        cpu_ns, wall_ns = _native.time_sleep_loop(hz, args.seconds)
        floor = cpu_ns / wall_ns
        verdict = ""
        if hz == 1000:
            verdict = "  PASS (< 1%)" if share < 0.01 else "  over the 1% budget"
        print(
            f"{hz:>6} Hz{reads:>8}{missed:>8}{share:>14.3%}{floor:>17.3%}{share - floor:>17.3%}"
            f"{verdict}"
        )

    msr = FakeMsr(base / "msr", packages=[0])
    for register, value in ((INTEL_UNIT, UNIT_ESU_14), (INTEL_PKG, 1), (INTEL_PP0, 1)):
        msr.set(0, register, value)
    msr.set(0, INTEL_DRAM, 1)
    msr.set(0, 0x641, 1)  # PP1 (uncore)
    print(f"\n{'window on each path (enter + exit)':<44}{'domains':>8}{'ns':>10}")
    for label, meter in (
        (
            "powercap (fake sysfs files)",
            cf.Meter(fake.root, source="powercap", gpu=False, history="off"),
        ),
        (
            "msr (fake /dev/cpu/0/msr, sparse file)",
            cf.Meter(source="msr", gpu=False, history="off", **msr.meter_args()),
        ),
    ):
        print(f"{label:<44}{len(meter.domains):>8}{window_ns(meter):>10.0f}")
    print("perf: the power PMU cannot be faked below the syscall; not measured on this machine")


if __name__ == "__main__":
    main()
