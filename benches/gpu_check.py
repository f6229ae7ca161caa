"""On a machine with an NVIDIA GPU: carbonfast's GPU energy beside NVML read independently.

Measures one burst of bf16 matrix products (PyTorch) four ways, in one run:
  - carbonfast, energy counter (nvmlDeviceGetTotalEnergyConsumption);
  - carbonfast, integrated power (gpu_energy="power", read every 20 ms by the wrap guard);
  - pynvml (nvidia-ml-py), the same counter read before and after;
  - pynvml, power sampled every 10 ms by a Python thread and integrated;
and prints the counter's update period and the cost of one NVML read through each.

    python benches/gpu_check.py [--seconds S]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import carbonfast as cf


def burst(seconds: float) -> tuple[float, int]:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for _ in range(20):
            a @ b
        torch.cuda.synchronize()
        n += 20
    return time.monotonic() - t0, n


class PowerThread(threading.Thread):
    """pynvml power every 10 ms, integrated (trapezoid)."""

    def __init__(self, nvml, handle) -> None:
        super().__init__(daemon=True)
        self.nvml, self.handle = nvml, handle
        self.joules, self.stop = 0.0, threading.Event()

    def run(self) -> None:
        last_t, last_p = time.monotonic(), self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1e3
        while not self.stop.is_set():
            time.sleep(0.01)
            t, p = time.monotonic(), self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1e3
            self.joules += (p + last_p) / 2 * (t - last_t)
            last_t, last_p = t, p


def per_call_us(fn, n: int = 2000) -> float:
    samples = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter_ns() - t0) / n / 1e3)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    import pynvml
    import torch

    counter = cf.Meter(gpu=True)
    power = cf.Meter(gpu=True, gpu_energy="power")
    gpus = [d for d in counter.domains if d.kind == "gpu"]
    if not gpus:
        sys.exit("no GPU measured: " + "; ".join(p.reason for p in counter.problems))
    gpu = gpus[0]
    print(f"carbonfast {cf.__version__}, torch {torch.__version__}, GPU {gpu.label}")
    print(
        f"energy counter update period: {gpu.update_period_s * 1e3:.1f} ms"
        if gpu.update_period_s
        else "energy counter update period: not measured"
    )

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    burst(0.5)  # warm-up: clocks up, kernels loaded
    sampler = PowerThread(pynvml, handle)
    sampler.start()
    e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    with (
        counter.measure("burst", sync="torch") as by_counter,
        power.measure("burst", sync="torch") as by_power,
    ):
        seconds, n = burst(args.seconds)
    e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    sampler.stop.set()
    sampler.join()

    name = gpu.name
    rows = [
        ("carbonfast, energy counter", by_counter.domains[name]),
        ("carbonfast, integrated power (20 ms)", by_power.domains[name]),
        ("pynvml, energy counter", (e1 - e0) / 1e3),
        ("pynvml, integrated power (10 ms)", sampler.joules),
    ]
    reference = rows[2][1]
    tflops = 2 * 8192**3 * n / seconds / 1e12
    print(f"\nburst: {n} bf16 8192^3 products in {seconds:.2f} s ({tflops:.0f} TFLOP/s)")
    print(f"{'':<40}{'J':>10}{'W':>9}{'vs pynvml counter':>20}")
    for label, joules in rows:
        print(
            f"{label:<40}{joules:>10.1f}{joules / seconds:>9.1f}"
            f"{(joules - reference) / reference:>19.2%}"
        )

    native = counter._native
    only_gpu = cf.Meter("/nonexistent", gpu=True, estimate=False)
    print("\ncost of one read (median of 5 x 2000):")
    print(f"  carbonfast Meter.read(), GPU only:   {per_call_us(only_gpu._native.read):8.2f} us")
    print(f"  carbonfast Meter.read(), all domains: {per_call_us(native.read):8.2f} us")
    print(
        "  pynvml nvmlDeviceGetTotalEnergyConsumption: "
        f"{per_call_us(lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)):8.2f} us"
    )
    print(
        "  pynvml nvmlDeviceGetPowerUsage:             "
        f"{per_call_us(lambda: pynvml.nvmlDeviceGetPowerUsage(handle)):8.2f} us"
    )
    edges = []
    ms = []
    for _ in range(20):
        t0 = time.perf_counter()
        with counter.measure() as m:
            pass
        edges.append(time.perf_counter() - t0)
        ms.append(m)
    t0 = time.perf_counter()
    resolved = [m.energy_j for m in ms]
    wait = time.perf_counter() - t0
    edge_us = statistics.median(edges) * 1e6
    print(
        f"  cf.measure() window with the GPU, enter + exit: {edge_us:8.1f} us (slow GPU reads "
        f"resolved afterwards: {wait * 1e3:.1f} ms for {len(resolved)} windows)"
    )
    print("\nnotes:", *by_counter.notes, *by_power.notes, sep="\n  ")


if __name__ == "__main__":
    main()
