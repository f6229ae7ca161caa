"""What the pytest plugin costs a session that does not benchmark: a one-test pytest session
with the plugin and without it (`-p no:carbonfast`), in pairs, alternating which goes first.

    python benches/pytest_plugin_cost.py            # 30 pairs
    python benches/pytest_plugin_cost.py --pairs 60
    python benches/pytest_plugin_cost.py --module carbonfast.bench.pytest_plugin
                                                    # the plugin as it was: the whole package

Where the installed entry point still names another module (an install older than the
source tree), the session with the plugin loads this tree's carbonfast_pytest by name instead,
so that the figure is the entry point's as it is now. Target: a difference of 10 ms or less.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import entry_points
from pathlib import Path

ENTRY = "carbonfast_pytest"

TEST = """
def test_one():
    assert True
"""


def _with_plugin(module: str | None) -> list[str]:
    if module is not None:
        return ["-p", "no:carbonfast", "-p", module]
    installed = [e.value for e in entry_points(group="pytest11") if e.name == "carbonfast"]
    if installed == [ENTRY]:
        return []
    print(f"the installed entry point names {installed or 'nothing'}: loading {ENTRY} by name")
    return ["-p", "no:carbonfast", "-p", ENTRY]


def _session(folder: Path, flags: list[str]) -> tuple[float, float]:
    """The session's wall time and CPU time (user and system, which a busy machine inflates
    less), in seconds."""
    # -c names an empty ini file: no project configuration, no conftest, no cache.
    argv = [sys.executable, "-m", "pytest", "-q", "-c", "pytest.ini", "-p", "no:cacheprovider"]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([*argv, *flags, "test_one.py"], cwd=folder, capture_output=True)
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if out.returncode != 0:
        sys.exit(f"pytest {' '.join(flags)} failed:\n{out.stdout.decode()}{out.stderr.decode()}")
    return elapsed, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--module", help="load this module as the plugin instead of the entry point")
    args = ap.parse_args()
    with_plugin = _with_plugin(args.module)
    without = ["-p", "no:carbonfast"]
    source = str(Path(__file__).resolve().parent.parent / "python")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (source, os.environ.get("PYTHONPATH")) if p
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pytest.ini").write_text("[pytest]\n")
        (folder / "test_one.py").write_text(TEST)
        _session(folder, with_plugin)  # warm: the bytecode written, the files cached
        _session(folder, without)
        on: list[tuple[float, float]] = []
        off: list[tuple[float, float]] = []
        for i in range(args.pairs):
            first, second = (on, off) if i % 2 == 0 else (off, on)
            first.append(_session(folder, with_plugin if first is on else without))
            second.append(_session(folder, with_plugin if second is on else without))
    print(
        f"pairs: {args.pairs}; with the plugin: pytest {' '.join(with_plugin) or '(as installed)'}"
    )
    for k, what in ((0, "wall"), (1, "CPU ")):
        a = [x[k] * 1e3 for x in on]
        b = [x[k] * 1e3 for x in off]
        diff = statistics.median(x - y for x, y in zip(a, b, strict=True))
        print(
            f"{what} time: with the plugin median {statistics.median(a):7.1f} ms, without "
            f"(-p no:carbonfast) {statistics.median(b):7.1f} ms; difference, median of the "
            f"pairs {diff:+.1f} ms"
        )


if __name__ == "__main__":
    main()
