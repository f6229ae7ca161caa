"""The fake libnvidia-ml.so.1 (fake_nvml.c), built once per test run with the C compiler, and
copied per test so that each has its own state file."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from functools import cache, cached_property
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "fake_nvml.c"

# A state line for a GPU with the H100 model: the counter refreshes every ~100 ms, a read takes
# 3.3 ms and power lags the load that fake_nvml_enqueue declares (see fake_nvml.c).
H100 = "gpu 0 name=H100 uuid=GPU-h100 model=h100\n"


@cache
def built() -> Path:
    out = Path(tempfile.mkdtemp(prefix="fake-nvml-")) / "libnvidia-ml.so.1"
    cc = os.environ.get("CC", "cc")
    cmd = [cc, "-shared", "-fPIC", "-o", str(out), str(SOURCE), "-lm", "-pthread"]
    subprocess.run(cmd, check=True)
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

    @cached_property
    def cdll(self) -> ctypes.CDLL:
        """This copy of the library, loaded by the same path as the meter loads it, so that both
        share one H100 model. Loading it first is fine: the model starts on first use."""
        lib = ctypes.CDLL(str(self.library))
        signatures = {
            "fake_nvml_enqueue": (None, [ctypes.c_uint, ctypes.c_double]),
            "fake_nvml_sync": (None, [ctypes.c_uint]),
            "fake_nvml_true_energy_j": (ctypes.c_double, [ctypes.c_uint, ctypes.c_longlong]),
            "fake_nvml_power_w": (ctypes.c_double, [ctypes.c_uint, ctypes.c_longlong]),
            "fake_nvml_refresh_ns": (ctypes.c_longlong, [ctypes.c_uint, ctypes.c_longlong]),
            "fake_nvml_t0_ns": (ctypes.c_longlong, [ctypes.c_uint]),
        }
        for name, (restype, argtypes) in signatures.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        return lib

    # The H100 model (a GPU whose state line has model=h100). Times are CLOCK_MONOTONIC ns, as
    # time.monotonic_ns() gives them; functions on a GPU without the model return NaN or -1.

    def enqueue(self, seconds: float, gpu: int = 0) -> None:
        """Queues a kernel of this many seconds: busy from max(now, end of queued work)."""
        self.cdll.fake_nvml_enqueue(gpu, seconds)

    def sync(self, gpu: int = 0) -> None:
        """Returns once the queued work is done, like cudaDeviceSynchronize."""
        self.cdll.fake_nvml_sync(gpu)

    def true_energy_j(self, t_ns: int, gpu: int = 0) -> float:
        """The exact energy in joules from the model's t0 to t_ns."""
        return self.cdll.fake_nvml_true_energy_j(gpu, t_ns)

    def power_w(self, t_ns: int, gpu: int = 0) -> float:
        """The exact power in watts at t_ns."""
        return self.cdll.fake_nvml_power_w(gpu, t_ns)

    def refresh_ns(self, k: int, gpu: int = 0) -> int:
        """The k-th refresh instant of the counter and of reported power (t0 for k <= 0)."""
        return self.cdll.fake_nvml_refresh_ns(gpu, k)

    def t0_ns(self, gpu: int = 0) -> int:
        return self.cdll.fake_nvml_t0_ns(gpu)
