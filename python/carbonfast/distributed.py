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
import pickle
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, Literal, TypeAlias

    from carbonfast.measure import Measurement
    from carbonfast.report.record import DomainRecord

    EngineName: TypeAlias = Literal["torch", "mpi", "env"]

# How long a gather waits for the other ranks by default, in seconds.
DEFAULT_TIMEOUT_S = 30.0
# Notes a rank sends with its part, at most: the part stays one small message.
_MAX_NOTES = 16
_MAX_NOTE_CHARS = 1000
# Sends rank 0 has not taken yet, kept referenced (their buffers must live until they are
# taken); past this many the oldest are let go, and the window says so.
_MAX_PENDING = 1000

# Launcher families, strongest first: (name, rank, world size, local rank). torchrun inside an
# srun step, or mpirun inside an sbatch script, sets its own variables beside Slurm's, and its
# own are the ones that describe this process. srun's step size is used, not SLURM_NTASKS,
# which the batch script itself also sees.
_LAUNCHERS = (
    ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
    ("Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("MPI (PMI)", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    ("Slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"),
)
# Set by MPI launchers for the processes they start: the sign that MPI can be initialised.
_MPI_MARKERS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")
# The job's id, first found: Slurm's, torchrun's rendezvous id, then the MPI launcher's.
_JOB_IDS = ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", "PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid")


@dataclass(frozen=True)
class Launch:
    """What the launcher's environment says about this process."""

    launcher: str
    rank: int
    world_size: int
    local_rank: int | None


def launch_from_environment(env: Mapping[str, str] | None = None) -> Launch | None:
    """This process's rank, world size and local rank as its launcher set them; None outside
    a launcher. A variable that is set but not a number fails, naming it."""
    env = os.environ if env is None else env
    for launcher, rank_var, size_var, local_var in _LAUNCHERS:
        if rank_var not in env or size_var not in env:
            continue
        rank = _whole(env, rank_var)
        size = _whole(env, size_var)
        if size < 1 or rank >= size:
            raise ValueError(
                f"{rank_var}={env[rank_var]!r} and {size_var}={env[size_var]!r} do not make "
                f"a rank of a job ({launcher}); expected 0 <= rank < size"
            )
        local = _whole(env, local_var) if local_var in env else None
        return Launch(launcher, rank, size, local)
    return None


def _whole(env: Mapping[str, str], name: str) -> int:
    raw = env[name]
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{name}={raw!r} is not valid; expected a whole number from 0")
    return value


def host_id(explicit: str | None = None) -> str:
    """The host's identity: `explicit` (the host_id setting, CARBONFAST_HOST_ID), for
    containers that share a host and for tests; else the hostname."""
    return explicit or socket.gethostname()


def job_id_from_environment(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    for name in _JOB_IDS:
        value = env.get(name, "").strip()
        # torchrun without a rendezvous id says "none".
        if value and value != "none":
            return value
    return None


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
        transport: _Transport | None = None,
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
    transport: _Transport | None = None
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


def _engine(launch: Launch | None, timeout_s: float) -> tuple[_Transport | None, list[str]]:
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
            return _TorchTransport(store, dist.get_rank(), dist.get_world_size(), _torch_meters), []
    if "mpi4py.MPI" not in sys.modules and not any(v in os.environ for v in _MPI_MARKERS):
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
    transport, why = _MpiTransport.start(world, timeout_s)
    if transport is None:
        return None, [f"MPI could not be used to gather windows ({why})"]
    return transport, []


def _exchange(
    transport: _Transport, entry: _Entry, timeout_s: float
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
        return None, f"rank(s) {_ranks(missing)} did not answer within {timeout_s:g} s"
    return table, ""


class _Transport:
    """Non-blocking messages over the job's engine: `post` sends message number `number` and
    returns at once; `collect` receives message `number` from some ranks until a deadline,
    and returns what arrived."""

    engine: EngineName
    rank: int
    size: int

    def post(self, dest: int, number: int, obj: object) -> None:
        raise NotImplementedError

    def collect(self, number: int, sources: Iterable[int], deadline: float) -> dict[int, Any]:
        raise NotImplementedError


def _pause(started: float) -> None:
    """Between polls: spin for the first 2 ms, when the others are usually about to arrive,
    yielding the CPU (sched_yield: even a sleep of 0 costs the timer slack, some 50 µs, which
    was most of rank 0's closing cost); then sleep a little longer each time, up to 1 ms."""
    waited = time.monotonic() - started
    if waited < 0.002:
        os.sched_yield()
    else:
        time.sleep(min(0.001, waited / 10))


class _MpiTransport(_Transport):
    """MPI: a duplicate of the world communicator (so that no message of the program's own
    can take ours, nor ours its), isend to send, iprobe and recv to receive."""

    engine: EngineName = "mpi"

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self._comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._pending: list[Any] = []
        self._early: dict[int, dict[int, Any]] = {}

    @classmethod
    def start(cls, world: Any, timeout_s: float) -> tuple[_MpiTransport | None, str]:
        # Idup rather than Dup: a rank that never comes must not hang the others.
        comm, request = world.Idup()
        deadline = time.monotonic() + timeout_s
        started = time.monotonic()
        while not request.Test():
            if time.monotonic() > deadline:
                return None, f"not every rank joined within {timeout_s:g} s"
            _pause(started)
        return cls(comm), ""

    @staticmethod
    def _tag(number: int) -> int:
        # Tags cycle (MPI guarantees tags up to 32767); a part that comes back round to the
        # same tag is told apart by the sequence number it carries.
        return 30_000 - number if number < 0 else 1 + number % 30_000

    def post(self, dest: int, number: int, obj: object) -> None:
        self._pending = [r for r in self._pending if not r.Test()]
        if len(self._pending) >= _MAX_PENDING:
            self._pending = self._pending[1:]
        self._pending.append(self._comm.isend(obj, dest=dest, tag=self._tag(number)))

    def collect(self, number: int, sources: Iterable[int], deadline: float) -> dict[int, Any]:
        tag = self._tag(number)
        wanted = set(sources)
        # What arrived earlier for this tag (a rank that ran ahead to its next window).
        early = self._early.pop(tag, {})
        out = {r: obj for r, obj in early.items() if r in wanted}
        mpi = self._mpi
        status = mpi.Status()
        started = time.monotonic()
        while True:
            # Every message on this communicator is carbonfast's: one of another window
            # (late, or early) is taken too, so that none is left pending, and kept by tag.
            while self._comm.iprobe(source=mpi.ANY_SOURCE, tag=mpi.ANY_TAG, status=status):
                source, got_tag = status.Get_source(), status.Get_tag()
                obj = self._comm.recv(source=source, tag=got_tag)
                if got_tag == tag and source in wanted:
                    out[source] = obj
                else:
                    self._early.setdefault(got_tag, {})[source] = obj
                    if len(self._early) > _MAX_PENDING:
                        del self._early[next(iter(self._early))]
            if wanted <= out.keys() or time.monotonic() > deadline:
                return out
            _pause(started)


class _TorchTransport(_Transport):
    """torch.distributed: the key-value store the job rendezvoused on (TCPStore under
    torchrun and env://), whatever backend the program uses. A message is one key, set by its
    sender, with a counter per message that the receiver polls (one round trip per poll, not
    one per rank); keys are deleted once read. A late part's key is left behind, and never
    read: its message number is past."""

    engine: EngineName = "torch"

    def __init__(self, store: Any, rank: int, size: int, instance: int) -> None:
        self._store = store
        # Each meter's keys have a prefix of their own: every rank makes its meters in the
        # same order, so the n-th meter of each rank has the same one.
        self._prefix = f"carbonfast/{instance}"
        self.rank = rank
        self.size = size
        # Keys of parts that did not come in time: deleted when they do.
        self._stale: list[str] = []

    def _key(self, number: int, source: int, dest: int) -> str:
        return f"{self._prefix}/{number}/{source}-{dest}"

    def post(self, dest: int, number: int, obj: object) -> None:
        self._store.set(self._key(number, self.rank, dest), pickle.dumps(obj))
        self._store.add(f"{self._prefix}/{number}/to-{dest}", 1)

    def collect(self, number: int, sources: Iterable[int], deadline: float) -> dict[int, Any]:
        store = self._store
        wanted = list(sources)
        counter = f"{self._prefix}/{number}/to-{self.rank}"
        started = time.monotonic()
        while store.add(counter, 0) < len(wanted) and time.monotonic() <= deadline:
            _pause(started)
        out: dict[int, Any] = {}
        for source in wanted:
            key = self._key(number, source, self.rank)
            if store.check([key]):
                out[source] = pickle.loads(store.get(key))
                self._forget(key)
            else:
                self._stale.append(key)
        self._forget(counter)
        self._stale = [k for k in self._stale[-_MAX_PENDING:] if not self._forget_if_there(k)]
        return out

    def _forget(self, key: str) -> bool:
        # Not every store deletes keys (a FileStore may not): they are then left behind.
        try:
            return bool(self._store.delete_key(key))
        except Exception:
            return True

    def _forget_if_there(self, key: str) -> bool:
        return bool(self._store.check([key])) and self._forget(key)


# Parts and the job's window -------------------------------------------------------------


@dataclass(frozen=True)
class RankPart:
    """One rank's part of a window: the domains it measured (host domains on the elected rank
    of each host, and its own GPUs), and its notes."""

    rank: int
    host: str
    label: str | None
    duration_s: float
    # Its domains in the total added up; None where it measured none.
    energy_j: float | None
    energy_range_j: tuple[float, float] | None
    estimated: bool
    partial: bool
    measures_host: bool
    domains: dict[str, DomainRecord]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "host": self.host,
            "energy_j": self.energy_j,
            "energy_range_j": list(self.energy_range_j) if self.energy_range_j else None,
            "duration_s": self.duration_s,
            "estimated": self.estimated,
            "measures_host": self.measures_host,
            "domains": sorted(self.domains),
            "missing": False,
        }

    def to_wire(self) -> tuple[Any, ...]:
        """A compact, plain form to send (a tuple of plain values pickles in a few µs)."""
        domains = tuple(
            (
                n,
                d.energy_j,
                d.kind,
                d.estimated,
                d.in_total,
                d.energy_range_j,
                d.interpolated,
                d.method,
                d.part,
                d.stalled,
            )
            for n, d in self.domains.items()
        )
        return (
            self.rank,
            self.host,
            self.label,
            self.duration_s,
            self.energy_j,
            self.energy_range_j,
            self.estimated,
            self.partial,
            self.measures_host,
            domains,
            self.notes,
        )

    @classmethod
    def from_wire(cls, wire: tuple[Any, ...]) -> RankPart:
        from carbonfast.report.record import DomainRecord

        (
            rank,
            host,
            label,
            duration_s,
            energy_j,
            rng,
            estimated,
            partial,
            measures,
            domains,
            notes,
        ) = wire
        return cls(
            rank=rank,
            host=host,
            label=label,
            duration_s=duration_s,
            energy_j=energy_j,
            energy_range_j=rng,
            estimated=estimated,
            partial=partial,
            measures_host=measures,
            domains={n: DomainRecord(*rest) for n, *rest in domains},
            notes=tuple(notes),
        )


@dataclass
class HostPart:
    """One host's share of a job's window: the domains its ranks measured, each counted once."""

    host: str
    ranks: list[int]
    # The rank that measured the host's CPU and DRAM; None where it is not known.
    measured_by: int | None
    energy_j: float | None
    energy_range_j: tuple[float, float] | None
    estimated: bool
    domains: dict[str, DomainRecord]
    # Ranks of the host whose part did not arrive.
    missing: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "energy_j": self.energy_j,
            "energy_range_j": list(self.energy_range_j) if self.energy_range_j else None,
            "estimated": self.estimated,
            "ranks": self.ranks,
            "measured_by": self.measured_by,
            "missing_ranks": self.missing,
            "domains": {n: d.to_dict() for n, d in self.domains.items()},
        }


@dataclass
class JobWindow:
    """A window of the whole job, on rank 0: the total over every host, with the breakdowns."""

    job_id: str | None
    world_size: int
    label: str | None
    duration_s: float
    energy_j: float | None
    energy_range_j: tuple[float, float] | None
    estimated: bool
    partial: bool
    # Domains named "host/domain", each counted once.
    domains: dict[str, DomainRecord]
    hosts: dict[str, HostPart]
    ranks: dict[int, RankPart]
    missing: list[int]
    notes: list[str]

    def ranks_list(self) -> list[dict[str, Any]]:
        """Every rank of the job, in order, the missing ones included (energy unknown)."""
        out = []
        for r in range(self.world_size):
            part = self.ranks.get(r)
            if part is not None:
                out.append(part.to_dict())
            else:
                out.append({"rank": r, "energy_j": None, "missing": True})
        return out


def rank_part(m: Measurement, job: Job) -> RankPart:
    """The closed window `m` as this rank's part of the job's window: its domains (those in
    the total, as Record has them) and its notes."""
    from carbonfast.report.record import domain_records

    own = m.local()
    w = own.window()
    domains = domain_records(own.meter.domains, w)
    rng = w.total_range_j
    return RankPart(
        rank=job.rank,
        host=job.host,
        label=m.label,
        duration_s=w.duration_s,
        energy_j=w.total_j,
        energy_range_j=(rng[0], rng[1]) if rng else None,
        estimated=own.estimated,
        partial=own.partial,
        measures_host=job.measures_host,
        domains=domains,
        notes=tuple(n[:_MAX_NOTE_CHARS] for n in own.notes[:_MAX_NOTES]),
    )


def merge(job: Job, parts: dict[int, RankPart], label: str | None) -> JobWindow:
    """The job's window from the parts that arrived: each (host, domain) counted once, the
    missing ranks named, and what their absence leaves out said."""
    missing = [r for r in range(job.world_size) if r not in parts]
    notes: list[str] = []
    hosts: dict[str, HostPart] = {}
    domains: dict[str, DomainRecord] = {}
    counted_by: dict[tuple[str, str], int] = {}
    elected = job.elected or {}
    expected = job.host_ranks or {}
    for host in sorted(set(expected) | {p.host for p in parts.values()}):
        ranks = sorted(r for r, p in parts.items() if p.host == host)
        measured_by = next((r for r in ranks if parts[r].measures_host), None)
        if measured_by is None:
            measured_by = elected.get(host)
        hosts[host] = HostPart(
            host=host,
            ranks=ranks,
            measured_by=measured_by,
            energy_j=None,
            energy_range_j=None,
            estimated=False,
            domains={},
            missing=[r for r in expected.get(host, []) if r not in parts],
        )
    for r in sorted(parts):
        part = parts[r]
        hp = hosts[part.host]
        for name, d in part.domains.items():
            key = (part.host, name)
            if key in counted_by:
                notes.append(
                    f"{name} on host {part.host} was measured by rank {counted_by[key]} and "
                    f"rank {r}: counted once (rank {counted_by[key]}'s)"
                )
                continue
            counted_by[key] = r
            hp.domains[name] = d
            domains[f"{part.host}/{name}"] = d
    total: float | None = None
    low = high = 0.0
    ranged = False
    for hp in hosts.values():
        in_total = [d for d in hp.domains.values() if d.in_total]
        if in_total:
            hp.energy_j = sum(d.energy_j or 0.0 for d in in_total)
            lows = [
                d.energy_range_j[0] if d.energy_range_j else d.energy_j or 0.0 for d in in_total
            ]
            highs = [
                d.energy_range_j[1] if d.energy_range_j else d.energy_j or 0.0 for d in in_total
            ]
            hp.energy_range_j = (sum(lows), sum(highs))
            hp.estimated = any(d.estimated for d in in_total)
            total = (total or 0.0) + hp.energy_j
            low += hp.energy_range_j[0]
            high += hp.energy_range_j[1]
            ranged = ranged or any(d.energy_range_j for d in in_total)
    if missing:
        notes.append(
            f"MISSING: rank(s) {_ranks(missing)} sent no part within {job.timeout_s:g} s (late, "
            "stopped or gone): the total leaves out what they measured"
        )
        for host, hp in hosts.items():
            if hp.measured_by is not None and hp.measured_by in missing:
                notes.append(
                    f"host {host}: its CPU and memory were measured by rank {hp.measured_by}, "
                    "whose part is missing: they are not in the total"
                )
    # The same note from several ranks is said once, with the ranks it came from.
    said: dict[str, list[int]] = {}
    for r in sorted(parts):
        for n in parts[r].notes:
            said.setdefault(n, []).append(r)
    for n, rs in said.items():
        who = f"rank {rs[0]}" if len(rs) == 1 else f"ranks {_ranks(rs)}"
        notes.append(f"{who}: {n}")
    partial = bool(missing) or any(p.partial for p in parts.values())
    return JobWindow(
        job_id=job.job_id,
        world_size=job.world_size,
        label=label,
        duration_s=max(p.duration_s for p in parts.values()),
        energy_j=total,
        energy_range_j=(low, high) if total is not None and ranged else None,
        estimated=any(hp.estimated for hp in hosts.values()),
        partial=partial,
        domains=domains,
        hosts=hosts,
        ranks=dict(sorted(parts.items())),
        missing=missing,
        notes=notes,
    )


def _ranks(ranks: Iterable[int]) -> str:
    return ", ".join(str(r) for r in ranks)
