"""A benchmark in the history: its record carries emissions like every other record, and
`carbonfast report` shows its comparison, the statistics included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carbonfast.bench.result import BenchResult, VariantResult
from carbonfast.carbon import emissions_kg
from carbonfast.cli import main
from carbonfast.record import Record
from carbonfast.report.history import History


def _variant(name: str, j: float, s: float, ratio: float) -> VariantResult:
    return VariantResult(
        name=name,
        seconds_per_call=s,
        seconds_per_call_ci=(0.8 * s, 1.2 * s),
        joules_per_call=j,
        joules_per_call_ci=(0.9 * j, 1.1 * j),
        dynamic_joules_per_call=None,
        dynamic_joules_per_call_ci=None,
        samples=10,
        calls_per_sample=1000,
        outliers=0,
        cv=0.01,
        joule_samples=[j] * 10,
        ratio=ratio,
        ratio_ci=(ratio * 0.9, ratio * 1.1),
        significant=ratio * 0.9 > 1,
    )


def _result() -> BenchResult:
    return BenchResult(
        variants=[_variant("fast", 2e-3, 1e-4, 1.0), _variant("slow", 6e-3, 3e-4, 3.0)],
        update_period_s=0.001,
        idle_power_w=None,
        estimated=False,
        intensity_g_per_kwh=400.0,
        intensity_source="set by user",
        pue=1.5,
        started_at="2025-06-01T12:00:00+00:00",
        refreshes_per_sample=25,
    )


def test_a_bench_record_carries_its_emissions_and_their_range() -> None:
    record = Record.for_bench(_result(), "parsers")
    # 10 samples x 1000 calls of each variant.
    assert record.energy_j == pytest.approx(2e-3 * 1e4 + 6e-3 * 1e4)
    assert record.energy_range_j == pytest.approx((0.9 * 80.0, 1.1 * 80.0))
    assert record.emissions_kg == pytest.approx(emissions_kg(80.0, 400.0, 1.5))
    assert record.emissions_range_kg == pytest.approx(
        (emissions_kg(72.0, 400.0, 1.5), emissions_kg(88.0, 400.0, 1.5))
    )
    low, high = record.emissions_range_kg
    assert low <= record.emissions_kg <= high


@pytest.fixture
def stored(tmp_path: Path) -> tuple[Path, int]:
    path = tmp_path / "h.sqlite"
    h = History(path)
    run_id = h.add(Record.for_bench(_result(), "parsers"))
    h.close()
    return path, run_id


def test_report_shows_the_benchmarks_comparison(
    stored: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    path, run_id = stored
    assert main(["report", str(run_id), "--history", str(path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    head = next(line for line in lines if "variant" in line and "s/call" in line)
    assert head.count("+/- 95%") == 2  # one for s/call, one for J/call
    assert "g CO2e/1M calls" in head and "x best (95% CI)" in head
    slow = next(line for line in lines if line.lstrip().startswith("slow"))
    # 300 µs/call +/- 20%, 6 mJ/call +/- 10%, 3x the best (2.7 to 3.3): significant.
    assert "300 µs" in slow and "20.0%" in slow and "6 mJ" in slow and "10.0%" in slow
    assert "3.00 (2.70-3.30) significant" in slow
    grams = emissions_kg(6e-3 * 1e6, 400.0, 1.5) * 1e3
    assert f"{grams:.4g}" in slow
    fast = next(line for line in lines if line.lstrip().startswith("fast"))
    assert fast.rstrip().endswith("best")
    assert "emissions" in out and "CO2e" in out


def test_report_json_of_a_benchmark_has_its_emissions_and_statistics(
    stored: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    path, run_id = stored
    assert main(["report", str(run_id), "--history", str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["emissions_kg"] == pytest.approx(emissions_kg(80.0, 400.0, 1.5))
    assert d["emissions_range_kg"] == pytest.approx(
        [emissions_kg(72.0, 400.0, 1.5), emissions_kg(88.0, 400.0, 1.5)]
    )
    slow = next(v for v in d["bench"]["variants"] if v["name"] == "slow")
    assert slow["ratio_ci"] == pytest.approx([2.7, 3.3]) and slow["significant"] is True
    assert slow["seconds_per_call_ci"] == pytest.approx([2.4e-4, 3.6e-4])
    assert slow["g_co2e_per_million_calls"] == pytest.approx(
        emissions_kg(6e-3 * 1e6, 400.0, 1.5) * 1e3
    )


def test_a_damaged_comparison_keeps_the_rest_of_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = Record.for_bench(_result(), "parsers")
    record.bench = {"variants": [{"name": "x"}]}
    path = tmp_path / "h.sqlite"
    run_id = History(path).add(record)
    assert main(["report", str(run_id), "--history", str(path)]) == 0
    out = capsys.readouterr().out
    assert "comparison is unreadable" in out and "emissions" in out
