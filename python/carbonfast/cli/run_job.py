"""Where a rank of a distributed job fits when it runs `carbonfast run`: its place in the
job, where its report goes in the shared job directory, and its own output files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from carbonfast.cli.messages import warn


def join_job(meter_args: dict[str, Any]) -> Any:
    """This run's place in a distributed job (None outside one), from the launcher's
    environment alone: MPI and torch.distributed belong to the command, and carbonfast never
    initialises them in its own process. The distributed settings are taken out of
    `meter_args`."""
    from carbonfast.config import DISTRIBUTED_KEYS, resolve
    from carbonfast.distributed import join

    given = {k: meter_args.pop(k, None) for k in DISTRIBUTED_KEYS}
    if isinstance(given["gpus"], (tuple, list)):
        given["gpus"] = ",".join(map(str, given["gpus"]))
    s = resolve(DISTRIBUTED_KEYS, given)
    return join(
        s["distributed"],
        host=s["host_id"],
        job_id=s["job_id"],
        gpus=s["gpus"],
        timeout_s=s["distributed_timeout_s"],
        engines=False,
    )


def job_part_path(args: argparse.Namespace, job: Any) -> Path | None:
    """Where this rank writes its report in the shared job directory (job_dir), if one is
    set; the job's directory in it is made before the command starts."""
    from carbonfast.config import resolve

    job_dir = resolve(("job_dir",), {"job_dir": getattr(args, "job_dir", None)})["job_dir"]
    if job_dir is None:
        return None
    if job is None:
        warn(f"job_dir {job_dir} is set, but this is not a rank of a job: nothing goes there")
        return None
    from carbonfast.report.job import part_path

    path = part_path(job_dir, job.job_id, job.host, job.rank)
    if not Path(job_dir).is_dir():
        raise ValueError(f"job_dir {job_dir}: no such directory (it is shared by every rank)")
    try:
        path.parent.mkdir(exist_ok=True)
    except OSError as e:
        raise ValueError(f"job_dir {job_dir}: cannot make {path.parent}: {e.strerror}") from None
    return path


def name_outputs_per_rank(args: argparse.Namespace, job: Any) -> None:
    """In a job, every rank runs this same command line: {rank}, {host} and {job_id} in the
    --json and --html paths are replaced, and a path without {rank} gets `.rankN` before its
    suffix, so that no rank's report replaces another's. The CSV is shared: its rows are
    appended under a lock."""
    if job is None:
        return
    for flag in ("json", "html"):
        path = getattr(args, flag)
        if path is None:
            continue
        text = str(path)
        named = "{rank}" in text
        for key, value in (("{rank}", job.rank), ("{host}", job.host), ("{job_id}", job.job_id)):
            text = text.replace(key, str(value))
        new = Path(text)
        if not named and job.world_size > 1:
            new = new.with_name(f"{new.stem}.rank{job.rank}{new.suffix}")
        setattr(args, flag, new)
