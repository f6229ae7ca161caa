"""`carbonfast run --codecarbon`: the command imports carbonfast's CodeCarbon drop-in as
`codecarbon`; without the option the real codecarbon is what it imports."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.powercap import FakePowercap

WHICH = """
import sys, codecarbon
from codecarbon.emissions_tracker import EmissionsTracker
import codecarbon.output_methods.file as file_output
print(codecarbon.__name__)
print(EmissionsTracker.__module__)
print(file_output.__name__)
print(codecarbon.__file__)
print([p for p in sys.path if "carbonfast-codecarbon-" in p])
"""


def _run(*args: str, fake: FakePowercap, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARBONFAST_POWERCAP_ROOT": str(fake.root)}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "carbonfast.cli", "run", "--quiet", "--no-history", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_with_the_option_codecarbon_is_the_drop_in_same_objects_under_both_names(
    fake: FakePowercap, tmp_path: Path
) -> None:
    same = (
        "import codecarbon, codecarbon.emissions_tracker as a\n"
        "import carbonfast.compat.codecarbon as cc, carbonfast.compat.codecarbon.emissions_tracker"
        " as b\n"
        "assert codecarbon is cc and a is b and codecarbon.EmissionsTracker is b.EmissionsTracker\n"
        "assert a.__spec__.name == 'carbonfast.compat.codecarbon.emissions_tracker'\n"
        "print('same')\n"
    )
    r = _run("--codecarbon", "--", sys.executable, "-c", WHICH + same, fake=fake, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == [
        "carbonfast.compat.codecarbon",
        "carbonfast.compat.codecarbon.emissions_tracker",
        "carbonfast.compat.codecarbon.output_methods.file",
    ]
    assert lines[-1] == "same"
    shim_dirs = eval(lines[4])
    assert len(shim_dirs) == 1
    # The directory lived as long as the command, no longer.
    assert not Path(shim_dirs[0]).exists()


def test_without_the_option_the_real_codecarbon_is_imported(
    fake: FakePowercap, tmp_path: Path
) -> None:
    pytest.importorskip("codecarbon", reason="the real codecarbon is not installed")
    r = _run("--", sys.executable, "-c", WHICH, fake=fake, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "codecarbon"
    assert lines[1] == "codecarbon.emissions_tracker"
    # The installed CodeCarbon's own file, not the drop-in's.
    spec = importlib.util.find_spec("codecarbon")
    assert spec is not None and lines[3] == spec.origin
    assert lines[4] == "[]"


TRAIN = """
import torch, transformers

class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 16
    def __getitem__(self, i):
        return {"input_ids": torch.full((8,), i), "labels": torch.tensor(i % 2)}

config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
    num_attention_heads=2, intermediate_size=64, max_position_embeddings=16)
args = transformers.TrainingArguments(output_dir="out", max_steps=4, report_to=["codecarbon"],
    save_strategy="no", use_cpu=True, disable_tqdm=True)
trainer = transformers.Trainer(model=transformers.BertForSequenceClassification(config),
    args=args, train_dataset=Data())
trainer.train()
(cb,) = [c for c in trainer.callback_handler.callbacks if type(c).__name__ == "CodeCarbonCallback"]
print(type(cb.tracker).__module__)
"""


def test_a_trainer_reporting_to_codecarbon_measures_with_carbonfast(
    fake: FakePowercap, tmp_path: Path
) -> None:
    pytest.importorskip("torch", reason="torch is not installed (scripts/test installs it)")
    pytest.importorskip("transformers", reason="transformers is not installed")
    r = _run("--codecarbon", "--", sys.executable, "-c", TRAIN, fake=fake, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "carbonfast.compat.codecarbon.emissions_tracker"
    # The drop-in's emissions.csv, in the Trainer's output directory.
    rows = list(csv.DictReader((tmp_path / "out" / "emissions.csv").open()))
    assert len(rows) == 1
    assert float(rows[0]["duration"]) > 0
