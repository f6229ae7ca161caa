"""The example notebook runs, cell by cell, in a real Jupyter kernel of this very Python: the
extension loads, the magics measure and show, a benchmark shows as an HTML table."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs/examples/notebooks/carbonfast.ipynb"
KERNEL = "carbonfast-test"


def _kernelspec(root: Path) -> Path:
    """A kernel of the Python running the tests (its virtual environment), whatever kernels
    the machine has installed under the usual names."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "carbonfast test", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return root


def _text(output: Any) -> str:
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    data = output.get("data", {})
    return str(data.get("text/plain", ""))


def _cell(nb: Any, starts: str) -> Any:
    found = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(starts)]
    assert len(found) == 1, f"no single cell starting {starts!r}"
    return found[0]


def test_the_example_notebook_runs_in_a_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))
    monkeypatch.setenv("JUPYTER_PATH", str(_kernelspec(tmp_path / "jupyter")))
    monkeypatch.setenv("CARBONFAST_HISTORY", str(tmp_path / "history.sqlite"))
    # The kernel's files (profile, input history, connection file) stay out of the home.
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    # The kernel ran this Python, with this carbonfast.
    assert nb.cells[-1].outputs[0]["text"].strip() == sys.prefix

    # %%carbonfast -o m: the measurement shown as HTML, kept in m, its energy positive.
    shown = _cell(nb, "%%carbonfast -o m").outputs
    assert any("<table>" in o.get("data", {}).get("text/html", "") for o in shown)
    printed = _text(_cell(nb, 'print(f"{m.energy_j').outputs[0])
    energy = re.match(r"([\d.e+-]+) J in", printed)
    assert energy is not None and float(energy.group(1)) > 0, printed

    # %carbonfast STATEMENT: joules shown, and the statement's value.
    line = _cell(nb, "%carbonfast sum").outputs
    assert any(re.search(r"\d J", _text(o)) for o in line)
    assert any(o["output_type"] == "execute_result" and _text(o) == "4999950000" for o in line)

    # A bench result as the last expression: an HTML table with a chart.
    (result,) = [o for o in _cell(nb, "def with_loop").outputs if "data" in o]
    html = result["data"]["text/html"]
    assert "<table>" in html and "x best" in html and "<svg" in html

    # The history holds the cells' windows, as records and as a DataFrame.
    runs = _text(_cell(nb, "runs = cf.history").outputs[0])
    assert "squares" in runs and "line" in runs
