"""The fake libnvidia-ml.so.1 (fake_nvml.c), built once per test run with the C compiler, and
copied per test so that each has its own state file."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "fake_nvml.c"


@cache
def built() -> Path:
    out = Path(tempfile.mkdtemp(prefix="fake-nvml-")) / "libnvidia-ml.so.1"
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), str(SOURCE)], check=True)
    return out


class FakeNvml:
    def __init__(self, base: Path, state: str) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.library = base / "libnvidia-ml.so.1"
        shutil.copy(built(), self.library)
        self.set(state)

    def set(self, state: str) -> None:
        """Replaces the state every NVML call reads (see fake_nvml.c for the format)."""
        tmp = self.library.with_name("nvml_state.tmp")
        tmp.write_text(state)
        os.replace(tmp, self.library.with_name("nvml_state"))
