"""What CodeCarbon reports about the machine beside energy: CPU, RAM and GPU utilisation over a
run, and the hardware. Read from /proc and /sys (no psutil), as psutil computes them, so that
the figures match CodeCarbon's."""

from __future__ import annotations

import glob
import importlib
import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

GIB = 2**30


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat; None where unreadable.
    As psutil counts them: guest time is inside user time, and iowait is idle."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(values)
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return total - idle, total


def memory() -> tuple[float, float] | None:
    """(percent used, GiB used) as psutil.virtual_memory() gives them (used: total less
    available); None where unreadable."""
    info: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts:
                    info[key] = int(parts[0]) * 1024
    except (OSError, ValueError):
        return None
    total = info.get("MemTotal", 0)
    if total <= 0:
        return None
    free = info.get("MemFree", 0)
    cached = info.get("Cached", 0) + info.get("SReclaimable", 0)
    available = info.get("MemAvailable", free + cached + info.get("Buffers", 0))
    available = min(max(available, 0), total)
    used = total - available  # as psutil 6 and later count it
    return round(used / total * 100, 1), used / GIB


def ram_total_gib() -> float:
    """Installed memory in GiB, as CodeCarbon gives ram_total_size (psutil's total / 2^30)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024 / GIB
    except (OSError, ValueError):
        pass
    return 0.0


def cpu_sockets() -> int:
    """Physical CPU packages (what CodeCarbon calls physical CPUs); 1 where unknown."""
    ids = set()
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/topology/physical_package_id"):
        try:
            with open(path, encoding="ascii") as f:
                ids.add(f.read().strip())
        except OSError:
            continue
    return len(ids) or 1


class _Nvml:
    """GPU utilisation through pynvml (installed with CodeCarbon), loaded on first use; no
    figures where it is missing or finds no driver. Each query runs on a thread and is waited
    for at most DEADLINE_S: NVML can block for good on a GPU fallen off the bus, and a
    tracker's start() or stop() must not; one that did not answer is not asked again."""

    DEADLINE_S = 2.0
    # More devices than any node holds is a garbage count, not a list to walk.
    MAX_DEVICES = 256

    def __init__(self) -> None:
        self._module: Any = None
        self._failed = False

    def utilization(self, indices: Sequence[int] | None) -> list[float]:
        if self._failed:
            return []
        result: list[list[float]] = []
        query = threading.Thread(
            target=lambda: result.append(self._query(indices)),
            name="carbonfast-pynvml",
            daemon=True,
        )
        query.start()
        query.join(self.DEADLINE_S)
        if not result:
            self._failed = True
            return []
        return result[0]

    def _query(self, indices: Sequence[int] | None) -> list[float]:
        try:
            if self._module is None:
                module = importlib.import_module("pynvml")
                module.nvmlInit()
                self._module = module
            nvml = self._module
            count = min(int(nvml.nvmlDeviceGetCount()), self.MAX_DEVICES)
            chosen = range(count) if indices is None else [i for i in indices if i < count]
            return [
                float(nvml.nvmlDeviceGetUtilizationRates(nvml.nvmlDeviceGetHandleByIndex(i)).gpu)
                for i in chosen
            ]
        except Exception:  # no pynvml, no driver, a lost GPU: no utilisation figures
            self._failed = True
            return []


_nvml = _Nvml()


class Usage:
    """CPU, RAM and GPU use over a span (a run or a task): CPU from /proc/stat at its start and
    at each reading (the exact mean), RAM and GPU as the mean of the samples taken at its
    start, at each sample() and at each reading."""

    def __init__(self, gpu_indices: Sequence[int] | None = None, gpus: bool = False) -> None:
        self._gpus = gpus
        self._gpu_indices = gpu_indices
        self._cpu_start = cpu_times()
        self._ram: list[tuple[float, float]] = []
        self._gpu: list[float] = []
        self.sample()

    def sample(self) -> None:
        ram = memory()
        if ram is not None:
            self._ram.append(ram)
        if self._gpus:
            self._gpu.extend(_nvml.utilization(self._gpu_indices))

    def figures(self) -> dict[str, float]:
        """cpu_utilization_percent, gpu_utilization_percent, ram_utilization_percent and
        ram_used_gb up to now. An empty mean is 0, as CodeCarbon writes it."""
        self.sample()
        cpu = 0.0
        now = cpu_times()
        if now is not None and self._cpu_start is not None:
            busy, total = now[0] - self._cpu_start[0], now[1] - self._cpu_start[1]
            cpu = 100.0 * busy / total if total > 0 else 0.0
        return {
            "cpu_utilization_percent": cpu,
            "gpu_utilization_percent": _mean(self._gpu),
            "ram_utilization_percent": _mean([r[0] for r in self._ram]),
            "ram_used_gb": _mean([r[1] for r in self._ram]),
        }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0


def cpu_count() -> int:
    return os.cpu_count() or 1
