"""What closing a distributed window costs, on 4 local ranks under MPI.

    mpirun --oversubscribe -n 4 python benches/distributed_window.py [--windows N]

Two simulated hosts (CARBONFAST_HOST_ID set per rank: ranks 0 and 1 on host a, 2 and 3 on host
b), each with a fake powercap tree of 3 domains on tmpfs, so ranks 0 and 2 measure their host
and ranks 1 and 3 nothing (no GPU). Each round, the ranks leave an MPI barrier together (as
after a training step's all-reduce), open a window and close it; the close is timed:

  - a distributed window: each rank builds its part, ranks 1-3 send it to rank 0 (isend), and
    rank 0 receives the three parts (iprobe and recv, polled) and merges them;
  - the same meter's window with distributed=False, local only, for scale.

Rank 0's figure includes waiting for the last part to arrive, so it also holds the ranks'
skew leaving the barrier, which on an oversubscribed machine is the scheduler's. The CPU cost
alone (building a part, merging four) is timed separately on rank 0.
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

from mpi4py import MPI  # the program's own MPI, initialised before carbonfast looks for it

from tests.fakes.powercap import three_domain_tree


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=2000, help="windows of each kind")
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    host = "a" if rank < size // 2 else "b"

    shm = Path("/dev/shm")
    base = comm.bcast(tempfile.mkdtemp(dir=shm if shm.is_dir() else None) if rank == 0 else None)
    if rank % (size // 2) == 0:
        three_domain_tree(Path(base, host))
    comm.Barrier()
    os.environ["CARBONFAST_HOST_ID"] = host
    os.environ["CARBONFAST_POWERCAP_ROOT"] = str(Path(base, host, "class", "powercap"))
    os.environ["CARBONFAST_GPU"] = "off"
    os.environ["CARBONFAST_HISTORY"] = "off"

    import carbonfast as cf
    from carbonfast import distributed

    meter = cf.Meter(source="powercap")
    assert meter.job is not None and meter.job.engine == "mpi", meter.job
    gathered: list[float] = []
    local: list[float] = []
    missing = 0
    warmup = min(100, args.windows // 10)
    for i in range(warmup + args.windows):
        comm.Barrier()
        with meter.measure("step") as m:
            t0 = time.perf_counter()
        dt = (time.perf_counter() - t0) * 1e6
        missing += len(getattr(m, "missing", []))
        comm.Barrier()
        with meter.measure("step", distributed=False):
            t1 = time.perf_counter()
        dl = (time.perf_counter() - t1) * 1e6
        if i >= warmup:
            gathered.append(dt)
            local.append(dl)

    # The CPU cost alone, on rank 0: a part, and a merge of four parts.
    cpu: dict[str, float] = {}
    if rank == 0:
        with meter.measure("step", distributed=False) as m:
            pass
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            part = distributed.rank_part(m, meter.job)
        cpu["part"] = (time.perf_counter() - t0) / n * 1e6
        parts = {r: part for r in range(size)}
        t0 = time.perf_counter()
        for _ in range(n):
            distributed.merge(meter.job, parts, "step")
        cpu["merge"] = (time.perf_counter() - t0) / n * 1e6

    results = comm.gather((rank, host, meter.job.measures_host, gathered, local), root=0)
    if rank != 0:
        return
    assert missing == 0, f"{missing} parts missing: the timings are not of complete windows"
    print(
        f"{size} ranks on one machine ({os.cpu_count()} CPUs, {platform.machine()}, Python "
        f"{platform.python_version()}, {MPI.Get_library_version().split(',')[0]}), "
        f"{args.windows} windows of each kind, close timed in µs"
    )
    print("| rank | host | measures | distributed: median / p90 / p99 | local: median |")
    print("| ---: | --- | --- | --- | ---: |")
    for r, h, measures, g, loc in results:
        what = "host (3 domains)" if measures else "nothing"
        print(
            f"| {r} | {h} | {what} | {statistics.median(g):.0f} / {pct(g, 0.9):.0f} / "
            f"{pct(g, 0.99):.0f} | {statistics.median(loc):.1f} |"
        )
    print(
        f"rank 0 CPU alone: a part {cpu['part']:.1f} µs, a merge of {size} parts "
        f"{cpu['merge']:.1f} µs"
    )


if __name__ == "__main__":
    main()
