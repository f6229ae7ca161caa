"""Non-blocking messages between the ranks of a job, over its own engine: a duplicate of
MPI's world communicator, or the key-value store torch.distributed rendezvoused on."""

from __future__ import annotations

import os
import pickle
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Literal, TypeAlias

    EngineName: TypeAlias = Literal["torch", "mpi", "env"]

# Sends rank 0 has not taken yet, kept referenced (their buffers must live until they are
# taken); past this many the oldest are let go, and the window says so.
MAX_PENDING = 1000


class Transport:
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


class MpiTransport(Transport):
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
    def start(cls, world: Any, timeout_s: float) -> tuple[MpiTransport | None, str]:
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
        if len(self._pending) >= MAX_PENDING:
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
                    if len(self._early) > MAX_PENDING:
                        del self._early[next(iter(self._early))]
            if wanted <= out.keys() or time.monotonic() > deadline:
                return out
            _pause(started)


class TorchTransport(Transport):
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
        self._stale = [k for k in self._stale[-MAX_PENDING:] if not self._forget_if_there(k)]
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
