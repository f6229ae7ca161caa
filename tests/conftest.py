from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.powercap import FakePowercap, three_domain_tree

# The module, not the function `carbonfast.measure` that shadows it as a package attribute.
measure_module = importlib.import_module("carbonfast.measure")


@pytest.fixture(autouse=True)
def _only_fake_rapl_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Whatever the machine has, tests see only the fakes they build: the MSR and perf paths
    point nowhere, hwmon at an empty tree, GPUs are off and nothing is recorded unless a test
    says otherwise."""
    (tmp_path / "no-hwmon").mkdir(exist_ok=True)
    monkeypatch.setenv("CARBONFAST_HWMON_ROOT", str(tmp_path / "no-hwmon"))
    monkeypatch.setenv("CARBONFAST_MSR_ROOT", str(tmp_path / "no-msr"))
    monkeypatch.setenv("CARBONFAST_PERF_PMU_ROOT", str(tmp_path / "no-power-pmu"))
    monkeypatch.setenv("CARBONFAST_GPU", "off")
    monkeypatch.setenv("CARBONFAST_HISTORY", "off")


@pytest.fixture
def fake(tmp_path: Path) -> FakePowercap:
    return three_domain_tree(tmp_path / "sys")


@pytest.fixture
def empty_fake(tmp_path: Path) -> FakePowercap:
    return FakePowercap(tmp_path / "sys")


@pytest.fixture
def default_on(fake: FakePowercap, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePowercap]:
    """Points the default meter (used by cf.measure and cf.track) at the fake tree."""
    monkeypatch.setenv("CARBONFAST_POWERCAP_ROOT", str(fake.root))
    measure_module._reset_default_meter()
    yield fake
    measure_module._reset_default_meter()
