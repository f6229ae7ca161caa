"""The Python layer's names for the core's rules are the core's: a kind, part or role added on
one side and not the other fails here (as pydantic-core's test_errors.py does for its error
types), and the rules that reports use are read from the core, not re-coded."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from carbonfast import _native, kinds
from carbonfast._typing import (
    DomainKind,
    EstimateScope,
    GpuEnergy,
    MeterConfig,
    PartName,
    RaplSource,
    RoleName,
)


def test_the_literal_kinds_parts_and_roles_are_the_cores() -> None:
    rules = _native.kind_rules()
    assert typing.get_args(DomainKind) == tuple(r.name for r in rules)
    assert set(typing.get_args(PartName)) == {r.part for r in rules if r.part is not None}
    assert set(typing.get_args(RoleName)) == {r.role for r in rules}


def test_each_kind_reads_the_same_through_kinds_as_in_the_core() -> None:
    for r in _native.kind_rules():
        assert kinds.part_of(r.name) == r.part
        assert kinds.role(r.name) == r.role
        assert kinds.counts_in_total(r.name) == r.counts_in_total
        assert kinds.is_rapl(r.name) == r.rapl
    # A name no version of the core knows (a record written by a later one) is none of them.
    assert kinds.role("fusion-reactor") is None
    assert kinds.part_of("fusion-reactor") is None
    assert not kinds.counts_in_total("fusion-reactor")


@pytest.mark.parametrize(
    ("meter", "expected"),
    [
        # A platform meter is the total; the parts are still what measured them.
        (
            ["platform", "gpu", "package", "dram"],
            [(True, None), (False, "gpu"), (False, "cpu"), (False, "ram")],
        ),
        # psys stands for the CPU only where no package is measured, and is the total then.
        (["psys", "dram"], [(True, "cpu"), (False, "ram")]),
        (["package", "psys", "core"], [(True, "cpu"), (False, None), (False, None)]),
        # Grace's modules are the total.
        (["module", "module", "gpu"], [(True, None), (True, None), (False, "gpu")]),
    ],
)
def test_which_domains_make_the_total_and_the_parts_comes_from_the_core(
    meter: list[str], expected: list[tuple[bool, str | None]]
) -> None:
    assert kinds.meter_rules(meter) == expected
    assert kinds.meter_rules([*meter, "not-a-kind"])[-1] == (False, None)
    with pytest.raises(ValueError, match="not a domain kind"):
        _native.meter_rules(["not-a-kind"])


def test_a_live_meters_domains_carry_the_cores_rules(tmp_path: Path) -> None:
    import carbonfast as cf
    from tests.fakes.powercap import three_domain_tree

    meter = cf.Meter(three_domain_tree(tmp_path / "sys").root, gpu=False, estimate=False)
    got = [(d.counts_in_total, d.part) for d in meter.domains]
    assert got == kinds.meter_rules([d.kind for d in meter.domains])
    assert all(d.kind in typing.get_args(DomainKind) for d in meter.domains)


def test_the_meter_config_names_every_key_the_bindings_read() -> None:
    # The bindings' MeterConfig (rust/carbonfast-py/src/lib.rs) reads exactly these keys.
    import re

    lib = Path(__file__).resolve().parent.parent / "rust" / "carbonfast-py" / "src" / "lib.rs"
    text = lib.read_text()
    body = text[text.index("struct MeterConfig {") :]
    body = body[: body.index("\n}")]
    fields = re.findall(r"^\s+(\w+): ", body, flags=re.MULTILINE)
    assert set(fields) == set(MeterConfig.__annotations__)


def test_the_literal_choices_are_those_the_core_accepts() -> None:
    choices = _native.choices()
    assert list(typing.get_args(RaplSource)) == choices["source"]
    assert list(typing.get_args(EstimateScope)) == choices["scope"]
    assert list(typing.get_args(GpuEnergy)) == choices["gpu_energy"]


def test_the_settings_table_accepts_what_the_core_accepts() -> None:
    from carbonfast.settings import SETTINGS

    for name, accepted in _native.choices().items():
        assert list(SETTINGS[name].choices or ()) == accepted, name
