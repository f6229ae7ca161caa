"""Every setting carbonfast reads: its environment variable, how its text is parsed and
checked, what it accepts, its default and its command-line option; and the groups of settings
each part of carbonfast resolves together. How a value is chosen among an argument, the
environment and a config file is `carbonfast.config`'s job."""

from __future__ import annotations

import math

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from carbonfast._typing import EstimateScope as Scope
    from carbonfast._typing import GpuEnergy, RaplSource

# Option strings, each parsed once, here, into its Literal type: the core's choices (written
# out, so that the settings reference can be built without the native module;
# tests/test_rules_parity.py holds them to the core's).
_RAPL_SOURCES: dict[str, RaplSource] = {
    "auto": "auto",
    "powercap": "powercap",
    "msr": "msr",
    "perf": "perf",
}
_SCOPES: dict[str, Scope] = {"process": "process", "container": "container", "machine": "machine"}
_GPU_ENERGY: dict[str, GpuEnergy] = {"auto": "auto", "power": "power"}
SCOPES = tuple(_SCOPES)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError
    return value


def _pue(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or not 1.0 <= value <= 3.0:
        raise ValueError
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError
    return value


def _up_to(limit: float, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse`, and no more than `limit`: a value past physical sense (1e308 W) would saturate
    the arithmetic into nonsense, such as 0 J."""

    def bounded(raw: str) -> Any:
        value = parse(raw)
        if value > limit:
            raise ValueError
        return value

    return bounded


def _scope(raw: str) -> Scope:
    try:
        return _SCOPES[raw]
    except KeyError:
        raise ValueError from None


def _rapl_path(raw: str) -> RaplSource:
    try:
        return _RAPL_SOURCES[raw]
    except KeyError:
        raise ValueError from None


def _gpu_energy(raw: str) -> GpuEnergy:
    try:
        return _GPU_ENERGY[raw]
    except KeyError:
        raise ValueError from None


def _history(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        raise ValueError
    return None if raw.lower() in (*_FALSE, "none") else raw


def _flag(raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError


def _text(raw: str) -> str:
    raw = raw.strip()
    if not raw:
        raise ValueError
    return raw


def _attribute(raw: str) -> str:
    """off, command (the command `carbonfast run` starts, with all it starts), or a scope the
    core knows: process, tree, thread, cgroup, cgroup:PATH."""
    raw = raw.strip()
    low = raw.lower()
    if low in ("off", "command", "process", "tree", "thread", "cgroup"):
        return low
    if low.startswith("cgroup:") and len(raw) > len("cgroup:"):
        return "cgroup:" + raw[len("cgroup:") :]
    raise ValueError


def _distributed(raw: str) -> bool | str:
    low = raw.strip().lower()
    return "auto" if low == "auto" else _flag(low)


def _gpus(raw: str) -> tuple[int, ...] | str | None:
    """ "auto" (decided from the job), "all" (None: every visible GPU) or CUDA indices."""
    low = raw.strip().lower()
    if low in ("auto", "all"):
        return None if low == "all" else "auto"
    indices = tuple(int(x) for x in low.split(","))
    if not indices or min(indices) < 0:
        raise ValueError
    return indices


class Setting:
    """One setting: its environment variable, parser, what it accepts (for errors), default,
    and its command-line option: `group` names the --help section it is listed in (None: no
    option, as for a secret, which would show in the process list)."""

    __slots__ = ("accepts", "choices", "default", "env", "group", "help", "metavar", "parse")

    def __init__(
        self,
        env: str,
        parse: Callable[[str], Any],
        accepts: str,
        default: Any = None,
        *,
        group: str | None = None,
        help: str = "",
        metavar: str | None = None,
        choices: Iterable[str] | None = None,
    ) -> None:
        self.env = env
        self.parse = parse
        self.accepts = accepts
        self.default = default
        self.group = group
        self.help = help
        self.metavar = metavar
        self.choices = tuple(choices) if choices is not None else None

    @property
    def is_flag(self) -> bool:
        return self.parse is _flag


SETTINGS: dict[str, Setting] = {
    # Which RAPL path to read.
    "source": Setting(
        "CARBONFAST_SOURCE",
        _rapl_path,
        "one of auto, powercap, msr, perf",
        "auto",
        group="hardware",
        choices=_RAPL_SOURCES,
        help="RAPL path to read (default: auto, the best available)",
    ),
    "gpu": Setting(
        "CARBONFAST_GPU",
        _flag,
        "one of " + ", ".join(_TRUE + _FALSE),
        True,
        group="hardware",
        help="measure NVIDIA GPUs (default: yes)",
    ),
    "gpu_energy": Setting(
        "CARBONFAST_GPU_ENERGY",
        _gpu_energy,
        "auto (the energy counter) or power",
        "auto",
        group="hardware",
        choices=_GPU_ENERGY,
        help="a GPU's energy counter (auto), or its power integrated (power)",
    ),
    # Estimates where no counter is readable.
    "estimate": Setting(
        "CARBONFAST_ESTIMATE",
        _flag,
        "one of " + ", ".join(_TRUE + _FALSE),
        True,
        group="estimates",
        help="estimate what no counter measures (default: yes; no: unknown, never 0)",
    ),
    "scope": Setting(
        "CARBONFAST_ESTIMATE_SCOPE",
        _scope,
        "one of " + ", ".join(SCOPES),
        "process",
        group="estimates",
        choices=_SCOPES,
        help="CPU time the estimate follows (default: process, with its children)",
    ),
    "cpu_tdp_w": Setting(
        "CARBONFAST_CPU_TDP_W",
        _up_to(2000, _positive_float),
        "watts per socket, 0 to 2000",
        group="estimates",
        metavar="W",
        help="CPU TDP per socket",
    ),
    "cpu_threads": Setting(
        "CARBONFAST_CPU_THREADS",
        _up_to(1 << 20, _positive_int),
        "a whole number, 1 to 1048576",
        group="estimates",
        metavar="N",
        help="logical CPUs",
    ),
    "ram_gb": Setting(
        "CARBONFAST_RAM_GB",
        _up_to(1 << 20, _positive_float),
        "GB, 0 to 1048576",
        group="estimates",
        metavar="GB",
        help="installed memory",
    ),
    "cpu_power_w": Setting(
        "CARBONFAST_CPU_POWER_W",
        _up_to(100_000, _positive_float),
        "watts, 0 to 100000",
        group="estimates",
        metavar="W",
        help="fixed CPU power",
    ),
    "ram_power_w": Setting(
        "CARBONFAST_RAM_POWER_W",
        _up_to(100_000, _positive_float),
        "watts, 0 to 100000",
        group="estimates",
        metavar="W",
        help="fixed RAM power",
    ),
    "proc_root": Setting(
        "CARBONFAST_PROC_ROOT",
        _text,
        "a directory",
        "/proc",
        group="hardware",
        metavar="DIR",
        help="procfs (default: /proc)",
    ),
    "cgroup_root": Setting(
        "CARBONFAST_CGROUP_ROOT",
        _text,
        "a directory",
        "/sys/fs/cgroup",
        group="hardware",
        metavar="DIR",
        help="cgroup v2 hierarchy (default: /sys/fs/cgroup)",
    ),
    # Where the hardware is: injectable, so that a fake tree can stand in for it.
    "powercap_root": Setting(
        "CARBONFAST_POWERCAP_ROOT",
        _text,
        "a directory",
        "/sys/class/powercap",
        group="hardware",
        metavar="DIR",
        help="powercap directory (default: /sys/class/powercap)",
    ),
    "msr_root": Setting(
        "CARBONFAST_MSR_ROOT",
        _text,
        "a directory",
        "/dev/cpu",
        group="hardware",
        metavar="DIR",
        help="MSR devices (default: /dev/cpu)",
    ),
    "cpu_topology_root": Setting(
        "CARBONFAST_CPU_TOPOLOGY_ROOT",
        _text,
        "a directory",
        "/sys/devices/system/cpu",
        group="hardware",
        metavar="DIR",
        help="CPU topology (default: /sys/devices/system/cpu)",
    ),
    "perf_root": Setting(
        "CARBONFAST_PERF_PMU_ROOT",
        _text,
        "a directory",
        "/sys/bus/event_source/devices/power",
        group="hardware",
        metavar="DIR",
        help="perf power PMU (default: /sys/bus/event_source/devices/power)",
    ),
    "nvml_library": Setting(
        "CARBONFAST_NVML_LIBRARY",
        _text,
        "the path of libnvidia-ml.so.1 (default: the driver's)",
        group="hardware",
        metavar="FILE",
        help="NVML library (default: the driver's libnvidia-ml.so.1)",
    ),
    "amdsmi_library": Setting(
        "CARBONFAST_AMDSMI_LIBRARY",
        _text,
        "the path of libamd_smi.so (default: ROCm's)",
        group="hardware",
        metavar="FILE",
        help="AMD SMI library, for AMD GPUs (default: ROCm's libamd_smi.so)",
    ),
    "hwmon_root": Setting(
        "CARBONFAST_HWMON_ROOT",
        _text,
        "a directory",
        "/sys/class/hwmon",
        group="hardware",
        metavar="DIR",
        help="hwmon sensors: AMD and Intel GPUs, power meters, Grace, Jetson "
        "(default: /sys/class/hwmon)",
    ),
    # Distributed jobs (carbonfast.distributed): which rank measures what, and how long a
    # window waits for the other ranks.
    "distributed": Setting(
        "CARBONFAST_DISTRIBUTED",
        _distributed,
        "auto, or one of " + ", ".join(_TRUE + _FALSE),
        "auto",
        group="distributed",
        metavar="auto|on|off",
        help="one rank per host measures the host, each rank its GPUs, windows gathered to "
        "rank 0 (default: auto, in a job of several ranks)",
    ),
    "host_id": Setting(
        "CARBONFAST_HOST_ID",
        _text,
        "a name for this host",
        group="distributed",
        metavar="NAME",
        help="this host's identity in a job (default: the hostname)",
    ),
    "job_id": Setting(
        "CARBONFAST_JOB_ID",
        _text,
        "a job id",
        group="distributed",
        metavar="ID",
        help="the job's id (default: SLURM_JOB_ID, torchrun's or the MPI launcher's)",
    ),
    "gpus": Setting(
        "CARBONFAST_GPUS",
        _gpus,
        "auto, all, or CUDA indices such as 0,1",
        "auto",
        group="distributed",
        metavar="auto|all|I,J",
        help="the GPUs this process measures (default: auto, in a job the ones its rank uses)",
    ),
    "distributed_timeout_s": Setting(
        "CARBONFAST_DISTRIBUTED_TIMEOUT_S",
        _up_to(86_400, _positive_float),
        "seconds, 0 to 86400",
        30.0,
        group="distributed",
        metavar="S",
        help="how long closing a window waits for the other ranks (default: 30)",
    ),
    "job_dir": Setting(
        "CARBONFAST_JOB_DIR",
        _text,
        "a directory",
        group="distributed",
        metavar="DIR",
        help="a shared directory where each rank of a job writes its report",
    ),
    # Whose share of the energy is reported beside the machine's (carbonfast.attribution).
    # Default: the command for `carbonfast run`, off for windows.
    "attribute": Setting(
        "CARBONFAST_ATTRIBUTE",
        _attribute,
        "off, command, process, tree, thread, cgroup or cgroup:PATH",
    ),
    # Where runs and windows are recorded. Default: the project's (see default_history).
    "history": Setting("CARBONFAST_HISTORY", _history, "a file path, or off"),
    # How many runs, and how many benchmarks, the history keeps (carbonfast.report.
    # history_prune): the oldest go first, a distributed job's records together.
    "history_max_runs": Setting(
        "CARBONFAST_HISTORY_MAX_RUNS", _positive_int, "a whole number of runs, 1 or more", 1000
    ),
    "history_max_benches": Setting(
        "CARBONFAST_HISTORY_MAX_BENCHES",
        _positive_int,
        "a whole number of benchmarks, 1 or more",
        1000,
    ),
    # Carbon intensity: the place from the strongest layer wins; within one layer, the most
    # specific of intensity > zone > cloud > country (carbonfast.carbon.Carbon decides).
    "country": Setting(
        "CARBONFAST_COUNTRY",
        _text,
        "an ISO 3166 alpha-2 or alpha-3 code",
        group="carbon",
        metavar="CODE",
        help="ISO 3166 alpha-2 or alpha-3 code (Ember's yearly figure)",
    ),
    "zone": Setting(
        "CARBONFAST_ZONE",
        _text,
        "an Electricity Maps zone such as US-CAL-CISO",
        group="carbon",
        metavar="ZONE",
        help="Electricity Maps zone, e.g. US-CAL-CISO",
    ),
    "cloud": Setting(
        "CARBONFAST_CLOUD",
        _text,
        "provider:region, such as gcp:europe-west1",
        group="carbon",
        metavar="P:REGION",
        help="gcp:, aws: or azure: cloud region",
    ),
    "intensity": Setting(
        "CARBONFAST_INTENSITY",
        _up_to(3000, _positive_float),
        "g CO2e per kWh, 0 to 3000",
        group="carbon",
        metavar="G",
        help="grid intensity, g CO2e per kWh",
    ),
    "pue": Setting(
        "CARBONFAST_PUE",
        _pue,
        "a power usage effectiveness from 1.0 to 3.0",
        1.0,
        group="carbon",
        metavar="PUE",
        help="data-centre power usage effectiveness",
    ),
    "electricitymaps_token": Setting(
        "CARBONFAST_ELECTRICITYMAPS_TOKEN", _text, "an Electricity Maps API token"
    ),
    "electricitymaps_url": Setting(
        "CARBONFAST_ELECTRICITYMAPS_URL",
        _text,
        "the API's base URL",
        "https://api.electricitymap.org/v3",
    ),
}

HARDWARE_KEYS = (
    "powercap_root",
    "msr_root",
    "cpu_topology_root",
    "perf_root",
    "nvml_library",
    "amdsmi_library",
    "hwmon_root",
)
ESTIMATE_KEYS = (
    "source",
    "gpu",
    "gpu_energy",
    "estimate",
    "scope",
    "cpu_tdp_w",
    "cpu_threads",
    "ram_gb",
    "cpu_power_w",
    "ram_power_w",
    "proc_root",
    "cgroup_root",
)
DISTRIBUTED_KEYS = (
    "distributed",
    "host_id",
    "job_id",
    "gpus",
    "distributed_timeout_s",
)
CARBON_KEYS = (
    "country",
    "zone",
    "cloud",
    "intensity",
    "pue",
    "electricitymaps_token",
    "electricitymaps_url",
)
