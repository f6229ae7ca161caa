"""Where a distributed job is found from the launcher's environment alone: the rank, world
size and local rank torchrun, MPI or Slurm set, the host's name and the job's id."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

# Launcher families, strongest first: (name, rank, world size, local rank). torchrun inside an
# srun step, or mpirun inside an sbatch script, sets its own variables beside Slurm's, and its
# own are the ones that describe this process. srun's step size is used, not SLURM_NTASKS,
# which the batch script itself also sees.
LAUNCHERS = (
    ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
    ("Open MPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("MPI (PMI)", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    ("Slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"),
)
# Set by MPI launchers for the processes they start: the sign that MPI can be initialised.
MPI_MARKERS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")
# The job's id, first found: Slurm's, torchrun's rendezvous id, then the MPI launcher's.
JOB_IDS = ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID", "PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid")


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
    for launcher, rank_var, size_var, local_var in LAUNCHERS:
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
    for name in JOB_IDS:
        value = env.get(name, "").strip()
        # torchrun without a rendezvous id says "none".
        if value and value != "none":
            return value
    return None
