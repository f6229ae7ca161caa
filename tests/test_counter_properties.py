"""Property: whatever the counter does between reads, as long as no step reaches the range or
goes past what a counter can plausibly gain at once (3 kW for a second), a window's energy is
the exact sum of the steps, wraps included."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import carbonfast as cf
from tests.fakes.powercap import FakePowercap

# 3 kW for a second: the most carbonfast takes a counter to gain between two close reads.
PLAUSIBLE_UJ = 3_000_000_000


@settings(max_examples=60, deadline=None)
@given(
    max_uj=st.integers(min_value=1, max_value=2**40),
    start_frac=st.floats(min_value=0, max_value=1),
    step_fracs=st.lists(st.floats(min_value=0, max_value=1, exclude_max=True), max_size=30),
)
def test_window_energy_is_the_exact_sum_of_steps(
    max_uj: int, start_frac: float, step_fracs: list[float]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        fake = FakePowercap(Path(d))
        fake.zone("intel-rapl:0", "package-0", int(max_uj * start_frac), max_uj)
        meter = cf.Meter(fake.root)
        steps = [min(int(max_uj * f), PLAUSIBLE_UJ) for f in step_fracs]
        with meter.measure() as m:
            for step in steps:
                fake.add("intel-rapl:0", step)
                meter.read()  # the sampler's keep-alive, in miniature
        assert m.domains["package-0"] == sum(steps) / 1e6
