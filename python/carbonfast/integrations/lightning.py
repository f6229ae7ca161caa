"""`CarbonfastCallback` for Lightning (`lightning.pytorch`, or `pytorch_lightning` where only
that is installed).

    from carbonfast.integrations.lightning import CarbonfastCallback

    trainer = L.Trainer(callbacks=[CarbonfastCallback()], log_every_n_steps=50)

Every `log_every_n_steps` optimizer steps, the trainer's loggers get `energy/train_j`,
`power/train_w`, `emissions/train_kg` since the previous report, `energy/train_total_j`,
`emissions/train_total_kg` and `energy/estimated` (1.0 or 0.0: loggers take numbers); at the
end of each validation run the same with `val`, measured from the validation's start, so that
training and validation are never mixed. The figures go straight to `trainer.loggers` at the
trainer's global step, as `LightningModule.log` would send them, without waiting for
Lightning's own logging cadence (which `self.log` from a callback follows only on the steps it
flushes); loggers log on global rank zero only.
"""

from __future__ import annotations

from typing import Any

try:
    from lightning.pytorch import Callback
except ImportError:
    try:
        from pytorch_lightning import Callback
    except ImportError as e:  # pragma: no cover - depends on what is installed
        raise ImportError(
            "carbonfast.integrations.lightning needs Lightning: pip install lightning"
        ) from e

from carbonfast.integrations._steps import Figure, StepMeter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from carbonfast.meter import Meter


class CarbonfastCallback(Callback):  # type: ignore[misc]
    """Logs the energy, power and emissions since the last report to the trainer's loggers
    (see the module's help). `meter`: the carbonfast Meter to measure on (default:
    carbonfast's default meter); `label`: the name of the loop's windows in the history."""

    def __init__(self, meter: Meter | None = None, label: str = "lightning.Trainer") -> None:
        super().__init__()
        self.steps = StepMeter(meter, label)
        self._reported_step = -1

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.steps.mark("before training")

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # The one per-step test. The global step counts optimizer steps: with gradient
        # accumulation several batches end on the same one, and only the first reports.
        step = trainer.global_step
        every = trainer.log_every_n_steps or 1
        if step % every or step == self._reported_step:
            return
        self._reported_step = step
        _log(trainer, self.steps.report("train"))

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self.steps.mark("train" if not trainer.sanity_checking else "before training")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            self.steps.mark("sanity check")
            return
        _log(trainer, self.steps.report("val"))

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.steps.stop("train")


def _log(trainer: Any, found: dict[str, Figure]) -> None:
    if not found:
        return
    metrics = {k: float(v) for k, v in found.items()}
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)
