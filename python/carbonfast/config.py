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
import os
import stat
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from carbonfast.settings import CARBON_KEYS as CARBON_KEYS
from carbonfast.settings import DISTRIBUTED_KEYS as DISTRIBUTED_KEYS
from carbonfast.settings import ESTIMATE_KEYS as ESTIMATE_KEYS
from carbonfast.settings import HARDWARE_KEYS as HARDWARE_KEYS
from carbonfast.settings import SCOPES as SCOPES
from carbonfast.settings import SETTINGS as SETTINGS
from carbonfast.settings import Setting as Setting

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

    from carbonfast._typing import GpuEnergy as GpuEnergy
    from carbonfast._typing import RaplSource as RaplSource

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
