"""The fake libamd_smi.so (fake_amdsmi.c): built once per test run with the C compiler, and
copied per test so that each has its own state file."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from functools import cache, cached_property
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "fake_amdsmi.c"

# The resolution that MI200 and MI300 report, in microjoules (2^-16 J).
MI300_RESOLUTION_UJ = 15.259


@cache
def built() -> Path:
    out = Path(tempfile.mkdtemp(prefix="fake-amdsmi-")) / "libamd_smi.so"
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-shared", "-fPIC", "-o", str(out), str(SOURCE), "-lm", "-pthread"]
    subprocess.run(cmd, check=True)
    return out


class FakeAmdSmi:
    def __init__(self, base: Path, state: str) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.library = base / "libamd_smi.so"
        shutil.copy(built(), self.library)
        self.set(state)

    @property
    def state_file(self) -> Path:
        return self.library.with_name("amdsmi_state")

    def set(self, state: str) -> None:
        """Replaces the state every AMD SMI call reads (see fake_amdsmi.c for the format)."""
        tmp = self.library.with_name("amdsmi_state.tmp")
        tmp.write_text(state)
        os.replace(tmp, self.state_file)

    @cached_property
    def cdll(self) -> ctypes.CDLL:
        """This copy of the library, loaded by the same path as the meter loads it (in this
        process), for the fake_amdsmi_* functions."""
        lib = ctypes.CDLL(str(self.library))
        lib.fake_amdsmi_live_inits.restype = ctypes.c_int
        lib.fake_amdsmi_t0_ns.restype = ctypes.c_longlong
        return lib

    def live_inits(self) -> int:
        """amdsmi_init calls not yet matched by a shut-down, in this process."""
        return int(self.cdll.fake_amdsmi_live_inits())
