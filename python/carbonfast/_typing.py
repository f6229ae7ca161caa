"""Types shared across the Python layer and the native module's stub: the core's names as
`Literal` aliases, and the mapping a native Meter is built from. The names mirror the core's
(rust/carbonfast-core/src/domain.rs); tests/test_rules_parity.py fails where they drift."""

from __future__ import annotations

import os
from typing import Literal, TypedDict

# The core's domain kinds, in the order reports list them.
DomainKind = Literal[
    "package", "core", "uncore", "dram", "psys", "gpu", "platform", "module", "part"
]
# The CodeCarbon parts a domain's energy is reported in.
PartName = Literal["cpu", "gpu", "ram"]
# How a kind's energy stands to the total: added to it, inside another domain, or covering
# several others.
RoleName = Literal["added", "inside", "covers"]
# Where RAPL is read from.
RaplSource = Literal["auto", "powercap", "msr", "perf"]
# Whose CPU time an estimate follows.
EstimateScope = Literal["process", "container", "machine"]
# Where a GPU's energy comes from: its energy counter where it has one, or integrated power.
GpuEnergy = Literal["auto", "power"]

Root = str | os.PathLike[str] | None


class MeterConfig(TypedDict, total=False):
    """What Meter is built from: carbonfast.config's hardware and estimate settings, resolved
    and validated there (the one settings table), with the meter's own options. The keys
    without a default in the bindings are required there; the others may be left out."""

    powercap_root: Root
    msr_root: Root
    cpu_topology_root: Root
    perf_root: Root
    proc_root: Root
    cgroup_root: Root
    nvml_library: Root
    amdsmi_library: Root
    hwmon_root: Root
    source: RaplSource
    gpu: bool
    gpu_energy: GpuEnergy
    estimate: bool
    scope: EstimateScope
    cpu_tdp_w: float | None
    cpu_threads: int | None
    ram_gb: float | None
    cpu_power_w: float | None
    ram_power_w: float | None
    sample_hz: float | None
    capacity: int
    max_power_w: float | None
    skip_host: bool
    gpu_indices: list[int] | None
