"""Distributed jobs: one rank per host measures the host, each rank its own GPUs, windows are
gathered to rank 0 over the job's own engine, and `carbonfast run` under a launcher tags
each rank's report for merging by job.

The MPI tests run `mpirun --oversubscribe -n 4` with two simulated hosts (CARBONFAST_HOST_ID
and a fake powercap tree per host, set per rank by a wrapper, which also gives each rank the
local rank it would have on two real hosts); the first rank of each host advances its host's
counters by a declared amount inside the window (tests/distributed_worker.py), so the job's
truth is exact. The torch.distributed test (gloo, 4 processes) runs where torch is installed:
`python -m pytest tests/test_distributed.py -k torch`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import carbonfast as cf
from carbonfast import distributed
from tests.distributed_worker import JOULES, LATE_BY_S, LATE_RANK
from tests.fakes.nvml import FakeNvml
from tests.fakes.powercap import FakePowercap

WORKER = Path(__file__).resolve().parent / "distributed_worker.py"
REPO = Path(__file__).resolve().parent.parent
TRUTH = {host: sum(zones.values()) for host, zones in JOULES.items()}
TIMEOUT_S = 1.5

# Every launcher variable the tests may meet in their own environment (a CI runner inside a
# Slurm job, say): cleared, so that each test sets exactly the job it means.
_LAUNCHER_VARS = [
    v
    for family in distributed._LAUNCHERS
    for v in family[1:]
    if not v.startswith("OMPI_COMM_WORLD_LOCAL")
] + [
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "PMIX_RANK",
    "PMIX_NAMESPACE",
    "SLURM_JOB_ID",
    "TORCHELASTIC_RUN_ID",
    "OMPI_MCA_ess_base_jobid",
    "CUDA_VISIBLE_DEVICES",
    "CARBONFAST_HOST_ID",
    "CARBONFAST_JOB_ID",
    "CARBONFAST_DISTRIBUTED",
    "CARBONFAST_GPUS",
]


@pytest.fixture(autouse=True)
def _no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)


def _tree(base: Path, energy_uj: int = 1_000_000) -> FakePowercap:
    fake = FakePowercap(base)
    fake.zone("intel-rapl:0", "package-0", energy_uj)
    fake.zone("intel-rapl:0:0", "dram", energy_uj)
    return fake


# The launcher's environment alone ------------------------------------------------------


def test_ranks_come_from_the_launchers_environment_strongest_first() -> None:
    torchrun_in_slurm = {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "SLURM_PROCID": "1",
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_LOCALID": "0",
    }
    assert distributed.launch_from_environment(torchrun_in_slurm) == distributed.Launch(
        "torchrun", 5, 8, 1
    )
    ompi = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4"}
    # mpirun inside an sbatch script: the batch step's SLURM_PROCID is not this rank.
    ompi_in_sbatch = {**ompi, "SLURM_PROCID": "0", "SLURM_NTASKS": "64"}
    assert distributed.launch_from_environment(ompi_in_sbatch) == distributed.Launch(
        "Open MPI", 3, 4, None
    )
    srun = {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4", "SLURM_LOCALID": "1"}
    assert distributed.launch_from_environment(srun) == distributed.Launch("Slurm", 3, 4, 1)
    # An sbatch script itself (no srun step) is not a rank of a job.
    assert distributed.launch_from_environment({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}) is None
    with pytest.raises(ValueError, match="RANK='x' is not valid"):
        distributed.launch_from_environment({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="0 <= rank < size"):
        distributed.launch_from_environment({"RANK": "2", "WORLD_SIZE": "2"})


def test_without_an_engine_local_rank_0_measures_the_host_and_the_others_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _tree(tmp_path / "sys")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    parts = {}
    for rank, local in ((0, 0), (1, 1)):
        monkeypatch.setenv("SLURM_PROCID", str(rank))
        monkeypatch.setenv("SLURM_LOCALID", str(local))
        meter = cf.Meter(fake.root, history="off", host_id="node7")
        assert meter.job is not None and meter.job.engine == "env"
        assert (meter.job.rank, meter.job.world_size, meter.job.job_id) == (rank, 4, "4242")
        with meter.measure("step") as m:
            fake.add("intel-rapl:0", 3_000_000)
        parts[rank] = m
    assert parts[0].meter.domain_names == ["package-0", "dram-0"]
    assert parts[0].energy_j == pytest.approx(3.0)
    assert parts[1].meter.domain_names == [] and parts[1].energy_j is None
    assert any("measures no domain" in n for n in parts[1].notes)
    record = parts[0].record().to_dict()
    assert {k: record[k] for k in ("job_id", "host", "rank", "world_size")} == {
        "job_id": "4242",
        "host": "node7",
        "rank": 0,
        "world_size": 4,
    }
    assert "hosts" not in record  # nothing gathered: its own part
    assert any("nothing is gathered" in n for n in parts[0].notes)


def test_outside_a_job_nothing_changes_and_true_makes_a_job_of_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _tree(tmp_path / "sys")
    meter = cf.Meter(fake.root, history="off")
    assert meter.job is None and meter.domain_names == ["package-0", "dram-0"]
    with meter.measure() as m:
        fake.add("intel-rapl:0", 1_000_000)
    assert type(m) is cf.Measurement and "job_id" not in m.record().to_dict()
    one = cf.Meter(fake.root, history="off", distributed=True, host_id="solo")
    assert one.job is not None and (one.job.rank, one.job.world_size) == (0, 1)
    assert one.job.measures_host and one.domain_names == ["package-0", "dram-0"]
    with pytest.raises(ValueError, match="distributed=True, but this meter is not distributed"):
        cf.measure(meter=meter, distributed=True)
    monkeypatch.setenv("CARBONFAST_DISTRIBUTED", "maybe")
    with pytest.raises(ValueError, match="CARBONFAST_DISTRIBUTED='maybe' is not valid"):
        cf.Meter(fake.root, history="off")


TWO_GPUS = (
    "gpu 0 name=H100 uuid=GPU-aaaa energy_mj=1000\ngpu 1 name=H100 uuid=GPU-bbbb energy_mj=2000\n"
)


def test_each_rank_measures_the_gpu_it_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _tree(tmp_path / "sys")
    nvml = FakeNvml(tmp_path / "nvml", TWO_GPUS)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    meter = cf.Meter(fake.root, history="off", gpu=True, nvml_library=nvml.library)
    # torchrun's convention: every rank sees both GPUs and uses cuda:LOCAL_RANK.
    assert meter.domain_names == ["gpu-1"]
    # A rank given a device of its own (Slurm's --gpus-per-task) measures what it sees.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert cf.Meter(fake.root, history="off", gpu=True, nvml_library=nvml.library).domain_names == [
        "gpu-0"
    ]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    # The setting decides where it is given.
    assert cf.Meter(
        fake.root, history="off", gpu=True, nvml_library=nvml.library, gpus="all"
    ).domain_names == ["gpu-0", "gpu-1"]
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert cf.Meter(fake.root, history="off", gpu=True, nvml_library=nvml.library).domain_names == [
        "package-0",
        "dram-0",
        "gpu-0",
    ]


def test_gpu_choice_with_an_engine_follows_who_shares_which_devices() -> None:
    e = distributed._Entry
    shared = [e(0, "a", None, None), e(1, "a", None, None), e(2, "b", None, None)]
    assert distributed.gpu_choice(1, None, None, "a", shared) == ((1,), None)
    assert distributed.gpu_choice(2, None, None, "b", shared) == ((0,), None)
    own = [e(0, "a", "0,1", None), e(1, "a", "2,3", None)]
    assert distributed.gpu_choice(1, None, "2,3", "a", own) == (None, None)


def test_a_merge_counts_each_domain_once_and_names_what_is_missing() -> None:
    from carbonfast.report.record import DomainRecord

    job = distributed.Job(
        engine="mpi",
        rank=0,
        world_size=4,
        local_rank=None,
        host="a",
        job_id="j",
        measures_host=True,
        gpu_indices=None,
        host_ranks={"a": [0, 1], "b": [2, 3]},
        timeout_s=2.0,
        notes=[],
    )

    def part(rank: int, host: str, domains: dict[str, tuple[str, float]]) -> Any:
        return distributed.RankPart(
            rank=rank,
            host=host,
            label="w",
            duration_s=1.0,
            energy_j=sum(j for _, j in domains.values()) or None,
            energy_range_j=None,
            estimated=False,
            partial=False,
            measures_host=rank in (0, 2),
            domains={n: DomainRecord(j, kind, False) for n, (kind, j) in domains.items()},
        )

    parts = {
        0: part(0, "a", {"package-0": ("package", 10.0), "gpu-0": ("gpu", 100.0)}),
        # A MIG slice of the same GPU, reported by a second rank: counted once.
        1: part(1, "a", {"gpu-0": ("gpu", 100.0)}),
        3: part(3, "b", {"gpu-1": ("gpu", 50.0)}),
    }
    w = distributed.merge(job, parts, "w")
    assert w.energy_j == pytest.approx(160.0)
    assert w.missing == [2]
    assert sorted(w.domains) == ["a/gpu-0", "a/package-0", "b/gpu-1"]
    assert w.hosts["b"].measured_by == 2 and w.hosts["b"].missing == [2]
    assert any("gpu-0 on host a was measured by rank 0 and rank 1" in n for n in w.notes)
    assert any("host b: its CPU and memory were measured by rank 2" in n for n in w.notes)
    assert [r["missing"] for r in w.ranks_list()] == [False, False, True, False]


class _FakeStore:
    """torch.distributed's store, as the torch engine uses it (set, get, add, check,
    delete_key), shared by threads standing in for ranks."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self.data: dict[str, bytes] = {}

    def set(self, key: str, value: bytes) -> None:
        with self._lock:
            self.data[key] = value

    def get(self, key: str) -> bytes:
        with self._lock:
            return self.data[key]

    def add(self, key: str, amount: int) -> int:
        with self._lock:
            value = int(self.data.get(key, b"0")) + amount
            self.data[key] = str(value).encode()
            return value

    def check(self, keys: list[str]) -> bool:
        with self._lock:
            return all(k in self.data for k in keys)

    def delete_key(self, key: str) -> bool:
        with self._lock:
            return self.data.pop(key, None) is not None


def test_the_torch_store_exchange_names_a_late_rank_and_leaves_no_key_behind() -> None:
    import threading

    store = _FakeStore()
    ranks = [distributed._TorchTransport(store, r, 4, instance=1) for r in range(4)]
    tables: dict[int, Any] = {}

    def join(r: int) -> None:
        entry = distributed._Entry(r, "a" if r < 2 else "b", None, "j")
        tables[r] = distributed._exchange(ranks[r], entry, 5.0)

    threads = [threading.Thread(target=join, args=(r,)) for r in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(tables[r][0] == tables[0][0] for r in range(4))
    assert [e.host for e in tables[0][0]] == ["a", "a", "b", "b"]

    # Window 1: rank 2 does not send in time.
    for r in (1, 3):
        ranks[r].post(0, 1, (1, f"part {r}"))
    got = ranks[0].collect(1, [1, 2, 3], time.monotonic() + 0.2)
    assert got == {1: (1, "part 1"), 3: (1, "part 3")}
    ranks[2].post(0, 1, (1, "part 2, late"))
    # Window 2: complete; the late part is not taken for it, and its key goes.
    for r in (1, 2, 3):
        ranks[r].post(0, 2, (2, f"part {r}"))
    got = ranks[0].collect(2, [1, 2, 3], time.monotonic() + 5.0)
    assert got == {r: (2, f"part {r}") for r in (1, 2, 3)}
    # The late window's counter was made again by the late sender; nothing else is left.
    assert sorted(store.data) == ["carbonfast/1/1/to-0"]


# MPI ----------------------------------------------------------------------------------

needs_mpi = pytest.mark.skipif(
    shutil.which("mpirun") is None or importlib.util.find_spec("mpi4py") is None,
    reason="needs mpirun (Open MPI) and mpi4py",
)

_WRAPPER = """#!/bin/sh
# Two simulated hosts on one machine: ranks 0 and 1 on host a, 2 and 3 on host b, each with
# its host's powercap tree and the local rank it would have there.
r=${OMPI_COMM_WORLD_RANK:?not started by Open MPI}
if [ "$r" -lt 2 ]; then h=a; else h=b; fi
export CARBONFAST_HOST_ID=$h
export CARBONFAST_POWERCAP_ROOT="$TREES/$h/class/powercap"
export OMPI_COMM_WORLD_LOCAL_RANK=$((r % 2))
exec "$@"
"""


def _mpirun(tmp_path: Path, *command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    trees = tmp_path / "trees"
    for host in ("a", "b"):
        _tree(trees / host)
    wrapper = tmp_path / "two_hosts.sh"
    wrapper.write_text(_WRAPPER)
    wrapper.chmod(0o755)
    as_root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    full_env = {
        **os.environ,
        **env,
        "TREES": str(trees),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        # Containers often forbid the cross-memory attach Open MPI uses by default.
        "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
    }
    cmd = ["mpirun", "--oversubscribe", *as_root, "-n", "4", str(wrapper), *command]
    out = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


@needs_mpi
def test_mpi_job_total_is_the_sum_of_the_two_hosts_truths(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _mpirun(
        tmp_path,
        sys.executable,
        str(WORKER),
        "windows",
        str(out_dir),
        env={"CARBONFAST_DISTRIBUTED_TIMEOUT_S": str(TIMEOUT_S)},
    )
    ranks = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(4)]
    assert [r["engine"] for r in ranks] == ["mpi"] * 4
    assert len({r["job_id"] for r in ranks}) == 1
    # One rank per host measures the host; the others measure nothing (no GPU here).
    assert [r["measures_host"] for r in ranks] == [True, False, True, False]
    assert [r["domains"] for r in ranks] == [
        ["package-0", "dram-0"],
        [],
        ["package-0", "dram-0"],
        [],
    ]

    complete = ranks[0]["windows"]["complete"]
    truth = TRUTH["a"] + TRUTH["b"]
    # Within 2% of the truth; a meter per rank would report twice it.
    assert complete["energy_j"] == pytest.approx(truth, rel=0.02)
    assert complete["missing"] == []
    assert complete["ranks"] == [0, 1, 2, 3]
    hosts = complete["hosts"]
    assert hosts["a"]["energy_j"] == pytest.approx(TRUTH["a"], rel=0.02)
    assert hosts["b"]["energy_j"] == pytest.approx(TRUTH["b"], rel=0.02)
    assert (hosts["a"]["ranks"], hosts["a"]["measured_by"]) == ([0, 1], 0)
    assert (hosts["b"]["ranks"], hosts["b"]["measured_by"]) == ([2, 3], 2)
    record = complete["record"]
    assert record["energy_j"] == pytest.approx(truth, rel=0.02)
    assert (record["rank"], record["world_size"], record["host"]) == (0, 4, "a")
    assert record["job_id"] == ranks[0]["job_id"]
    assert sorted(record["hosts"]) == ["a", "b"]
    assert [r["rank"] for r in record["ranks"]] == [0, 1, 2, 3]
    assert sorted(record["domains"]) == ["a/dram-0", "a/package-0", "b/dram-0", "b/package-0"]
    assert record["missing_ranks"] == []
    # The other ranks get their own part.
    assert ranks[2]["windows"]["complete"]["energy_j"] == pytest.approx(TRUTH["b"], rel=0.02)
    assert ranks[2]["windows"]["complete"]["hosts"] is None
    assert ranks[1]["windows"]["complete"]["energy_j"] is None
    assert ranks[2]["windows"]["complete"]["record"]["rank"] == 2

    # Rank 2, which measures host b, is late past the timeout: the window says so, and does
    # not wait for it.
    late = ranks[0]["windows"]["late"]
    assert late["missing"] == [LATE_RANK]
    assert late["energy_j"] == pytest.approx(TRUTH["a"], rel=0.02)
    assert late["close_s"] < TIMEOUT_S + 1.0
    assert late["record"]["missing_ranks"] == [LATE_RANK]
    assert late["hosts"]["b"]["missing_ranks"] == [LATE_RANK]
    notes = "\n".join(late["notes"])
    assert f"MISSING: rank(s) {LATE_RANK} sent no part" in notes
    assert f"host b: its CPU and memory were measured by rank {LATE_RANK}" in notes
    assert late["record"]["partial"] is True
    assert LATE_BY_S > 0
    # The late part does not spill into the next window.
    after = ranks[0]["windows"]["after"]
    assert after["missing"] == []
    assert after["energy_j"] == pytest.approx(truth, rel=0.02)
    # The default meter, a tracked function and begin/end are gathered the same way.
    for how, energy in ranks[0]["other"].items():
        assert energy == pytest.approx(truth, rel=0.02), how
    assert ranks[2]["other"]["tracked"] == pytest.approx(TRUTH["b"], rel=0.02)


@needs_mpi
def test_carbonfast_run_under_mpirun_measures_each_host_once_and_merges_by_job(
    tmp_path: Path,
) -> None:
    job_dir = tmp_path / "jobs"
    job_dir.mkdir()
    reports = tmp_path / "reports"
    reports.mkdir()
    history = tmp_path / "merged.sqlite"
    cli = [sys.executable, "-m", "carbonfast.cli"]
    _mpirun(
        tmp_path,
        *cli,
        "run",
        "--quiet",
        "--no-history",
        "--json",
        str(reports / "run.json"),
        "--",
        sys.executable,
        str(WORKER),
        "child",
        env={"CARBONFAST_JOB_DIR": str(job_dir)},
    )
    parts = [json.loads((reports / f"run.rank{r}.json").read_text()) for r in range(4)]
    job_id = parts[0]["job_id"]
    assert job_id and all(p["job_id"] == job_id and p["world_size"] == 4 for p in parts)
    assert [(p["host"], p["rank"]) for p in parts] == [("a", 0), ("a", 1), ("b", 2), ("b", 3)]
    assert parts[0]["energy_j"] == pytest.approx(TRUTH["a"], rel=0.02)
    assert parts[2]["energy_j"] == pytest.approx(TRUTH["b"], rel=0.02)
    assert parts[1]["energy_j"] is None and parts[3]["energy_j"] is None
    written = sorted(p.name for p in job_dir.rglob("*.json"))
    assert written == ["a.rank0.json", "a.rank1.json", "b.rank2.json", "b.rank3.json"]

    show = subprocess.run(
        [*cli, "history", "--history", str(history), "--merge", str(job_dir), "--job", job_id],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "4 record(s) merged" in show.stderr
    assert "from 2 host(s), 4 rank(s)" in show.stdout
    as_json = subprocess.run(
        [
            *cli,
            "history",
            "--history",
            str(history),
            "--merge",
            str(job_dir),
            "--job",
            job_id,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "0 record(s) merged" in as_json.stderr  # merging again adds nothing
    (group,) = json.loads(as_json.stdout)["groups"]
    assert group["energy_j"] == pytest.approx(TRUTH["a"] + TRUTH["b"], rel=0.02)
    assert group["hosts"]["a"]["measured_by"] == 0 and group["hosts"]["b"]["measured_by"] == 2
    assert group["missing_ranks"] == []


# torch.distributed ----------------------------------------------------------------------


def test_torch_gloo_job_total_is_the_sum_of_the_two_hosts_truths(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch.multiprocessing as mp

    from tests.distributed_worker import torch_rank

    trees = tmp_path / "trees"
    for host in ("a", "b"):
        _tree(trees / host)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    import socket

    with socket.socket() as s:  # a free port for the job's TCP store
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    world = 4
    mp.spawn(
        torch_rank,
        args=(world, f"tcp://127.0.0.1:{port}", str(trees), str(out_dir)),
        nprocs=world,
        join=True,
    )
    ranks = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(world)]
    assert [r["engine"] for r in ranks] == ["torch"] * world
    assert [r["measures_host"] for r in ranks] == [True, False, True, False]
    complete = ranks[0]["windows"]["complete"]
    assert complete["energy_j"] == pytest.approx(TRUTH["a"] + TRUTH["b"], rel=0.02)
    assert complete["hosts"]["a"]["measured_by"] == 0
    assert complete["hosts"]["b"]["measured_by"] == 2
    late = ranks[0]["windows"]["late"]
    assert late["missing"] == [LATE_RANK]
    assert late["close_s"] < 3.0 + 1.0
    after = ranks[0]["windows"]["after"]
    assert after["missing"] == []
    assert after["energy_j"] == pytest.approx(TRUTH["a"] + TRUTH["b"], rel=0.02)
    for how, energy in ranks[0]["other"].items():
        assert energy == pytest.approx(TRUTH["a"] + TRUTH["b"], rel=0.02), how
    assert ranks[2]["windows"]["complete"]["energy_j"] == pytest.approx(TRUTH["b"], rel=0.02)


# carbonfast run under srun, and the history ---------------------------------------------


def _srun_env(rank: int, local: int, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_VARS}
    return {
        **env,
        "SLURM_JOB_ID": "77",
        "SLURM_PROCID": str(rank),
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_LOCALID": str(local),
        "CARBONFAST_HOST_ID": "n1",
        **more,
    }


def test_run_under_srun_tags_each_ranks_report_and_names_it_per_rank(tmp_path: Path) -> None:
    fake = _tree(tmp_path / "sys")
    bump = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); "
        "from tests.distributed_worker import add_joules; "
        f"add_joules({str(fake.root)!r}, 'intel-rapl:0', 4.0)"
    )
    job_dir = tmp_path / "jobs"
    job_dir.mkdir()
    cli = [sys.executable, "-m", "carbonfast.cli", "run", "--no-history", "--json"]
    for rank in (0, 1):
        env = _srun_env(
            rank,
            rank,
            CARBONFAST_POWERCAP_ROOT=str(fake.root),
            CARBONFAST_JOB_DIR=str(job_dir),
        )
        out = subprocess.run(
            [*cli, str(tmp_path / "run-{host}.json"), "--", sys.executable, "-c", bump],
            env=env,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        assert f"job 77: rank {rank} of 2 on host n1; this report holds its own part" in out.stderr
    first = json.loads((tmp_path / "run-n1.rank0.json").read_text())
    second = json.loads((tmp_path / "run-n1.rank1.json").read_text())
    assert (first["job_id"], first["rank"], first["world_size"], first["host"]) == (
        "77",
        0,
        2,
        "n1",
    )
    assert first["energy_j"] == pytest.approx(4.0)
    # Rank 1 shares the host with rank 0, which measures it: its part is empty, and says why.
    assert second["rank"] == 1 and second["energy_j"] is None and second["domains"] == {}
    assert any("measures no domain" in n for n in second["notes"])
    assert sorted(p.name for p in (job_dir / "77").iterdir()) == ["n1.rank0.json", "n1.rank1.json"]


def test_run_with_a_job_dir_that_is_not_there_fails_before_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    env = _srun_env(0, 0, CARBONFAST_JOB_DIR=str(tmp_path / "absent"))
    out = subprocess.run(
        [sys.executable, "-m", "carbonfast.cli", "run", "--", "touch", str(marker)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "no such directory" in out.stderr
    assert not marker.exists()


def test_an_older_history_gains_the_job_columns_and_lists_a_job(tmp_path: Path) -> None:
    import sqlite3

    from carbonfast.report.history import History
    from carbonfast.report.record import Record

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    # The runs table as histories made before distributed jobs have it.
    old.executescript(
        "CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, label TEXT, "
        "command TEXT, exit_code INTEGER, started_at TEXT NOT NULL, duration_s REAL NOT NULL, "
        "energy_j REAL, energy_low_j REAL, energy_high_j REAL, estimated INTEGER NOT NULL, "
        "emissions_kg REAL, intensity_g_per_kwh REAL, intensity_source TEXT, location TEXT, "
        "pue REAL, host TEXT, pid INTEGER, carbonfast_version TEXT, trace_summary TEXT, "
        "report TEXT NOT NULL);"
    )
    old.close()
    history = History(path)
    for rank, energy in ((0, 10.0), (1, None), (2, 7.0)):
        history.add(
            Record(
                kind="run",
                label="train",
                started_at="2025-01-01T00:00:00+00:00",
                duration_s=1.0,
                energy_j=energy,
                job_id="j9",
                host="a" if rank < 2 else "b",
                rank=rank,
                world_size=4,
            )
        )
    history.add(Record(kind="run", label="other", started_at="", duration_s=1.0, energy_j=1.0))
    assert [r["rank"] for r in history.list(job="j9")] == [2, 1, 0]
    from carbonfast.report.job import summarize

    (group,) = summarize(history.job_records("j9"))
    assert group.energy_j == pytest.approx(17.0)
    assert group.missing_ranks == [3]
    assert group.unknown_ranks == [1]  # left out of the total, and named
    assert group.hosts["b"]["energy_j"] == pytest.approx(7.0)
