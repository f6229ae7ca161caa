"""A fake machine whose power follows the processes the test declares.

A powercap tree (package and DRAM) and a procfs `schedstat`, rewritten every millisecond, as a
machine would show them if only the followed processes ran on it:

    package power = idle_w + busy_w x (busy CPUs of the followed processes)
    DRAM power    = dram_w
    /proc/schedstat busy time = the followed processes' CPU time

The CPU time is each followed process's own kernel CPU clock (clock_getcpuclockid, ns), so
the truth is what the processes actually ran, however a busy machine schedules them: a test
compares carbonfast's figures with this truth, never with what it hoped the scheduler gave.
A process is followed from the first scan that finds `marker` in its command line (never
carbonfast's own, whose command line names the command); its last CPU time is kept once it
has gone.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from pathlib import Path

from tests.fakes.powercap import FakePowercap

_libc = ctypes.CDLL(None, use_errno=True)


def cpu_ns(pid: int) -> int | None:
    """The CPU time of process `pid` (every thread of it) in ns; None once it has gone."""
    clock = ctypes.c_int()
    if _libc.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
        return None
    try:
        return time.clock_gettime_ns(clock.value)
    except OSError:
        return None


class FollowingMachine:
    def __init__(
        self,
        base: Path,
        markers: list[str],
        *,
        idle_w: float = 10.0,
        busy_w: float = 40.0,
        dram_w: float = 2.0,
    ) -> None:
        self.powercap = FakePowercap(base / "sys")
        self.powercap.zone("intel-rapl:0", "package-0", 0)
        self.powercap.zone("intel-rapl:0:0", "dram", 0)
        self.proc = base / "proc"
        self.proc.mkdir()
        self.markers = markers
        self.idle_w, self.busy_w, self.dram_w = idle_w, busy_w, dram_w
        # Per followed pid: (marker, last CPU ns seen, CPU ns when first seen).
        self.followed: dict[int, list] = {}
        # (monotonic ns, {marker: CPU ns so far}) every millisecond, for the test's truth.
        self.history: list[tuple[int, dict[str, int]]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic_ns()
        self._write(0, 0)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FollowingMachine:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_by_marker(self) -> dict[str, int]:
        out = dict.fromkeys(self.markers, 0)
        for marker, last, first in self.followed.values():
            out[marker] += last - first
        return out

    def _scan(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in self.followed:
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"carbonfast.cli" in cmdline:
                continue  # the meter itself, whose command line names the command's marker
            for marker in self.markers:
                if marker.encode() in cmdline:
                    now = cpu_ns(int(entry))
                    if now is not None:
                        # Its time before it was found counts too: it was followed from its
                        # start as far as the machine is concerned (found within 20 ms).
                        self.followed[int(entry)] = [marker, now, 0]

    def _run(self) -> None:
        last_scan = 0
        while not self._stop.is_set():
            now = time.monotonic_ns()
            if now - last_scan > 20_000_000:
                self._scan()
                last_scan = now
            for pid, entry in self.followed.items():
                ns = cpu_ns(pid)
                if ns is not None and ns > entry[1]:
                    entry[1] = ns
            cpu = self.cpu_by_marker()
            self.history.append((now, cpu))
            self._write(now - self._t0, sum(cpu.values()))
            time.sleep(0.001)

    def _write(self, elapsed_ns: int, cpu_ns_total: int) -> None:
        package_uj = (self.idle_w * elapsed_ns + self.busy_w * cpu_ns_total) / 1000
        self.powercap.set("intel-rapl:0", int(package_uj))
        self.powercap.set("intel-rapl:0:0", int(self.dram_w * elapsed_ns / 1000))
        # In place and of one length (zero-padded), as the kernel's file is one the reader keeps
        # open: one pwrite, so that a reader sees the old text or the new, never a mix of sizes.
        text = f"version 15\ntimestamp 0\ncpu0 0 0 0 0 0 0 {cpu_ns_total:020d} 0 0\n"
        fd = os.open(self.proc / "schedstat", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, text.encode(), 0)
        finally:
            os.close(fd)
