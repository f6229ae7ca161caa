"""What one Prometheus scrape of `carbonfast serve` costs, on 64 domains (budget: under 5 ms).

A fake powercap tree on tmpfs with 32 sockets, each a package and its DRAM (64 counters),
every counter moved once so that all of them are exposed. Prints, over many scrapes:
  - collect + exposition in Prometheus's text format (what the exporter does per scrape:
    one native read of the 64 counters, the metric families, the text);
  - the same in OpenMetrics, which Prometheus asks for first;
  - a whole scrape over HTTP from this process (the client's own cost included).

    python benches/serve_scrape.py [--scrapes N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import carbonfast as cf
from tests.fakes.powercap import FakePowercap

BUDGET_MS = 5.0


def tree(base: Path, sockets: int) -> FakePowercap:
    fake = FakePowercap(base)
    for s in range(sockets):
        fake.zone(f"intel-rapl:{s}", f"package-{s}", 1_000_000)
        fake.zone(f"intel-rapl:{s}:0", "dram", 200_000)
    return fake


def timed_ms(step: object, n: int) -> list[float]:
    assert callable(step)
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        step()
        out.append((time.perf_counter_ns() - t0) * 1e-6)
    return out


def line(what: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"{what:<34} median {statistics.median(ms):7.3f} ms  mean {statistics.fmean(ms):7.3f} ms"
        f"  p99 {p99:7.3f} ms  (budget {BUDGET_MS:g} ms)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scrapes", type=int, default=5000)
    args = ap.parse_args()

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

    from carbonfast import serve

    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        os.environ.update(
            CARBONFAST_MSR_ROOT=f"{tmp}/no-msr",
            CARBONFAST_PERF_PMU_ROOT=f"{tmp}/no-perf",
            CARBONFAST_HISTORY="off",
        )
        fake = tree(Path(tmp) / "sys", 32)
        meter = cf.Meter(fake.root, source="powercap", gpu=False, estimate=False)
        for zone in sorted(p.name for p in fake.root.iterdir() if ":" in p.name):
            fake.add(zone, 1_000_000)
        collector = serve.MeterCollector(meter, host="bench")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        text = generate_latest(registry).decode()
        exposed = text.count("\ncarbonfast_energy_joules_total{")
        print(
            f"{len(meter.domains)} domains, {exposed} energy series, {len(text)} bytes a scrape; "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}"
        )
        n = args.scrapes
        timed_ms(lambda: generate_latest(registry), 200)  # warm-up
        print(line("collect + text format", timed_ms(lambda: generate_latest(registry), n)))
        print(line("collect + OpenMetrics", timed_ms(lambda: generate_openmetrics(registry), n)))
        collector.close()

        exporter = serve.start(meter, "127.0.0.1", 0, host="bench")
        try:

            def get() -> None:
                with urllib.request.urlopen(exporter.url, timeout=10) as r:
                    r.read()

            timed_ms(get, 50)
            print(line("whole scrape over HTTP", timed_ms(get, max(1, n // 10))))
        finally:
            exporter.close()


if __name__ == "__main__":
    main()
