"""A fake Linux hwmon tree with the kernel's layout, driven by tests.

<tmp>/class/hwmon/hwmonN -> ../../devices/<parent>/hwmon/hwmonN
<tmp>/devices/<parent>/hwmon/hwmonN/device -> ../../../<parent's last part>
hwmonN holds `name` and the sensor attributes; an ACPI power meter's attributes sit on its
parent device, as most kernels put them.

`CounterWriter` moves energy counters at declared wattages from a separate process, so that
what a test expects is W x t whatever the machine's load.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType


class FakeHwmon:
    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.root = self.base / "class" / "hwmon"
        self.root.mkdir(parents=True)
        self._next = 0

    def device(self, parent: str, name: str) -> Path:
        """Adds hwmonN named `name` under the device at `parent`
        ("pci0000:00/0000:03:00.0"); returns its path under class/hwmon."""
        n = self._next
        self._next += 1
        real = self.base / "devices" / parent / "hwmon" / f"hwmon{n}"
        real.mkdir(parents=True)
        (real / "device").symlink_to(f"../../../{Path(parent).name}")
        (real / "name").write_text(f"{name}\n")
        link = self.root / f"hwmon{n}"
        link.symlink_to(Path("../../devices", parent, "hwmon", f"hwmon{n}"))
        return link

    def amdgpu(self, pci: str, watts: float, product: str | None = None) -> Path:
        """An AMD GPU: power1_average in microwatts."""
        hw = self.device(f"pci0000:00/{pci}", "amdgpu")
        write(hw / "power1_average", f"{round(watts * 1e6)}\n")
        write(hw / "temp1_input", "45000\n")
        if product is not None:
            write(hw / "device" / "product_name", f"{product}\n")
        return hw

    def intel_gpu(self, pci: str, counters: dict[str, int], driver: str = "xe") -> Path:
        """An Intel GPU (xe, i915): energyN_input in microjoules, labelled by the keys
        ("card", "pkg"; "" for none)."""
        hw = self.device(f"pci0000:00/{pci}", driver)
        for n, (label, uj) in enumerate(counters.items(), start=1):
            write(hw / f"energy{n}_input", f"{uj}\n")
            if label:
                write(hw / f"energy{n}_label", f"{label}\n")
        return hw

    def power_meter(self, acpi: str, watts: float, oem: str | None = None) -> Path:
        """An ACPI power meter: power1_average in microwatts on the ACPI device, and the OEM
        string NVIDIA Grace labels its meters with."""
        hw = self.device(f"LNXSYSTM:00/LNXSYBUS:00/{acpi}", "power_meter")
        write(hw / "device" / "power1_average", f"{round(watts * 1e6)}\n")
        write(hw / "device" / "power1_average_interval", "50\n")
        if oem is not None:
            write(hw / "device" / "power1_oem_info", f"{oem}\n")
        return hw

    def ina3221(self, address: str, rails: list[tuple[str, int, int]]) -> Path:
        """A Jetson's ina3221: (label, mV, mA) per channel."""
        hw = self.device(f"platform/3160000.i2c/i2c-1/{address}", "ina3221")
        for k, (label, mv, ma) in enumerate(rails, start=1):
            write(hw / f"in{k}_label", f"{label}\n")
            write(hw / f"in{k}_input", f"{mv}\n")
            write(hw / f"curr{k}_input", f"{ma}\n")
            write(hw / f"in{k}_enable", "1\n")
        return hw

    def amd_energy(self, cores: int, sockets: list[int]) -> Path:
        """amd_energy: Ecore counters first, then one Esocket counter per socket (µJ)."""
        hw = self.device("platform/amd_energy.0", "amd_energy")
        for c in range(cores):
            write(hw / f"energy{c + 1}_input", f"{1000 + c}\n")
            write(hw / f"energy{c + 1}_label", f"Ecore{c:03d}\n")
        for s, uj in enumerate(sockets):
            n = cores + s + 1
            write(hw / f"energy{n}_input", f"{uj}\n")
            write(hw / f"energy{n}_label", f"Esocket{s}\n")
        return hw


def write(path: Path, content: str) -> None:
    """Writes in place (same inode), as the kernel's values change under an open descriptor:
    the new text goes over the old before the rest is cut, so that a reader racing a growing
    counter never sees an empty file."""
    if not path.exists():
        path.write_text(content)
        return
    with open(path, "r+b") as f:
        f.write(content.encode())
        f.truncate()


# Each counter's value is its start plus W x (now - t0) on CLOCK_MONOTONIC, computed at each
# write: however seldom the writer is scheduled, the value it writes is the truth at that
# moment. Writes are in place, new text over old (a counter only grows), about every 1 ms.
_WRITER = r"""
import os, sys, time
counters = []
for spec in sys.argv[1:]:
    path, watts, start = spec.rsplit("=", 2)
    counters.append((os.open(path, os.O_WRONLY), float(watts), int(start)))
t0 = time.monotonic()
ready = False
while True:
    dt = time.monotonic() - t0
    for fd, watts, start in counters:
        data = b"%d\n" % (start + int(watts * dt * 1e6))
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    if not ready:
        print("ready", flush=True)
        ready = True
    time.sleep(0.001)
"""


class CounterWriter:
    """Moves µJ counter files at declared wattages from a background process, for as long as
    the `with` block lasts. `counters` maps each file to its wattage; each counts on from the
    value it holds."""

    def __init__(self, counters: dict[Path, float]) -> None:
        self.counters = counters
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> CounterWriter:
        specs = [f"{p}={w}={int(p.read_text())}" for p, w in self.counters.items()]
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, *specs],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            self._proc.kill()
            raise RuntimeError("the counter writer did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._proc is not None
        self._proc.kill()
        self._proc.wait()
        assert self._proc.stdout is not None
        self._proc.stdout.close()
