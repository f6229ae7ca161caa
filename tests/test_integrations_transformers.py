"""The transformers callback in a real Trainer: a one-layer BERT trained on CPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import carbonfast as cf
from tests.fakes.powercap import FakePowercap

torch = pytest.importorskip("torch", reason="torch is not installed (scripts/test installs it)")
transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (scripts/test installs it)"
)

from carbonfast.integrations.transformers import CarbonfastCallback  # noqa: E402

PACKAGE = "intel-rapl:0"
# What the fake package draws: per training step, and per evaluation batch.
STEP_UJ = 1_000_000
EVAL_BATCH_UJ = 250_000


class _Dataset(torch.utils.data.Dataset):  # type: ignore[misc]
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 100, (n, 8), generator=g)
        self.labels = torch.randint(0, 2, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


class _Draws(transformers.TrainerCallback):  # type: ignore[misc]
    """Advances the fake package's counter as if each step and each evaluation batch drew a
    known energy."""

    def __init__(self, fake: FakePowercap) -> None:
        self.fake = fake

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        self.fake.add(PACKAGE, STEP_UJ)

    def on_prediction_step(self, *args: Any, **kwargs: Any) -> None:
        self.fake.add(PACKAGE, EVAL_BATCH_UJ)


def _trainer(tmp_path: Path, callbacks: list[Any], **args: Any) -> Any:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        num_labels=2,
    )
    model = transformers.BertForSequenceClassification(config)
    training = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=40,
        logging_steps=10,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        **args,
    )
    return transformers.Trainer(
        model=model,
        args=training,
        train_dataset=_Dataset(64, 1),
        eval_dataset=_Dataset(8, 2),
        callbacks=callbacks,
    )


def test_each_training_log_carries_the_energy_of_its_steps_apart_from_evaluation(
    fake: FakePowercap, tmp_path: Path
) -> None:
    meter = cf.Meter(fake.root, history="off")
    trainer = _trainer(
        tmp_path,
        [_Draws(fake), CarbonfastCallback(meter=meter)],
        eval_strategy="steps",
        eval_steps=20,
    )
    trainer.train()
    history = trainer.state.log_history
    train = [e for e in history if "loss" in e]
    evals = [e for e in history if "eval_loss" in e]
    assert [e["step"] for e in train] == [10, 20, 30, 40]
    # Ten steps of 1 J each between two logs: the counter's figure, exactly.
    for e in train:
        assert e["energy/train_j"] == pytest.approx(10.0)
        assert e["power/train_w"] > 0 and e["emissions/train_kg"] > 0
        assert e["energy/estimated"] is False
        assert not any(k.startswith("energy/eval") for k in e)
    assert train[-1]["energy/train_total_j"] == pytest.approx(40.0)
    # Two evaluations of two batches: 0.5 J each, none of it in training's figures.
    assert [e["step"] for e in evals] == [20, 40]
    for e in evals:
        assert e["energy/eval_j"] == pytest.approx(0.5)
        assert "energy/train_j" not in e
    assert evals[-1]["energy/eval_total_j"] == pytest.approx(1.0)
    # What trainer_state.json keeps.
    trainer.state.save_to_json(str(tmp_path / "state.json"))
    saved = json.loads((tmp_path / "state.json").read_text())["log_history"]
    assert sum("energy/train_j" in e for e in saved if "loss" in e) == 4
    # The closing summary carries the training's totals.
    (summary,) = [e for e in saved if "train_runtime" in e]
    assert summary["energy/train_total_j"] == pytest.approx(40.0)


def test_an_estimated_run_logs_positive_energy_marked_as_estimated(
    empty_fake: FakePowercap, tmp_path: Path
) -> None:
    # No counter here: the power model's figures, flagged.
    meter = cf.Meter(empty_fake.root, history="off", cpu_power_w=10.0, ram_power_w=1.0)
    trainer = _trainer(tmp_path, [CarbonfastCallback(meter=meter)])
    trainer.train()
    logged = [e for e in trainer.state.log_history if e.get("energy/train_j", 0) > 0]
    assert len(logged) >= 2
    assert all(e["energy/estimated"] is True for e in logged)


def test_put_first_the_reporters_get_the_figures_too(fake: FakePowercap, tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    class Reporter(transformers.TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            seen.append(dict(logs))

    # A reporter that `report_to` would install: in the handler before the given callbacks.
    trainer = _trainer(tmp_path, [_Draws(fake)])
    trainer.callback_handler.callbacks.insert(0, Reporter())
    callback = CarbonfastCallback.add_to(trainer, meter=cf.Meter(fake.root, history="off"))
    assert trainer.callback_handler.callbacks[0] is callback
    trainer.train()
    assert [e["energy/train_j"] for e in seen if "loss" in e] == pytest.approx([10.0] * 4)
    assert [e["energy/train_j"] for e in trainer.state.log_history if "loss" in e] == (
        pytest.approx([10.0] * 4)
    )
