"""Arbitrary bytes in every sysfs file and arbitrary text in every setting: carbonfast either
measures, or says what is wrong; it never crashes, and never reports an unknown as 0 or a
non-number."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import carbonfast as cf
from tests.fakes.powercap import FakePowercap

FILES = ("name", "max_energy_range_uj", "energy_uj", "enabled")
SETTINGS = {
    "CARBONFAST_CPU_TDP_W": "cpu_tdp_w",
    "CARBONFAST_CPU_THREADS": "cpu_threads",
    "CARBONFAST_RAM_GB": "ram_gb",
    "CARBONFAST_CPU_POWER_W": "cpu_power_w",
    "CARBONFAST_ESTIMATE_SCOPE": "scope",
    "CARBONFAST_INTENSITY": "intensity",
    "CARBONFAST_PUE": "pue",
    "CARBONFAST_COUNTRY": "country",
}
garbage = st.one_of(
    st.binary(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda i: f"{i}\n".encode()),
    st.sampled_from([b"", b"\n", b"nan\n", b"1e308\n", b"-0\n", b"18446744073709551616\n"]),
)


def clean_error(e: BaseException) -> bool:
    """A refusal the user can act on: the setting or file named, no internal failure."""
    return isinstance(e, (ValueError, OSError)) and str(e) != ""


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.fixed_dictionaries({f: garbage for f in FILES}),
    later=garbage,
    env=st.dictionaries(
        st.sampled_from(sorted(SETTINGS)),
        st.text(max_size=12).filter(lambda t: "\x00" not in t),
        max_size=3,
    ),
)
def test_garbage_anywhere_is_measured_or_refused_never_a_crash(
    files: dict[str, bytes], later: bytes, env: dict[str, str]
) -> None:
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        for key in SETTINGS:
            mp.delenv(key, raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        fake = FakePowercap(Path(d) / "sys")
        fake.zone("intel-rapl:0", "package-0", 1_000)
        fake.zone("intel-rapl:1", "package-1", 1_000)
        zone = fake.root / "intel-rapl:1"
        for name, content in files.items():
            (zone / name).write_bytes(content)
        try:
            meter = cf.Meter(fake.root, gpu=False, history="off")
            with meter.measure() as m:
                fake.set("intel-rapl:0", 2_000)
                (zone / "energy_uj").write_bytes(later)
            record = m.to_dict()
        except Exception as e:
            assert clean_error(e), repr(e)
            return
        json.dumps(record, allow_nan=False)  # no NaN or infinity reaches a report
        energy = record["energy_j"]
        assert energy is None or (math.isfinite(energy) and energy >= 0)
        for name, domain in record["domains"].items():
            assert math.isfinite(domain["energy_j"]) and domain["energy_j"] >= 0, name
        # The readable package moved by 1 mJ: it is never lost in the total.
        assert energy is not None and energy >= 0.001 - 1e-12
