"""The training-loop callbacks' shared meter: deltas since the last report, totals, phases kept
apart, unknown figures left out, and each node counted once in a distributed job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import carbonfast as cf
from carbonfast.integrations._steps import StepMeter
from tests.fakes.powercap import FakePowercap

PACKAGE = "intel-rapl:0"


def test_each_report_gives_the_energy_since_the_last_one_and_the_running_total(
    fake: FakePowercap,
) -> None:
    steps = StepMeter(cf.Meter(fake.root, history="off"), label="loop")
    steps.start()
    fake.add(PACKAGE, 3_000_000)
    first = steps.report("train")
    fake.add(PACKAGE, 5_000_000)
    steps.mark("train")
    fake.add(PACKAGE, 1_000_000)
    second = steps.report("train")
    assert first["energy/train_j"] == pytest.approx(3.0)
    assert second["energy/train_j"] == pytest.approx(6.0)
    assert second["energy/train_total_j"] == pytest.approx(9.0)
    assert second["power/train_w"] > 0
    assert second["emissions/train_kg"] > 0
    assert second["emissions/train_total_kg"] > second["emissions/train_kg"]
    assert second["energy/estimated"] is False


def test_phases_are_kept_apart_and_a_phase_with_nothing_new_reports_nothing(
    fake: FakePowercap,
) -> None:
    steps = StepMeter(cf.Meter(fake.root, history="off"), label="loop")
    steps.start()
    fake.add(PACKAGE, 4_000_000)
    steps.mark("train")
    fake.add(PACKAGE, 1_000_000)
    steps.mark("eval")
    fake.add(PACKAGE, 7_000_000)
    steps.mark("setup")
    assert steps.take("eval")["energy/eval_j"] == pytest.approx(1.0)
    assert steps.take("train")["energy/train_j"] == pytest.approx(4.0)
    assert steps.take("eval") == {}
    # What no phase reports (setup) is in no one's figures.
    assert steps.report("train")["energy/train_total_j"] == pytest.approx(4.0)


def test_an_unknown_energy_is_left_out_never_zero(empty_fake: FakePowercap) -> None:
    steps = StepMeter(cf.Meter(empty_fake.root, history="off", estimate=False), label="loop")
    steps.start()
    assert steps.report("train") == {}


def test_an_estimated_energy_is_marked_as_estimated(empty_fake: FakePowercap) -> None:
    meter = cf.Meter(empty_fake.root, history="off", cpu_power_w=10.0, ram_power_w=1.0)
    steps = StepMeter(meter, label="loop")
    steps.start()
    sum(i * i for i in range(200_000))
    found = steps.report("train")
    assert found["energy/train_j"] > 0
    assert found["energy/estimated"] is True


def test_a_second_local_rank_does_not_count_its_node_again(
    fake: FakePowercap, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torchrun's environment, no engine: the node is measured by its local rank 0 alone.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    second = StepMeter(cf.Meter(fake.root, history="off"), label="loop")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    first = StepMeter(cf.Meter(fake.root, history="off"), label="loop")
    assert first.meter.job is not None and first.meter.job.measures_host
    assert second.meter.job is not None and not second.meter.job.measures_host
    first.start()
    second.start()
    fake.add(PACKAGE, 2_000_000)
    assert first.report("train")["energy/train_j"] == pytest.approx(2.0)
    # The node's energy is the first rank's: the second has no domain of its own (no GPU),
    # and says nothing rather than a second copy, or a 0.
    assert second.report("train") == {}


def test_importing_the_integrations_imports_no_framework() -> None:
    code = (
        "import sys, carbonfast, carbonfast.integrations, carbonfast.integrations._steps\n"
        "heavy = {'torch', 'transformers', 'lightning', 'pytorch_lightning', 'keras'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_a_missing_framework_names_the_package_to_install(tmp_path: Path) -> None:
    # A framework that cannot be imported: a module of that name that raises ImportError.
    for name in ("transformers", "lightning", "pytorch_lightning", "keras"):
        (tmp_path / f"{name}.py").write_text("raise ImportError('not here')\n")
    for module, package in [
        ("transformers", "pip install transformers"),
        ("lightning", "pip install lightning"),
        ("keras", "pip install keras"),
    ]:
        result = subprocess.run(
            [sys.executable, "-c", f"import carbonfast.integrations.{module}"],
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode != 0
        assert package in result.stderr, result.stderr
