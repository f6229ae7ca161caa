"""Build the settings reference from the settings table in python/carbonfast/settings.py.

The table is read with `ast`, not imported: importing carbonfast needs its native module, which a
documentation build should not have to compile. The page is written into the build only, so it
cannot drift from the code. If the table moves or changes shape, the build stops with a message
saying where it looked, rather than publishing an empty or stale page.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

SETTINGS_PY = Path(__file__).resolve().parents[2] / "python" / "carbonfast" / "settings.py"
TABLE = "SETTINGS"
PAGE = "settings.md"

# The order of Setting's positional parameters: env, parse, accepts, default.
POSITIONAL = ("env", "parse", "accepts", "default")

GROUP_TITLES = {
    "hardware": "Hardware",
    "estimates": "Estimates",
    "distributed": "Distributed jobs",
    "carbon": "Carbon intensity",
    None: "Without a command-line option",
}

INTRO = """\
# Settings

Every setting of carbonfast, generated from the table `SETTINGS` in
`python/carbonfast/settings.py` each time this site is built.

Settings are layered: an argument (`cf.Meter(country="FR")`, `carbonfast --country FR`) beats
the environment (`CARBONFAST_...`), which beats the nearest `carbonfast.toml` or
`[tool.carbonfast]` table in `pyproject.toml` (or the file named by `CARBONFAST_CONFIG`), which
beats the default. Keys in a config file are the names in the first column. A bad value fails
with the setting's name and what it accepts. See [Emissions and configuration](emissions.md)
for how the place is chosen, and [Shared machines](security.md) for which config files are
obeyed.
"""


class _Unresolved(Exception):
    pass


def _module_constants(tree: ast.Module) -> dict[str, ast.expr]:
    constants: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                constants[target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            constants[node.target.id] = node.value
    return constants


def _evaluate(node: ast.expr, constants: dict[str, ast.expr]) -> Any:
    """The value of the few expression shapes the table uses for its texts ("one of " +
    ", ".join(_TRUE + _FALSE)); anything else is shown as source."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_evaluate(e, constants) for e in node.elts)
    if isinstance(node, ast.Dict):
        return {
            _evaluate(k, constants): _evaluate(v, constants)
            for k, v in zip(node.keys, node.values, strict=True)
            if k is not None
        }
    if isinstance(node, ast.Name) and node.id in constants:
        return _evaluate(constants[node.id], constants)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _evaluate(node.left, constants) + _evaluate(node.right, constants)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.LShift):
        return _evaluate(node.left, constants) << _evaluate(node.right, constants)
    if isinstance(node, ast.Call) and not node.keywords and len(node.args) == 1:
        arg = _evaluate(node.args[0], constants)
        if isinstance(node.func, ast.Name) and node.func.id == "tuple":
            return tuple(arg)
        if isinstance(node.func, ast.Attribute) and node.func.attr == "join":
            return _evaluate(node.func.value, constants).join(arg)
    raise _Unresolved(ast.unparse(node))


def _text(node: ast.expr | None, constants: dict[str, ast.expr]) -> str | None:
    if node is None:
        return None
    try:
        value = _evaluate(node, constants)
    except _Unresolved:
        return f"`{ast.unparse(node)}`"
    if isinstance(value, dict):
        value = tuple(value)
    return value if isinstance(value, str) else f"`{value!r}`"


def _default(node: ast.expr | None, constants: dict[str, ast.expr]) -> str:
    if node is None:
        return ""
    try:
        value = _evaluate(node, constants)
    except _Unresolved:
        return f"`{ast.unparse(node)}`"
    if value is None:
        return ""
    if value is True or value is False:
        return "`yes`" if value else "`no`"
    return f"`{value}`"


def _choices(node: ast.expr | None, constants: dict[str, ast.expr]) -> tuple[str, ...] | None:
    if node is None:
        return None
    try:
        return tuple(str(c) for c in _evaluate(node, constants))
    except (_Unresolved, TypeError):
        return None


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def read_settings(path: Path = SETTINGS_PY) -> list[dict[str, Any]]:
    """One dict per setting, in the table's order; fails loudly if the table is not found."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except OSError as e:
        raise PluginError(
            f"settings reference: cannot read {path} ({e}); if the settings table moved, "
            "point SETTINGS_PY in docs/hooks/settings.py at its new home"
        ) from e
    constants = _module_constants(tree)
    table = constants.get(TABLE)
    if not isinstance(table, ast.Dict):
        raise PluginError(
            f"settings reference: no dict literal `{TABLE} = {{...}}` at the top level of "
            f"{path}; if the settings table moved, point SETTINGS_PY and TABLE in "
            "docs/hooks/settings.py at it"
        )
    settings = []
    for key, value in zip(table.keys, table.values, strict=True):
        if not (
            isinstance(key, ast.Constant)
            and isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id == "Setting"
        ):
            where = ast.unparse(key) if key is not None else "**"
            raise PluginError(
                f"settings reference: entry {where} of {TABLE} in {path} is not "
                '"name": Setting(...); docs/hooks/settings.py needs updating'
            )
        fields: dict[str, ast.expr] = dict(zip(POSITIONAL, value.args, strict=False))
        fields.update({k.arg: k.value for k in value.keywords if k.arg})
        if "env" not in fields:
            raise PluginError(
                f"settings reference: {key.value} in {path} has no environment variable"
            )
        group = _evaluate(fields["group"], constants) if "group" in fields else None
        settings.append(
            {
                "name": key.value,
                "env": _text(fields["env"], constants),
                "accepts": _text(fields.get("accepts"), constants),
                "default": _default(fields.get("default"), constants),
                "group": group,
                "help": _text(fields.get("help"), constants),
                "metavar": _text(fields.get("metavar"), constants),
                "flag": isinstance(fields.get("parse"), ast.Name) and fields["parse"].id == "_flag",
                "choices": _choices(fields.get("choices"), constants),
            }
        )
    if not settings:
        raise PluginError(f"settings reference: {TABLE} in {path} is empty")
    return settings


def render(settings: list[dict[str, Any]]) -> str:
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for s in settings:
        groups.setdefault(s["group"], []).append(s)
    # Known groups in a fixed order, then any new ones, then the settings without an option.
    order = [g for g in GROUP_TITLES if g in groups and g is not None]
    order += sorted(g for g in groups if g not in GROUP_TITLES)
    if None in groups:
        order.append(None)
    lines = [INTRO]
    for group in order:
        lines.append(f"## {GROUP_TITLES.get(group, str(group).capitalize())}\n")
        if group is None:
            lines.append(
                "These are not global options of the command line: set them by argument, "
                "environment or config file. Some have an option of their own on a command "
                "(`carbonfast run --attribute`); a secret has none, as it would show in the "
                "process list.\n"
            )
        lines.append("| setting | environment | option | accepts | default | meaning |")
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for s in groups[group]:
            option = ""
            if group is not None:
                # Named as carbonfast.cli names them: flags have a --no- form, values the
                # setting's metavar, else its choices, else argparse's upper-case name.
                option = "--" + s["name"].replace("_", "-")
                if s["flag"]:
                    option = f"`{option}`, `--no-{option[2:]}`"
                else:
                    if s["metavar"]:
                        option += " " + s["metavar"]
                    elif s["choices"]:
                        option += " {" + ",".join(s["choices"]) + "}"
                    else:
                        option += " " + s["name"].upper()
                    option = f"`{option}`"
            lines.append(
                f"| `{s['name']}` | `{s['env']}` | {option} | {_cell(s['accepts'])} "
                f"| {_cell(s['default'])} | {_cell(s['help'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    if files.get_file_from_path(PAGE) is not None:
        raise PluginError(
            f"settings reference: docs/{PAGE} is generated at build time; remove the file"
        )
    files.append(File.generated(config, PAGE, content=render(read_settings())))
    return files
