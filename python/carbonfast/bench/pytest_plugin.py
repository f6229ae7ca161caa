"""pytest plugin: an `energy_benchmark` fixture in the style of pytest-benchmark, and energy
regression checks for CI.

    def test_parse(energy_benchmark):
        result = energy_benchmark(parse, document)

    pytest --energy-save=main                     # store J/call per test
    pytest --energy-compare=main --energy-compare-fail=energy:5%
                                                  # fail a test whose J/call grew by more than
                                                  # 5%, significantly
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import carbonfast_pytest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# Results of this run, per test node id: what --energy-save stores.
_RESULTS_KEY = pytest.StashKey[dict]()
# What the summary says beside each result: estimated or not, the carbon factors, warnings.
_CONTEXT_KEY = pytest.StashKey[dict]()
# The results --energy-compare names, read once when the run starts.
_BASELINE_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # Loaded as a plugin by name (`-p carbonfast.bench.pytest_plugin`, an entry point from an
    # older install), this module brings the options itself; registered by carbonfast_pytest,
    # which has added them already, it must not add them twice.
    if not carbonfast_pytest.registered(pluginmanager, "carbonfast_pytest"):
        carbonfast_pytest.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    # Bad options and a baseline that is not there fail the run at once, not test by test.
    _thresholds(config)
    name = config.getoption("--energy-compare")
    if name:
        config.stash[_BASELINE_KEY] = _saved(config, name)


def _thresholds(config: pytest.Config) -> list[tuple[str, float]]:
    out = []
    for spec in config.getoption("--energy-compare-fail"):
        m = re.fullmatch(r"(energy|time):(\d+(?:\.\d+)?)%", spec.strip())
        if not m:
            raise pytest.UsageError(
                f"--energy-compare-fail={spec!r} is not valid; expected energy:PCT% or "
                "time:PCT%, e.g. energy:5%"
            )
        out.append((m.group(1), float(m.group(2)) / 100))
    if out and not config.getoption("--energy-compare"):
        raise pytest.UsageError("--energy-compare-fail needs --energy-compare=NAME")
    return out


def _saved(config: pytest.Config, name: str) -> dict[str, Any]:
    folder = Path(config.getoption("--energy-storage"))
    path = folder / f"{name}.json"
    if not path.is_file():
        names = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        known = f"saved there: {', '.join(names)}" if names else "nothing is saved there"
        raise pytest.UsageError(
            f"--energy-compare={name}: no saved results {path} ({known}); save them first "
            f"with `pytest --energy-save={name}`, or point --energy-storage at the folder "
            "that holds them"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise pytest.UsageError(
            f"--energy-compare={name}: cannot read {path} ({e}); save it again with "
            f"`pytest --energy-save={name}`"
        ) from e
    if not isinstance(data, dict):
        raise pytest.UsageError(
            f"--energy-compare={name}: {path} does not hold saved results; save it again "
            f"with `pytest --energy-save={name}`"
        )
    return data


class EnergyBenchmark:
    """Call it with a function and its arguments: it benchmarks the function (energy and time
    per call) and returns what the function returns."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self.result: Any = None

    def __call__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from carbonfast.bench import bench, stats

        config = self._request.config
        node = self._request.node.nodeid
        res = bench(
            {node: func},
            args=args,
            kwargs=kwargs,
            min_time=config.getoption("--energy-min-time"),
            record=False,
        )
        self.result = res
        variant = res.to_dict()["variants"][0]
        config.stash.setdefault(_RESULTS_KEY, {})[node] = variant
        context = {
            "estimated": res.estimated,
            "intensity_g_per_kwh": res.intensity_g_per_kwh,
            "pue": res.pue,
            "warnings": res.warnings,
            "compared": None,
        }
        config.stash.setdefault(_CONTEXT_KEY, {})[node] = context
        baseline_name = config.getoption("--energy-compare")
        if baseline_name:
            old = config.stash[_BASELINE_KEY].get(node)
            context["compared"] = old is not None
            if old is not None:
                for metric, limit in _thresholds(config):
                    if metric == "energy":
                        ratio, lo, _ = stats.ratio_ci(
                            variant["joule_samples"], old["joule_samples"]
                        )
                    else:
                        ratio = variant["seconds_per_call"] / old["seconds_per_call"]
                        lo = ratio
                    if ratio > 1 + limit and lo > 1:
                        pytest.fail(
                            f"{metric} per call regressed {ratio - 1:.1%} against "
                            f"{baseline_name!r} (95% CI from {lo - 1:+.1%}; limit {limit:.0%})",
                            pytrace=False,
                        )
        return func(*args, **kwargs)


# The fixture, for a session that loads this module by name rather than carbonfast_pytest.
energy_benchmark = carbonfast_pytest.energy_benchmark


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    results = config.stash.get(_RESULTS_KEY, {})
    name = config.getoption("--energy-save")
    if name and results:
        folder = Path(config.getoption("--energy-storage"))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps(results, indent=1))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from carbonfast.bench.result import _si

    config = terminalreporter.config
    results = config.stash.get(_RESULTS_KEY, {})
    if not results:
        return
    contexts = config.stash.get(_CONTEXT_KEY, {})
    baseline_name = config.getoption("--energy-compare")
    terminalreporter.section("energy benchmarks (carbonfast)")
    warnings: list[str] = []
    for node, v in results.items():
        c = contexts[node]
        lo, hi = v["joules_per_call_ci"]
        line = (
            f"{node}: {_si(v['joules_per_call'], 'J')}/call (95% CI {_si(lo, 'J')} to "
            f"{_si(hi, 'J')}), {_si(v['seconds_per_call'], 's')}/call, "
            f"{v['g_co2e_per_million_calls']:.4g} g CO2e per 1M calls, {v['samples']} samples"
        )
        if c["estimated"]:
            line += "; energy ESTIMATED from a model"
        if c["compared"] is False:
            line += f"; not in {baseline_name!r}, not compared"
        terminalreporter.write_line(line)
        warnings.extend(w for w in c["warnings"] if w not in warnings)
    factors = {(c["intensity_g_per_kwh"], c["pue"]) for c in contexts.values()}
    terminalreporter.write_line(
        "g CO2e at " + ", ".join(f"{g:g} g CO2e/kWh x PUE {pue:g}" for g, pue in sorted(factors))
    )
    for w in warnings:
        terminalreporter.write_line(f"warning: {w}")
