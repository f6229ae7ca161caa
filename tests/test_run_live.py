"""While a command runs: its CPU time shows in the estimate as it is used, not once it has
exited, and a run ends as soon as its command does."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def test_run_exits_as_soon_as_its_command_does(tmp_path: Path) -> None:
    env = {**os.environ, "CARBONFAST_POWERCAP_ROOT": str(tmp_path / "no-rapl")}
    cmd = [sys.executable, "-m", "carbonfast.cli", "run", "--sample-hz", "1", "--quiet"]
    # A period of 1 s is not waited out at the end; Python's start-up is all there is. The
    # best of three, so that a moment of load on a shared machine does not count.
    best = float("inf")
    for _ in range(3):
        t = time.monotonic()
        subprocess.run([*cmd, "--", "true"], env=env, check=True)
        best = min(best, time.monotonic() - t)
        if best < 0.5:
            break
    assert best < 0.5, f"`carbonfast run --sample-hz 1 -- true` took {best:.2f} s"
