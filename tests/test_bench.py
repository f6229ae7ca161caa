"""Energy microbenchmarks on a counter whose truth is known: its power follows the CPU time of
the benchmarking thread (50 W while it runs), refreshed every millisecond like RAPL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import carbonfast as cf
from tests.fakes.counter import CpuTimeCounter, busy

pytest_plugins = ["pytester"]
WATTS = 50.0


@pytest.fixture
def counter() -> CpuTimeCounter:
    return CpuTimeCounter(watts=WATTS, period=0.001)


def cpu_per_call(call: Callable[[], object], n: int = 5000) -> float:
    """This thread's CPU time per call over a run of calls: what the counter charges for."""
    t0 = time.thread_time()
    for _ in range(n):
        call()
    return (time.thread_time() - t0) / n


def cpu_ratio(a: Callable[[], object], b: Callable[[], object]) -> float:
    """CPU time per call of `b` over `a`, which is what the counter charges for: 2.0 for the
    work alone, a little less with each call's own overhead, which a busy machine inflates.
    Taken interleaved, so that the machine's load weighs on both alike."""
    ta = tb = 0.0
    for _ in range(4):
        ta += cpu_per_call(a, 500)
        tb += cpu_per_call(b, 500)
    return tb / ta


def short() -> None:
    busy(100e-6)


def long() -> None:
    busy(200e-6)


def test_variants_twice_as_costly_are_reported_at_2x_and_significant(
    counter: CpuTimeCounter,
) -> None:
    before = cpu_ratio(short, long)
    res = cf.bench({"short": short, "long": long}, meter=counter, min_time=1.0, record=False)
    truth = (before + cpu_ratio(short, long)) / 2
    assert truth == pytest.approx(2.0, rel=0.15)
    v = res["long"]
    assert res["short"].ratio == 1.0
    assert v.ratio_ci[0] <= truth * 1.03 and v.ratio_ci[1] >= truth * 0.97
    assert v.ratio == pytest.approx(truth, rel=0.03)
    assert v.significant and not res["short"].significant
    assert res.update_period_s == pytest.approx(0.001, rel=0.2)


def test_a_50_us_call_is_measured_within_6_percent(counter: CpuTimeCounter) -> None:
    """The truth is what the fake declares for the calls the benchmark made: 50 W over the CPU
    time each call itself took, counted inside the call as it ran. A busy machine moves wall
    time and the harness's overhead, not this; no run of calls timed apart is compared."""
    spent = [0.0, 0]

    def call() -> None:
        t0 = time.thread_time()
        busy(50e-6)
        spent[0] += time.thread_time() - t0
        spent[1] += 1

    res = cf.bench(call, meter=counter, min_time=1.0, record=False)
    [v] = res.variants
    truth = WATTS * spent[0] / spent[1]
    assert truth >= WATTS * 50e-6
    # The engine's look at the counters between batches, and each call's way in and out, are
    # charged to the calls too: a few percent of a 50 us call above the calls' own time. The
    # looks (1% of a sample here, 25% in the rounds that read more) are taken off at a power
    # fitted over the samples, which lands within a few percent of a call's energy.
    assert truth * 0.94 <= v.joules_per_call <= truth * 1.06, (v.joules_per_call, truth)
    assert v.joules_per_call_ci[0] <= v.joules_per_call <= v.joules_per_call_ci[1]
    assert v.seconds_per_call >= 50e-6


def test_a_busy_and_a_sleeping_call_of_the_same_length_are_told_apart(
    counter: CpuTimeCounter,
) -> None:
    res = cf.bench(
        {"busy": lambda: busy(500e-6), "sleep": lambda: time.sleep(500e-6)},
        meter=counter,
        min_time=1.0,
        record=False,
    )
    # Both take at least 500 us; only the busy one draws power.
    assert min(res["busy"].seconds_per_call, res["sleep"].seconds_per_call) >= 500e-6
    assert res["busy"].joules_per_call > 3 * res["sleep"].joules_per_call
    assert res["busy"].significant


def test_the_result_prints_a_table_and_serialises(counter: CpuTimeCounter) -> None:
    res = cf.bench(
        {"a": lambda: busy(50e-6), "b": lambda: busy(150e-6)},
        meter=counter,
        rounds=6,
        record=False,
    )
    text = str(res)
    assert "J/call" in text and "g CO2e/1M calls" in text and "significant" in text
    data = json.loads(res.to_json())
    variant = data["variants"][0]
    for key in ("name", "seconds_per_call", "joules_per_call", "joules_per_call_ci", "ratio_ci"):
        assert key in variant
    assert [v["name"] for v in data["variants"]] == ["a", "b"]
    assert len(variant["joule_samples"]) == 6
    b = res["b"]
    assert b.g_co2e_per_million_calls == pytest.approx(
        b.joules_per_call * 1e6 / 3.6e6 * res.intensity_g_per_kwh
    )


def test_results_are_recorded_and_compared(
    counter: CpuTimeCounter, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("CARBONFAST_HISTORY", str(tmp_path / "h.sqlite"))
    before = cpu_ratio(short, long)
    first = cf.bench({"f": short}, meter=counter, min_time=0.5)
    second = cf.bench({"f": long}, meter=counter, min_time=0.5)
    truth = (before + cpu_ratio(short, long)) / 2
    assert first.id is not None and second.id == first.id + 1
    cmp = cf.compare(first.id, second.id)
    [row] = cmp.rows
    assert row["ratio"] == pytest.approx(truth, rel=0.05) and row["significant"]
    path = tmp_path / "second.json"
    path.write_text(second.to_json())
    assert cf.compare(first, path).rows[0]["ratio"] == pytest.approx(row["ratio"])
    assert "b / a" in str(cmp)


def test_baseline_and_isolation(counter: CpuTimeCounter) -> None:
    before = cpu_ratio(short, long)
    res = cf.bench(
        {"a": short, "b": long},
        meter=counter,
        min_time=1.0,
        baseline=True,
        isolate=True,
        record=False,
    )
    truth = (before + cpu_ratio(short, long)) / 2
    # The counter draws nothing while the thread sleeps: the idle baseline is ~0 and the
    # dynamic energy is all of it.
    assert res.idle_power_w == pytest.approx(0.0, abs=1.0)
    assert res["a"].dynamic_joules_per_call == pytest.approx(res["a"].joules_per_call, rel=0.05)
    assert res["b"].ratio == pytest.approx(truth, rel=0.05)


def test_bad_input_says_what_is_wrong(counter: CpuTimeCounter) -> None:
    with pytest.raises(ValueError, match="at least one function"):
        cf.bench({}, meter=counter)
    with pytest.raises(ValueError, match="'x' is not callable"):
        cf.bench({"x": 3}, meter=counter)


def test_the_command_prints_the_comparison_table(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "carbonfast.cli",
            "bench",
            "tests.fakes.counter:busy_100us",
            "--setup",
            "from tests.fakes.counter import busy",
            "--stmt",
            "busy(2e-4)",
            "--min-time",
            "0.5",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CARBONFAST_POWERCAP_ROOT": str(tmp_path / "none")},
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert r.returncode == 0, r.stderr
    assert "tests.fakes.counter:busy_100us" in r.stdout and "busy(2e-4)" in r.stdout
    assert "J/call" in r.stdout
    data = json.loads(out.read_text())
    slow = next(v for v in data["variants"] if v["name"] == "busy(2e-4)")
    assert slow["ratio"] == pytest.approx(2.0, rel=0.15)
    bad = subprocess.run(
        [sys.executable, "-m", "carbonfast.cli", "bench", "nosuchmodule:f"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "cannot import 'nosuchmodule'" in bad.stderr


# The plugin as its entry point names it in this tree, whatever an older install's names.
_PLUGIN = ("-p", "no:carbonfast", "-p", "carbonfast_pytest")


def test_the_pytest_plugin_saves_compares_and_fails_regressions(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_work="""
        import os, time

        def work():
            end = time.perf_counter() + float(os.environ["WORK_S"])
            while time.perf_counter() < end:
                pass
            return 42

        def test_work(energy_benchmark):
            assert energy_benchmark(work) == 42
        """
    )
    env = {"CARBONFAST_POWERCAP_ROOT": "/nonexistent", "CARBONFAST_HISTORY": "off"}
    for k, v in env.items():
        pytester._monkeypatch.setenv(k, v)
    pytester._monkeypatch.setenv("WORK_S", "0.0002")
    saved = pytester.runpytest(*_PLUGIN, "-p", "no:cacheprovider", "--energy-save=base")
    saved.assert_outcomes(passed=1)
    # Every figure with its unit, and the energy said to be estimated (no RAPL here).
    summary = saved.stdout.str().split("energy benchmarks (carbonfast)")[1]
    line = next(x for x in summary.splitlines() if x.startswith("test_work.py::test_work: "))
    assert re.search(r": [\d.]+ [mµn]?J/call \(95% CI [\d.]+ [mµn]?J to [\d.]+ [mµn]?J\)", line)
    assert re.search(r", [\d.]+ [mµn]?s/call, [\d.e+-]+ g CO2e per 1M calls, \d+ samples", line)
    assert line.endswith("; energy ESTIMATED from a model")
    assert re.search(r"^g CO2e at [\d.]+ g CO2e/kWh x PUE 1$", summary, re.M)
    assert "warning: energy is ESTIMATED from a model of CPU time" in summary
    assert (pytester.path / ".carbonfast" / "bench" / "base.json").exists()
    same = pytester.runpytest(*_PLUGIN, "--energy-compare=base", "--energy-compare-fail=energy:50%")
    same.assert_outcomes(passed=1)
    pytester._monkeypatch.setenv("WORK_S", "0.0004")
    slower = pytester.runpytest(
        *_PLUGIN, "--energy-compare=base", "--energy-compare-fail=energy:5%"
    )
    slower.assert_outcomes(failed=1)
    assert "energy per call regressed" in slower.stdout.str()
    usage = pytester.runpytest(*_PLUGIN, "--energy-compare-fail=energy")
    assert usage.ret != 0
    # A test the saved results do not hold is run and said not to be compared.
    pytester.makepyfile(
        test_new="""
        def test_new(energy_benchmark):
            energy_benchmark(sum, range(100))
        """
    )
    new = pytester.runpytest(
        *_PLUGIN, "test_new.py", "--energy-compare=base", "--energy-min-time=0.1"
    )
    new.assert_outcomes(passed=1)
    assert "not in 'base', not compared" in new.stdout.str()


def test_the_pytest_plugin_takes_missing_saved_results_as_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_work="""
        def test_work(energy_benchmark):
            energy_benchmark(sum, range(100))
        """
    )
    pytester._monkeypatch.setenv("CARBONFAST_HISTORY", "off")
    missing = pytester.runpytest(*_PLUGIN, "--energy-compare=missing")
    # Nothing runs: the run stops at once, as for any bad option, instead of failing tests.
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    assert "collected" not in missing.stdout.str()
    err = missing.stderr.str()
    path = Path(".carbonfast") / "bench" / "missing.json"
    assert f"--energy-compare=missing: no saved results {path}" in err
    assert "nothing is saved there" in err and "pytest --energy-save=missing" in err
    storage = pytester.path / ".carbonfast" / "bench"
    storage.mkdir(parents=True)
    (storage / "main.json").write_text("{not json")
    broken = pytester.runpytest(*_PLUGIN, "--energy-compare=main")
    assert broken.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--energy-compare=main: cannot read {path.with_name('main.json')}" in (
        broken.stderr.str()
    )
    other = pytester.runpytest(*_PLUGIN, "--energy-compare=nope")
    assert other.ret == pytest.ExitCode.USAGE_ERROR
    assert "(saved there: main)" in other.stderr.str()


def test_the_pytest_plugin_loads_nothing_of_carbonfast_until_asked(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_plain="""
        import sys

        def test_plain():
            loaded = [m for m in sys.modules if m.split(".")[0] == "carbonfast"]
            assert loaded == []
        """
    )
    plain = pytester.runpytest_subprocess(*_PLUGIN, "-p", "no:cacheprovider")
    plain.assert_outcomes(passed=1)
    helped = pytester.runpytest_subprocess(*_PLUGIN, "--help")
    assert "--energy-compare-fail=METRIC:PCT" in helped.stdout.str()


def test_the_pytest_plugin_works_when_named_as_it_was(pytester: pytest.Pytester) -> None:
    # An install made before the entry point moved names carbonfast.bench.pytest_plugin.
    pytester.makepyfile(
        test_work="""
        def test_work(energy_benchmark):
            assert energy_benchmark(sum, range(100)) == 4950
        """
    )
    pytester._monkeypatch.setenv("CARBONFAST_HISTORY", "off")
    old = ("-p", "no:carbonfast", "-p", "carbonfast.bench.pytest_plugin")
    r = pytester.runpytest(*old, "-p", "no:cacheprovider", "--energy-min-time=0.1")
    r.assert_outcomes(passed=1)
    assert "energy benchmarks (carbonfast)" in r.stdout.str()
