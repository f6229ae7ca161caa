"""A fake /dev/cpu/N/msr tree: plain sparse files read at the register's offset, as the msr
driver does, with the CPU topology and cpuinfo the MSR path needs."""

from __future__ import annotations

import os
from pathlib import Path

INTEL_UNIT, INTEL_PKG, INTEL_PP0, INTEL_DRAM = 0x606, 0x611, 0x639, 0x619
# Power unit 3, energy status unit 14 (2^-14 J per count), time unit 10.
UNIT_ESU_14 = 0x000A_0E03


class FakeMsr:
    def __init__(self, base: Path, packages: list[int], family: int = 6, model: int = 0x8E):
        self.msr_root = base / "dev" / "cpu"
        self.topology_root = base / "sys" / "devices" / "system" / "cpu"
        self.proc_root = base / "proc"
        self.proc_root.mkdir(parents=True)
        (self.proc_root / "cpuinfo").write_text(
            f"processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: {family}\n"
            f"model\t\t: {model}\nmodel name\t: Fake CPU\n\n"
        )
        for cpu, package in enumerate(packages):
            topo = self.topology_root / f"cpu{cpu}" / "topology"
            topo.mkdir(parents=True)
            (topo / "physical_package_id").write_text(f"{package}\n")
            dev = self.msr_root / str(cpu)
            dev.mkdir(parents=True)
            (dev / "msr").touch()

    def set(self, cpu: int, register: int, value: int) -> None:
        fd = os.open(self.msr_root / str(cpu) / "msr", os.O_WRONLY)
        try:
            os.pwrite(fd, value.to_bytes(8, "little"), register)
        finally:
            os.close(fd)

    def meter_args(self) -> dict[str, Path]:
        return {
            "msr_root": self.msr_root,
            "cpu_topology_root": self.topology_root,
            "proc_root": self.proc_root,
        }
