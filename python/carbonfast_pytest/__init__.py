"""The pytest plugin's entry point: the `--energy-*` options and the `energy_benchmark`
fixture, at no cost to a session that uses neither.

pytest loads every installed plugin into every session. This module lives outside the
`carbonfast` package, whose import loads the native meter and more, and imports it only when
a test asks for `energy_benchmark` or an `--energy-*` option is given; the plugin's work is in
carbonfast.bench.pytest_plugin.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

# The options that need the plugin's hooks from the start (checked and read before any test).
_ACTIVE_OPTIONS = ("energy_save", "energy_compare", "energy_compare_fail")


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("carbonfast", "energy benchmarks (carbonfast)")
    group.addoption("--energy-save", metavar="NAME", help="save J/call per test under NAME")
    group.addoption("--energy-compare", metavar="NAME", help="compare with results saved as NAME")
    group.addoption(
        "--energy-compare-fail",
        metavar="METRIC:PCT",
        action="append",
        default=[],
        help="fail a test whose METRIC (energy or time) per call grew by more than PCT%%, "
        "significantly, against --energy-compare; e.g. energy:5%%",
    )
    group.addoption(
        "--energy-min-time", type=float, default=0.5, help="seconds of sampling per test"
    )
    group.addoption(
        "--energy-storage",
        default=".carbonfast/bench",
        help="folder of saved results (default .carbonfast/bench)",
    )


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    # Once only, where the plugin's hooks were also named (`-p carbonfast.bench.pytest_plugin`)
    # and added them first.
    if not registered(pluginmanager, "carbonfast.bench.pytest_plugin"):
        add_options(parser)


def registered(pluginmanager: pytest.PytestPluginManager, module: str) -> bool:
    loaded = sys.modules.get(module)
    return loaded is not None and pluginmanager.is_registered(loaded)


def pytest_configure(config: pytest.Config) -> None:
    if any(config.getoption(name) for name in _ACTIVE_OPTIONS):
        hooks(config)


@pytest.fixture
def energy_benchmark(request: pytest.FixtureRequest) -> Any:
    """Benchmarks a function's energy per call: `energy_benchmark(func, *args, **kwargs)`."""
    return hooks(request.config).EnergyBenchmark(request)


def hooks(config: pytest.Config) -> Any:
    """The plugin's hooks (carbonfast.bench.pytest_plugin), registered at first need."""
    from carbonfast.bench import pytest_plugin

    if not config.pluginmanager.is_registered(pytest_plugin):
        config.pluginmanager.register(pytest_plugin, "carbonfast-energy")
    return pytest_plugin
