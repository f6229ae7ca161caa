"""A fake Linux powercap tree with the kernel's layout, driven by tests.

<tmp>/class/powercap/intel-rapl        -> ../../devices/virtual/powercap/intel-rapl
<tmp>/class/powercap/intel-rapl:0      -> ../../devices/virtual/powercap/intel-rapl/intel-rapl:0
<tmp>/class/powercap/intel-rapl:0:0    -> .../intel-rapl:0/intel-rapl:0:0
<tmp>/devices/virtual/powercap/intel-rapl/subsystem -> ../../../../class/powercap
zone directories hold name, energy_uj, max_energy_range_uj, enabled.
"""

from __future__ import annotations

import os
from pathlib import Path

# The range a real Intel package reports (2^32 energy units of 61.04 uJ).
REAL_RANGE_UJ = 262_143_328_850


class FakePowercap:
    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        self.root = self.base / "class" / "powercap"
        self.devices = self.base / "devices" / "virtual" / "powercap"
        self.root.mkdir(parents=True)
        self.devices.mkdir(parents=True)

    def zone(
        self, zone_id: str, name: str, energy_uj: int = 0, max_uj: int = REAL_RANGE_UJ
    ) -> Path:
        """Adds zone `zone_id` ("intel-rapl:0", "intel-rapl:0:1", "intel-rapl-mmio:0")."""
        control = zone_id.split(":")[0]
        control_dir = self.devices / control
        if not control_dir.exists():
            control_dir.mkdir()
            (control_dir / "subsystem").symlink_to("../../../../class/powercap")
            (control_dir / "enabled").write_text("1\n")
            (self.root / control).symlink_to(f"../../devices/virtual/powercap/{control}")
        parts = zone_id.split(":")
        rel = Path(control, *(":".join(parts[:i]) for i in range(2, len(parts) + 1)))
        zone_dir = self.devices / rel
        zone_dir.mkdir(parents=True)
        (zone_dir / "name").write_text(f"{name}\n")
        (zone_dir / "max_energy_range_uj").write_text(f"{max_uj}\n")
        (zone_dir / "enabled").write_text("1\n")
        (self.root / zone_id).symlink_to(Path("../../devices/virtual/powercap") / rel)
        self.set(zone_id, energy_uj)
        return zone_dir

    def path(self, zone_id: str, file: str = "energy_uj") -> Path:
        return self.root / zone_id / file

    def set(self, zone_id: str, energy_uj: int) -> None:
        """Sets the counter in place (same inode), as the kernel does under an open fd."""
        self.write(zone_id, "energy_uj", f"{energy_uj}\n")

    def get(self, zone_id: str) -> int:
        return int(self.path(zone_id).read_text())

    def add(self, zone_id: str, delta_uj: int) -> None:
        """Advances the counter by `delta_uj`, wrapping past max_energy_range_uj like RAPL."""
        modulus = int(self.path(zone_id, "max_energy_range_uj").read_text()) + 1
        self.set(zone_id, (self.get(zone_id) + delta_uj) % modulus)

    def write(self, zone_id: str, file: str, content: str) -> None:
        # Written in place (same inode), so descriptors the meter holds see the new value; the
        # new text goes over the old before the rest is cut, so that a reader racing a counter
        # that grows never sees an empty file.
        path = self.path(zone_id, file)
        if not path.exists():
            path.write_text(content)
            return
        with open(path, "r+b") as f:
            f.write(content.encode())
            f.truncate()

    def chmod(self, zone_id: str, mode: int, file: str = "energy_uj") -> None:
        os.chmod(self.path(zone_id, file), mode)


def three_domain_tree(base: Path) -> FakePowercap:
    """One socket with package, core and dram: the common server layout."""
    fake = FakePowercap(base)
    fake.zone("intel-rapl:0", "package-0", 1_000_000)
    fake.zone("intel-rapl:0:0", "core", 500_000)
    fake.zone("intel-rapl:0:1", "dram", 200_000)
    return fake
