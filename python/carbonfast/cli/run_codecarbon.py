"""`carbonfast run --codecarbon`: the command's Python imports carbonfast's CodeCarbon drop-in
(carbonfast.compat.codecarbon) under the name `codecarbon`, so that code that imports
codecarbon itself (transformers' `report_to="codecarbon"`, a library's own tracker) measures
with carbonfast.

A directory made for the run is put first on the command's PYTHONPATH, holding one package,
`codecarbon`, whose import hands over the drop-in's modules themselves: `codecarbon` and every
`codecarbon.X` are the modules `carbonfast.compat.codecarbon[.X]`, so classes are the same
objects under both names. Nothing else changes: without the option carbonfast never shadows an
installed codecarbon, and the directory is removed when the command ends.

Availability checks find the package: transformers asks `importlib.util.find_spec`, which
finds it first on the path. No `codecarbon` distribution metadata is written, so
`importlib.metadata.version("codecarbon")` still names what pip installed (if anything): the
package is carbonfast's, not CodeCarbon's release.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

# The package the command imports as `codecarbon`.
SHIM = '''"""carbonfast's CodeCarbon drop-in under the name `codecarbon`, for `carbonfast run
--codecarbon`: `codecarbon` and each `codecarbon.X` are the modules
carbonfast.compat.codecarbon[.X]."""

import importlib
import importlib.abc
import importlib.util
import sys

_REAL = "carbonfast.compat.codecarbon"


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `codecarbon.X` as the drop-in's module X, the same module object."""

    def __init__(self):
        self._specs = {}

    def find_spec(self, name, path=None, target=None):
        if not name.startswith("codecarbon."):
            return None
        real = _REAL + name[len("codecarbon"):]
        if importlib.util.find_spec(real) is None:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        module = importlib.import_module(_REAL + spec.name[len("codecarbon"):])
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        # The import machinery gave the module the alias's spec: it keeps its own.
        module.__spec__ = self._specs.pop(module.__spec__.name)


try:
    _drop_in = importlib.import_module(_REAL)
except ImportError as e:
    raise ImportError(
        "carbonfast run --codecarbon: this Python cannot import carbonfast's CodeCarbon drop-in "
        f"({e}); install carbonfast in the command's environment"
    ) from e
sys.meta_path.insert(0, _Alias())
# The import of `codecarbon` returns what sys.modules holds once this file has run.
sys.modules[__name__] = _drop_in
'''


@contextlib.contextmanager
def codecarbon_drop_in() -> Iterator[None]:
    """While it lasts, the commands this process starts import the drop-in as `codecarbon`
    (PYTHONPATH begins with a directory made for it, removed afterwards)."""
    where = tempfile.mkdtemp(prefix="carbonfast-codecarbon-")
    before = os.environ.get("PYTHONPATH")
    try:
        os.mkdir(os.path.join(where, "codecarbon"))
        with open(os.path.join(where, "codecarbon", "__init__.py"), "x") as f:
            f.write(SHIM)
        os.environ["PYTHONPATH"] = where if not before else os.pathsep.join((where, before))
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before
        shutil.rmtree(where, ignore_errors=True)
