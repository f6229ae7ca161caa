"""The package stays one a newcomer can read: no module too long to hold in mind, and no import
cycle, so that every module can be read after the ones it builds on."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "carbonfast"
# The CodeCarbon drop-in mirrors CodeCarbon's own layout, long modules included.
DROP_IN = PACKAGE / "compat" / "codecarbon"
MAX_LINES = 700


def _modules() -> dict[str, Path]:
    """Every module of the package outside the drop-in, by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(DROP_IN):
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The imports run when the module is imported: at module level, in `try` and plain `if`
    blocks, but not under `if TYPE_CHECKING:` nor inside functions and classes."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                pending.extend(node.body)
            pending.extend(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                pending.extend(block)
            for handler in node.handlers:
                pending.extend(handler.body)
    return found


def _imported(name: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names of the modules (or their attributes) an import statement names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    return [f"{base}.{alias.name}" for alias in node.names]


def _extensions() -> set[str]:
    """The compiled modules (the native core), known by their stubs or built files: they
    import nothing of the package."""
    return {
        ".".join((*path.relative_to(PACKAGE.parent).parts[:-1], path.name.split(".")[0]))
        for pattern in ("*.pyi", "*.so")
        for path in PACKAGE.rglob(pattern)
    }


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in [*modules, *_extensions()]}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in _top_level_imports(tree):
            for target in _imported(name, path, node):
                # `from pkg import mod` depends on the module; `from mod import name` on the
                # module that defines the name.
                while target and target not in graph:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_module_is_too_long() -> None:
    too_long = {
        str(path.relative_to(PACKAGE)): n
        for path in _modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"


def test_no_import_cycle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_a_package_importing_its_parent_is_seen() -> None:
    tree = ast.parse("from . import x\nfrom .. import y\nif TYPE_CHECKING:\n    import z\n")
    imports = _top_level_imports(tree)
    names = sorted(
        t for node in imports for t in _imported("carbonfast.report.html", Path("html.py"), node)
    )
    assert names == ["carbonfast.report.x", "carbonfast.y"]
