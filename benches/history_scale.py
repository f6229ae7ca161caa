"""What the history costs a loop of windows: the same loop with history off and on, side by
side, and the bytes it adds to the history file.

Windows not asked to be kept are added up per label natively, and written now and then; the
target is a loop of 1,000,000 windows costing at most 1.2x history-off and adding under 1 MB.

    python benches/history_scale.py             # 1,000,000 windows per loop
    python benches/history_scale.py --windows 100000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import carbonfast as cf
from tests.fakes.powercap import three_domain_tree


def loop(meter: cf.Meter, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        with meter.measure("step"):
            pass
    if meter._recorder is not None:
        meter._recorder.flush()
    return time.perf_counter() - t0


def size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.name.startswith("h.sqlite"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    fake = three_domain_tree(base / "sys")
    history = base / "hist"
    history.mkdir()
    off = cf.Meter(fake.root, gpu=False, history="off")
    on = cf.Meter(fake.root, gpu=False, history=str(history / "h.sqlite"))
    loop(on, 1000)  # the file exists before the rounds are measured
    before = size(history)
    ratios, offs, ons = [], [], []
    for _ in range(args.rounds):  # alternated, so that drift in the machine hits both alike
        a = loop(off, args.windows)
        b = loop(on, args.windows)
        offs.append(a / args.windows * 1e6)
        ons.append(b / args.windows * 1e6)
        ratios.append(b / a)
    added = size(history) - before
    print(f"{args.windows:,} windows per loop, {args.rounds} rounds, fake powercap tree on tmpfs")
    print(f"history off: {statistics.median(offs):.2f} us/window (median)")
    print(f"history on:  {statistics.median(ons):.2f} us/window (median)")
    print(
        f"ratio on/off: median {statistics.median(ratios):.3f}x, "
        f"rounds {', '.join(f'{r:.3f}' for r in ratios)} (target <= 1.2x)"
    )
    total = args.windows * args.rounds
    print(f"history file grew by {added / 1e6:.3f} MB over {total:,} windows (target < 1 MB)")


if __name__ == "__main__":
    main()
