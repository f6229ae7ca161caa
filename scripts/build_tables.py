#!/usr/bin/env python3
"""Builds carbonfast's compact data tables from the reference data in ../shared/data.

    python scripts/build_tables.py [--data DIR]

Writes rust/carbonfast-core/data/cpu_tdp.tsv: CPU model name and TDP in watts, one per line,
with the source and licence in its header. Model names are matched against /proc/cpuinfo by
the core (rust/carbonfast-core/src/tdp.rs); this script only cleans and deduplicates.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"
CPU_TDP_OUT = REPO / "rust" / "carbonfast-core" / "data" / "cpu_tdp.tsv"

CPU_TDP_HEADER = """\
# CPU model -> thermal design power (W), per socket.
# Source: CodeCarbon, data/hardware/cpu_power.csv (scraped from Intel and AMD specification
# pages), https://github.com/mlco2/codecarbon. Licence: MIT, Copyright (c) 2020 CodeCarbon
# contributors. Built by scripts/build_tables.py; do not edit by hand.
"""


def build_cpu_tdp(src: Path, out: Path) -> int:
    rows: dict[str, float] = {}
    with src.open(newline="", encoding="utf-8") as f:
        for record in csv.DictReader(f):
            name = " ".join((record.get("Name") or "").split())
            try:
                tdp = float(record.get("TDP") or "")
            except ValueError:
                continue
            if not name or not 1 <= tdp <= 1000 or "\t" in name:
                continue
            # A name listed twice keeps its higher TDP: an estimate should not understate.
            rows[name] = max(tdp, rows.get(name, 0.0))
    lines = [f"{name}\t{tdp:g}" for name, tdp in sorted(rows.items())]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(CPU_TDP_HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="reference data directory")
    args = ap.parse_args()
    n = build_cpu_tdp(args.data / "cpu_tdp_watts.csv", CPU_TDP_OUT)
    print(f"{CPU_TDP_OUT.relative_to(REPO)}: {n} CPU models")


if __name__ == "__main__":
    main()
