"""The IPython extension in an in-process shell: `%%carbonfast` and `%carbonfast`, their
options, IPython syntax in cells, and failing cells."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import carbonfast as cf
from carbonfast.integrations.ipython import parse_cell_line, parse_line
from tests.fakes.powercap import FakePowercap


@pytest.fixture(scope="module")
def _ipython(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InteractiveShell]:
    """One in-process shell for these tests, its files (profile, input history) kept out of
    the user's home; the builtins it adds are taken back afterwards."""
    import builtins

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    added = {"__IPYTHON__", "display", "get_ipython"} - set(vars(builtins))
    sh = InteractiveShell.instance(
        config=config, ipython_dir=str(tmp_path_factory.mktemp("ipython"))
    )
    yield sh
    InteractiveShell.clear_instance()
    for name in added:
        vars(builtins).pop(name, None)


@pytest.fixture
def shell(_ipython: InteractiveShell, default_on: FakePowercap) -> Iterator[InteractiveShell]:
    sh = _ipython
    sh.run_line_magic("load_ext", "carbonfast")
    yield sh
    sh.run_line_magic("unload_ext", "carbonfast")
    for name in ("m", "x", "err", "here"):
        sh.user_ns.pop(name, None)


def run(sh: InteractiveShell, cell: str) -> Any:
    return sh.run_cell(cell, store_history=False)


def test_importing_carbonfast_does_not_import_ipython() -> None:
    code = "import sys, carbonfast; print('IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_cell_is_measured_kept_and_shown_after_its_output(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    r = run(shell, "%%carbonfast -o m train step\nprint('from the cell')\nx = 6\nx * 7")
    assert r.success and r.result == 42
    m = shell.user_ns["m"]
    assert isinstance(m, cf.Measurement) and m.closed and m.label == "train step"
    out = capsys.readouterr().out
    assert out.index("from the cell") < out.index("carbonfast: `train step` ran")


def test_quiet_shows_nothing(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    r = run(shell, "%%carbonfast -q -o m\nx = 1")
    assert r.success and r.result is None
    assert "carbonfast" not in capsys.readouterr().out
    assert shell.user_ns["m"].label == "cell"


def test_a_line_returns_its_value(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    r = run(shell, "%carbonfast -o m -l summing sum(range(10))")
    assert r.result == 45
    assert shell.user_ns["m"].label == "summing"
    assert "carbonfast: `summing` ran" in capsys.readouterr().out
    assert run(shell, "%carbonfast -q x = 3").result is None
    assert shell.user_ns["x"] == 3


def test_cells_may_hold_ipython_syntax(shell: InteractiveShell) -> None:
    r = run(shell, "%%carbonfast -q\nhere = %pwd\nx = !echo hi\nx")
    assert r.success, r.error_in_exec
    assert list(r.result) == ["hi"] and isinstance(shell.user_ns["here"], str)


def test_a_failing_cell_raises_its_own_exception_and_is_still_measured(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    r = run(shell, "%%carbonfast -o m failing\nerr = KeyError('boom')\nraise err")
    assert not r.success
    assert r.error_in_exec is shell.user_ns["err"]
    m = shell.user_ns["m"]
    assert m.closed and m.label == "failing"
    captured = capsys.readouterr()
    assert "carbonfast: `failing` ran" in captured.out
    # The traceback shows the cell's own line, not a compiled-code placeholder.
    assert "raise err" in captured.out + captured.err


def test_bad_lines_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="needs a statement"):
        parse_line("-q")
    with pytest.raises(UsageError, match="unknown option -x"):
        parse_cell_line("-x label")
    with pytest.raises(UsageError, match="not a variable name"):
        parse_cell_line("-o 1abc")
    with pytest.raises(UsageError, match="needs a value"):
        parse_cell_line("-o")


def test_a_statement_is_kept_as_typed() -> None:
    opts = parse_line("-q -o m  f('a  b', -q)  ")
    assert (opts.quiet, opts.output, opts.code) == (True, "m", "f('a  b', -q)")
    assert parse_line("-quiet").code == "-quiet"
    assert parse_cell_line("'my label' -o m").label == "my label"


def test_unloading_removes_the_magics(shell: InteractiveShell) -> None:
    shell.run_line_magic("unload_ext", "carbonfast")
    assert "carbonfast" not in shell.magics_manager.magics["cell"]
    assert not run(shell, "%carbonfast 1").success
    shell.run_line_magic("load_ext", "carbonfast")
    assert run(shell, "%carbonfast -q 1").result == 1


def test_ipython_config_loads_the_extension(tmp_path: Path) -> None:
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    config = 'c.InteractiveShellApp.extensions = ["carbonfast"]\n'
    (profile / "ipython_config.py").write_text(config)
    code = "print('value', get_ipython().run_line_magic('carbonfast', '-q sum(range(10))'))"
    out = subprocess.run(
        [sys.executable, "-m", "IPython", "--colors=nocolor", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "IPYTHONDIR": str(tmp_path / "ipython")},
    )
    assert "value 45" in out.stdout, out.stdout + out.stderr
