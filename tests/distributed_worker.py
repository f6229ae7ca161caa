"""One rank of the distributed tests (tests/test_distributed.py), started by mpirun or by
torch.multiprocessing.

Two simulated hosts, a and b, each with a fake powercap tree: the first rank of each host
advances its host's counters by a declared number of joules inside the window, between two
barriers (so every rank's window is open), so the job's true energy is exact whatever the
scheduler does: the sum of the two hosts' declared joules. A meter that measured the host on
every rank would report twice that.

    python tests/distributed_worker.py windows OUT   (under mpirun, in-process windows)
    python tests/distributed_worker.py child          (the command of `carbonfast run`)
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Joules each host's counters advance by in each window: package and DRAM.
JOULES = {
    "a": {"intel-rapl:0": 30.0, "intel-rapl:0:0": 5.0},
    "b": {"intel-rapl:0": 50.0, "intel-rapl:0:0": 8.0},
}
# The rank that is late in the window "late", and by how long past the timeout.
LATE_RANK = 2
LATE_BY_S = 2.0


def add_joules(powercap_root: str, zone: str, joules: float) -> None:
    """Advances a fake counter in place, as the kernel does under an open descriptor."""
    path = Path(powercap_root) / zone / "energy_uj"
    with open(path, "r+b") as f:
        value = int(f.read()) + round(joules * 1e6)
        f.seek(0)
        f.write(f"{value}\n".encode())
        f.truncate()


def advance_host(host: str, root: str) -> None:
    for zone, joules in JOULES[host].items():
        add_joules(root, zone, joules)


def scenario(
    meter: Any, rank: int, first_of_host: bool, barrier: Callable[[], None], timeout_s: float
) -> dict[str, Any]:
    """Three windows on every rank: complete, one rank late past the timeout, complete
    again. Returns what this rank saw of each."""
    host = os.environ["CARBONFAST_HOST_ID"]
    root = os.environ["CARBONFAST_POWERCAP_ROOT"]
    job = meter.job
    out: dict[str, Any] = {
        "rank": rank,
        "host": host,
        "domains": meter.domain_names,
        "measures_host": job.measures_host,
        "engine": job.engine,
        "job_id": job.job_id,
        "windows": {},
    }
    for label in ("complete", "late", "after"):
        barrier()
        with meter.measure(label) as m:
            barrier()
            if first_of_host:
                advance_host(host, root)
            barrier()
            if label == "late" and rank == LATE_RANK:
                time.sleep(timeout_s + LATE_BY_S)
            t0 = time.monotonic()
        closed_s = time.monotonic() - t0
        out["windows"][label] = {
            "energy_j": m.energy_j,
            "close_s": closed_s,
            "missing": m.missing,
            "hosts": None if m.hosts is None else {h: p.to_dict() for h, p in m.hosts.items()},
            "ranks": None if m.ranks is None else sorted(m.ranks),
            "notes": m.notes,
            "record": m.record().to_dict(),
            "own_j": m.local().energy_j,
        }
    return out


def other_windows(
    meter: Any, first_of_host: bool, barrier: Callable[[], None]
) -> dict[str, float | None]:
    """The other ways to open a window, each gathered: the default meter (made on first use,
    on every rank), a tracked function, begin and end. Rank 0's job totals."""
    import carbonfast as cf

    host = os.environ["CARBONFAST_HOST_ID"]
    root = os.environ["CARBONFAST_POWERCAP_ROOT"]

    def work() -> None:
        barrier()
        if first_of_host:
            advance_host(host, root)
        barrier()

    barrier()
    with cf.measure("default meter") as m:
        work()
    tracked = cf.track(work, meter=meter)
    barrier()
    tracked()
    barrier()
    meter.begin("named")
    work()
    named = meter.end("named")
    return {
        "default meter": m.energy_j,
        "tracked": tracked.energy.energy_j,  # type: ignore[attr-defined]
        "named": named.energy_j,
    }


def main_windows(out_dir: str) -> None:
    from mpi4py import MPI

    import carbonfast as cf

    comm = MPI.COMM_WORLD
    timeout_s = float(os.environ["CARBONFAST_DISTRIBUTED_TIMEOUT_S"])
    comm.Barrier()
    meter = cf.Meter(history="off")
    first = int(os.environ["OMPI_COMM_WORLD_LOCAL_RANK"]) == 0
    result = scenario(meter, comm.Get_rank(), first, comm.Barrier, timeout_s)
    result["other"] = other_windows(meter, first, comm.Barrier)
    Path(out_dir, f"rank{comm.Get_rank()}.json").write_text(json.dumps(result))
    comm.Barrier()


def main_child() -> None:
    """The command `carbonfast run` measures on each rank: the first rank of each host does
    its host's work while every rank's run is under way."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    comm.Barrier()
    if int(os.environ["OMPI_COMM_WORLD_LOCAL_RANK"]) == 0:
        advance_host(os.environ["CARBONFAST_HOST_ID"], os.environ["CARBONFAST_POWERCAP_ROOT"])
    comm.Barrier()


def torch_rank(rank: int, world: int, init_method: str, trees: str, out_dir: str) -> None:
    """One rank of the torch.distributed test (gloo, a TCP store as torchrun's), started by
    torch.multiprocessing."""
    host = "a" if rank < world // 2 else "b"
    os.environ["CARBONFAST_HOST_ID"] = host
    os.environ["CARBONFAST_POWERCAP_ROOT"] = str(Path(trees, host, "class", "powercap"))
    os.environ["CARBONFAST_DISTRIBUTED_TIMEOUT_S"] = "3"
    import torch.distributed as dist

    import carbonfast as cf

    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    meter = cf.Meter(history="off")
    first = rank % (world // 2) == 0
    result = scenario(meter, rank, first, dist.barrier, 3.0)
    result["other"] = other_windows(meter, first, dist.barrier)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    if sys.argv[1] == "windows":
        main_windows(sys.argv[2])
    elif sys.argv[1] == "child":
        main_child()
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")
