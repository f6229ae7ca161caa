"""The Lightning callback in a real Lightning Trainer on CPU: the figures reach its logger."""

from __future__ import annotations

from typing import Any

import pytest

import carbonfast as cf
from tests.fakes.powercap import FakePowercap

torch = pytest.importorskip("torch", reason="torch is not installed (scripts/test installs it)")
L = pytest.importorskip(
    "lightning.pytorch", reason="lightning is not installed (scripts/test installs it)"
)

from carbonfast.integrations.lightning import CarbonfastCallback  # noqa: E402

PACKAGE = "intel-rapl:0"
STEP_UJ = 1_000_000
VAL_BATCH_UJ = 250_000


class _Model(L.LightningModule):  # type: ignore[misc]
    def __init__(self, fake: FakePowercap) -> None:
        super().__init__()
        self.fake = fake
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        # Each step draws a known energy from the fake package.
        self.fake.add(PACKAGE, STEP_UJ)
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.fake.add(PACKAGE, VAL_BATCH_UJ)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class _Logger(L.loggers.Logger):  # type: ignore[misc]
    """A logger that keeps what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.logged: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "kept"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.logged.append((step or 0, dict(metrics)))

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        pass


def _loader(n: int) -> Any:
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(n, 4, generator=g), torch.randn(n, 1))
    return torch.utils.data.DataLoader(data, batch_size=4)


def test_the_loggers_get_each_reports_energy_with_validation_apart(
    fake: FakePowercap, tmp_path: Any
) -> None:
    logger = _Logger()
    trainer = L.Trainer(
        max_steps=40,
        log_every_n_steps=10,
        val_check_interval=20,
        num_sanity_val_steps=0,
        limit_val_batches=2,
        logger=logger,
        callbacks=[CarbonfastCallback(meter=cf.Meter(fake.root, history="off"))],
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(_Model(fake), _loader(80), _loader(8))
    train = [(step, m) for step, m in logger.logged if "energy/train_j" in m]
    val = [(step, m) for step, m in logger.logged if "energy/val_j" in m]
    assert [step for step, _ in train] == [10, 20, 30, 40]
    for _, m in train:
        assert m["energy/train_j"] == pytest.approx(10.0)
        assert m["power/train_w"] > 0 and m["emissions/train_kg"] > 0
        assert m["energy/estimated"] == 0.0
    assert train[-1][1]["energy/train_total_j"] == pytest.approx(40.0)
    # Two validations of two batches, 0.5 J each, apart from training's figures.
    assert [step for step, _ in val] == [20, 40]
    assert [m["energy/val_j"] for _, m in val] == pytest.approx([0.5, 0.5])
    assert all("energy/train_j" not in m for _, m in val)
