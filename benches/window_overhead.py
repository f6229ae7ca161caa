"""Cost of a measurement window against the bare counter reads it needs, in one run.

On a fake powercap tree on tmpfs with 3 domains (package, core, dram) this prints, side by side:
  - the bare preads a window needs (2 reads x 3 domains), timed in native code;
  - one `cf.measure()` window (enter + exit) and one `Meter.begin`/`end` pair;
  - the same preads done from Python with os.pread, for scale;
  - a window on a machine without counters, where cpu and ram are estimated (for scale);
  - a window on RAPL plus hwmon sensors (an AMD GPU's power, an Intel GPU's card and package
    counters, an ACPI power meter) against the bare preads of those 7 files, and the same with
    an AMD GPU through AMD SMI beside them (the fake libamd_smi: a library call per edge);
  - what `import carbonfast` adds to a bare interpreter start.
Budgets (DESIGN.md): a window at most 2x its preads and under 10 us; import under 30 ms.

    python benches/window_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import carbonfast as cf
from carbonfast import _native
from tests.fakes.amdsmi import FakeAmdSmi
from tests.fakes.hwmon import FakeHwmon
from tests.fakes.powercap import three_domain_tree


def import_overhead_ms(runs: int) -> tuple[float, float]:
    """Median wall time of `python -c pass` and `python -c 'import carbonfast'`, interleaved,
    with bytecode cached as after `pip install` (PYTHONDONTWRITEBYTECODE would otherwise make
    every run compile the package anew)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-c", "import carbonfast"], check=True, env=env)
    bare, with_cf = [], []
    for _ in range(runs):
        for code, out in (("pass", bare), ("import carbonfast", with_cf)):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env)
            out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(bare), statistics.median(with_cf)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    args = ap.parse_args()
    batches, ops = (15, 500) if args.quick else (61, 2000)

    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else None))
    fake = three_domain_tree(base)
    # A working RAPL is seen to step at start-up, and its meter keeps no estimate standing by
    # for frozen counters; this tree cannot step, so the estimate is off to build that meter.
    working = {"source": "powercap", "estimate": False}
    meter = cf.Meter(fake.root, gpu=False, history="off", **working)
    # The default: every closed window queued for the history, written by a background thread.
    recording = cf.Meter(fake.root, gpu=False, history=base / "h.sqlite", **working)
    assert not any(d.standby for d in meter.all_domains)
    assert len(meter.domains) == 3, meter.domains
    paths = [d.path for d in meter.domains]
    native = meter._native

    def py_preads(n: int) -> None:
        fds = [os.open(p, os.O_RDONLY) for p in paths]
        for _ in range(2 * n):
            for fd in fds:
                int(os.pread(fd, 32, 0))
        for fd in fds:
            os.close(fd)

    def native_reads(n: int) -> None:
        read = native.read
        for _ in range(n):
            read()
            read()

    def windows(n: int) -> None:
        m = meter.measure
        for _ in range(n):
            with m():
                pass

    # No counters at all: cpu and ram from the model.
    nowhere = base / "nowhere"
    estimating = cf.Meter(nowhere, msr_root=nowhere, perf_root=nowhere, gpu=False, history="off")

    # RAPL plus the hwmon sensors of issue 15's machines, then an AMD GPU through AMD SMI too.
    hwmon = FakeHwmon(base / "hw")
    hwmon.amdgpu("0000:04:00.0", 150.0)
    hwmon.intel_gpu("0000:05:00.0", {"card": 1_000_000, "pkg": 500_000})
    hwmon.power_meter("ACPI000D:00", 400.0)
    amd = FakeAmdSmi(base / "amd", "gpu 0 name=MI300X uuid=a-1 bdf=0000:03:00.0 power_w=300\n")
    gpu_off = {"nvml_library": nowhere / "libnvidia-ml.so.1", "amdsmi_library": nowhere / "x.so"}
    sensors = cf.Meter(
        fake.root, gpu=True, hwmon_root=hwmon.root, history="off", **working, **gpu_off
    )
    assert len(sensors.domains) == 7, sensors.domain_names
    sensor_paths = [d.path for d in sensors.domains]
    with_amd = cf.Meter(
        fake.root,
        **working,
        gpu=True,
        hwmon_root=hwmon.root,
        nvml_library=gpu_off["nvml_library"],
        amdsmi_library=amd.library,
        history="off",
    )
    assert "gpu-amd-0" in with_amd.domain_names, with_amd.domain_names

    def sensor_preads(n: int) -> None:
        sensor_preads.total_ns = sum(_native.time_raw_preads(sensor_paths, 2 * n))

    def sensor_windows(n: int) -> None:
        m = sensors.measure
        for _ in range(n):
            with m():
                pass

    def amd_windows(n: int) -> None:
        m = with_amd.measure
        for _ in range(n):
            with m():
                pass

    def recorded_windows(n: int) -> None:
        m = recording.measure
        for _ in range(n):
            with m():
                pass

    def estimated_windows(n: int) -> None:
        m = estimating.measure
        for _ in range(n):
            with m():
                pass

    def begin_end(n: int) -> None:
        begin, end = meter.begin, meter.end
        for _ in range(n):
            begin("w")
            end("w")

    def native_preads_only(n: int) -> None:
        # The preads timed inside native code, without the Python call around them.
        rounds = _native.time_raw_preads(paths, 2 * n)
        native_preads_only.total_ns = sum(rounds)

    # Interleave the variants batch by batch so drift affects them all alike.
    names = [
        "raw",
        "py",
        "nread",
        "window",
        "begin_end",
        "estimated",
        "recorded",
        "sensor_raw",
        "sensors",
        "amd",
    ]
    fns = [
        native_preads_only,
        py_preads,
        native_reads,
        windows,
        begin_end,
        estimated_windows,
        recorded_windows,
        sensor_preads,
        sensor_windows,
        amd_windows,
    ]
    samples: dict[str, list[float]] = {n: [] for n in names}
    for fn in fns:
        fn(ops)  # warm-up
    for _ in range(batches):
        for name, fn in zip(names, fns, strict=True):
            t0 = time.perf_counter_ns()
            fn(ops)
            elapsed = time.perf_counter_ns() - t0
            if name == "raw":
                elapsed = native_preads_only.total_ns
            elif name == "sensor_raw":
                elapsed = sensor_preads.total_ns
            samples[name].append(elapsed / ops)
    med = {n: statistics.median(v) for n, v in samples.items()}

    bare_ms, cf_ms = import_overhead_ms(7 if args.quick else 21)

    raw = med["raw"]
    print(
        f"carbonfast {cf.__version__} window overhead, {platform.machine()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print(
        f"fake powercap tree on {'tmpfs' if str(base).startswith('/dev/shm') else base}, "
        f"3 domains; median of {batches} batches x {ops} ops\n"
    )
    print(f"{'what (per window: 2 reads x 3 domains)':<48}{'ns':>10}{'x raw':>9}")
    rows = [
        ("raw preads + parse, native (the floor)", raw),
        ("same preads from Python (os.pread + int)", med["py"]),
        ("2 x native Meter.read() called from Python", med["nread"]),
        ("cf.measure() window, enter + exit", med["window"]),
        ("Meter.begin(name) + Meter.end(name)", med["begin_end"]),
        ("cf.measure() window, estimated (no RAPL)", med["estimated"]),
        ("cf.measure() window, recorded in the history", med["recorded"]),
    ]
    for label, ns in rows:
        print(f"{label:<48}{ns:>10.0f}{ns / raw:>9.2f}")
    sensor_raw = med["sensor_raw"]
    print(f"\n{'RAPL (3) + hwmon (4: GPU power, xe card + pkg, meter)':<48}{'ns':>10}{'x raw':>9}")
    for label, ns in [
        ("raw preads + parse of the 7 files, native", sensor_raw),
        ("cf.measure() window, enter + exit", med["sensors"]),
        ("the same + an AMD GPU through AMD SMI (fake)", med["amd"]),
    ]:
        print(f"{label:<48}{ns:>10.0f}{ns / sensor_raw:>9.2f}")
    print(
        f"\n{'budget: window <= 2x raw and < 10 us':<48}"
        f"{'PASS' if med['window'] <= 2 * raw and med['window'] < 10_000 else 'FAIL':>10}"
    )
    print(
        f"{'budget: begin/end <= 2x raw and < 10 us':<48}"
        f"{'PASS' if med['begin_end'] <= 2 * raw and med['begin_end'] < 10_000 else 'FAIL':>10}"
    )
    print(
        f"\nimport: bare python {bare_ms:.1f} ms, with `import carbonfast` {cf_ms:.1f} ms, "
        f"adds {cf_ms - bare_ms:.1f} ms (budget < 30 ms: "
        f"{'PASS' if cf_ms - bare_ms < 30 else 'FAIL'})"
    )


if __name__ == "__main__":
    main()
