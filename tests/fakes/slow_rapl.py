"""A RAPL package behind a slow file, whose truth is known (slow_rapl.c, loaded with LD_PRELOAD
into a child process): power is IDLE_W + CPU_W per busy CPU of that process, refreshed every
millisecond, and each read of energy_uj costs `delay_us` busy on the reading thread, as a
counter behind a FUSE file, a slow hwmon sensor or an ACPI power meter does.

    env = slow_rapl_env(tmp_path, delay_us=100)
    subprocess.run([sys.executable, "tests/bench_alone_worker.py", ...], env=env)

In the child, cf.Meter(env["CARBONFAST_POWERCAP_ROOT"]) reads the package; the truth of a call
that takes `wall` seconds of which `cpu` on its CPU is IDLE_W x wall + CPU_W x cpu.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from tests.fakes.powercap import FakePowercap

SOURCE = Path(__file__).resolve().parent / "slow_rapl.c"
IDLE_W = 10.0
CPU_W = 40.0


@cache
def built() -> Path:
    out = Path(tempfile.mkdtemp(prefix="fake-slow-rapl-")) / "libslow_rapl.so"
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(SOURCE), "-ldl", "-pthread"]
    subprocess.run(cmd, check=True)
    return out


def slow_rapl_env(base: Path, delay_us: float, period_us: float = 1000) -> dict[str, str]:
    """A one-package powercap tree under `base`, and the environment of a child process whose
    reads of it are served by the fake: CARBONFAST_POWERCAP_ROOT points at the tree."""
    fake = FakePowercap(base)
    fake.zone("intel-rapl:0", "package-0", 0)
    env = {
        **os.environ,
        "LD_PRELOAD": str(built()),
        "FAKE_RAPL_FILE": str(fake.path("intel-rapl:0")),
        "FAKE_RAPL_DELAY_US": str(delay_us),
        "FAKE_RAPL_PERIOD_US": str(period_us),
        "FAKE_RAPL_IDLE_W": str(IDLE_W),
        "FAKE_RAPL_CPU_W": str(CPU_W),
        "CARBONFAST_POWERCAP_ROOT": str(fake.root),
        "CARBONFAST_HISTORY": "off",
    }
    return env
