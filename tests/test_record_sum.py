"""Record.sum: one rule for what is unknown wherever records are added up."""

from __future__ import annotations

import pytest

from carbonfast.record import DomainRecord, Record


def _record(
    energy: float | None,
    cpu: float | None,
    gpu: float | None,
    *,
    emissions: float | None = 1e-6,
    notes: tuple[str, ...] = (),
) -> Record:
    return Record(
        kind="task",
        label="t",
        started_at="2025-01-01T00:00:00+00:00",
        duration_s=2.0,
        energy_j=energy,
        energy_range_j=None if energy is None else (energy - 1, energy + 1),
        emissions_kg=emissions,
        domains={
            "package-0": DomainRecord(cpu, "package", False, cpu is not None, part="cpu"),
            "gpu-0": DomainRecord(gpu, "gpu", False, gpu is not None, part="gpu"),
        },
        notes=list(notes),
    )


def test_known_records_add_up() -> None:
    total = Record.sum([_record(10.0, 6.0, 4.0, notes=("a",)), _record(5.0, 3.0, 2.0)], "run")
    assert total.label == "run"
    assert total.duration_s == pytest.approx(4.0)
    assert total.energy_j == pytest.approx(15.0)
    assert total.energy_range_j == pytest.approx((13.0, 17.0))
    assert total.emissions_kg == pytest.approx(2e-6)
    assert total.energy_by_kind() == pytest.approx({"cpu": 9.0, "gpu": 6.0, "ram": None})
    assert total.notes == ["a"]


def test_a_part_unknown_in_one_record_is_unknown_in_the_sum() -> None:
    total = Record.sum([_record(10.0, 6.0, 4.0), _record(3.0, 3.0, None)])
    assert total.energy_by_kind()["gpu"] is None  # never 4 J, as if the GPU drew nothing
    assert total.energy_by_kind()["cpu"] == pytest.approx(9.0)
    assert total.energy_j == pytest.approx(13.0)


def test_an_unknown_energy_or_emissions_makes_the_sum_unknown() -> None:
    total = Record.sum([_record(10.0, 6.0, 4.0), _record(None, None, None, emissions=None)])
    assert total.energy_j is None and total.energy_range_j is None
    assert total.emissions_kg is None
    assert total.duration_s == pytest.approx(4.0)


def test_a_domain_one_record_lacks_is_unknown_in_the_sum() -> None:
    lacking = _record(6.0, 6.0, None)
    del lacking.domains["gpu-0"]
    assert Record.sum([_record(10.0, 6.0, 4.0), lacking]).domains["gpu-0"].energy_j is None


def test_the_records_added_are_left_as_they_were() -> None:
    a, b = _record(10.0, 6.0, 4.0), _record(5.0, 3.0, 2.0)
    Record.sum([a, b], "run")
    assert a.energy_j == 10.0 and a.label == "t" and a.domains["gpu-0"].energy_j == 4.0


def test_nothing_to_add_is_an_error() -> None:
    with pytest.raises(ValueError):
        Record.sum([])
