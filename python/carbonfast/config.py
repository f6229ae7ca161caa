"""Settings, in one place, layered as users expect:

    argument  >  environment (CARBONFAST_...)  >  config file  >  default

The config file is the nearest carbonfast.toml (top-level keys) or pyproject.toml with a
[tool.carbonfast] table, looking from the working directory upwards; CARBONFAST_CONFIG names
one explicitly. Keys are the argument names: `country = "FR"`, `pue = 1.2`.

A file found by that search is obeyed only if it is the user's own (or root's) and neither it
nor its directory can be written by others: on a shared machine anyone can leave a
carbonfast.toml in /tmp, and its library paths, URLs and history location would otherwise run
a stranger's code or send the user's data where the stranger chose (git's rule since
CVE-2022-24765). Such a file is passed over with a warning; CARBONFAST_CONFIG trusts one
explicitly.

Every bad value raises ValueError naming the setting (argument, variable, or file and key) and
what it accepts. The resolved settings remember where each value came from (`origins`), so
that a report can name the setting that chose, say, the grid intensity.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import math
import os
import stat
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any, Literal, TypeAlias

    RaplSource: TypeAlias = Literal["auto", "powercap", "msr", "perf"]
    Scope: TypeAlias = Literal["process", "container", "machine"]
    GpuEnergy: TypeAlias = Literal["auto", "power"]

# Option strings, each parsed once, here, into its Literal type.
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


# The layers, strongest first: a value from a stronger layer always wins.
ARGUMENT, ENVIRONMENT, CONFIG_FILE = 0, 1, 2
LAYER_NAMES = {
    ARGUMENT: "an argument",
    ENVIRONMENT: "the environment",
    CONFIG_FILE: "a config file",
}
# Settings whose value must never appear in a label (labels end up in reports and notes).
_SECRET = frozenset({"electricitymaps_token"})


@dataclass(frozen=True)
class Origin:
    """Where a setting's value came from: its layer, and how to name it to the user
    ("--country FR", "CARBONFAST_ZONE=FR", 'cloud = "gcp:europe-west1" in pyproject.toml')."""

    layer: int
    label: str


class Settings(dict):
    """Resolved settings by name, with the origin of each value that was set (a default has
    none)."""

    def __init__(self) -> None:
        super().__init__()
        self.origins: dict[str, Origin] = {}


# Arguments are named as command-line options while the command runs, as keywords otherwise.
_arguments_are_options: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "carbonfast_arguments_are_options", default=False
)


@contextlib.contextmanager
def arguments_named_as_options() -> Iterator[None]:
    """Within this block, settings given as arguments are named as the command's options
    (`--country FR`) rather than as keywords (`country='FR'`)."""
    token = _arguments_are_options.set(True)
    try:
        yield
    finally:
        _arguments_are_options.reset(token)


def resolve(names: Iterable[str], arguments: dict[str, Any]) -> Settings:
    """Each named setting from its argument (if not None), else the environment, else the
    config file, else the default; validated whichever layer it comes from."""
    file_values, file_name = config_file()
    out = Settings()
    for name in names:
        setting = SETTINGS[name]
        arg = arguments.get(name)
        if arg is not None:
            raw = os.fspath(arg) if isinstance(arg, os.PathLike) else str(arg)
            out[name] = _parse(setting, raw, name)
            out.origins[name] = Origin(ARGUMENT, _argument_label(name, arg, raw))
            continue
        raw = os.environ.get(setting.env, "")
        if raw != "":
            out[name] = _parse(setting, raw, setting.env)
            shown = setting.env if name in _SECRET else f"{setting.env}={raw}"
            out.origins[name] = Origin(ENVIRONMENT, shown)
        elif name in file_values:
            value = file_values[name]
            raw = str(value).lower() if isinstance(value, bool) else str(value)
            out[name] = _parse(setting, raw, f"{file_name}: {name}")
            out.origins[name] = Origin(CONFIG_FILE, _file_label(name, value, file_name))
            if name == "history" and out[name] is not None:
                # Relative to the file, so that it is the same from every sub-directory.
                out[name] = str(_file_directory(file_name) / out[name])
        elif name == "history":
            out[name] = default_history()
        else:
            out[name] = setting.default
    return out


def _file_directory(file_name: str) -> Path:
    return Path(file_name.removesuffix(" [tool.carbonfast]")).resolve().parent


def project_directory() -> Path | None:
    """The project the working directory is in: where the config file named by
    CARBONFAST_CONFIG is, else the nearest directory upwards with a carbonfast.toml or a
    pyproject.toml that may be trusted (see `untrusted`); None outside any project."""
    explicit = os.environ.get("CARBONFAST_CONFIG", "")
    if explicit:
        return Path(explicit).resolve().parent
    cwd = working_directory()
    if cwd is None:
        return None
    for directory in [Path(cwd), *Path(cwd).parents]:
        for name in ("carbonfast.toml", "pyproject.toml"):
            path = directory / name
            if path.is_file() and _trusted(path):
                return directory
    return None


def default_history() -> str:
    """The history belongs to the project: .carbonfast/history.sqlite beside its config file,
    so that `carbonfast history` finds it from any sub-directory; outside a project, the
    user's data directory ($XDG_DATA_HOME/carbonfast, else ~/.local/share/carbonfast)."""
    project = project_directory()
    if project is not None:
        return str(project / ".carbonfast" / "history.sqlite")
    data = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data) if os.path.isabs(data) else Path.home() / ".local" / "share"
    return str(base / "carbonfast" / "history.sqlite")


def _argument_label(name: str, value: Any, raw: str) -> str:
    option = _arguments_are_options.get()
    if name in _SECRET:
        return f"--{name.replace('_', '-')}" if option else name
    if option:
        return f"--{name.replace('_', '-')} {raw}"
    return f"{name}={value!r}"


def _file_label(name: str, value: Any, file_name: str) -> str:
    """`key = value in file`, the file by its bare name when it is in the working directory
    (where users look first), else by its path."""
    path = Path(file_name.removesuffix(" [tool.carbonfast]"))
    cwd = working_directory()
    shown = path.name if cwd and path.parent == Path(cwd) else str(path)
    if name in _SECRET:
        return f"{name} in {shown}"
    written = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else value
    return f"{name} = {written} in {shown}"


def _parse(setting: Setting, raw: str, name: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not valid; expected {setting.accepts}") from None


_file_cache: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}


def working_directory() -> str | None:
    """The working directory; None where it has been removed since the process entered it,
    so that the search for a config file finds none rather than failing."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        return None


def config_file() -> tuple[dict[str, Any], str]:
    """The settings of the config file in force, and how to name it in messages."""
    explicit = os.environ.get("CARBONFAST_CONFIG", "")
    key = (explicit, working_directory() or "")
    if key not in _file_cache:
        _file_cache[key] = _load_config_file(explicit)
    return _file_cache[key]


def _load_config_file(explicit: str) -> tuple[dict[str, Any], str]:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ValueError(f"CARBONFAST_CONFIG={explicit!r}: no such file")
        return _read_table(path, tool_table=path.name == "pyproject.toml")
    cwd = working_directory()
    if cwd is None:
        return {}, ""
    for directory in [Path(cwd), *Path(cwd).parents]:
        own = directory / "carbonfast.toml"
        if own.is_file() and _trusted(own):
            return _read_table(own, tool_table=False)
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file() and _trusted(pyproject):
            values, name = _read_table(pyproject, tool_table=True)
            if values:
                return values, name
    return {}, ""


class UntrustedConfigWarning(UserWarning):
    """A config file was found but not obeyed: another user could have written it."""


def untrusted(path: Path) -> str | None:
    """Why the config file at `path` may have been written by someone other than this user
    (None if it may not): it, or the directory it is in, is owned by another user than this
    one or root, or can be written by others. A symlink is judged by the file it leads to and
    by the directory it sits in, which decides what it leads to."""
    uid = os.geteuid()
    try:
        places = [(path.stat(), "it"), (path.parent.stat(), f"its directory {path.parent}")]
        if path.is_symlink():
            target = path.resolve()
            places.append((target.parent.stat(), f"the directory of {target}"))
    except OSError as e:
        return f"it cannot be checked ({e.strerror})"
    for st, what in places:
        if st.st_uid not in (uid, 0):
            return f"{what} is owned by uid {st.st_uid}, another user"
        if st.st_mode & stat.S_IWOTH:
            return f"{what} can be written by every user"
    return None


_warned: set[str] = set()


def _trusted(path: Path) -> bool:
    why = untrusted(path)
    if why is None:
        return True
    import shlex

    shown = str(path)
    if shown not in _warned:
        _warned.add(shown)
        warnings.warn(
            f"{shown} is not obeyed: {why}, so it may not be yours. To use it, check it and "
            f"name it explicitly: CARBONFAST_CONFIG={shlex.quote(str(path.resolve()))}",
            UntrustedConfigWarning,
            stacklevel=2,
        )
    return False


def _read_table(path: Path, *, tool_table: bool) -> tuple[dict[str, Any], str]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: cannot read it as TOML: {e}") from None
    except (RecursionError, MemoryError):
        raise ValueError(
            f"{path}: cannot read it as TOML: nested too deeply, or too large"
        ) from None
    name = f"{path} [tool.carbonfast]" if tool_table else str(path)
    table: Any = doc
    for key in ("tool", "carbonfast") if tool_table else ():
        table = table.get(key, {}) if isinstance(table, dict) else None
    if not isinstance(table, dict):
        raise ValueError(f"{name}: expected a table of settings (key = value lines)")
    unknown = sorted(set(table) - set(SETTINGS))
    if unknown:
        raise ValueError(
            f"{name}: unknown setting {', '.join(unknown)}; accepted: {', '.join(SETTINGS)}"
        )
    return table, name
