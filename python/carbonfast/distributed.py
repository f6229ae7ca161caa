"""Ranks of a distributed job, and which of them measures what.

A job is found, in this order, from:

1. torch.distributed, when the program has initialised it;
2. MPI through mpi4py, when the process runs under an MPI launcher (mpirun, mpiexec, srun
   with PMI or PMIx): its environment says so before mpi4py is imported, since importing it
   initialises MPI;
3. the launcher's environment alone: torchrun (RANK, WORLD_SIZE, LOCAL_RANK), Open MPI
   (OMPI_COMM_WORLD_*), MPICH and Intel MPI (PMI_RANK, PMI_SIZE, MPI_LOCALRANKID) or Slurm's
   srun (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID).

Every domain is counted once. One rank per host, elected, measures the host's CPU packages
and DRAM (or their estimates); every rank measures the GPUs it uses and no other. With an
engine (torch or MPI) the ranks tell each other their host, and the lowest rank of each host
is elected; with the environment alone, the rank whose local rank is 0 is.

A window closed on every rank of a job with an engine is gathered to rank 0 over the job's own
engine (the key-value store torch.distributed rendezvoused on, or a duplicate of MPI's world
communicator), with non-blocking messages polled until a deadline: a rank that is late or
gone is named as missing, and no window waits longer than the timeout.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass

from carbonfast.job_launch import LAUNCHERS, MPI_MARKERS
from carbonfast.job_launch import Launch as Launch
from carbonfast.job_launch import host_id as host_id
from carbonfast.job_launch import job_id_from_environment as job_id_from_environment
from carbonfast.job_launch import launch_from_environment as launch_from_environment
from carbonfast.job_transport import MpiTransport, TorchTransport, Transport
from carbonfast.job_window import HostPart as HostPart
from carbonfast.job_window import JobWindow as JobWindow
from carbonfast.job_window import RankPart as RankPart
from carbonfast.job_window import listed_ranks
from carbonfast.job_window import merge as merge
from carbonfast.job_window import rank_part as rank_part

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from carbonfast.job_transport import EngineName
    from carbonfast.measurement import Measurement

# How long a gather waits for the other ranks by default, in seconds.
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class _Entry:
    """What each rank tells the others when the job is joined."""

    rank: int
    host: str
    cuda_visible: str | None
    job_id: str | None


class Job:
    """This process's place in a distributed job: its rank, its host, whether it measures the
    host's domains, which GPUs it measures, and the engine its windows are gathered over
    (None: the environment alone, nothing is gathered)."""

    def __init__(
        self,
        *,
        engine: EngineName,
        rank: int,
        world_size: int,
        local_rank: int | None,
        host: str,
        job_id: str | None,
        measures_host: bool,
        gpu_indices: tuple[int, ...] | None,
        host_ranks: dict[str, list[int]] | None,
        timeout_s: float,
        notes: list[str],
        transport: Transport | None = None,
    ) -> None:
        self.engine = engine
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.host = host
        self.job_id = job_id
        self.measures_host = measures_host
        # The CUDA indices of the GPUs this rank measures; None: every visible one.
        self.gpu_indices = gpu_indices
        # Ranks per host, known where an engine told the ranks of each other.
        self.host_ranks = host_ranks
        self.timeout_s = timeout_s
        self.notes = notes
        self._transport = transport
        self._seq = 0
        self._lock = threading.Lock()

    @property
    def gathers(self) -> bool:
        """Whether windows are gathered to rank 0 (an engine is there, and more than one rank)."""
        return self._transport is not None

    @property
    def elected(self) -> dict[str, int] | None:
        """The rank that measures each host's domains, where known."""
        if self.host_ranks is None:
            return None
        return {h: min(ranks) for h, ranks in self.host_ranks.items()}

    def tags(self) -> dict[str, Any]:
        """What every report of this rank is tagged with."""
        return {
            "job_id": self.job_id,
            "host": self.host,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def close(self, m: Measurement) -> JobWindow | None:
        """Gathers the closed window `m` to rank 0. Rank 0 gets the job's window; the others
        send their part and get None. Never waits past the timeout."""
        transport = self._transport
        if transport is None:
            return None
        part = rank_part(m, self)
        with self._lock:  # windows closed from several threads keep one order per rank
            self._seq += 1
            seq = self._seq
        deadline = time.monotonic() + self.timeout_s
        failed: str | None = None
        if self.rank != 0:
            try:
                transport.post(0, seq, (seq, part.to_wire()))
            except Exception as e:  # the engine failed: this rank's window is still its own
                self._fail(f"rank 0 could not be sent this rank's part ({e})")
            return None
        arrived: dict[int, RankPart] = {self.rank: part}
        stray = 0
        try:
            got = transport.collect(seq, range(1, self.world_size), deadline)
        except Exception as e:
            got, failed = {}, f"the gather failed ({type(e).__name__}: {e})"
        for source, payload in got.items():
            got_seq, wire = payload
            if got_seq == seq:
                arrived[source] = RankPart.from_wire(wire)
            else:
                stray += 1
        window = merge(self, arrived, m.label)
        if failed:
            window.notes.insert(0, failed)
        if stray:
            window.notes.append(
                f"{stray} part(s) of an earlier window arrived late and were left out of it"
            )
        return window

    def _fail(self, why: str) -> None:
        if why not in self.notes:
            self.notes.append(why)

    def __repr__(self) -> str:
        return (
            f"Job(engine={self.engine!r}, rank={self.rank}, world_size={self.world_size}, "
            f"host={self.host!r}, job_id={self.job_id!r}, measures_host={self.measures_host})"
        )


# Messages are numbered: a window's by its sequence number on the meter (every rank closes
# the same windows in the same order), the exchange that joins a job by these.
_JOIN, _JOIN_REPLY = -1, -2


def join(
    distributed: bool | str,
    *,
    host: str | None = None,
    job_id: str | None = None,
    gpus: tuple[int, ...] | str | None = "auto",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    engines: bool = True,
) -> Job | None:
    """This process's Job, or None where `distributed` is "auto" and no job of more than one
    rank is found. `distributed=True` makes a job of one rank where none is found.

    `engines=False` reads the launcher's environment alone and never imports torch or mpi4py
    (as `carbonfast run` does: MPI belongs to the command it runs). `gpus`: the CUDA indices
    this rank measures, None for all visible, "auto" to decide from the job (see gpu_choice).
    """
    if distributed is False:
        return None
    notes: list[str] = []
    launch = launch_from_environment()
    transport: Transport | None = None
    engine: EngineName = "env"
    if engines:
        transport, engine_notes = _engine(launch, timeout_s)
        notes += engine_notes
        if transport is not None:
            engine = transport.engine
    if transport is not None:
        rank, size = transport.rank, transport.size
        local = launch.local_rank if launch is not None and launch.rank == rank else None
    elif launch is not None:
        rank, size, local = launch.rank, launch.world_size, launch.local_rank
    else:
        rank, size, local = 0, 1, None
    if size <= 1 and distributed == "auto":
        return None
    me = host_id(host)
    own_job = job_id or job_id_from_environment()
    cuda_visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    host_ranks: dict[str, list[int]] | None = None
    table: list[_Entry] | None = None
    if transport is not None and size > 1:
        # Where no launcher names the job, rank 0's made-up name is everyone's.
        proposed = own_job or f"{transport.engine}-{me}-{os.getpid()}"
        table, why = _exchange(transport, _Entry(rank, me, cuda_visible, proposed), timeout_s)
        if table is None:
            notes.append(
                f"the ranks could not tell each other their hosts ({why}): each rank's part is "
                "its own, the host is measured by the rank whose local rank is 0, and windows "
                "are not gathered"
            )
            transport = None
            engine = "env"
    if table is not None:
        host_ranks = {}
        for e in table:
            host_ranks.setdefault(e.host, []).append(e.rank)
        for ranks in host_ranks.values():
            ranks.sort()
        measures_host = rank == host_ranks[me][0]
        # One id for the whole job, whatever each rank's environment said: rank 0's.
        named = own_job
        own_job = table[0].job_id
        if named is None and own_job is not None and own_job.startswith(f"{engine}-"):
            notes.append(
                "no launcher gave the job an id (SLURM_JOB_ID, TORCHELASTIC_RUN_ID, "
                f"PMIX_NAMESPACE); it is called {own_job!r} here: set job_id "
                "(CARBONFAST_JOB_ID) to name it"
            )
    elif size <= 1:
        measures_host = True
    elif local is not None:
        measures_host = local == 0
    else:
        measures_host = True
        notes.append(
            f"rank {rank} knows no local rank (LOCAL_RANK, SLURM_LOCALID, "
            "OMPI_COMM_WORLD_LOCAL_RANK): it measures its host, which other ranks on the same "
            "host may measure too; set LOCAL_RANK so that one rank per host does"
        )
    if gpus == "auto":
        gpu_indices, gpu_note = gpu_choice(rank, local, cuda_visible, me, table)
        if gpu_note:
            notes.append(gpu_note)
    else:
        gpu_indices = gpus if isinstance(gpus, tuple) or gpus is None else None
    if size > 1 and own_job is None:
        notes.append(
            "no launcher gave the job an id (SLURM_JOB_ID, TORCHELASTIC_RUN_ID, "
            "PMIX_NAMESPACE): its reports cannot be merged by job; set job_id "
            "(CARBONFAST_JOB_ID) on every rank"
        )
    return Job(
        engine=engine,
        rank=rank,
        world_size=size,
        local_rank=local,
        host=me,
        job_id=own_job,
        measures_host=measures_host,
        gpu_indices=gpu_indices,
        host_ranks=host_ranks,
        timeout_s=timeout_s,
        notes=notes,
        transport=transport if size > 1 else None,
    )


def gpu_choice(
    rank: int,
    local_rank: int | None,
    cuda_visible: str | None,
    host: str,
    table: list[_Entry] | None,
) -> tuple[tuple[int, ...] | None, str | None]:
    """The CUDA indices of the GPUs this rank uses, and a note where that is a guess.

    A rank whose CUDA_VISIBLE_DEVICES is its own (one device, or a list no other rank of its
    host shares) uses every GPU it sees. Ranks that see the same GPUs use one each, in rank
    order, as torchrun's `cuda:LOCAL_RANK` convention has it; a rank past the last GPU
    measures none.
    """
    if table is not None:
        same = sorted(e.rank for e in table if e.host == host and e.cuda_visible == cuda_visible)
        if cuda_visible is not None and same == [rank]:
            return None, None
        return (same.index(rank),), None
    if cuda_visible is not None and len([x for x in cuda_visible.split(",") if x.strip()]) <= 1:
        return None, None
    if local_rank is not None:
        return (local_rank,), None
    return None, (
        f"rank {rank} knows no local rank: it measures every GPU it sees, which other ranks "
        "may measure too; set LOCAL_RANK, or gpus (CARBONFAST_GPUS)"
    )


# Meters of torch.distributed jobs made in this process so far.
_torch_meters = 0


def _engine(launch: Launch | None, timeout_s: float) -> tuple[Transport | None, list[str]]:
    """The job's own engine, where there is one: torch.distributed if the program initialised
    it, else MPI under an MPI launcher (where mpi4py is installed)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        dist = getattr(torch, "distributed", None)
        if dist is not None and dist.is_available() and dist.is_initialized():
            if dist.get_world_size() <= 1:
                return None, []
            global _torch_meters
            _torch_meters += 1
            store = dist.distributed_c10d._get_default_store()
            return TorchTransport(store, dist.get_rank(), dist.get_world_size(), _torch_meters), []
    if "mpi4py.MPI" not in sys.modules and not any(v in os.environ for v in MPI_MARKERS):
        return None, []
    import importlib.util

    if "mpi4py" not in sys.modules and importlib.util.find_spec("mpi4py") is None:
        if launch is not None and launch.world_size > 1:
            return None, [
                "MPI job without mpi4py: windows are not gathered (pip install mpi4py); each "
                "rank's report holds its own part, tagged for merging by job"
            ]
        return None, []
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as e:  # no MPI library that mpi4py can load
        return None, [f"MPI could not be used to gather windows (mpi4py: {e})"]

    world = MPI.COMM_WORLD
    if launch is not None and world.Get_size() != launch.world_size:
        # mpi4py started as a singleton beside a launcher it does not know (srun without
        # PMI): its world is not the job's.
        return None, [
            f"MPI's world has {world.Get_size()} rank(s) where {launch.launcher} started "
            f"{launch.world_size}: windows are not gathered"
        ]
    if world.Get_size() <= 1:
        return None, []
    transport, why = MpiTransport.start(world, timeout_s)
    if transport is None:
        return None, [f"MPI could not be used to gather windows ({why})"]
    return transport, []


def _exchange(
    transport: Transport, entry: _Entry, timeout_s: float
) -> tuple[list[_Entry] | None, str]:
    """Every rank's entry, in rank order, on every rank; None (and why) if some rank did not
    answer in time."""
    deadline = time.monotonic() + timeout_s
    if transport.rank != 0:
        transport.post(0, _JOIN, entry)
        got = transport.collect(_JOIN_REPLY, [0], deadline)
        if 0 not in got:
            return None, f"rank 0 did not answer within {timeout_s:g} s"
        table = got[0]
        if table is None:
            return None, "some rank did not join in time"
        return list(table), ""
    entries = {0: entry}
    entries.update(transport.collect(_JOIN, range(1, transport.size), deadline))
    missing = [r for r in range(transport.size) if r not in entries]
    table = None if missing else [entries[r] for r in range(transport.size)]
    for r in range(1, transport.size):
        transport.post(r, _JOIN_REPLY, table)
    if table is None:
        return None, f"rank(s) {listed_ranks(missing)} did not answer within {timeout_s:g} s"
    return table, ""


# Their names before the launchers and the transports had modules of their own.
_LAUNCHERS = LAUNCHERS
_TorchTransport = TorchTransport
