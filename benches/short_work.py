"""Short work on a GPU: carbonfast's single windows and cf.bench against an edge-synchronised
truth, with Zeus beside them where it can be imported.

For each burst length (about 1.5, 20 and 200 ms of bf16 8192^3 matrix products):
  - truth, before and after the tools: bursts run back to back while a thread of this script
    polls the GPU's energy counter through NVML (its own ctypes binding, not carbonfast's);
    energy between two changes of the counter, divided by the bursts completed between them;
  - cf.bench on a GPU-only meter: J/call, its 95% CI, its error against the truth, whether the
    CI holds it;
  - single windows around one burst each, back to back for a few seconds after a warm-up:
    mean and RMS error against the truth per burst, the share of ranges holding it, and how
    many said 0 J with no range;
  - the same windows with Zeus (ZeusMonitor begin/end_window), if it is installed;
and the cost of a window's edges with the GPU domain.

    python benches/short_work.py            # a machine with an NVIDIA GPU and PyTorch
    python benches/short_work.py --fake     # the test suite's H100-like fake NVML, no GPU
"""

from __future__ import annotations

import argparse
import ctypes
import math
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import carbonfast as cf


class Counter:
    """The GPU's total energy counter through NVML, polled back to back by a thread; each change
    is stamped with the midpoint between the last read that saw the old value and the read
    that saw the new one."""

    def __init__(self, library: str, index: int = 0) -> None:
        self.nvml = ctypes.CDLL(library)
        assert self.nvml.nvmlInit_v2() == 0, "nvmlInit_v2 failed"
        self.handle = ctypes.c_void_p()
        rc = self.nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(self.handle))
        assert rc == 0, f"nvmlDeviceGetHandleByIndex_v2: {rc}"
        self.changes: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def read_mj(self) -> int:
        mj = ctypes.c_ulonglong()
        rc = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle, ctypes.byref(mj))
        assert rc == 0, f"nvmlDeviceGetTotalEnergyConsumption: {rc}"
        return mj.value

    def _poll(self) -> None:
        last_seen, last = time.monotonic(), self.read_mj()
        while not self._stop.is_set():
            t0 = time.monotonic()
            v = self.read_mj()
            t1 = time.monotonic()
            if v != last:
                self.changes.append(((last_seen + t1) / 2, v * 1e-3))
                last = v
            last_seen = t0

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def truth_per_burst(counter: Counter, burst: Callable[[], None], seconds: float) -> float:
    """Energy per burst between two changes of the counter, bursts back to back throughout."""
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        burst()
    first = len(counter.changes)
    done: list[float] = []
    start = time.monotonic()
    while time.monotonic() - start < seconds or len(counter.changes) < first + 3:
        burst()
        done.append(time.monotonic())
    for _ in range(3):  # calls go on past the closing change
        burst()
        done.append(time.monotonic())
    (ta, ea), (tb, eb) = counter.changes[first + 1], counter.changes[-1]

    def completed(t: float) -> float:  # bursts done by t, the one in progress in part
        i = next((k for k, d in enumerate(done) if d > t), len(done))
        prev = done[i - 1] if i else start
        return i + (t - prev) / (done[i] - prev) if i < len(done) else float(i)

    return (eb - ea) / (completed(tb) - completed(ta))


def windows(meter: cf.Meter, burst: Callable[[], None], seconds: float) -> list[cf.Measurement]:
    out = []
    start = time.monotonic()
    while time.monotonic() - start < 0.3 + seconds:
        with meter.measure() as m:
            burst()
        if time.monotonic() - start > 0.3:
            out.append(m)
    return out


def zeus_errors(burst: Callable[[], None], seconds: float, truth: float) -> list[float] | None:
    try:
        from zeus.monitor import ZeusMonitor
    except ImportError:
        return None
    monitor = ZeusMonitor(gpu_indices=[0])
    out = []
    start = time.monotonic()
    while time.monotonic() - start < 0.3 + seconds:
        monitor.begin_window("w")
        burst()
        m = monitor.end_window("w")
        if time.monotonic() - start > 0.3:
            out.append(m.gpu_energy[0] / truth - 1)
    return out


def stats_of(errors: list[float]) -> tuple[float, float]:
    return statistics.fmean(errors), math.sqrt(statistics.fmean(e * e for e in errors))


def real_gpu(target_ms: float) -> tuple[Callable[[], None], str]:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(50):
        a @ b
    torch.cuda.synchronize()
    one = (time.perf_counter() - t0) / 50
    k = max(1, round(target_ms * 1e-3 / one))

    def burst() -> None:
        for _ in range(k):
            a @ b
        torch.cuda.synchronize()

    return burst, f"{k} x bf16 8192^3 ({k * one * 1e3:.3g} ms)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fake", action="store_true", help="the H100-like fake NVML, no GPU")
    ap.add_argument("--bursts", default="1.5,20,200", help="burst lengths, ms")
    ap.add_argument("--truth-seconds", type=float, default=4.0)
    ap.add_argument("--windows-seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=5, help="cf.bench rounds")
    args = ap.parse_args()

    # The GPU alone: the truth is the GPU's, so no CPU counter or estimate joins the total.
    nowhere = Path(tempfile.mkdtemp()) / "nowhere"
    gpu_only = {"msr_root": nowhere, "perf_root": nowhere, "estimate": False, "history": "off"}
    if args.fake:
        from tests.fakes.nvml import H100, FakeNvml

        fake = FakeNvml(Path(tempfile.mkdtemp()) / "nvml", H100)
        library = str(fake.library)
        meter = cf.Meter(nowhere, gpu=True, nvml_library=library, **gpu_only)
        device = "fake H100 (tests/fakes/fake_nvml.c, model=h100)"
    else:
        library = "libnvidia-ml.so.1"
        meter = cf.Meter(nowhere, gpu=True, **gpu_only)
        device = next((d.label for d in meter.domains if d.kind == "gpu"), "no GPU")
    gpus = [d for d in meter.domains if d.kind == "gpu"]
    if not gpus:
        sys.exit("no NVIDIA GPU measured here; try --fake")
    gpu = meter.domain_names.index(gpus[0].name)
    counter = Counter(library)
    print(f"carbonfast short work, {device}")
    print(f"GPU counter refresh: {gpus[0].update_period_s * 1e3:.1f} ms")

    t0 = time.perf_counter()
    for _ in range(1000):
        with meter.measure():
            pass
    edge_us = (time.perf_counter() - t0) / 1000 * 1e6
    print(f"window edges with the GPU domain: {edge_us:.2f} us per window (budget < 10 us)\n")

    rows = []
    for ms in [float(x) for x in args.bursts.split(",")]:
        if args.fake:
            seconds = ms * 1e-3

            def burst(seconds: float = seconds) -> None:
                fake.enqueue(seconds)
                fake.sync()

            what = f"{ms:g} ms declared"
        else:
            burst, what = real_gpu(ms)
        before = truth_per_burst(counter, burst, args.truth_seconds)
        res = cf.bench({"burst": burst}, meter=meter, rounds=args.rounds, record=False)
        after = truth_per_burst(counter, burst, args.truth_seconds)
        truth = (before + after) / 2
        v = res["burst"]
        ws = windows(meter, burst, max(args.windows_seconds, 15 * ms * 1e-3))
        errors, held, bare = [], 0, 0
        for m in ws:
            w = m._w()
            j, lo, hi = w.joules[gpu], w.joules_low[gpu], w.joules_high[gpu]
            errors.append(j / truth - 1)
            held += lo <= truth <= hi
            bare += j == 0 and lo == hi
        mean, rms = stats_of(errors)
        zeus = (
            None
            if args.fake
            else zeus_errors(burst, max(args.windows_seconds, 15 * ms * 1e-3), truth)
        )
        zm = "not run" if zeus is None else "{:+.1%} / {:.1%}".format(*stats_of(zeus))
        lo, hi = v.joules_per_call_ci
        rows.append(
            f"| {what} | {before:.4g} / {after:.4g} J "
            f"| {v.joules_per_call:.4g} ({lo:.4g}-{hi:.4g}) J, {v.joules_per_call / truth - 1:+.1%}"
            f", CI {'holds' if lo <= truth <= hi else 'misses'} the truth "
            f"| {len(ws)}: {mean:+.1%} / {rms:.1%}, {held / len(ws):.0%} held, {bare} bare 0 J "
            f"| {zm} |"
        )
    counter.close()
    print(
        "| burst | truth before / after | cf.bench J/call (95% CI), error | "
        "windows: n, mean / RMS error, ranges holding the truth | Zeus windows: mean / RMS |"
    )
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
