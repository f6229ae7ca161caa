"""The MSR path and the choice between RAPL paths, from Python."""

from __future__ import annotations

from pathlib import Path

import pytest

import carbonfast as cf
from tests.fakes.msr import INTEL_DRAM, INTEL_PKG, INTEL_PP0, INTEL_UNIT, UNIT_ESU_14, FakeMsr
from tests.fakes.powercap import FakePowercap


@pytest.fixture
def msr(tmp_path: Path) -> FakeMsr:
    m = FakeMsr(tmp_path / "msr", packages=[0, 0])
    m.set(0, INTEL_UNIT, UNIT_ESU_14)
    m.set(0, INTEL_PKG, 1_000)
    m.set(0, INTEL_PP0, 500)
    m.set(0, INTEL_DRAM, 200)
    return m


def test_the_msr_path_decodes_units_and_counts_a_32_bit_wrap(msr: FakeMsr, tmp_path) -> None:
    msr.set(0, INTEL_PKG, 2**32 - 16_384)  # one joule below the top
    meter = cf.Meter(tmp_path / "no-powercap", source="msr", **msr.meter_args())
    assert meter.domain_names == ["package-0", "core-0", "dram-0"]
    with meter.measure() as m:
        msr.set(0, INTEL_PKG, 3 * 16_384)  # wrapped: 1 J to the top, 3 J after
        msr.set(0, INTEL_DRAM, 200 + 8_192)
    assert m.domains["package-0"] == 4.0
    assert m.domains["dram-0"] == 0.5
    assert m.energy_j == 4.5
    assert meter._native.wraps()[0] == 1


def test_auto_takes_the_path_with_more_domains(msr: FakeMsr, tmp_path) -> None:
    powercap = FakePowercap(tmp_path / "pc")
    powercap.zone("intel-rapl:0", "package-0", 0)
    meter = cf.Meter(powercap.root, **msr.meter_args())
    assert {d.source for d in meter.domains} == {"msr"}
    paths = {p["name"]: p for p in cf.info(powercap.root, **msr.meter_args())["paths"]}
    assert paths["msr"]["chosen"] and not paths["powercap"]["chosen"]
    assert paths["powercap"]["read_ns"] > 0
    assert paths["perf"]["read_ns"] is None and paths["perf"]["problems"]


def test_a_named_path_that_is_missing_raises_with_the_fix(tmp_path) -> None:
    with pytest.raises(cf.SensorUnavailable, match="modprobe msr"):
        cf.Meter(tmp_path / "pc", source="msr", msr_root=tmp_path / "none")


def test_an_unknown_source_names_the_accepted_ones(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CARBONFAST_SOURCE", "rapl")
    with pytest.raises(ValueError, match=r"CARBONFAST_SOURCE='rapl'.*auto, powercap, msr, perf"):
        cf.Meter(tmp_path)
