"""How measurements, meters, benchmark results and records show in IPython and Jupyter: HTML
tables with every outside string escaped, and the text `print` gives."""

from __future__ import annotations

import re
import time

import pytest

import carbonfast as cf
from carbonfast.bench.result import BenchResult, Comparison, VariantResult
from carbonfast.record import DomainRecord, Record
from tests.fakes.powercap import FakePowercap

EVIL = "<script>alert(1)</script>"


class Printer:
    """What IPython's pretty printer gives `_repr_pretty_`."""

    def __init__(self) -> None:
        self.out: list[str] = []

    def text(self, s: str) -> None:
        self.out.append(s)


def pretty(obj: object) -> str:
    p = Printer()
    obj._repr_pretty_(p, False)  # type: ignore[attr-defined]
    return "".join(p.out)


def assert_safe_html(html: str) -> None:
    assert "<script" not in html
    assert "&lt;script&gt;" in html


def _record(**kw: object) -> Record:
    values: dict[str, object] = {
        "kind": "window",
        "started_at": "2025-06-01T12:00:00+00:00",
        "duration_s": 2.0,
        "energy_j": 30.0,
        "label": EVIL,
        "estimated": True,
        "energy_range_j": (20.0, 40.0),
        "emissions_kg": 1e-6,
        "intensity_g_per_kwh": 100.0,
        "pue": 1.0,
        "domains": {"package-0": DomainRecord(30.0, "package", True)},
        "notes": ["a note with <b>markup</b>"],
    }
    values.update(kw)
    return Record(**values)  # type: ignore[arg-type]


def test_a_measurement_shows_as_a_table_and_prints_its_summary(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root)
    with meter.measure(EVIL) as m:
        fake.add("intel-rapl:0", 2_000_000)
    text = str(m)
    # print used to show the one-line repr; now the summary `carbonfast run` prints.
    assert "package-0" in text and "total" in text
    assert pretty(m) == text
    html = m._repr_html_()
    assert html.count("<table") == 2 and "package-0" in html
    assert_safe_html(html)
    assert repr(m).startswith("Measurement(")


def test_a_record_prints_its_summary_and_escapes_its_notes() -> None:
    r = _record()
    assert "total" in str(r) and "ESTIMATED" in str(r)
    assert pretty(r) == str(r)
    html = r._repr_html_()
    assert_safe_html(html)
    assert "&lt;b&gt;markup" in html and "(estimated)" in html
    assert "20.0000 J to 40.0000 J" in html


def _variant(name: str, j: float, ratio: float) -> VariantResult:
    return VariantResult(
        name=name,
        seconds_per_call=1e-6 * ratio,
        seconds_per_call_ci=(0.9e-6 * ratio, 1.1e-6 * ratio),
        joules_per_call=j,
        joules_per_call_ci=(0.9 * j, 1.1 * j),
        dynamic_joules_per_call=None,
        dynamic_joules_per_call_ci=None,
        samples=30,
        calls_per_sample=100,
        outliers=0,
        cv=0.01,
        joule_samples=[j] * 30,
        ratio=ratio,
        ratio_ci=(ratio * 0.95, ratio * 1.05),
        significant=ratio > 1,
    )


def _bench_result() -> BenchResult:
    return BenchResult(
        variants=[_variant("loop", 3e-5, 3.0), _variant(EVIL, 1e-5, 1.0)],
        update_period_s=0.001,
        idle_power_w=None,
        estimated=False,
        intensity_g_per_kwh=100.0,
        intensity_source="set by user",
        pue=1.0,
        started_at="2025-06-01T12:00:00+00:00",
        warnings=["a <warning>"],
    )


def test_a_bench_result_shows_intervals_ratios_and_a_chart() -> None:
    res = _bench_result()
    assert pretty(res) == str(res)
    html = res._repr_html_()
    assert_safe_html(html)
    assert "<table>" in html and html.count("<tr>") == 3
    assert "95% CI" in html and "27 µJ to 33 µJ" in html  # the loop's interval
    assert "3.00 (2.85-3.15) significant" in html and ">best<" in html
    svg = re.search(r"<svg.*?</svg>", html)
    assert svg is not None and svg.group().count("<rect") == 2
    assert "<script" not in svg.group() and "&lt;warning&gt;" in html
    # The best (lowest energy) bar first, the loop's three times as long.
    widths = [float(w) for w in re.findall(r'<rect [^>]*width="([\d.]+)"', svg.group())]
    assert widths[1] == pytest.approx(3 * widths[0], rel=0.01)


def test_a_comparison_shows_its_ratios() -> None:
    rows = [{"name": EVIL, "a": 1e-5, "b": 2e-5, "ratio": 2.0, "ratio_ci": (1.9, 2.1)}]
    c = Comparison(rows=[{**rows[0], "significant": True}])
    assert pretty(c) == str(c)
    html = c._repr_html_()
    assert_safe_html(html)
    assert "1.900 to 2.100" in html and "<svg" in html


def test_call_stats_show_calls_and_energy_per_call(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root)

    @cf.track(meter=meter)
    def f() -> None:
        fake.add("intel-rapl:0", 1_000_000)

    f()
    f()
    stats = f.energy  # type: ignore[attr-defined]
    assert pretty(stats) == str(stats)
    html = stats._repr_html_()
    assert "<td>calls</td>" in html and "energy per call" in html


def test_sampler_stats_show_their_figures_not_an_address(fake: FakePowercap) -> None:
    meter = cf.Meter(fake.root, sample_hz=200)
    time.sleep(0.05)
    stats = meter.sampler_stats
    assert stats is not None
    assert "object at 0x" not in repr(stats)
    assert repr(stats).startswith("SamplerStats(sampling=True, samples=")
    assert pretty(stats) == str(stats)
    assert stats.samples > 0 and stats.period_s == pytest.approx(0.005)
    assert "<td>missed</td>" in stats._repr_html_()


def test_a_meter_shows_which_domains_are_measured_and_which_estimated(
    fake: FakePowercap,
) -> None:
    meter = cf.Meter(fake.root)
    text = str(meter)
    assert pretty(meter) == text
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert lines["package-0"].endswith("measured")
    assert "not added to the total" in lines["core-0"]
    html = meter._repr_html_()
    assert "<table>" in html and "package-0" in html and "measured" in html

    estimated = cf.Meter(fake.root / "nothing-here", cpu_power_w=10.0, ram_power_w=2.0)
    assert "estimated (" in str(estimated)
