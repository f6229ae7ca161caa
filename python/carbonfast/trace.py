"""Power traces recorded by a sampling Meter, as numpy arrays (numpy is imported only here)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import numpy as np


class Trace:
    """Samples oldest first.

    `t_s`: CLOCK_MONOTONIC seconds of each sample. `energy_j[name]`: each domain's cumulative
    energy since the meter started, a view into the one buffer the samples were copied into.
    `power_w[name]`: mean power over the interval ending at each sample (NaN for the first).

    A counter that refreshes in steps (RAPL about every millisecond, an H100's NVML counter
    every 100 ms) is traced as its energy interpolated between the timestamped refreshes
    around each sample, as short windows are: it shows power, not steps. A sample after the
    last refresh seen, or before the first one placed, is unknown: NaN, never 0.
    """

    def __init__(self, data: bytes, rows: int, width: int, names: list[str | None]) -> None:
        """`names`: each column's domain after the time's; None for a column left out."""
        try:
            import numpy as np
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "Meter.trace() returns numpy arrays; install numpy (pip install numpy)"
            ) from None
        table = np.frombuffer(data, dtype=np.float64, count=rows * width).reshape(rows, width)
        self.t_s: np.ndarray = table[:, 0]
        self.energy_j: dict[str, np.ndarray] = {
            n: table[:, i + 1] for i, n in enumerate(names) if n is not None
        }
        dt = np.diff(self.t_s)
        self.power_w: dict[str, np.ndarray] = {
            n: np.concatenate(([np.nan], np.diff(e) / dt)) for n, e in self.energy_j.items()
        }

    def __len__(self) -> int:
        return len(self.t_s)

    def __repr__(self) -> str:
        span = f"{self.t_s[-1] - self.t_s[0]:.3f} s" if len(self) > 1 else "empty"
        return f"Trace({len(self)} samples over {span}, domains={list(self.energy_j)})"
